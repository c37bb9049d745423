//! A partition that moves from one digest node to another on a shared bus (a Kafka-protocol
//! broker on loopback, through librdkafka), with the first node stopped at the worst moments:
//! after sealing but before its commit reached the bus, and after sealing but before the bus
//! had the segment's mark. Across both nodes' stores every event is held exactly once.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::numbers;
use eddy_event::{codec, Parser};
use eddy_kafka::testing::Broker;
use eddy_kafka::KafkaBus;
use eddy_log::{
    AppendAck, Bus, BusReader, GroupMember, Membership, PartitionChoice, Record, TopicConfig,
};
use eddy_store::digest::GROUP;
use eddy_store::sealed_marks;
use eddy_store::{Digest, RepoStore, Scan, StoreConfig};

const TOPIC: &str = "repo.main";
/// How long anything that waits on the broker may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(120);

/// The broker's bus, with commits, or the writing and reading of sealed marks, made to fail on
/// demand: a node that dies at that point, as far as the bus can tell (a node whose marks cannot
/// be read either cannot settle anything when it leaves the group).
struct Failing {
    inner: Arc<dyn Bus>,
    fail_commits: AtomicBool,
    fail_mark_writes: AtomicBool,
    fail_mark_reads: AtomicBool,
    /// A refused mark write first waits while this is set: the node is caught between sealing
    /// and the bus's answer for as long as the test needs.
    hang_mark_writes: AtomicBool,
}

fn refused(operation: &str) -> eddy_log::Error {
    eddy_log::Error::Broker {
        bus: "kafka",
        operation: operation.to_string(),
        message: "refused by the test".into(),
    }
}

impl Failing {
    fn marks_refused(&self, topic: &str, flag: &AtomicBool) -> bool {
        topic == sealed_marks::marks_topic(TOPIC) && flag.load(Ordering::Relaxed)
    }
}

impl Bus for Failing {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn shared(&self) -> bool {
        self.inner.shared()
    }
    fn epoch(&self) -> eddy_log::Result<String> {
        self.inner.epoch()
    }
    fn ensure_topic(&self, name: &str, config: &TopicConfig) -> eddy_log::Result<u32> {
        self.inner.ensure_topic(name, config)
    }
    fn partition_count(&self, topic: &str) -> eddy_log::Result<u32> {
        self.inner.partition_count(topic)
    }
    fn produce(
        &self,
        topic: &str,
        records: Vec<Record>,
        choice: PartitionChoice,
    ) -> eddy_log::Result<Vec<AppendAck>> {
        if self.marks_refused(topic, &self.fail_mark_writes) {
            while self.hang_mark_writes.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(10));
            }
            return Err(refused("publish a sealed mark"));
        }
        self.inner.produce(topic, records, choice)
    }
    fn offsets(&self, topic: &str, partition: u32) -> eddy_log::Result<(u64, u64)> {
        if self.marks_refused(topic, &self.fail_mark_reads) {
            return Err(refused("read the sealed marks"));
        }
        self.inner.offsets(topic, partition)
    }
    fn reader(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
    ) -> eddy_log::Result<Box<dyn BusReader>> {
        if self.marks_refused(topic, &self.fail_mark_reads) {
            return Err(refused("read the sealed marks"));
        }
        self.inner.reader(topic, partition, offset)
    }
    fn commit(&self, group: &str, topic: &str, offsets: &[(u32, u64)]) -> eddy_log::Result<()> {
        if self.fail_commits.load(Ordering::Relaxed) {
            return Err(refused("commit"));
        }
        self.inner.commit(group, topic, offsets)
    }
    fn committed(&self, group: &str, topic: &str, partition: u32) -> eddy_log::Result<Option<u64>> {
        self.inner.committed(group, topic, partition)
    }
    fn offset_for_time(&self, topic: &str, partition: u32, time_ns: i64) -> eddy_log::Result<u64> {
        self.inner.offset_for_time(topic, partition, time_ns)
    }
    fn join(
        &self,
        group: &str,
        topic: &str,
        on_change: Box<dyn FnMut(Membership) + Send>,
    ) -> eddy_log::Result<Box<dyn GroupMember>> {
        self.inner.join(group, topic, on_change)
    }
}

fn failing(bus: &Arc<dyn Bus>, commits: bool, mark_writes: bool) -> Arc<Failing> {
    Arc::new(Failing {
        inner: bus.clone(),
        fail_commits: AtomicBool::new(commits),
        fail_mark_writes: AtomicBool::new(mark_writes),
        fail_mark_reads: AtomicBool::new(false),
        hang_mark_writes: AtomicBool::new(mark_writes),
    })
}

/// Every worker sealing after each poll: segments are sealed far past the committed offset.
fn sealing_config() -> StoreConfig {
    StoreConfig {
        segment_age: Duration::ZERO,
        merge_below: 0,
        ..StoreConfig::default()
    }
}

fn open_store(dir: &Path) -> Arc<RepoStore> {
    Arc::new(RepoStore::open("main", dir, sealing_config()).unwrap())
}

/// Events `from..to` over three hosts (three data sources), each with its number.
fn produce(bus: &dyn Bus, from: u64, to: u64) {
    let records = (from..to)
        .map(|i| {
            let host = format!("web-{}", i % 3);
            let line = format!(r#"{{"n":{i},"host":"{host}"}}"#);
            let mut e = Parser::Json
                .parse(&line, 1_800_000_000_000_000_000 + i as i64)
                .unwrap();
            e.tags = BTreeMap::from([("host".to_string(), host.clone())]);
            Record::new(codec::encode(&e))
                .with_key(format!("#host={host}"))
                .with_timestamp(e.timestamp)
        })
        .collect();
    bus.produce(TOPIC, records, PartitionChoice::Explicit(0))
        .unwrap();
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The events of both stores together, sorted: each of `0..count` once, if nothing was doubled.
fn held_by_both(a: &RepoStore, b: &RepoStore) -> Vec<i64> {
    let mut all = numbers(a, &Scan::all());
    all.extend(numbers(b, &Scan::all()));
    all.sort_unstable();
    all
}

fn setup() -> (Broker, Arc<dyn Bus>) {
    let broker = Broker::start();
    let bus: Arc<dyn Bus> = Arc::new(KafkaBus::connect(broker.config()).unwrap());
    bus.ensure_topic(
        TOPIC,
        &TopicConfig {
            partitions: 1,
            ..TopicConfig::default()
        },
    )
    .unwrap();
    (broker, bus)
}

#[test]
fn a_node_stopped_after_sealing_but_before_committing_leaves_nothing_for_the_next_owner_to_double()
{
    let (_broker, bus) = setup();
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    produce(&*bus, 0, 300);

    // Node A seals everything, publishes the marks, and never gets a commit through.
    let a = open_store(dirs.0.path());
    let digest_a = Digest::start(failing(&bus, true, false), TOPIC, a.clone());
    wait_until("node A seals all 300 events", || {
        a.catalogue()
            .segments
            .values()
            .map(|e| e.info.count)
            .sum::<u64>()
            == 300
    });
    wait_until("node A's marks are on the bus", || {
        a.unpublished(0).is_empty()
    });
    digest_a.stop();
    assert_eq!(bus.committed(GROUP, TOPIC, 0).unwrap(), None);

    // Node B takes the partition from the committed offset (none: the start) and must skip
    // what A sealed, then digest what comes after.
    let b = open_store(dirs.1.path());
    let digest_b = Digest::start(bus.clone(), TOPIC, b.clone());
    produce(&*bus, 300, 400);
    wait_until("node B digests the events after A's", || {
        numbers(&b, &Scan::all()).len() >= 100
    });
    wait_until("node B commits past everything", || {
        bus.committed(GROUP, TOPIC, 0).unwrap() == Some(400)
    });
    digest_b.stop();
    assert_eq!(numbers(&b, &Scan::all()), (300..400).collect::<Vec<_>>());
    assert_eq!(held_by_both(&a, &b), (0..400).collect::<Vec<_>>());
}

#[test]
fn a_segment_whose_mark_never_reached_the_bus_is_dropped_and_digested_again_by_the_next_owner() {
    let (_broker, bus) = setup();
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    produce(&*bus, 0, 300);

    // Node A seals everything but the bus never records the marks: its segments stay
    // unpublished and its commit point stays below them. Then it dies, as far as the bus can
    // tell: its marks cannot even be read, so it cannot settle anything as it leaves.
    let a = open_store(dirs.0.path());
    let bus_a = failing(&bus, false, true);
    let digest_a = Digest::start(bus_a.clone(), TOPIC, a.clone());
    wait_until("node A seals all 300 events", || {
        a.catalogue()
            .segments
            .values()
            .map(|e| e.info.count)
            .sum::<u64>()
            == 300
    });
    assert!(!a.unpublished(0).is_empty());
    bus_a.fail_mark_reads.store(true, Ordering::Relaxed);
    bus_a.hang_mark_writes.store(false, Ordering::Relaxed);
    digest_a.stop();
    drop(a);
    assert!(bus.committed(GROUP, TOPIC, 0).unwrap().unwrap_or(0) == 0);

    // Node B knows nothing of A's segments and digests everything.
    let b = open_store(dirs.1.path());
    let digest_b = Digest::start(bus.clone(), TOPIC, b.clone());
    wait_until("node B digests all 300 events", || {
        numbers(&b, &Scan::all()).len() >= 300
    });
    wait_until("node B commits past everything", || {
        bus.committed(GROUP, TOPIC, 0).unwrap() == Some(300)
    });
    digest_b.stop();

    // Node A comes back: the segments nobody was told of go, the store holds nothing twice.
    let a = open_store(dirs.0.path());
    assert!(!a.unpublished(0).is_empty(), "the list survives a restart");
    let digest_a = Digest::start(bus.clone(), TOPIC, a.clone());
    wait_until("node A settles its unpublished segments", || {
        a.unpublished(0).is_empty() && a.catalogue().unpublished.is_empty()
    });
    digest_a.stop();
    assert_eq!(numbers(&a, &Scan::all()), Vec::<i64>::new());
    assert_eq!(held_by_both(&a, &b), (0..300).collect::<Vec<_>>());
}
