//! The digest over a real bus and real files: sealing, crash recovery, scans with pruning,
//! retention and merging, damaged blocks.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{field_n, numbers};
use eddy_event::{codec, Parser};
use eddy_log::{Log, PartitionChoice, Record, Topic, TopicConfig};
use eddy_store::digest::GROUP;
use eddy_store::maintenance;
use eddy_store::{Digest, RepoStore, Scan, StoreConfig};

const TOPIC: &str = "repo.main";

fn open_log(dir: &Path) -> (Arc<Log>, Arc<Topic>) {
    let log = Arc::new(Log::open(dir.join("bus")).unwrap());
    let topic = log
        .topic_or_create(
            TOPIC,
            TopicConfig {
                partitions: 2,
                retain_for_groups: vec![GROUP.into()],
                ..TopicConfig::default()
            },
        )
        .unwrap();
    (log, topic)
}

fn small_config() -> StoreConfig {
    StoreConfig {
        segment_bytes: 16 << 10,
        block_bytes: 4 << 10,
        merge_below: 0,
        ..StoreConfig::default()
    }
}

/// Events `from..to`, over three hosts, one second apart, each with its number in the line.
fn produce(topic: &Topic, from: u64, to: u64) {
    let records = (from..to)
        .map(|i| {
            let host = format!("web-{}", i % 3);
            let line = format!(
                r#"{{"@timestamp":{},"n":{i},"message":"request {i} served","host":"{host}"}}"#,
                1_700_000_000 + i
            );
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

fn wait_for(store: &RepoStore, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while store.collect(&Scan::all()).0.len() < count {
        assert!(Instant::now() < deadline, "the digest did not catch up");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A store in `dir/store` that has digested events `0..count`, its digest stopped (the work in
/// progress left unsealed, as after a crash).
fn digested(dir: &Path, count: u64) -> (Arc<RepoStore>, PathBuf) {
    let (log, topic) = open_log(dir);
    let store_dir = dir.join("store");
    let store = Arc::new(RepoStore::open("main", &store_dir, small_config()).unwrap());
    let digest = Digest::start(log, topic.name(), store.clone());
    produce(&topic, 0, count);
    wait_for(&store, count as usize);
    digest.stop();
    (store, store_dir)
}

#[test]
fn digested_events_are_searchable_and_survive_a_crash_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    {
        let (log, topic) = open_log(dir.path());
        let store = Arc::new(RepoStore::open("main", &store_dir, small_config()).unwrap());
        let digest = Digest::start(log.clone(), topic.name(), store.clone());
        produce(&topic, 0, 3000);
        wait_for(&store, 3000);
        assert_eq!(numbers(&store, &Scan::all()), (0..3000).collect::<Vec<_>>());
        let sealed = store.catalogue().segments.len();
        assert!(sealed >= 3, "{sealed} segments sealed");
        // Work in progress is not committed: the group sits at or before its first offset.
        digest.stop();
        // A crash: the work in progress is never sealed.
    }
    let (log, topic) = open_log(dir.path());
    let store = Arc::new(RepoStore::open("main", &store_dir, small_config()).unwrap());
    assert!(!std::fs::read_dir(&store_dir).unwrap().any(|e| e
        .unwrap()
        .path()
        .extension()
        .is_some_and(|x| x == "wip")));
    let digest = Digest::start(log.clone(), topic.name(), store.clone());
    produce(&topic, 3000, 4000);
    wait_for(&store, 4000);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(numbers(&store, &Scan::all()), (0..4000).collect::<Vec<_>>());
    digest.stop();
}

#[test]
fn a_burst_smaller_than_a_block_is_written_compressed_once_the_bus_is_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let (log, topic) = open_log(dir.path());
    // 6,000 events, about 180 KiB a host: none fills a 1 MiB block.
    let config = StoreConfig {
        segment_bytes: 1 << 30,
        block_bytes: 1 << 20,
        ..small_config()
    };
    let store = Arc::new(RepoStore::open("main", &dir.path().join("store"), config).unwrap());
    produce(&topic, 0, 6000);
    let digest = Digest::start(log, topic.name(), store.clone());
    wait_for(&store, 6000);
    // Each host's open block holds over an eighth of a block: written once the bus is quiet.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let raw: u64 = std::fs::read_dir(dir.path().join("store"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "wip"))
            .map(|p| eddy_store::wip_file_raw_bytes(&p).unwrap())
            .sum();
        let wip = store.work_in_progress();
        if raw > 0 && raw == wip.raw_bytes {
            assert!(wip.file_bytes < wip.raw_bytes, "compressed: {wip:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "open blocks not written: {raw} of {wip:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(numbers(&store, &Scan::all()), (0..6000).collect::<Vec<_>>());
    digest.stop();
}

#[test]
fn scans_prune_by_time_tags_and_tokens_without_changing_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = digested(dir.path(), 5000);

    let second = 1_000_000_000i64;
    let t0 = 1_700_000_000 * second;
    let scan = Scan {
        start: t0 + 1000 * second,
        end: t0 + 1100 * second,
        ..Scan::all()
    };
    assert_eq!(numbers(&store, &scan), (1000..1100).collect::<Vec<_>>());
    let plan = store.plan(&scan);
    assert!(
        plan.stats.blocks_skipped > plan.tasks.len(),
        "{:?}",
        plan.stats
    );

    let scan = Scan {
        tags: vec![("host".into(), "web-1".into())],
        ..Scan::all()
    };
    assert_eq!(
        numbers(&store, &scan),
        (0..5000).filter(|n| n % 3 == 1).collect::<Vec<_>>()
    );
    assert!(store.plan(&scan).stats.segments_skipped > 0);

    // A needle: the token of one number; most blocks are skipped, the answer is whole.
    let scan = Scan {
        tokens: vec!["4321".into()],
        ..Scan::all()
    };
    let plan = store.plan(&scan);
    assert!(
        plan.stats.blocks_skipped * 2 > plan.stats.blocks,
        "{:?}",
        plan.stats
    );
    let (events, _) = store.collect(&scan);
    assert!(events.iter().any(|e| field_n(e) == 4321));
}

#[test]
fn retention_and_merging_keep_the_catalogue_and_files_in_step() {
    let dir = tempfile::tempdir().unwrap();
    let (store, store_dir) = digested(dir.path(), 3000);
    let before = store.catalogue().segments.len();

    // Merging: everything below 1 MiB merges per data source, answers unchanged.
    let mut config = small_config();
    config.merge_below = 1 << 20;
    config.segment_bytes = 1 << 20;
    let merging = RepoStore::open("main", &store_dir, config).unwrap();
    let sealed = numbers(&merging, &Scan::all());
    assert!(sealed.len() > 1000);
    let outcome = maintenance::run_once(&merging, 0).unwrap();
    assert!(outcome.merged >= 2, "{outcome:?}");
    let after = merging.catalogue().segments.len();
    assert!(after < before, "{before} -> {after}");
    assert!(after <= 3);
    let merged = numbers(&merging, &Scan::all());
    assert!(
        merged == sealed,
        "{} events before the merge, {} after",
        sealed.len(),
        merged.len()
    );
    let files = eddy_store::catalogue::segment_files(&store_dir)
        .unwrap()
        .len();
    assert_eq!(files, after);

    // Retention by size leaves the newest data.
    let mut config = small_config();
    config.retention_bytes = Some(1);
    let retained = RepoStore::open("main", &store_dir, config).unwrap();
    let outcome = maintenance::run_once(&retained, 0).unwrap();
    assert_eq!(outcome.deleted, after, "{outcome:?}");
    assert!(retained.catalogue().segments.is_empty());
    // The watermarks remain, so a replay never resurrects deleted data.
    assert!(
        retained.sealed_upto(0, "#host=web-0").is_some()
            || retained.sealed_upto(1, "#host=web-0").is_some()
    );
}

#[test]
fn a_damaged_block_is_skipped_with_a_warning_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (store, store_dir) = digested(dir.path(), 3000);
    let entry = store.catalogue().segments.into_values().next().unwrap();
    let seg = store.segment(entry.info.id).unwrap();
    let at = seg.footer().blocks[0].offset + 10;
    let path = seg.path().to_path_buf();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[at as usize] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let store = RepoStore::open("main", &store_dir, small_config()).unwrap();
    let (events, stats) = store.collect(&Scan::all());
    assert!(events.len() < 3000);
    assert_eq!(stats.warnings.len(), 1, "{:?}", stats.warnings);
    let w = &stats.warnings[0];
    assert!(
        w.contains(&path.display().to_string()) && w.contains("block 0") && w.contains("checksum"),
        "{w}"
    );
}

#[test]
fn a_bus_reset_is_recognised_and_its_new_offsets_are_not_taken_for_sealed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (_, store_dir) = digested(dir.path(), 3000);
    // The bus's storage is lost and made again: offsets start at 0 under a new epoch.
    std::fs::remove_dir_all(dir.path().join("bus")).unwrap();
    let (log, topic) = open_log(dir.path());
    let store = Arc::new(RepoStore::open("main", &store_dir, small_config()).unwrap());
    let sealed_before = numbers(&store, &Scan::all());
    assert!(sealed_before.len() > 1000, "{} sealed", sealed_before.len());
    let digest = Digest::start(log, topic.name(), store.clone());
    produce(&topic, 5000, 6000);
    wait_for(&store, sealed_before.len() + 1000);
    std::thread::sleep(Duration::from_millis(300));
    let mut expected = sealed_before;
    expected.extend(5000..6000);
    assert_eq!(numbers(&store, &Scan::all()), expected);
    digest.stop();
}

#[test]
fn a_partition_that_moved_away_leaves_no_work_in_progress_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (store, store_dir) = digested(dir.path(), 100);
    let (log, topic) = open_log(dir.path());
    let store = {
        drop(store);
        Arc::new(RepoStore::open("main", &store_dir, small_config()).unwrap())
    };
    let digest = Digest::start(log, topic.name(), store.clone());
    wait_for(&store, 100);
    digest.stop();
    let before = store.work_in_progress();
    assert!(before.raw_bytes > 0, "{before:?}");
    for p in 0..topic.partition_count() {
        store.forget_partition(p).unwrap();
        assert_eq!(store.commit_point(p), None);
    }
    assert!(numbers(&store, &Scan::all()).is_empty());
    assert!(!std::fs::read_dir(&store_dir).unwrap().any(|e| e
        .unwrap()
        .path()
        .extension()
        .is_some_and(|x| x == "wip")));
}
