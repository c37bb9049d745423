//! Blocks a door lays out on the bus (`eddy_store::bus_block`) over a real bus and real files:
//! appended whole by the digest, read back as records by everyone else, and added event by
//! event where the store already holds part of them.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::numbers;
use eddy_event::codec::FieldsRef;
use eddy_event::{codec, Event, Parser};
use eddy_log::{Bus, EncodedBatch, Log, Topic, TopicConfig};
use eddy_store::bus_block::BusBlockWriter;
use eddy_store::digest::GROUP;
use eddy_store::{Compression, Digest, RepoStore, Scan, StoreConfig};

const TOPIC: &str = "repo.main";
const SOURCE: &str = "#host=web-1";

fn open_log(dir: &Path) -> (Arc<Log>, Arc<Topic>) {
    eddy_store::bus_block::register();
    let log = Arc::new(Log::open(dir).unwrap());
    let topic = log
        .topic_or_create(
            TOPIC,
            TopicConfig {
                partitions: 1,
                retain_for_groups: vec![GROUP.into()],
                ..TopicConfig::default()
            },
        )
        .unwrap();
    (log, topic)
}

fn config() -> StoreConfig {
    StoreConfig {
        segment_bytes: 24 << 10,
        block_bytes: 4 << 10,
        merge_below: 0,
        ..StoreConfig::default()
    }
}

/// Event `i` as a door parses it for the bus (no fields: the parser gives them back).
fn event(i: u64) -> Event {
    let line = format!(
        r#"{{"@timestamp":{},"n":{i},"message":"request {i} served","host":"web-1"}}"#,
        1_700_000_000 + i
    );
    let mut e = Parser::Json
        .parse_for_bus(&line, 1_800_000_000_000_000_000)
        .unwrap();
    e.tags = BTreeMap::from([("host".to_string(), "web-1".to_string())]);
    e
}

/// `events` as one batch of records.
fn rows(topic: &Topic, events: &[Event]) -> EncodedBatch {
    let records: Vec<_> = events
        .iter()
        .map(|e| {
            eddy_log::Record::new(codec::encode(e))
                .with_key(SOURCE)
                .with_timestamp(e.timestamp)
        })
        .collect();
    topic.partition(0).unwrap().encode(&records).unwrap()
}

/// `events` as one block laid out on the bus.
fn block(events: &[Event]) -> EncodedBatch {
    let mut writer = BusBlockWriter::default();
    for e in events {
        writer.push(e);
    }
    let b = writer.finish(SOURCE, Compression::ZstdAuto, 10);
    EncodedBatch::laid_out(b.payload, b.count, b.first_time, b.max_time)
}

fn wait_for(store: &RepoStore, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while store.collect(&Scan::all()).0.len() < count {
        assert!(Instant::now() < deadline, "the digest did not catch up");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn blocks_and_records_on_the_bus_are_digested_in_order_and_read_back_alike() {
    let dir = tempfile::tempdir().unwrap();
    let (log, topic) = open_log(&dir.path().join("bus"));
    let events: Vec<Event> = (0..800).map(event).collect();
    let batches = vec![
        (0, rows(&topic, &events[..10])),
        (0, block(&events[10..400])),
        (0, rows(&topic, &events[400..410])),
        (0, block(&events[410..])),
    ];
    let acks = log.produce_laid_out(TOPIC, batches).unwrap();
    let bases: Vec<u64> = acks.iter().map(|a| a.base_offset).collect();
    assert_eq!(bases, vec![0, 10, 400, 410]);

    // Every other reader gets one record per event, as if the door had written records.
    let mut reader = log.reader(TOPIC, 0, 0).unwrap();
    let mut read = Vec::new();
    while read.len() < 800 {
        let polled = reader.poll(Duration::from_secs(1)).unwrap();
        assert!(
            !polled.is_empty(),
            "the bus gave {} of 800 records",
            read.len()
        );
        read.extend(polled);
    }
    for (i, r) in read.iter().enumerate() {
        assert_eq!(r.offset, i as u64);
        assert_eq!(r.key.as_deref(), Some(SOURCE.as_bytes()));
        let e = codec::decode(&r.value).unwrap();
        let expected = &events[i];
        assert_eq!(
            (&e.raw, e.timestamp, e.id, &e.tags),
            (
                &expected.raw,
                expected.timestamp,
                expected.id,
                &expected.tags
            )
        );
        assert_eq!(r.timestamp, expected.timestamp);
    }

    let store = Arc::new(RepoStore::open("main", &dir.path().join("store"), config()).unwrap());
    let digest = Digest::start(log.clone(), TOPIC, store.clone());
    wait_for(&store, 800);
    assert_eq!(numbers(&store, &Scan::all()), (0..800).collect::<Vec<_>>());
    // The blocks' token filters came along: a word prunes the blocks without it.
    let scan = Scan {
        tokens: vec!["417".into()],
        ..Scan::all()
    };
    let found = numbers(&store, &scan);
    assert!(found.contains(&417), "{found:?}");
    assert!(found.len() < 800, "nothing was pruned");
    digest.stop();
}

#[test]
fn a_block_the_store_holds_part_of_is_added_event_by_event_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let events: Vec<Event> = (0..900).map(event).collect();
    // The store holds offsets 0..=551 in a sealed segment (as after a digest of records that
    // sealed there); the bus holds the same offsets in blocks, the first straddling the seal.
    let store = Arc::new(RepoStore::open("main", &dir.path().join("store"), config()).unwrap());
    for (offset, e) in events[..552].iter().enumerate() {
        store
            .append(0, offset as u64, SOURCE, e, FieldsRef::Map(&e.fields))
            .unwrap();
    }
    store.seal(0, SOURCE).unwrap();
    assert_eq!(store.sealed_upto(0, SOURCE), Some(551));
    let (log, _) = open_log(&dir.path().join("bus"));
    let batches = vec![(0, block(&events[..600])), (0, block(&events[600..]))];
    log.produce_laid_out(TOPIC, batches).unwrap();
    let digest = Digest::start(log, TOPIC, store.clone());
    wait_for(&store, 900);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(numbers(&store, &Scan::all()), (0..900).collect::<Vec<_>>());
    digest.stop();
}
