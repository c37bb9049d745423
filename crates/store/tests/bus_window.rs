//! The bus as a bounded buffer behind the digest: retention past the window deletes only what
//! the digest has sealed, with real files on both sides.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::numbers;
use eddy_event::{codec, Parser};
use eddy_log::{Compression, Log, PartitionChoice, Record, Topic, TopicConfig};
use eddy_store::digest::GROUP;
use eddy_store::{Digest, RepoStore, Scan, StoreConfig};

const TOPIC: &str = "repo.main";

/// A repository topic as the doors make it: compressed, a window far shorter than the test,
/// a tiny size cap and small bus segments, so that retention wants to delete everything.
fn open_log(dir: &Path) -> (Arc<Log>, Arc<Topic>) {
    let log = Arc::new(
        Log::builder(dir.join("bus"))
            .retention_check(Duration::ZERO)
            .open()
            .unwrap(),
    );
    let topic = log
        .topic_or_create(
            TOPIC,
            TopicConfig {
                partitions: 2,
                compression: Compression::Lz4,
                retention_ms: Some(1),
                retention_bytes: Some(1),
                segment_bytes: 4096,
                retain_for_groups: vec![GROUP.into()],
                ..TopicConfig::default()
            },
        )
        .unwrap();
    (log, topic)
}

fn open_store(dir: &Path) -> Arc<RepoStore> {
    let config = StoreConfig {
        segment_bytes: 16 << 10,
        block_bytes: 4 << 10,
        merge_below: 0,
        ..StoreConfig::default()
    };
    Arc::new(RepoStore::open("main", &dir.join("store"), config).unwrap())
}

/// Events `from..to` over three hosts, in batches of 100 so the bus rolls many segments.
fn produce(topic: &Topic, from: u64, to: u64) {
    for chunk in (from..to).collect::<Vec<_>>().chunks(100) {
        let records = chunk
            .iter()
            .map(|&i| {
                let host = format!("web-{}", i % 3);
                let line = format!(r#"{{"n":{i},"message":"request {i} served","host":"{host}"}}"#);
                let mut e = Parser::Json
                    .parse(&line, 1_800_000_000_000_000_000)
                    .unwrap();
                e.tags = BTreeMap::from([("host".to_string(), host.clone())]);
                Record::new(codec::encode(&e))
                    .with_key(format!("#host={host}"))
                    .with_timestamp(e.timestamp)
            })
            .collect();
        topic.produce(records, PartitionChoice::ByKey).unwrap();
    }
}

fn wait_for(store: &RepoStore, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.collect(&Scan::all()).0.len() < count {
        assert!(Instant::now() < deadline, "the digest did not catch up");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn bus_start_offsets(topic: &Topic) -> Vec<u64> {
    topic
        .partitions()
        .iter()
        .map(|p| p.start_offset())
        .collect()
}

#[test]
fn a_bus_past_its_window_keeps_what_the_digest_has_not_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let (log, topic) = open_log(dir.path());
    // The digest is stopped: nothing is sealed, so nothing may go, however old or large.
    produce(&topic, 0, 3000);
    std::thread::sleep(Duration::from_millis(5));
    let gone = log.enforce_retention().unwrap();
    assert_eq!(gone.segments, 0, "retention deleted undigested bus data");
    assert_eq!(bus_start_offsets(&topic), vec![0, 0]);
    let segments: usize = topic.partitions().iter().map(|p| p.info().segments).sum();
    assert!(segments > 4, "the bus rolled only {segments} segments");

    // The digest seals most of it; retention then frees what is sealed, never more.
    let store = open_store(dir.path());
    let digest = Digest::start(log.clone(), topic.name(), store.clone());
    wait_for(&store, 3000);
    digest.stop();
    let gone = log.enforce_retention().unwrap();
    assert!(
        gone.segments > 0,
        "retention freed nothing the digest had sealed"
    );
    for p in topic.partitions() {
        let committed = log.groups().committed(GROUP, TOPIC, p.id()).unwrap_or(0);
        assert!(
            p.start_offset() <= committed,
            "partition {} starts at {} past the digest's {committed}",
            p.id(),
            p.start_offset()
        );
    }

    // More events while the digest is stopped, the window long past: after a restart of both,
    // every event is in the store exactly once.
    produce(&topic, 3000, 5000);
    std::thread::sleep(Duration::from_millis(5));
    log.enforce_retention().unwrap();
    drop((topic, log, store));
    let (log, topic) = open_log(dir.path());
    let store = open_store(dir.path());
    let digest = Digest::start(log, topic.name(), store.clone());
    wait_for(&store, 5000);
    digest.stop();
    assert_eq!(numbers(&store, &Scan::all()), (0..5000).collect::<Vec<_>>());
}
