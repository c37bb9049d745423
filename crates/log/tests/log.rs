//! Behaviour of the log through its public interface: append, read, seek, recover, retain.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use eddy_log::{
    Compression, Durability, Error, Log, PartitionChoice, Record, StoredRecord, Topic, TopicConfig,
};

fn small_segments() -> TopicConfig {
    TopicConfig {
        segment_bytes: 4096,
        index_interval_bytes: 512,
        ..TopicConfig::default()
    }
}

fn records(range: std::ops::Range<u64>, ts_base: i64) -> Vec<Record> {
    range
        .map(|i| {
            Record::new(format!(
                "record number {i} {}",
                "payload ".repeat((i % 5) as usize)
            ))
            .with_timestamp(ts_base + i as i64 * 1_000)
        })
        .collect()
}

/// Appends chunks `chunks` of `per` records each to partition 0, one batch per chunk.
fn fill(topic: &Topic, chunks: std::ops::Range<u64>, per: u64, ts_base: i64) {
    for chunk in chunks {
        topic
            .produce(
                records(chunk * per..chunk * per + per, ts_base),
                PartitionChoice::Explicit(0),
            )
            .unwrap();
    }
}

fn read_all(topic: &Topic, partition: u32, from: u64) -> Result<Vec<StoredRecord>, Error> {
    let mut reader = topic.reader(partition, from)?;
    let mut out = Vec::new();
    loop {
        let batch = reader.poll()?;
        if batch.is_empty() {
            return Ok(out);
        }
        out.extend(batch);
    }
}

/// The files of a directory, to put it back as it was.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
        .collect()
}

fn restore(dir: &Path, files: &[(PathBuf, Vec<u8>)]) {
    std::fs::remove_dir_all(dir).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    for (path, bytes) in files {
        std::fs::write(path, bytes).unwrap();
    }
}

fn values(records: &[StoredRecord]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8_lossy(&r.value).to_string())
        .collect()
}

fn segment_files(dir: &Path, topic: &str, partition: u32) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(dir.join("topics").join(topic).join(partition.to_string()))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
    files.sort();
    files
}

#[test]
fn appends_and_reads_back_in_order_with_every_compression() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    for compression in [Compression::None, Compression::Lz4, Compression::Zstd] {
        let name = format!("t-{compression}");
        let topic = log
            .create_topic(
                &name,
                TopicConfig {
                    compression,
                    ..small_segments()
                },
            )
            .unwrap();
        for chunk in 0..20 {
            let acks = topic
                .produce(
                    records(chunk * 10..chunk * 10 + 10, 0),
                    PartitionChoice::Explicit(0),
                )
                .unwrap();
            assert_eq!(acks[0].base_offset, chunk * 10);
            assert_eq!(acks[0].last_offset, chunk * 10 + 9);
        }
        let got = read_all(&topic, 0, 0).unwrap();
        assert_eq!(got.len(), 200);
        let expected: Vec<String> = records(0..200, 0)
            .iter()
            .map(|r| String::from_utf8_lossy(&r.value).to_string())
            .collect();
        assert_eq!(values(&got), expected);
        assert!(got.iter().enumerate().all(|(i, r)| r.offset == i as u64));
        if compression == Compression::None {
            assert!(
                topic.info().partitions[0].segments > 1,
                "small segments must roll"
            );
        }
    }
}

#[test]
fn keys_pick_stable_partitions_and_keep_key_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    let topic = log
        .create_topic(
            "keyed",
            TopicConfig {
                partitions: 4,
                ..TopicConfig::default()
            },
        )
        .unwrap();
    let batch: Vec<Record> = (0..400)
        .map(|i| Record::new(format!("{i}")).with_key(format!("host-{}", i % 10)))
        .collect();
    topic.produce(batch, PartitionChoice::ByKey).unwrap();
    let mut seen = 0;
    for p in 0..4 {
        for r in read_all(&topic, p, 0).unwrap() {
            let key = r.key.clone().unwrap();
            assert_eq!(eddy_log::partition_for_key(&key, 4), p);
            seen += 1;
        }
    }
    assert_eq!(seen, 400);
    // Within a key, order is kept.
    let p = eddy_log::partition_for_key(b"host-3", 4);
    let host3: Vec<u64> = read_all(&topic, p, 0)
        .unwrap()
        .iter()
        .filter(|r| r.key.as_deref() == Some(b"host-3".as_slice()))
        .map(|r| String::from_utf8_lossy(&r.value).parse().unwrap())
        .collect();
    assert_eq!(host3, (0..40).map(|i| i * 10 + 3).collect::<Vec<u64>>());
}

#[test]
fn reads_from_any_offset_seek_through_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    let topic = log.create_topic("seek", small_segments()).unwrap();
    fill(&topic, 0..50, 7, 0);
    for from in [0, 1, 6, 7, 8, 100, 177, 200, 349] {
        let got = read_all(&topic, 0, from).unwrap();
        assert_eq!(got.first().map(|r| r.offset), Some(from), "from {from}");
        assert_eq!(got.len() as u64, 350 - from);
    }
    assert!(read_all(&topic, 0, 350).unwrap().is_empty());
    assert!(read_all(&topic, 0, 10_000).unwrap().is_empty());
}

#[test]
fn seeks_by_timestamp_to_the_first_record_at_or_after() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    let topic = log.create_topic("time", small_segments()).unwrap();
    let base = 1_700_000_000_000_000_000i64;
    fill(&topic, 0..40, 10, base);
    let p = topic.partition(0).unwrap();
    assert_eq!(p.offset_for_time(0).unwrap(), 0);
    assert_eq!(p.offset_for_time(base).unwrap(), 0);
    assert_eq!(p.offset_for_time(base + 1).unwrap(), 1);
    assert_eq!(p.offset_for_time(base + 123_000).unwrap(), 123);
    assert_eq!(p.offset_for_time(base + 123_500).unwrap(), 124);
    assert_eq!(p.offset_for_time(base + 399_000).unwrap(), 399);
    assert_eq!(
        p.offset_for_time(base + 400_000).unwrap(),
        400,
        "past the end is the end offset"
    );
}

#[test]
fn bad_input_gets_errors_naming_value_and_limit() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    let err = log
        .create_topic("bad/name", TopicConfig::default())
        .unwrap_err();
    assert!(matches!(err, Error::InvalidName { .. }), "{err}");
    assert!(err.to_string().contains("bad/name"));

    let err = log
        .create_topic(
            "p",
            TopicConfig {
                partitions: 5000,
                ..TopicConfig::default()
            },
        )
        .unwrap_err();
    assert!(err.to_string().contains("partitions = 5000"), "{err}");

    let topic = log
        .create_topic(
            "limits",
            TopicConfig {
                partitions: 3,
                max_record_bytes: 1000,
                ..TopicConfig::default()
            },
        )
        .unwrap();
    let err = topic.reader(3, 0).unwrap_err().to_string();
    assert!(
        err.contains("partition 3") && err.contains("3 partitions"),
        "{err}"
    );
    let err = topic
        .produce(
            vec![Record::new(vec![b'x'; 2000])],
            PartitionChoice::Explicit(0),
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("2004 bytes") && err.contains("limit of 1000"),
        "{err}"
    );
    let err = topic.produce(vec![], PartitionChoice::ByKey).unwrap_err();
    assert!(matches!(err, Error::EmptyBatch));
    assert!(matches!(log.topic("nope"), Err(Error::UnknownTopic(_))));
    assert!(matches!(
        log.create_topic("limits", TopicConfig::default()),
        Err(Error::TopicExists(_))
    ));
}

#[test]
fn a_second_process_cannot_open_the_same_directory() {
    let dir = tempfile::tempdir().unwrap();
    let _log = Log::open(dir.path()).unwrap();
    // flock locks belong to the open file description, so a second open in this process
    // conflicts just as another process would.
    let err = Log::open(dir.path()).unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err}");
}

#[test]
fn the_lock_error_names_the_process_holding_it() {
    let dir = tempfile::tempdir().unwrap();
    let _log = Log::open(dir.path()).unwrap();
    let err = Log::open(dir.path()).unwrap_err();
    let pid = std::process::id();
    assert!(
        matches!(err, Error::Locked { holder: Some(p), .. } if p == pid),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains(&format!("pid {pid}")), "{text}");
    assert_eq!(text.matches("in use").count(), 1, "{text}");
}

#[test]
fn survives_reopen_with_all_data_and_continues_offsets() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(dir.path()).unwrap();
        let topic = log.create_topic("reopen", small_segments()).unwrap();
        fill(&topic, 0..30, 5, 0);
    }
    let log = Log::open(dir.path()).unwrap();
    let topic = log.topic("reopen").unwrap();
    assert_eq!(topic.partition(0).unwrap().end_offset(), 150);
    let ack = topic
        .produce(records(150..155, 0), PartitionChoice::Explicit(0))
        .unwrap();
    assert_eq!(ack[0].base_offset, 150);
    let got = read_all(&topic, 0, 0).unwrap();
    assert_eq!(got.len(), 155);
    assert!(got.iter().enumerate().all(|(i, r)| r.offset == i as u64));
}

#[test]
fn recovers_after_torn_tail_at_every_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (last_file, good_len, full_len) = {
        let log = Log::open(dir.path()).unwrap();
        let topic = log.create_topic("torn", TopicConfig::default()).unwrap();
        topic
            .produce(records(0..10, 0), PartitionChoice::Explicit(0))
            .unwrap();
        let file = segment_files(dir.path(), "torn", 0).pop().unwrap();
        let good = std::fs::metadata(&file).unwrap().len();
        topic
            .produce(records(10..20, 0), PartitionChoice::Explicit(0))
            .unwrap();
        (file.clone(), good, std::fs::metadata(&file).unwrap().len())
    };
    let full = std::fs::read(&last_file).unwrap();
    let partition_dir = last_file.parent().unwrap().to_path_buf();
    let pristine = snapshot(&partition_dir);
    for cut in (good_len + 1..full_len).step_by(7) {
        restore(&partition_dir, &pristine);
        std::fs::write(&last_file, &full[..cut as usize]).unwrap();
        let log = Log::open(dir.path()).unwrap();
        let topic = log.topic("torn").unwrap();
        let got = read_all(&topic, 0, 0).unwrap();
        assert_eq!(got.len(), 10, "cut at {cut}");
        assert_eq!(
            std::fs::metadata(&last_file).unwrap().len(),
            good_len,
            "tail truncated"
        );
    }
    restore(&partition_dir, &pristine);
    // Garbage after a whole batch is a corrupt tail too, and appends continue after it.
    let mut garbage = full.clone();
    garbage.extend_from_slice(&[0xAB; 100]);
    std::fs::write(&last_file, &garbage).unwrap();
    let log = Log::open(dir.path()).unwrap();
    let topic = log.topic("torn").unwrap();
    assert_eq!(read_all(&topic, 0, 0).unwrap().len(), 20);
    let ack = topic
        .produce(records(20..21, 0), PartitionChoice::Explicit(0))
        .unwrap();
    assert_eq!(ack[0].base_offset, 20);
}

#[test]
fn recovers_after_bit_flip_in_the_active_tail() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(dir.path()).unwrap();
        let topic = log.create_topic("flip", TopicConfig::default()).unwrap();
        fill(&topic, 0..3, 10, 0);
    }
    let file = segment_files(dir.path(), "flip", 0).pop().unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    let n = bytes.len();
    bytes[n - 20] ^= 0x10; // inside the last batch
    std::fs::write(&file, &bytes).unwrap();
    let log = Log::open(dir.path()).unwrap();
    let got = read_all(&log.topic("flip").unwrap(), 0, 0).unwrap();
    assert_eq!(
        got.len(),
        20,
        "the damaged last batch is dropped, the rest kept"
    );
}

fn sealed_segment_with_flip(delete_index: bool) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(dir.path()).unwrap();
        let topic = log.create_topic("sealed", small_segments()).unwrap();
        fill(&topic, 0..60, 5, 0);
    }
    let files = segment_files(dir.path(), "sealed", 0);
    assert!(files.len() >= 3);
    let victim = files[1].clone();
    let mut bytes = std::fs::read(&victim).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&victim, &bytes).unwrap();
    if delete_index {
        std::fs::remove_file(victim.with_extension("index")).unwrap();
    }
    (dir, victim)
}

#[test]
fn detects_bit_flip_in_sealed_segment() {
    for delete_index in [false, true] {
        let (dir, victim) = sealed_segment_with_flip(delete_index);
        let log = Log::open(dir.path()).unwrap();
        let topic = log.topic("sealed").unwrap();
        let err = read_all(&topic, 0, 0).unwrap_err();
        match &err {
            Error::Corrupt { path, position, .. } => {
                assert_eq!(path, &victim);
                assert!(*position > 0);
            }
            other => panic!("expected a corruption error, got {other}"),
        }
        assert!(err.to_string().contains(&victim.display().to_string()));
        // It is not silently skipped, and the sealed file is not truncated.
        let problems = topic.partition(0).unwrap().verify().unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        // Data after the damaged segment is still readable from there.
        let later = read_all(&topic, 0, 250).unwrap();
        assert_eq!(later.first().map(|r| r.offset), Some(250));
    }
}

/// Reads a partition from `from` to its end, skipping damage; returns the records and what was
/// skipped.
fn read_skipping_damage(
    topic: &Topic,
    partition: u32,
    from: u64,
) -> (Vec<StoredRecord>, Vec<eddy_log::Damage>) {
    let mut reader = topic.reader(partition, from).unwrap();
    let (mut out, mut skipped) = (Vec::new(), Vec::new());
    loop {
        match reader.poll() {
            Ok(batch) if batch.is_empty() => return (out, skipped),
            Ok(batch) => out.extend(batch),
            Err(Error::Corrupt { .. }) => skipped.push(reader.skip_damage().unwrap().unwrap()),
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn readers_skip_damage_in_a_sealed_segment_to_the_next_good_batch() {
    for delete_index in [false, true] {
        let (dir, victim) = sealed_segment_with_flip(delete_index);
        let log = Log::open(dir.path()).unwrap();
        let topic = log.topic("sealed").unwrap();
        let (got, skipped) = read_skipping_damage(&topic, 0, 0);
        assert_eq!(skipped.len(), 1, "{skipped:?}");
        let damage = &skipped[0];
        assert_eq!(damage.file, victim);
        assert_eq!(damage.records(), 5, "one batch of five records: {damage}");
        assert_eq!(got.len(), 300 - 5);
        let offsets: Vec<u64> = got.iter().map(|r| r.offset).collect();
        let expected: Vec<u64> = (0..300).filter(|o| !damage.offsets.contains(o)).collect();
        assert_eq!(offsets, expected, "every other record, in order, once");
        // The partition remembers it, and verify finds the same stretch.
        let partition = topic.partition(0).unwrap();
        assert_eq!(partition.damage(), vec![damage.clone()]);
        let verified = partition.verify().unwrap();
        assert_eq!(verified.len(), 1);
        assert_eq!(verified[0].bytes, damage.bytes);
        assert_eq!(verified[0].offsets, damage.offsets);
    }
}

#[test]
fn topic_repair_cuts_damage_out_so_reads_and_verify_pass_again() {
    let (dir, victim) = sealed_segment_with_flip(false);
    {
        let log = Log::open(dir.path()).unwrap();
        log.groups()
            .commit("reader", &[("sealed", 0, 300)])
            .unwrap();
        // Not while the log is open.
        let err = eddy_log::repair_topic(dir.path(), "sealed", false).unwrap_err();
        assert!(matches!(err, Error::Locked { .. }), "{err}");
    }
    let planned = eddy_log::repair_topic(dir.path(), "sealed", true).unwrap();
    assert_eq!(planned.len(), 1);
    assert!(!planned[0].kept_in.exists(), "a dry run changes nothing");
    let done = eddy_log::repair_topic(dir.path(), "sealed", false).unwrap();
    assert_eq!(done, planned);
    let damage = &done[0].damage;
    assert_eq!(damage.file, victim);
    assert_eq!(
        std::fs::metadata(&done[0].kept_in).unwrap().len(),
        damage.bytes.end - damage.bytes.start,
        "the damaged bytes are kept aside"
    );
    assert!(eddy_log::repair_topic(dir.path(), "sealed", false)
        .unwrap()
        .is_empty());
    let log = Log::open(dir.path()).unwrap();
    let topic = log.topic("sealed").unwrap();
    assert!(topic.partition(0).unwrap().verify().unwrap().is_empty());
    let got = read_all(&topic, 0, 0).unwrap();
    assert_eq!(got.len(), 300 - 5, "no reader has to skip anything");
    assert!(got.iter().all(|r| !damage.offsets.contains(&r.offset)));
    let ack = topic
        .produce(records(0..1, 0), PartitionChoice::Explicit(0))
        .unwrap();
    assert_eq!(ack[0].base_offset, 300);
}

#[test]
fn damage_inside_the_active_segment_keeps_the_batches_acknowledged_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = {
        let log = Log::open(dir.path()).unwrap();
        let topic = log.create_topic("mid", TopicConfig::default()).unwrap();
        fill(&topic, 0..2, 10, 0);
        let file = segment_files(dir.path(), "mid", 0).pop().unwrap();
        let before = std::fs::metadata(&file).unwrap().len();
        fill(&topic, 2..4, 10, 0);
        let mut bytes = std::fs::read(&file).unwrap();
        bytes[before as usize - 20] ^= 0x40; // inside the second batch (offsets 10..20)
        std::fs::write(&file, &bytes).unwrap();
        file
    };
    let log = Log::open(dir.path()).unwrap();
    let topic = log.topic("mid").unwrap();
    let (got, skipped) = read_skipping_damage(&topic, 0, 0);
    assert_eq!(got.len(), 30, "the batches after the damage are kept");
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].offsets, 10..20);
    assert_eq!(skipped[0].file, file);
    // The damaged file is sealed as it is; appends go on in a new segment, after every offset.
    let ack = topic
        .produce(records(40..41, 0), PartitionChoice::Explicit(0))
        .unwrap();
    assert_eq!(ack[0].base_offset, 40);
    assert_eq!(segment_files(dir.path(), "mid", 0).len(), 2);
    assert_eq!(topic.partition(0).unwrap().damage().len(), 1);
}

#[test]
fn offsets_are_never_reused_after_recovery_cuts_below_a_committed_group_offset() {
    let dir = tempfile::tempdir().unwrap();
    let file = {
        let log = Log::open(dir.path()).unwrap();
        let topic = log.create_topic("cut", TopicConfig::default()).unwrap();
        fill(&topic, 0..3, 10, 0);
        log.groups().commit("digest", &[("cut", 0, 30)]).unwrap();
        segment_files(dir.path(), "cut", 0).pop().unwrap()
    };
    // The last 100 bytes go missing, and the writer's published mark with them (as after a
    // machine crash), so only the group's offset remembers how far the partition went.
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() - 100]).unwrap();
    std::fs::remove_file(file.parent().unwrap().join("committed")).unwrap();
    let log = Log::open(dir.path()).unwrap();
    let topic = log.topic("cut").unwrap();
    assert_eq!(topic.partition(0).unwrap().end_offset(), 30);
    let ack = topic
        .produce(records(100..105, 0), PartitionChoice::Explicit(0))
        .unwrap();
    assert_eq!(
        ack[0].base_offset, 30,
        "offsets go on after the committed one"
    );
    // A consumer resuming at its committed offset gets exactly the new records.
    let got = read_all(&topic, 0, 30).unwrap();
    assert_eq!(got.len(), 5);
    assert_eq!(got[0].offset, 30);
    // Readers from the start see the survivors, then the new records after the gap.
    let all = read_all(&topic, 0, 0).unwrap();
    assert_eq!(all.len(), 20 + 5);
    drop(log);
    // And it stays so across another restart.
    let log = Log::open(dir.path()).unwrap();
    let topic = log.topic("cut").unwrap();
    assert_eq!(topic.partition(0).unwrap().end_offset(), 35);
    assert_eq!(read_all(&topic, 0, 0).unwrap().len(), 25);
}

/// A log whose retention runs only when the test calls it.
fn log_with_manual_retention(dir: &std::path::Path) -> Log {
    Log::builder(dir)
        .retention_check(Duration::ZERO)
        .open()
        .unwrap()
}

#[test]
fn retention_by_size_deletes_oldest_sealed_segments() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_with_manual_retention(dir.path());
    let topic = log
        .create_topic(
            "size",
            TopicConfig {
                retention_bytes: Some(20 * 1024),
                ..small_segments()
            },
        )
        .unwrap();
    fill(&topic, 0..100, 5, eddy_log::now_ns());
    let before = topic.info().partitions[0].clone();
    let outcome = log.enforce_retention().unwrap();
    let after = topic.info().partitions[0].clone();
    assert!(outcome.segments > 0);
    assert!(after.size_bytes <= 20 * 1024, "{after:?}");
    assert!(after.start_offset > 0);
    assert_eq!(after.end_offset, before.end_offset);
    assert_eq!(before.size_bytes - after.size_bytes, outcome.bytes);
    // Reading below the start is a clear error; from the start works.
    let err = read_all(&topic, 0, 0).unwrap_err();
    assert!(matches!(err, Error::OffsetOutOfRange { .. }), "{err}");
    let got = read_all(&topic, 0, after.start_offset).unwrap();
    assert_eq!(got.len() as u64, after.end_offset - after.start_offset);
    // Deleted files stay deleted across a restart.
    drop(log);
    let log = Log::open(dir.path()).unwrap();
    assert_eq!(
        log.topic("size").unwrap().info().partitions[0].start_offset,
        after.start_offset
    );
}

#[test]
fn retention_never_deletes_what_a_protecting_group_has_not_committed() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_with_manual_retention(dir.path());
    let topic = log
        .create_topic(
            "held",
            TopicConfig {
                retention_bytes: Some(1),
                retain_for_groups: vec!["digest".into(), "audit".into()],
                ..small_segments()
            },
        )
        .unwrap();
    fill(&topic, 0..100, 5, eddy_log::now_ns());
    let start = |t: &eddy_log::Topic| t.info().partitions[0].start_offset;
    // Nobody has committed: nothing goes, however far over the size limit.
    assert_eq!(log.enforce_retention().unwrap().segments, 0);
    // One group past half, the other nowhere: still nothing.
    log.groups().commit("digest", &[("held", 0, 250)]).unwrap();
    assert_eq!(log.enforce_retention().unwrap().segments, 0);
    // Both past 250: only segments that end at or below 250 go.
    log.groups().commit("audit", &[("held", 0, 400)]).unwrap();
    assert!(log.enforce_retention().unwrap().segments > 0);
    let after = start(&topic);
    assert!(after > 0 && after <= 250, "{after}");
    assert!(read_all(&topic, 0, 250).unwrap().first().map(|r| r.offset) == Some(250));
    // Both at the end: every sealed segment may go.
    log.groups().commit("digest", &[("held", 0, 500)]).unwrap();
    log.groups().commit("audit", &[("held", 0, 500)]).unwrap();
    log.enforce_retention().unwrap();
    assert!(start(&topic) > 250);
    // A bad group name is refused at creation.
    let err = log
        .create_topic(
            "bad",
            TopicConfig {
                retain_for_groups: vec!["no/slash".into()],
                ..TopicConfig::default()
            },
        )
        .unwrap_err();
    assert!(err.to_string().contains("retain_for_groups"), "{err}");
}

#[test]
fn retention_by_age_deletes_segments_whose_newest_record_is_old() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_with_manual_retention(dir.path());
    let topic = log
        .create_topic(
            "age",
            TopicConfig {
                retention_ms: Some(3_600_000),
                ..small_segments()
            },
        )
        .unwrap();
    let now = eddy_log::now_ns();
    let two_hours_ago = now - 2 * 3_600_000_000_000;
    fill(&topic, 0..40, 5, two_hours_ago);
    fill(&topic, 40..80, 5, now);
    log.enforce_retention().unwrap();
    let info = topic.info().partitions[0].clone();
    assert!(
        info.start_offset > 0 && info.start_offset <= 200,
        "{info:?}"
    );
    // Every remaining record older than the cutoff shares a segment with newer ones.
    let got = read_all(&topic, 0, info.start_offset).unwrap();
    assert!(got.iter().any(|r| r.timestamp >= now));
}

#[test]
fn retention_frees_the_last_segment_of_a_topic_that_stopped_receiving() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_with_manual_retention(dir.path());
    let topic = log
        .create_topic(
            "idle",
            TopicConfig {
                retention_ms: Some(1000),
                segment_ms: 1000,
                retain_for_groups: vec!["digest".into()],
                ..TopicConfig::default()
            },
        )
        .unwrap();
    let two_hours_ago = eddy_log::now_ns() - 2 * 3_600_000_000_000;
    fill(&topic, 0..10, 5, two_hours_ago);
    let info = || topic.info().partitions[0].clone();
    assert_eq!(info().segments, 1);
    std::thread::sleep(Duration::from_millis(1100));
    // Old enough, but the group has not read all of it: it stays, and stays active.
    log.groups().commit("digest", &[("idle", 0, 49)]).unwrap();
    assert_eq!(log.enforce_retention().unwrap().segments, 0);
    assert_eq!((info().segments, info().start_offset), (1, 0));
    // Read to the end: the one segment is sealed and deleted, though no append came to roll it.
    log.groups().commit("digest", &[("idle", 0, 50)]).unwrap();
    assert_eq!(log.enforce_retention().unwrap().segments, 1);
    assert_eq!(
        (info().size_bytes, info().start_offset, info().end_offset),
        (0, 50, 50)
    );
    // Offsets go on from where they were, also after a restart.
    drop(log);
    let log = log_with_manual_retention(dir.path());
    let topic = log.topic("idle").unwrap();
    fill(&topic, 10..11, 5, eddy_log::now_ns());
    let got = read_all(&topic, 0, 50).unwrap();
    assert_eq!(
        got.iter().map(|r| r.offset).collect::<Vec<_>>(),
        (50..55).collect::<Vec<_>>()
    );
}

#[test]
fn consumer_group_offsets_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(dir.path()).unwrap();
        log.create_topic(
            "g",
            TopicConfig {
                partitions: 2,
                ..TopicConfig::default()
            },
        )
        .unwrap();
        log.groups()
            .commit("digest", &[("g", 0, 42), ("g", 1, 7)])
            .unwrap();
        log.groups().commit("digest", &[("g", 0, 43)]).unwrap();
        log.groups().commit("alerts", &[("g", 1, 1)]).unwrap();
        let err = log
            .groups()
            .commit("bad group", &[("g", 0, 1)])
            .unwrap_err();
        assert!(err.to_string().contains("consumer group"), "{err}");
    }
    let log = Log::open(dir.path()).unwrap();
    assert_eq!(log.groups().committed("digest", "g", 0), Some(43));
    assert_eq!(log.groups().committed("digest", "g", 1), Some(7));
    assert_eq!(log.groups().committed("alerts", "g", 1), Some(1));
    assert_eq!(log.groups().committed("alerts", "g", 0), None);
    assert_eq!(
        log.groups().list(),
        vec!["alerts".to_string(), "digest".to_string()]
    );
}

#[test]
fn follower_wakes_when_data_is_committed() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    let topic = log
        .create_topic(
            "follow",
            TopicConfig {
                partitions: 2,
                ..TopicConfig::default()
            },
        )
        .unwrap();
    let rx = topic.subscribe();
    let follower = {
        let topic = topic.clone();
        std::thread::spawn(move || {
            let mut reader = topic.reader(1, 0).unwrap();
            let mut got = Vec::new();
            while got.len() < 30 {
                // A generous timeout: the test checks the wake-up, not its speed.
                let batch = reader.poll_wait(Duration::from_secs(30)).unwrap();
                assert!(
                    !batch.is_empty(),
                    "follower timed out instead of being woken"
                );
                got.extend(batch);
            }
            got
        })
    };
    for i in 0..3u64 {
        std::thread::sleep(Duration::from_millis(20));
        topic
            .produce(
                records(i * 10..i * 10 + 10, 0),
                PartitionChoice::Explicit(1),
            )
            .unwrap();
    }
    let got = follower.join().unwrap();
    assert_eq!(
        got.iter().map(|r| r.offset).collect::<Vec<_>>(),
        (0..30).collect::<Vec<_>>()
    );
    assert!(rx.has_changed().unwrap(), "async subscribers are told too");

    // poll_many over several partitions wakes for any of them.
    let mut readers = vec![topic.reader(0, 0).unwrap(), topic.reader(1, 30).unwrap()];
    let t2 = topic.clone();
    let producer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        t2.produce(records(0..3, 0), PartitionChoice::Explicit(0))
            .unwrap();
    });
    let got = topic
        .poll_many(&mut readers, Duration::from_secs(30))
        .unwrap();
    producer.join().unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, 0);
}

#[test]
fn concurrent_appenders_share_fsyncs_and_get_dense_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::builder(dir.path())
        .durability(Durability::Fsync {
            linger: Duration::from_micros(200),
        })
        .open()
        .unwrap();
    let topic = log.create_topic("group-commit", small_segments()).unwrap();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let topic = topic.clone();
            std::thread::spawn(move || {
                let mut acks = Vec::new();
                for i in 0..50u64 {
                    let r = Record::new(format!("{t}:{i}"));
                    acks.push(
                        topic
                            .produce(vec![r], PartitionChoice::Explicit(0))
                            .unwrap()[0],
                    );
                }
                acks
            })
        })
        .collect();
    let mut offsets: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .map(|a| a.base_offset)
        .collect();
    offsets.sort_unstable();
    assert_eq!(offsets, (0..400).collect::<Vec<_>>());
    let got = read_all(&topic, 0, 0).unwrap();
    assert_eq!(got.len(), 400);
    // Per thread, records are in the order that thread appended them.
    for t in 0..8 {
        let mine: Vec<u64> = got
            .iter()
            .filter_map(|r| {
                let v = String::from_utf8_lossy(&r.value).to_string();
                let (who, i) = v.split_once(':')?;
                (who == t.to_string()).then(|| i.parse().unwrap())
            })
            .collect();
        assert_eq!(mine, (0..50).collect::<Vec<u64>>());
    }
}

#[test]
fn interval_mode_acknowledges_before_fsync_and_flushes_in_background() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::builder(dir.path())
        .durability(Durability::Interval {
            interval: Duration::from_millis(50),
        })
        .open()
        .unwrap();
    let topic = log.create_topic("fast", TopicConfig::default()).unwrap();
    topic
        .produce(records(0..100, 0), PartitionChoice::Explicit(0))
        .unwrap();
    assert_eq!(
        read_all(&topic, 0, 0).unwrap().len(),
        100,
        "visible at once"
    );
    log.flush().unwrap();
    drop(log);
    let log = Log::open(dir.path()).unwrap();
    assert_eq!(
        read_all(&log.topic("fast").unwrap(), 0, 0).unwrap().len(),
        100
    );
}

#[test]
fn rebuilds_missing_index_files_of_sealed_segments() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(dir.path()).unwrap();
        let topic = log.create_topic("idx", small_segments()).unwrap();
        fill(&topic, 0..60, 5, 0);
    }
    for file in segment_files(dir.path(), "idx", 0) {
        let _ = std::fs::remove_file(file.with_extension("timeindex"));
    }
    let log = Log::open(dir.path()).unwrap();
    let topic = log.topic("idx").unwrap();
    assert_eq!(
        read_all(&topic, 0, 123).unwrap().first().unwrap().offset,
        123
    );
    assert_eq!(
        topic
            .partition(0)
            .unwrap()
            .offset_for_time(150_000)
            .unwrap(),
        150
    );
    for file in segment_files(dir.path(), "idx", 0).iter().rev().skip(1) {
        assert!(
            file.with_extension("timeindex").exists(),
            "rebuilt index written back"
        );
    }
}

#[test]
fn deleting_a_topic_removes_its_data_and_group_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    let topic = log.create_topic("gone", TopicConfig::default()).unwrap();
    topic
        .produce(records(0..10, 0), PartitionChoice::Explicit(0))
        .unwrap();
    log.groups().commit("g", &[("gone", 0, 5)]).unwrap();
    let topic: Arc<Topic> = topic;
    log.delete_topic("gone").unwrap();
    assert!(!dir.path().join("topics/gone").exists());
    assert_eq!(log.groups().committed("g", "gone", 0), None);
    assert!(matches!(log.topic("gone"), Err(Error::UnknownTopic(_))));
    drop(topic);
    let recreated = log.create_topic("gone", TopicConfig::default()).unwrap();
    assert_eq!(recreated.partition(0).unwrap().end_offset(), 0);
}

#[test]
fn read_only_reader_follows_a_writer_across_segment_rolls() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Log::open(dir.path()).unwrap();
    let wtopic = writer.create_topic("shared", small_segments()).unwrap();
    wtopic
        .produce(records(0..10, 0), PartitionChoice::Explicit(0))
        .unwrap();

    // The writer holds the lock; a read-only open works beside it and sees what it acknowledged.
    let reader = Log::builder(dir.path())
        .read_only(Duration::from_millis(2))
        .open()
        .unwrap();
    assert!(reader.is_read_only());
    let rtopic = reader.topic("shared").unwrap();
    assert_eq!(read_all(&rtopic, 0, 0).unwrap().len(), 10);

    let follower = {
        let rtopic = rtopic.clone();
        std::thread::spawn(move || {
            let mut r = rtopic.reader(0, 10).unwrap();
            let mut got = Vec::new();
            while got.len() < 300 {
                let batch = r.poll_wait(Duration::from_secs(30)).unwrap();
                assert!(!batch.is_empty(), "read-only follower was not woken");
                got.extend(batch);
            }
            got
        })
    };
    fill(&wtopic, 1..31, 10, 0);
    let got = follower.join().unwrap();
    assert_eq!(
        got.iter().map(|r| r.offset).collect::<Vec<_>>(),
        (10..310).collect::<Vec<_>>()
    );
    assert!(rtopic.info().partitions[0].segments > 1);

    // It changes nothing: writes are refused with a clear error.
    let err = rtopic
        .produce(records(0..1, 0), PartitionChoice::Explicit(0))
        .unwrap_err();
    assert!(matches!(err, Error::ReadOnly), "{err}");
    assert!(matches!(
        reader.create_topic("x", TopicConfig::default()),
        Err(Error::ReadOnly)
    ));
    // Group offsets are the reader's own and may be committed.
    reader
        .groups()
        .commit("cli", &[("shared", 0, 310)])
        .unwrap();
}

#[test]
fn read_only_open_without_a_writer_reads_everything_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(dir.path()).unwrap();
        let topic = log.create_topic("ro", TopicConfig::default()).unwrap();
        topic
            .produce(records(0..10, 0), PartitionChoice::Explicit(0))
            .unwrap();
    }
    let file = segment_files(dir.path(), "ro", 0).pop().unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    bytes.extend_from_slice(&[7u8; 33]); // a torn tail
    std::fs::write(&file, &bytes).unwrap();
    let reader = Log::builder(dir.path())
        .read_only(Duration::from_millis(5))
        .open()
        .unwrap();
    assert_eq!(
        read_all(&reader.topic("ro").unwrap(), 0, 0).unwrap().len(),
        10
    );
    assert_eq!(
        std::fs::read(&file).unwrap(),
        bytes,
        "a read-only open truncates nothing"
    );
    drop(reader);
    // The next writer repairs it.
    let log = Log::open(dir.path()).unwrap();
    assert_eq!(read_all(&log.topic("ro").unwrap(), 0, 0).unwrap().len(), 10);
    assert_eq!(
        std::fs::metadata(&file).unwrap().len() as usize,
        bytes.len() - 33
    );
    let missing = tempfile::tempdir().unwrap();
    assert!(Log::builder(missing.path().join("none"))
        .read_only(Duration::from_millis(5))
        .open()
        .is_err());
}
