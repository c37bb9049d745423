//! Fault hooks, compiled only into tests and builds with the `fault-injection` feature (never
//! into a release, so they cost nothing there):
//!
//! - **A full disk.** While a file named [`FULL_DISK_FLAG`] exists in a partition's directory
//!   or one of its three parents (the data directory, say), every batch write to that
//!   partition writes half its bytes and fails as a full disk does (`ENOSPC`). Tests use it to
//!   show what a full disk does to ingest, without a size-limited file system.
//! - **A slow partition.** While a file named [`SLOW_READS_FLAG`] exists in one partition's
//!   directory, every poll of a bus reader of that partition ([`crate::Bus::reader`], what the
//!   digest reads with) first pauses and then hands out at most one record (or one laid-out
//!   batch, whole, from `poll_laid_out`), so that one partition's digest falls behind while
//!   the others keep up. Tests use it to show the lag rule. The file may hold the pause in
//!   milliseconds; empty, it is 100 ms.

use std::path::Path;
use std::time::Duration;

use crate::contract::Polled;
use crate::partition::PartitionReader;
use crate::record::StoredRecord;

/// The name of the file whose presence makes writes fail.
pub const FULL_DISK_FLAG: &str = "eddy-fault-full-disk";

/// The name of the file whose presence in a partition's directory slows its bus readers.
pub const SLOW_READS_FLAG: &str = "eddy-fault-slow-reads";

/// The pause of a slowed read when the flag file names none.
const DEFAULT_SLOW_READ: Duration = Duration::from_millis(100);

/// A bus reader's poll, slowed if the flag is set in its partition's directory; `None` when it
/// is not (the caller polls as usual).
pub(crate) fn slow_poll(
    reader: &mut PartitionReader,
    timeout: Duration,
) -> Option<crate::Result<Vec<StoredRecord>>> {
    slow_pause(reader)?;
    Some(reader.poll_wait(timeout).map(|mut records| {
        if records.len() > 1 {
            records.truncate(1);
            reader.seek(records[0].offset + 1);
        }
        records
    }))
}

/// [`slow_poll`] for [`crate::BusReader::poll_laid_out`]: after the pause, at most one record,
/// or one laid-out batch (handed out whole, it is not split).
pub(crate) fn slow_poll_laid_out(
    reader: &mut PartitionReader,
    timeout: Duration,
) -> Option<crate::Result<Vec<Polled>>> {
    slow_pause(reader)?;
    Some(reader.poll_laid_out_wait(timeout).map(|mut polled| {
        polled.truncate(1);
        let next = match polled.first_mut() {
            Some(Polled::Records(records)) => {
                records.truncate(1);
                records.first().map(|r| r.offset + 1)
            }
            Some(Polled::LaidOut(b)) => Some(b.base_offset + u64::from(b.record_count)),
            None => None,
        };
        if let Some(next) = next {
            reader.seek(next);
        }
        polled
    }))
}

/// Sleeps the slow read's pause if the flag is set in the reader's partition directory; `None`
/// when it is not.
fn slow_pause(reader: &PartitionReader) -> Option<()> {
    let flag = reader.partition().dir().join(SLOW_READS_FLAG);
    let text = std::fs::read_to_string(flag).ok()?;
    let pause = text
        .trim()
        .parse()
        .map_or(DEFAULT_SLOW_READ, Duration::from_millis);
    std::thread::sleep(pause);
    Some(())
}

/// The error a write under `dir` fails with now, if the flag is set.
pub(crate) fn full_disk(dir: &Path) -> Option<std::io::Error> {
    dir.ancestors()
        .take(4)
        .any(|d| d.join(FULL_DISK_FLAG).exists())
        .then(|| std::io::Error::from_raw_os_error(28))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::FULL_DISK_FLAG;
    use crate::{Error, Log, PartitionChoice, Record, TopicConfig};

    fn values(log: &Log) -> Vec<(u64, String)> {
        let topic = log.topic("t").unwrap();
        let mut reader = topic.reader(0, 0).unwrap();
        let mut out = Vec::new();
        loop {
            let records = reader.poll().unwrap();
            if records.is_empty() {
                return out;
            }
            out.extend(
                records
                    .into_iter()
                    .map(|r| (r.offset, String::from_utf8(r.value.to_vec()).unwrap())),
            );
        }
    }

    fn append(log: &Log, values: &[&str]) -> crate::Result<()> {
        let records = values.iter().map(|v| Record::new(v.to_string())).collect();
        log.topic("t")
            .unwrap()
            .produce(records, PartitionChoice::Explicit(0))
            .map(drop)
    }

    #[test]
    fn a_slowed_partition_hands_its_bus_readers_one_record_per_poll_until_the_flag_goes() {
        use crate::Bus;
        let dir = tempfile::tempdir().unwrap();
        let log = Log::builder(dir.path()).open().unwrap();
        let topic = log
            .create_topic(
                "t",
                TopicConfig {
                    partitions: 2,
                    ..TopicConfig::default()
                },
            )
            .unwrap();
        for p in 0..2 {
            let records = (0..5).map(|i| Record::new(format!("{p}-{i}"))).collect();
            topic
                .produce(records, PartitionChoice::Explicit(p))
                .unwrap();
        }
        let flag = topic
            .partition(1)
            .unwrap()
            .dir()
            .join(super::SLOW_READS_FLAG);
        std::fs::write(&flag, "1").unwrap();
        let poll = |p| {
            let mut reader = log.reader("t", p, 0).unwrap();
            let first = reader.poll(Duration::from_secs(60)).unwrap().len();
            (first, reader.position())
        };
        assert_eq!(poll(0), (5, 5));
        assert_eq!(poll(1), (1, 1));
        std::fs::remove_file(&flag).unwrap();
        assert_eq!(poll(1), (5, 5));
    }

    #[test]
    fn a_slowed_partition_hands_poll_laid_out_one_record_or_one_whole_batch_per_poll() {
        use crate::{Bus, EncodedBatch, Polled};
        let dir = tempfile::tempdir().unwrap();
        let log = Log::builder(dir.path()).open().unwrap();
        log.create_topic("t", TopicConfig::default()).unwrap();
        append(&log, &["a", "b"]).unwrap();
        let laid_out = EncodedBatch::laid_out(vec![0x7F, 1, 2, 3], 3, 0, 0);
        log.produce_laid_out("t", vec![(0, laid_out)]).unwrap();
        let flag = log
            .topic("t")
            .unwrap()
            .partition(0)
            .unwrap()
            .dir()
            .join(super::SLOW_READS_FLAG);
        std::fs::write(&flag, "1").unwrap();
        let mut reader = log.reader("t", 0, 0).unwrap();
        let mut shapes = Vec::new();
        loop {
            let polled = reader.poll_laid_out(Duration::ZERO).unwrap();
            if polled.is_empty() {
                break;
            }
            assert_eq!(polled.len(), 1, "{polled:?}");
            shapes.push(match &polled[0] {
                Polled::Records(r) => (r[0].offset, r.len() as u32),
                Polled::LaidOut(b) => (b.base_offset, b.record_count),
            });
        }
        assert_eq!(shapes, [(0, 1), (1, 1), (2, 3)]);
        assert_eq!(reader.position(), 5);
    }

    #[test]
    fn a_full_disk_refuses_batches_without_poisoning_and_appends_resume_when_space_returns() {
        let dir = tempfile::tempdir().unwrap();
        let open = || {
            Log::builder(dir.path())
                .retention_check(Duration::ZERO)
                .open()
                .unwrap()
        };
        let log = open();
        log.create_topic("t", TopicConfig::default()).unwrap();
        append(&log, &["a", "b"]).unwrap();

        std::fs::write(dir.path().join(FULL_DISK_FLAG), "").unwrap();
        for _ in 0..3 {
            let err = append(&log, &["lost", "lost too"]).unwrap_err();
            assert!(matches!(err, Error::Io(_)), "{err}");
            assert!(err.to_string().contains("No space left"), "{err}");
        }
        let topic = log.topic("t").unwrap();
        assert_eq!(topic.partition(0).unwrap().failure(), None);

        std::fs::remove_file(dir.path().join(FULL_DISK_FLAG)).unwrap();
        append(&log, &["c"]).unwrap();
        let expected = vec![(0, "a".into()), (1, "b".into()), (2, "c".into())];
        assert_eq!(values(&log), expected);
        // The refused batches left nothing that recovery would stumble on.
        drop(topic);
        drop(log);
        let log = open();
        assert_eq!(values(&log), expected);
        let topic = log.topic("t").unwrap();
        assert!(topic.partition(0).unwrap().damage().is_empty());
        append(&log, &["d"]).unwrap();
        assert_eq!(values(&log).len(), 4);
    }
}
