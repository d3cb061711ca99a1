//! Backups read every binding at one moment without stopping binding writes.
//!
//! sled 0.34 has no snapshots, and its iterators read each key as it stands when they reach it,
//! so a plain scan during a bind could show a phone under the openid it left (read early) and
//! under the one it moved to (read late). A backup therefore starts a *cut*: from then on,
//! every binding write first notes what its openid's binding was (the first note per openid
//! wins: that is its value at the cut), then writes. The backup scans without a lock, in key
//! order; for an openid with a note it writes the noted value instead of the one it read, and
//! once the scan is done it adds the noted bindings it never read (removed before it got there).
//! A note taken after the scan read its openid says so (the scan wrote the value it read, the
//! value at the cut), so that binding is not written twice. The result is exactly the
//! bindings as they were when the cut started.
//!
//! The binding-write lock is held alone only to start and to end a cut (it waits for binding
//! transactions in flight, microseconds), never during the scan; notes cost writers a `get`
//! only while a backup runs, and memory for the openids written during it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use super::{binding_from, SledDb};
use crate::backend::{BindingSink, BindingStream};
use crate::model::OpenId;
use crate::StoreError;
use sled::IVec;

/// What the openids written since the cut began were bound to at the cut, and how far the
/// scan has got.
#[derive(Default)]
pub struct Cut(Mutex<CutState>);

#[derive(Default)]
struct CutState {
    noted: HashMap<IVec, Noted>,
    /// The last openid the scan read: it reads in key order.
    position: Option<IVec>,
}

struct Noted {
    /// The binding at the cut; `None`: unbound.
    before: Option<IVec>,
    /// The scan had already read this openid, unchanged so far, when it was noted: it wrote
    /// the value it read, which is `before`.
    passed: bool,
}

impl Cut {
    fn state(&self) -> std::sync::MutexGuard<'_, CutState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The scan reads `openid`: what it was at the cut if it changed since, else `None`.
    fn visit(&self, openid: &IVec) -> Option<Option<IVec>> {
        let mut state = self.state();
        state.position = Some(openid.clone());
        state.noted.get(openid).map(|noted| noted.before.clone())
    }

    fn note(&self, openid: &IVec, before: &Option<IVec>) {
        let mut state = self.state();
        let passed = state.position.as_ref().is_some_and(|p| openid <= p);
        state.noted.entry(openid.clone()).or_insert_with(|| Noted {
            before: before.clone(),
            passed,
        });
    }
}

impl SledDb {
    /// Called by every binding write, holding the binding-write lock shared, before it writes.
    pub(super) fn note_binding_change(&self, openid: &OpenId) -> Result<(), StoreError> {
        let cuts = self.cuts.lock().unwrap_or_else(|p| p.into_inner());
        if cuts.is_empty() {
            return Ok(());
        }
        let key = IVec::from(openid.as_str());
        let now = self.bindings.get(&key)?;
        for cut in cuts.iter() {
            cut.note(&key, &now);
        }
        Ok(())
    }

    /// Every binding as of now, read on a thread of its own and streamed.
    pub fn backup(self: &Arc<Self>) -> Result<BindingStream, StoreError> {
        let cut = Arc::new(Cut::default());
        {
            let _alone = self
                .binding_writes
                .write()
                .unwrap_or_else(|p| p.into_inner());
            self.cuts
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(cut.clone());
        }
        let (mut sink, stream) = BindingStream::channel();
        let (db, reading) = (self.clone(), cut.clone());
        let reader = std::thread::Builder::new()
            .name("wxlogin-backup".into())
            .spawn(move || {
                yield_to_requests();
                let result = db.read_cut(&reading, &mut sink);
                // Ended already unless the read stopped early; ending twice is harmless.
                db.end_cut(&reading);
                match result {
                    Ok(()) => {
                        sink.finish();
                    }
                    Err(e) => sink.fail(e),
                }
            });
        if let Err(e) = reader {
            self.end_cut(&cut);
            return Err(StoreError::Unavailable(e));
        }
        Ok(stream)
    }

    fn read_cut(&self, cut: &Cut, sink: &mut BindingSink) -> Result<(), StoreError> {
        let mut send = |openid: &[u8], raw: &[u8]| -> Result<bool, StoreError> {
            let openid =
                OpenId::parse(&String::from_utf8_lossy(openid)).ok_or_else(super::corrupt)?;
            // A reader that went away (the client hung up) ends the backup.
            Ok(sink.push(binding_from(openid, raw)?))
        };
        let mut read_noted = HashSet::new();
        for entry in self.bindings.iter() {
            let (openid, raw) = entry?;
            let value = match cut.visit(&openid) {
                Some(before) => {
                    read_noted.insert(openid.clone());
                    before
                }
                None => Some(raw),
            };
            if let Some(raw) = value {
                if !send(&openid, &raw)? {
                    return Ok(());
                }
            }
        }
        // Every write that changed a binding during the scan noted it before writing: ending
        // the cut under the lock waits for the last of them.
        self.end_cut(cut);
        let state = cut.state();
        for (openid, noted) in &state.noted {
            if let (false, false, Some(raw)) =
                (noted.passed, read_noted.contains(openid), &noted.before)
            {
                if !send(openid, raw)? {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    fn end_cut(&self, cut: &Cut) {
        let _alone = self
            .binding_writes
            .write()
            .unwrap_or_else(|p| p.into_inner());
        self.cuts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|c| !std::ptr::eq(&**c, cut));
    }
}

/// A backup is bulk work that may take seconds: its thread runs at the lowest CPU priority,
/// so that on a busy machine requests get the cores first (Linux: `setpriority` on a thread
/// id sets that thread's nice value alone). Best effort: a refusal leaves it at normal priority.
fn yield_to_requests() {
    #[cfg(target_os = "linux")]
    unsafe {
        let thread = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, thread, 19);
    }
}
