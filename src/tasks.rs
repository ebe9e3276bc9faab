//! The one owner of a node's background work. Every task a node starts —
//! the sweeper, periodic anti-entropy, the network's event loop, a peer's
//! push queue, answering a peer's request — is spawned here and nowhere
//! else, so that [`Tasks::shutdown`] can stop them all and wait until the
//! last one has ended.
//!
//! Two kinds of task:
//!
//! - [`spawn`](Tasks::spawn): async work that may stop at any `.await`
//!   (a push in flight, a sync round, a timer). It ends at the stop signal.
//! - [`spawn_blocking`](Tasks::spawn_blocking): storage work on the blocking
//!   pool (answering a peer). It is never cut off halfway — a persist
//!   either happens or not — and shutdown waits for it.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::runtime::RuntimeFlavor;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// A cheap, cloneable handle on the node's tasks.
#[derive(Debug, Clone)]
pub(crate) struct Tasks {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    // std Mutex: held only to add a task or to take the set out, never
    // across an `.await`.
    set: Mutex<JoinSet<()>>,
    /// Held by a shutdown while it waits, so that a second, concurrent one
    /// returns only when every task has ended too. tokio's Mutex: held
    /// across awaits.
    stopping: tokio::sync::Mutex<()>,
    /// `true` once the node is stopping: running tasks end, new ones are
    /// refused.
    stop: watch::Sender<bool>,
}

impl Tasks {
    pub(crate) fn new() -> Self {
        Self {
            shared: Arc::new(Shared {
                set: Mutex::new(JoinSet::new()),
                stopping: tokio::sync::Mutex::new(()),
                stop: watch::channel(false).0,
            }),
        }
    }

    fn set(&self) -> MutexGuard<'_, JoinSet<()>> {
        self.shared
            .set
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the node is stopping.
    pub(crate) fn stopping(&self) -> bool {
        *self.shared.stop.borrow()
    }

    /// Runs `fut` until it ends or the node stops, whichever comes first.
    /// Refused (dropped unstarted, `false`) once the node is stopping.
    pub(crate) fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) -> bool {
        let mut stop = self.shared.stop.subscribe();
        let mut set = self.set();
        if *stop.borrow() {
            return false;
        }
        reap(&mut set);
        set.spawn(async move {
            tokio::select! {
                () = fut => {}
                _ = stop.wait_for(|s| *s) => {}
            }
        });
        true
    }

    /// Runs `f` on the blocking pool; shutdown waits for it. Refused once
    /// the node is stopping.
    pub(crate) fn spawn_blocking(&self, f: impl FnOnce() + Send + 'static) {
        let mut set = self.set();
        if self.stopping() {
            return;
        }
        reap(&mut set);
        set.spawn_blocking(f);
    }

    /// Runs `job` every `period` (the first time one period from now) until
    /// the node stops. A run that overruns delays the next one.
    pub(crate) fn every<F, Fut>(&self, period: Duration, mut job: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let _ = self.spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await; // the first tick fires at once
            loop {
                tick.tick().await;
                job().await;
            }
        });
    }

    /// Stops every task and waits until each has ended.
    pub(crate) async fn shutdown(&self) {
        self.shared.stop.send_replace(true);
        let _one_at_a_time = self.shared.stopping.lock().await;
        loop {
            let mut set = std::mem::take(&mut *self.set());
            if set.is_empty() {
                return;
            }
            while let Some(done) = set.join_next().await {
                log_failure(done);
            }
        }
    }

    /// Stops every task without waiting (the node was dropped without
    /// [`shutdown`](Self::shutdown)): async tasks are cancelled, blocking
    /// ones run to their end on their own.
    pub(crate) fn abort(&self) {
        self.shared.stop.send_replace(true);
        self.set().abort_all();
    }
}

/// Drops the results of tasks that have ended, so the set holds only
/// running ones.
fn reap(set: &mut JoinSet<()>) {
    while let Some(done) = set.try_join_next() {
        log_failure(done);
    }
}

fn log_failure(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        if e.is_panic() {
            tracing::error!(error = %e, "a background task panicked");
        }
    }
}

/// Runs storage work `f` from async code. Work that may take long (a
/// device flush, a batch of documents) is marked as blocking on a
/// multi-threaded runtime, so the worker hands its other tasks — the
/// network among them — to another thread meanwhile.
pub(crate) fn blocking<R>(long: bool, f: impl FnOnce() -> R) -> R {
    let multi = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread);
    if long && multi {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn shutdown_waits_for_blocking_work_and_cancels_async_work() {
        let tasks = Tasks::new();
        let done = Arc::new(AtomicUsize::new(0));
        let d = Arc::clone(&done);
        tasks.spawn_blocking(move || {
            std::thread::sleep(Duration::from_millis(50));
            d.fetch_add(1, Ordering::SeqCst);
        });
        // An async task that would never end on its own.
        assert!(tasks.spawn(std::future::pending()));
        let d = Arc::clone(&done);
        tasks.every(Duration::from_millis(1), move || {
            let d = Arc::clone(&d);
            async move {
                d.fetch_add(0, Ordering::SeqCst);
            }
        });
        tasks.shutdown().await;
        assert_eq!(done.load(Ordering::SeqCst), 1, "blocking work finished");
        assert!(tasks.set().is_empty());
        // Refused once stopping.
        assert!(!tasks.spawn(async { panic!("must not run") }));
        tasks.spawn_blocking(|| panic!("must not run"));
        assert!(tasks.set().is_empty());
    }

    #[tokio::test]
    async fn a_second_shutdown_at_the_same_time_also_waits_for_everything() {
        let tasks = Tasks::new();
        let done = Arc::new(AtomicUsize::new(0));
        let d = Arc::clone(&done);
        tasks.spawn_blocking(move || {
            std::thread::sleep(Duration::from_millis(100));
            d.fetch_add(1, Ordering::SeqCst);
        });
        let after_shutdown = || async {
            tasks.shutdown().await;
            done.load(Ordering::SeqCst)
        };
        let (first, second) = tokio::join!(after_shutdown(), after_shutdown());
        assert_eq!((first, second), (1, 1));
    }
}
