//! Futures polled together by one task per thread instead of a tokio task each. Every pending
//! scene is such a future, and a task's header and 128-byte alignment cost ~200 B where a
//! `FuturesUnordered` node costs ~70 B (docs/PERFORMANCE.md).
//!
//! Each future runs inside `catch_unwind`: one that panics is dropped and logged, and the
//! others go on.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::panic::AssertUnwindSafe;
use std::rc::{Rc, Weak};
use std::task::{Poll, Waker};

use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt;

/// One thread's pool; lives in a `thread_local!`.
pub(crate) struct LocalPool<F> {
    /// Where the thread's driver task takes new futures from. Dead while no driver runs here:
    /// before the first spawn, and after the runtime that ran it has gone.
    inbox: RefCell<Weak<Inbox<F>>>,
}

struct Inbox<F> {
    arrived: RefCell<Vec<F>>,
    driver: RefCell<Option<Waker>>,
}

impl<F: Future<Output = ()> + 'static> LocalPool<F> {
    pub(crate) const fn new() -> Self {
        Self {
            inbox: RefCell::new(Weak::new()),
        }
    }

    /// Polls `future` on this thread, from inside an actix arbiter, until it completes or
    /// panics.
    pub(crate) fn spawn(&self, future: F) {
        let live = self.inbox.borrow().upgrade();
        let inbox = live.unwrap_or_else(|| {
            let inbox = Rc::new(Inbox {
                arrived: RefCell::new(Vec::new()),
                driver: RefCell::new(None),
            });
            *self.inbox.borrow_mut() = Rc::downgrade(&inbox);
            actix::spawn(drive(inbox.clone()));
            inbox
        });
        inbox.arrived.borrow_mut().push(future);
        if let Some(driver) = inbox.driver.borrow().as_ref() {
            driver.wake_by_ref();
        };
    }
}

/// The thread's driver task: polls every pooled future that was woken, forever.
async fn drive<F: Future<Output = ()>>(inbox: Rc<Inbox<F>>) {
    let mut pooled = FuturesUnordered::new();
    poll_fn(move |cx| {
        let mut driver = inbox.driver.borrow_mut();
        if !driver.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *driver = Some(cx.waker().clone());
        }
        drop(driver);
        let arrived = inbox.arrived.take();
        pooled.extend(
            arrived
                .into_iter()
                .map(|future| AssertUnwindSafe(future).catch_unwind()),
        );
        // Ends at `Pending` (nothing more to do now, or a turn's fill: FuturesUnordered yields
        // after polling each future once) or `None` (empty; the next spawn wakes us).
        while let Poll::Ready(Some(outcome)) = pooled.poll_next_unpin(cx) {
            if outcome.is_err() {
                tracing::error!("a pooled actor panicked: it was dropped, the others go on");
            }
        }
        Poll::<()>::Pending
    })
    .await
}
