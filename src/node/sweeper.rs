//! The background sweeper: every sweep interval, turn dead sessions into
//! tombstones and forget old tombstones. It holds only a weak reference, so
//! a node dropped without `shutdown()` still lets it end.

use std::sync::{Arc, Weak};

use tokio::task::JoinHandle;

use super::handle::Inner;

pub(super) fn spawn(inner: &Arc<Inner>) -> JoinHandle<()> {
    let weak: Weak<Inner> = Arc::downgrade(inner);
    let mut stop = inner.shutdown.subscribe();
    let period = inner.config.sweep_interval;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the first tick fires at once
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            let Some(inner) = weak.upgrade() else { return };
            if *stop.borrow() {
                return;
            }
            match inner.sweep() {
                Ok(r) if r.tombstoned + r.forgotten > 0 => {
                    tracing::debug!(tombstoned = r.tombstoned, forgotten = r.forgotten, "sweep");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "sweep failed; will retry"),
            }
        }
    })
}
