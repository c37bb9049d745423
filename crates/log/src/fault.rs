//! A fault hook in the write path, compiled only into tests and builds with the
//! `fault-injection` feature: while a file named [`FULL_DISK_FLAG`] exists in a partition's
//! directory or one of its three parents (the data directory, say), every batch write to that
//! partition writes half its bytes and fails as a full disk does (`ENOSPC`). Tests use it to
//! show what a full disk does to ingest, without a size-limited file system.

use std::path::Path;

/// The name of the file whose presence makes writes fail.
pub const FULL_DISK_FLAG: &str = "eddy-fault-full-disk";

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
