//! What requests do through the engine, below the node: reads of evicted
//! sessions served from the summaries the cache keeps.

use std::time::Duration;

use super::replica_tests::{insert, live};
use super::*;
use crate::{Config, DocKey, ManualClock, SessionId};

const MIN: Duration = Duration::from_secs(60);

#[test]
fn reads_of_evicted_sessions_come_from_their_kept_summary_and_stay_current() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    // Room for a handful of loaded documents (~24 KiB each), and a quarter
    // of that again for the summaries of evicted ones.
    let config = Config::new(dir.path())
        .with_clock(clock.clone())
        .with_max_idle(30 * MIN)
        .with_cache_bytes(200 << 10);
    let engine = Engine::open(config, None).unwrap();
    let keys: Vec<DocKey> = (0..40).map(|_| SessionId::random().doc_key()).collect();
    for (i, key) in keys.iter().enumerate() {
        engine.create(*key, &[insert("i", &i.to_string())]).unwrap();
    }
    let kept = |key: DocKey| {
        engine
            .kept_summary(key)
            .and_then(|s| s.attributes.get("i").cloned())
    };
    let first = keys[0];
    assert_eq!(
        kept(first),
        Some(0.into()),
        "an evicted document left its summary"
    );
    assert_eq!(live(&engine, first).unwrap().attributes["i"], 0);
    assert_eq!(
        kept(first),
        Some(0.into()),
        "the read did not load the document"
    );

    // A write loads the document (the kept summary goes); once evicted
    // again, reads see the write.
    engine.commit(first, &[insert("i", "100")]).unwrap();
    assert_eq!(kept(first), None);
    for key in &keys[1..] {
        engine.commit(*key, &[insert("j", "1")]).unwrap();
    }
    assert_eq!(kept(first), Some(100.into()));
    assert_eq!(live(&engine, first).unwrap().attributes["i"], 100);

    // A read due to record an access goes through the document.
    clock.advance(2 * MIN);
    assert_eq!(live(&engine, first).unwrap().attributes["i"], 100);
    assert_eq!(kept(first), None);

    // An expired session reads as gone from its kept summary too.
    let second = keys[1];
    assert!(kept(second).is_some());
    clock.advance(31 * MIN);
    assert!(live(&engine, second).is_none());
    engine.close(true).unwrap();
}
