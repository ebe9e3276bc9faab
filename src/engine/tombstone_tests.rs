//! Tombstones against copies held by nodes that were away: an end never
//! comes back, an expiry here yields to a copy kept alive elsewhere.

use std::time::Duration;

use super::generation_tests::{deliver, exchange};
use super::replica_tests::{config, insert, live};
use super::*;
use crate::doc::Op;
use crate::{ManualClock, SessionId};

const DAY: Duration = Duration::from_secs(24 * 3600);
const MIN: Duration = Duration::from_secs(60);

/// Two engines with the given idle and absolute timeouts, a 7-day GC
/// horizon and no tombstone grace.
fn pair(
    dirs: &[tempfile::TempDir; 2],
    clock: &ManualClock,
    idle: Duration,
    absolute: Duration,
) -> (Engine, Engine) {
    let open = |dir: &tempfile::TempDir| {
        let config = config(dir.path(), clock)
            .with_max_idle(idle)
            .with_absolute_timeout(absolute)
            .with_gc_horizon(7 * DAY);
        Engine::open(config, None).unwrap()
    };
    (open(&dirs[0]), open(&dirs[1]))
}

/// A session created on `a` and replicated to `b`, then logged out on `a`
/// while `b` is cut off; `a` sweeps it into a tombstone.
fn logged_out_while_b_was_away(a: &Engine, b: &Engine) -> crate::DocKey {
    let key = SessionId::random().doc_key();
    let (_, pushes) = a.create(key, &[insert("user", "\"ada\"")]).unwrap();
    deliver(b, &pushes);
    a.commit(key, &[Op::Invalidate]).unwrap();
    assert_eq!(a.sweep().unwrap().tombstoned, 1);
    key
}

#[test]
fn a_logout_does_not_come_back_after_the_gc_horizon() {
    // The tower-sessions adapter's default: no idle timeout, 14 days at most.
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let clock = ManualClock::new(1_000_000);
    let (a, b) = pair(&dirs, &clock, Duration::ZERO, 14 * DAY);
    let key = logged_out_while_b_was_away(&a, &b);
    clock.advance(9 * DAY);
    a.sweep().unwrap();
    // `b` comes back with its copy, still live by its own deadline.
    assert!(live(&b, key).is_some());
    exchange(&a, &b, key);
    assert!(live(&a, key).is_none(), "the logout came back");
    // Past the session's own deadline the tombstone goes.
    clock.advance(6 * DAY);
    assert_eq!(a.sweep().unwrap().forgotten, 1);
}

#[test]
fn a_stale_copy_of_a_session_without_deadline_is_not_taken_in() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let clock = ManualClock::new(1_000_000);
    let (a, b) = pair(&dirs, &clock, Duration::ZERO, Duration::ZERO);
    let key = logged_out_while_b_was_away(&a, &b);
    clock.advance(8 * DAY);
    assert_eq!(a.sweep().unwrap().forgotten, 1, "nothing left of it here");
    exchange(&a, &b, key);
    assert!(live(&a, key).is_none(), "the logout came back");
    // A session in use is still taken in by a node that lacks it.
    let used = SessionId::random().doc_key();
    b.create(used, &[insert("k", "1")]).unwrap();
    exchange(&a, &b, used);
    assert_eq!(live(&a, used).unwrap().attributes["k"], 1);
}

#[test]
fn an_expiry_tombstone_yields_to_a_copy_kept_alive_elsewhere() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let clock = ManualClock::new(1_000_000);
    let (a, b) = pair(&dirs, &clock, 30 * MIN, DAY);
    let key = SessionId::random().doc_key();
    let (_, pushes) = a.create(key, &[insert("user", "\"ada\"")]).unwrap();
    deliver(&b, &pushes);
    // Cut off: the user goes on on `b`; on `a` the session expires.
    for i in 0..4 {
        clock.advance(10 * MIN);
        // A request: the read records the access, then the write.
        assert!(live(&b, key).is_some());
        b.commit(key, &[insert("step", &i.to_string())]).unwrap();
    }
    assert_eq!(a.sweep().unwrap().tombstoned, 1);
    assert!(live(&a, key).is_none());
    exchange(&a, &b, key);
    let view = live(&a, key).expect("the copy kept alive on b is taken in");
    assert_eq!(view.attributes["step"], 3);
    assert_eq!(view.attributes["user"], "ada");
}
