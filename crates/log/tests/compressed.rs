//! Compressed batches on disk: reconfiguring a topic's codec, reading old and new batches
//! together, and a corrupt compressed batch that is named and skipped, not fatal.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use eddy_log::batch::HEADER_LEN;
use eddy_log::{Compression, Log, PartitionChoice, Record, Topic, TopicConfig};

const PER_BATCH: u64 = 50;

fn line(i: u64) -> String {
    format!(
        "10.0.0.{} - - \"GET /api/v1/orders/{i} HTTP/1.1\" 200 {}",
        i % 7,
        i * 13
    )
}

/// Appends `batches` batches of [`PER_BATCH`] records to partition 0, numbering from `first`.
fn fill(topic: &Topic, first: u64, batches: u64) {
    for b in 0..batches {
        let from = first + b * PER_BATCH;
        let records = (from..from + PER_BATCH)
            .map(|i| Record::new(line(i)))
            .collect();
        topic
            .produce(records, PartitionChoice::Explicit(0))
            .unwrap();
    }
}

/// Every record of partition 0 still readable, skipping damage, with what was skipped.
fn read_skipping(topic: &Topic) -> (Vec<(u64, String)>, u64) {
    let mut reader = topic.reader(0, 0).unwrap().skipping_damage();
    let mut out = Vec::new();
    loop {
        let records = reader.poll().unwrap();
        if records.is_empty() {
            return (out, reader.skipped());
        }
        out.extend(
            records
                .into_iter()
                .map(|r| (r.offset, String::from_utf8(r.value.to_vec()).unwrap())),
        );
    }
}

fn segment_file(dir: &Path) -> PathBuf {
    dir.join("topics/t/0/00000000000000000000.log")
}

/// Where each batch of a segment file starts, walking the headers.
fn batch_positions(bytes: &[u8]) -> Vec<usize> {
    let mut at = 0;
    let mut out = Vec::new();
    while at + HEADER_LEN <= bytes.len() {
        out.push(at);
        let len = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        at += len;
    }
    out
}

fn open(dir: &Path) -> Log {
    Log::builder(dir)
        .retention_check(Duration::ZERO)
        .open()
        .unwrap()
}

#[test]
fn a_topic_reconfigured_to_compress_reads_its_old_and_new_batches_and_keeps_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        let topic = log.create_topic("t", TopicConfig::default()).unwrap();
        fill(&topic, 0, 2);
        log.reconfigure_topic(
            "t",
            TopicConfig {
                compression: Compression::Lz4,
                retain_for_groups: vec!["digest".into()],
                ..TopicConfig::default()
            },
        )
        .unwrap();
        fill(&topic, 2 * PER_BATCH, 2);
        let wrong = TopicConfig {
            partitions: 3,
            ..TopicConfig::default()
        };
        let err = log.reconfigure_topic("t", wrong).unwrap_err().to_string();
        assert!(err.contains("fixed at creation"), "{err}");
    }
    let log = open(dir.path());
    let topic = log.topic("t").unwrap();
    assert_eq!(topic.config().compression, Compression::Lz4);
    assert_eq!(topic.config().retain_for_groups, vec!["digest".to_string()]);
    let (records, skipped) = read_skipping(&topic);
    assert_eq!(skipped, 0);
    let want: Vec<(u64, String)> = (0..4 * PER_BATCH).map(|i| (i, line(i))).collect();
    assert_eq!(records, want);
    // The first two batches are stored as they were written, the last two compressed.
    let bytes = std::fs::read(segment_file(dir.path())).unwrap();
    let codecs: Vec<u8> = batch_positions(&bytes)
        .iter()
        .map(|&at| bytes[at + 17])
        .collect();
    assert_eq!(codecs, vec![0, 0, 1, 1]);
}

/// Corrupts the compressed records of the second of four lz4 batches, in two ways: a flipped
/// byte (the CRC fails), and garbage under a CRC made to match (only decompression fails).
fn corrupt_second_batch(dir: &Path, fix_crc: bool) {
    let path = segment_file(dir);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = batch_positions(&bytes)[1];
    let len = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
    for b in &mut bytes[at + HEADER_LEN..at + len] {
        *b = if fix_crc { 0xff } else { *b ^ 0x5a };
    }
    if fix_crc {
        let crc = crc32c::crc32c(&bytes[at + 16..at + len]);
        bytes[at + 12..at + 16].copy_from_slice(&crc.to_le_bytes());
    }
    std::fs::write(&path, bytes).unwrap();
}

fn a_corrupt_compressed_batch_is_named_and_skipped(fix_crc: bool) {
    let dir = tempfile::tempdir().unwrap();
    let config = TopicConfig {
        compression: Compression::Lz4,
        ..TopicConfig::default()
    };
    {
        let log = open(dir.path());
        let topic = log.create_topic("t", config).unwrap();
        fill(&topic, 0, 4);
    }
    corrupt_second_batch(dir.path(), fix_crc);
    let log = open(dir.path());
    let topic = log.topic("t").unwrap();
    let damage = topic.partition(0).unwrap().verify().unwrap();
    assert_eq!(damage.len(), 1, "{damage:?}");
    assert_eq!(damage[0].offsets, PER_BATCH..2 * PER_BATCH, "{damage:?}");
    assert!(damage[0].file.ends_with("0/00000000000000000000.log"));
    // The batches before and after the bad one are all read; only its records are lost, and
    // counted.
    let (records, skipped) = read_skipping(&topic);
    assert_eq!(skipped, PER_BATCH);
    let want: Vec<(u64, String)> = (0..PER_BATCH)
        .chain(2 * PER_BATCH..4 * PER_BATCH)
        .map(|i| (i, line(i)))
        .collect();
    assert_eq!(records, want);
}

#[test]
fn a_compressed_batch_with_a_flipped_byte_is_named_and_the_batches_after_it_still_read() {
    a_corrupt_compressed_batch_is_named_and_skipped(false);
}

#[test]
fn a_compressed_batch_that_does_not_decompress_under_a_good_crc_is_named_and_skipped() {
    a_corrupt_compressed_batch_is_named_and_skipped(true);
}
