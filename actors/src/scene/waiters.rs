//! The long-polls waiting for a scene's next change. Most scenes have none or one, so one is
//! kept inline and only a crowd is boxed: every pending scene pays for this field.

use tokio::sync::oneshot;

use super::state::SceneStatus;

#[derive(Default)]
pub(crate) enum Waiters {
    #[default]
    None,
    One(oneshot::Sender<SceneStatus>),
    // Boxed so the field stays two words for the many scenes with at most one waiter.
    #[allow(clippy::box_collection)]
    Many(Box<Vec<oneshot::Sender<SceneStatus>>>),
}

impl Waiters {
    /// A receiver for the next change. Waiters whose browser went away are dropped first, so a
    /// scene polled for minutes stays small.
    pub(crate) fn add(&mut self) -> oneshot::Receiver<SceneStatus> {
        let (tx, rx) = oneshot::channel();
        *self = match std::mem::take(self) {
            Waiters::None => Waiters::One(tx),
            Waiters::One(old) if old.is_closed() => Waiters::One(tx),
            Waiters::One(old) => Waiters::Many(Box::new(vec![old, tx])),
            Waiters::Many(mut all) => {
                all.retain(|w| !w.is_closed());
                all.push(tx);
                Waiters::Many(all)
            }
        };
        rx
    }

    /// Answers every waiter with `status`; nobody waits afterwards.
    pub(crate) fn answer(&mut self, status: &SceneStatus) {
        match std::mem::take(self) {
            Waiters::None => {}
            Waiters::One(tx) => {
                let _ = tx.send(status.clone());
            }
            Waiters::Many(all) => {
                for tx in *all {
                    let _ = tx.send(status.clone());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::scene::state::{LoginMode, Phase, SceneMachine};

    #[test]
    fn every_waiter_hears_the_change_and_gone_ones_are_dropped() {
        let status = SceneMachine::new(LoginMode::QrCode, false).status(Instant::now());
        let mut waiters = Waiters::default();
        drop(waiters.add());
        let mut kept = vec![waiters.add()];
        // The first receiver was gone: the one slot was reused.
        assert!(matches!(waiters, Waiters::One(_)));
        kept.push(waiters.add());
        drop(kept.pop());
        kept.push(waiters.add());
        let Waiters::Many(all) = &waiters else {
            panic!("three waiters, one gone");
        };
        assert_eq!(all.len(), 2);
        waiters.answer(&status);
        assert!(matches!(waiters, Waiters::None));
        for mut rx in kept {
            assert_eq!(rx.try_recv().unwrap().phase, Phase::Waiting);
        }
    }
}
