//! The data directory remembers which mode it served: `DATA_DIR/mode` says `real` or
//! `sandbox`, written at the first start. The sandbox refuses a real directory (its bindings are
//! real users, and in the sandbox `/sandbox/scan` logs anyone in as any of them), and a directory
//! that holds data but no marker (written before markers, so possibly real). Real mode refuses a
//! sandbox directory (its bindings are anyone's test users, whose phones real users could then
//! not bind).
//!
//! On PostgreSQL the database keeps the same label (`wxlogin_mode`), for the same reasons and
//! more: every node trusts the sessions in it and signs with the keys in it, so one sandbox node
//! started on a real deployment's database (a staging copy of its settings) would let anyone
//! log in as any real user everywhere. Each data directory is a node's own; the database is
//! the deployment's.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use wxlogin_storage::{ModeClaim, Store, StoreError};

const FILE: &str = "mode";
const REAL: &[u8] = b"real\n";
const SANDBOX: &[u8] = b"sandbox\n";
/// sled's main file: a directory that has it holds data.
const SLED_DB: &str = "db";

#[derive(Debug, thiserror::Error)]
pub enum ModeError {
    #[error("WXLOGIN_DATA_DIR: {} served a real account ({} says so) and the sandbox, where anyone can log in as any user, refuses it: set WXLOGIN_APPID for real mode, or give the sandbox another WXLOGIN_DATA_DIR", dir.display(), marker.display())]
    RealData { dir: PathBuf, marker: PathBuf },
    #[error("WXLOGIN_DATA_DIR: {} holds data but does not say which mode it served (it is older than the {FILE} file, so it may be a real account's), and the sandbox refuses it: set WXLOGIN_APPID if it is real, or give the sandbox another WXLOGIN_DATA_DIR (a sandbox's data can simply be deleted)", dir.display())]
    Unmarked { dir: PathBuf },
    #[error("WXLOGIN_DATA_DIR: {} is a sandbox's ({} says so): its bindings are test users anyone made, and real mode refuses them: give real mode another WXLOGIN_DATA_DIR", dir.display(), marker.display())]
    SandboxData { dir: PathBuf, marker: PathBuf },
    #[error("WXLOGIN_DATA_DIR: {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("WXLOGIN_DATABASE_URL: the database serves a real account and the sandbox, where anyone can log in as any user, refuses it: set WXLOGIN_APPID for real mode, or give the sandbox its own database")]
    RealDatabase,
    #[error("WXLOGIN_DATABASE_URL: the database holds bindings but does not say which mode it served (it is older than its mode label, so it may be a real account's), and the sandbox refuses it: set WXLOGIN_APPID if it is real, or give the sandbox its own database")]
    UnmarkedDatabase,
    #[error("WXLOGIN_DATABASE_URL: the database is a sandbox's: its bindings are test users anyone made, and real mode refuses them: give real mode its own database")]
    SandboxDatabase,
    #[error("WXLOGIN_DATABASE_URL: cannot read which mode the database serves: {0}")]
    Database(StoreError),
}

/// The label of the mode starting now.
fn label(sandbox: bool) -> &'static str {
    if sandbox {
        "sandbox"
    } else {
        "real"
    }
}

/// Checks that the store's database (on PostgreSQL) served the mode starting now, labelling a
/// new one. As for a directory, only real mode takes a database with data and no label.
pub async fn claim_database(store: &Store, sandbox: bool) -> Result<(), ModeError> {
    match store.claim_mode(label(sandbox), sandbox).await {
        None | Some(Ok(ModeClaim::Ours)) => Ok(()),
        Some(Ok(ModeClaim::Other(_))) if sandbox => Err(ModeError::RealDatabase),
        Some(Ok(ModeClaim::Other(_))) => Err(ModeError::SandboxDatabase),
        Some(Ok(ModeClaim::UnlabelledData)) => Err(ModeError::UnmarkedDatabase),
        Some(Err(e)) => Err(ModeError::Database(e)),
    }
}

impl ModeError {
    /// The process's exit status: 2, as for a bad setting, when the settings don't fit the
    /// data; 1 when the data could not be read.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Io { .. } | Self::Database(_) => 1,
            _ => 2,
        }
    }
}

/// Checks that `data_dir` served the mode starting now (`sandbox` or real), marking a new one.
/// Blocking: for the start, before anything serves.
pub fn claim(data_dir: &Path, sandbox: bool) -> Result<(), ModeError> {
    let marker = data_dir.join(FILE);
    let io = |source| ModeError::Io {
        path: marker.clone(),
        source,
    };
    let found = match fs::read(&marker) {
        Ok(found) => Some(found),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(e)),
    };
    let dir = || data_dir.to_owned();
    let (mode, other) = if sandbox {
        (SANDBOX, REAL)
    } else {
        (REAL, SANDBOX)
    };
    match found.as_deref() {
        Some(found) if found == mode => Ok(()),
        Some(found) if found == other && sandbox => Err(ModeError::RealData { dir: dir(), marker }),
        Some(found) if found == other => Err(ModeError::SandboxData { dir: dir(), marker }),
        // Unreadable or unmarked data: only real mode may take it (it was real mode's before
        // markers, or the operator says so by starting it).
        Some(_) if sandbox => Err(ModeError::Unmarked { dir: dir() }),
        None if sandbox && data_dir.join(SLED_DB).exists() => {
            Err(ModeError::Unmarked { dir: dir() })
        }
        _ => {
            fs::create_dir_all(data_dir).map_err(io)?;
            crate::files::replace(&marker, mode, 0o644).map_err(io)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_keeps_to_the_mode_it_first_served() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        claim(&real, false).unwrap();
        claim(&real, false).unwrap();
        assert_eq!(fs::read(real.join(FILE)).unwrap(), REAL);
        assert!(matches!(
            claim(&real, true),
            Err(ModeError::RealData { .. })
        ));

        let sandbox = dir.path().join("sandbox");
        claim(&sandbox, true).unwrap();
        claim(&sandbox, true).unwrap();
        assert_eq!(fs::read(sandbox.join(FILE)).unwrap(), SANDBOX);
        assert!(matches!(
            claim(&sandbox, false),
            Err(ModeError::SandboxData { .. })
        ));
    }

    #[test]
    fn data_from_before_markers_is_real_modes_only() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(SLED_DB), "sled").unwrap();
        assert!(matches!(
            claim(dir.path(), true),
            Err(ModeError::Unmarked { .. })
        ));
        claim(dir.path(), false).unwrap();
        assert_eq!(fs::read(dir.path().join(FILE)).unwrap(), REAL);
    }
}
