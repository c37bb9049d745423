//! Repairing damaged segments over a real bus: a segment cut short and one with a flipped byte
//! come back whole from their readable blocks and the bus, every event exactly once; what the
//! bus no longer holds is reported with its offsets and count.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy_event::{codec, Parser};
use eddy_log::{Log, PartitionChoice, Record, Topic, TopicConfig};
use eddy_store::repair::repair;
use eddy_store::{Digest, RepoStore, Scan, StoreConfig};

const COUNT: u64 = 3000;

fn config() -> StoreConfig {
    StoreConfig {
        segment_bytes: 16 << 10,
        block_bytes: 2 << 10,
        merge_below: 0,
        ..StoreConfig::default()
    }
}

/// A bus in `dir/bus` whose small segments all go when retention runs (it waits for no group).
fn open_log(dir: &Path) -> (Arc<Log>, Arc<Topic>) {
    let log = Arc::new(
        Log::builder(dir.join("bus"))
            .retention_check(Duration::ZERO)
            .open()
            .unwrap(),
    );
    let topic = log
        .topic_or_create(
            "repo.main",
            TopicConfig {
                partitions: 2,
                segment_bytes: 4096,
                retention_bytes: Some(1),
                ..TopicConfig::default()
            },
        )
        .unwrap();
    (log, topic)
}

/// In batches of 50, so that the bus seals many small segments.
fn produce(topic: &Topic) {
    for from in (0..COUNT).step_by(50) {
        produce_batch(topic, from..(from + 50).min(COUNT));
    }
}

fn produce_batch(topic: &Topic, numbers: std::ops::Range<u64>) {
    let records = numbers
        .map(|i| {
            let host = format!("web-{}", i % 3);
            let line = format!(r#"{{"n":{i},"message":"request {i} served","host":"{host}"}}"#);
            let mut e = Parser::Json
                .parse(&line, 1_700_000_000_000_000_000 + i as i64)
                .unwrap();
            e.tags = BTreeMap::from([("host".to_string(), host.clone())]);
            Record::new(codec::encode(&e)).with_key(format!("#host={host}"))
        })
        .collect();
    topic.produce(records, PartitionChoice::ByKey).unwrap();
}

/// Every `n` the store holds, sorted (doubles kept).
fn numbers(store: &RepoStore) -> Vec<u64> {
    let (events, stats) = store.collect(&Scan::all());
    assert!(stats.warnings.is_empty(), "{:?}", stats.warnings);
    let mut n: Vec<u64> = events
        .iter()
        .map(|e| match e.fields.get("n") {
            Some(eddy_event::Value::Int(n)) => *n as u64,
            other => panic!("no n: {other:?}"),
        })
        .collect();
    n.sort_unstable();
    n
}

/// Digests every event into sealed segments, then closes the store: `(bus, store dir)`.
fn digested(dir: &Path) -> (Arc<Log>, Arc<Topic>, PathBuf) {
    let (log, topic) = open_log(dir);
    let store_dir = dir.join("store");
    let store = Arc::new(RepoStore::open("main", &store_dir, config()).unwrap());
    let digest = Digest::start(log.clone(), topic.name(), store.clone());
    produce(&topic);
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.collect(&Scan::all()).0.len() < COUNT as usize {
        assert!(Instant::now() < deadline, "the digest did not catch up");
        std::thread::sleep(Duration::from_millis(20));
    }
    digest.stop();
    store.seal_all().unwrap();
    assert!(store.catalogue().segments.len() >= 4);
    (log, topic, store_dir)
}

/// The two largest segments: one cut to half its length, one with a byte of block 0 flipped.
fn damage(store_dir: &Path) -> (u64, u64) {
    let store = RepoStore::open("main", store_dir, config()).unwrap();
    let mut entries: Vec<_> = store.catalogue().segments.into_values().collect();
    entries.sort_by_key(|e| std::cmp::Reverse(e.info.count));
    let (cut, flipped) = (entries[0].info.id, entries[1].info.id);
    let path = |id: u64| store_dir.join(format!("{id:020}.seg"));
    let bytes = std::fs::read(path(cut)).unwrap();
    std::fs::write(path(cut), &bytes[..bytes.len() / 2]).unwrap();
    let mut bytes = std::fs::read(path(flipped)).unwrap();
    bytes[40] ^= 0x08;
    std::fs::write(path(flipped), &bytes).unwrap();
    (cut, flipped)
}

#[test]
fn a_segment_cut_short_and_one_with_a_flipped_byte_come_back_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, topic, store_dir) = digested(dir.path());
    let (cut, flipped) = damage(&store_dir);

    let store = RepoStore::open("main", &store_dir, config()).unwrap();
    let (_, stats) = store.collect(&Scan::all());
    assert!(!stats.warnings.is_empty(), "the damage went unnoticed");
    let repairs = repair(&store, Some(&topic)).unwrap();
    assert_eq!(repairs.len(), 2, "{repairs:#?}");
    for r in &repairs {
        assert!(r.complete(), "{r:#?}");
        assert!(r.kept_as.exists(), "{r:#?}");
        assert!(r.restored_as.is_some(), "{r:#?}");
        assert_eq!(r.from_blocks + r.from_bus, r.held.as_ref().unwrap().events);
    }
    let by_id = |id| repairs.iter().find(|r| r.segment == id).unwrap();
    assert!(
        by_id(cut).problem.contains("never sealed"),
        "{:?}",
        by_id(cut)
    );
    assert!(
        by_id(cut).from_blocks > 0,
        "no whole block found in the cut file"
    );
    assert!(
        by_id(flipped).problem.contains("block 0"),
        "{:?}",
        by_id(flipped)
    );
    assert_eq!(numbers(&store), (0..COUNT).collect::<Vec<_>>());
    // Nothing left to repair, and the same answer after a restart.
    assert!(repair(&store, Some(&topic)).unwrap().is_empty());
    drop(store);
    let store = RepoStore::open("main", &store_dir, config()).unwrap();
    assert_eq!(numbers(&store), (0..COUNT).collect::<Vec<_>>());
}

#[test]
fn what_the_bus_no_longer_holds_is_reported_not_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let (log, topic, store_dir) = digested(dir.path());
    log.enforce_retention().unwrap();
    assert!(
        topic.partition(0).unwrap().start_offset() > 0,
        "retention kept everything"
    );
    let (cut, flipped) = damage(&store_dir);

    let store = RepoStore::open("main", &store_dir, config()).unwrap();
    let repairs = repair(&store, Some(&topic)).unwrap();
    assert_eq!(repairs.len(), 2, "{repairs:#?}");
    let mut missing = 0;
    for r in &repairs {
        let held = r.held.as_ref().unwrap();
        let Some(lost) = &r.lost else {
            // The bus still held this one's offsets.
            assert_eq!(r.from_blocks + r.from_bus, held.events, "{r:#?}");
            continue;
        };
        let events = lost.events.unwrap();
        assert!(events > 0 && events <= held.events, "{r:#?}");
        assert_eq!(r.from_blocks + r.from_bus + events, held.events, "{r:#?}");
        assert!(!lost.bus_offsets.is_empty(), "{r:#?}");
        assert!(lost.reason.contains("no longer holds"), "{r:#?}");
        let (first, last) = lost.bus_offsets[0];
        assert!(
            first >= held.first_offset && last <= held.last_offset,
            "{r:#?}"
        );
        missing += events;
    }
    assert!(missing > 0, "nothing was reported lost: {repairs:#?}");
    assert!([cut, flipped]
        .iter()
        .all(|id| repairs.iter().any(|r| r.segment == *id)));
    let n = numbers(&store);
    let mut unique = n.clone();
    unique.dedup();
    assert_eq!(unique.len(), n.len(), "an event is stored twice");
    assert_eq!(n.len() as u64 + missing, COUNT);
}
