//! The embedded log as a [`Bus`]: one process owns the data directory, so a consumer group has
//! one member, which owns every partition, and the epoch is an id written into the directory
//! when it is first opened for writing.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use crate::batch::EncodedBatch;
use crate::bus::Log;
use crate::config::TopicConfig;
use crate::contract::{Bus, BusReader, GroupMember, Membership, Polled};
use crate::error::{Error, Result};
use crate::partition::{AppendAck, PartitionReader};
use crate::record::{Record, StoredRecord};
use crate::topic::{PartitionChoice, Topic};

/// The file that holds the data directory's epoch.
const EPOCH_FILE: &str = "EPOCH";

/// Reads the directory's epoch, writing a new random one first if there is none and `write`.
pub(crate) fn load_or_create_epoch(dir: &std::path::Path, write: bool) -> Result<Option<String>> {
    let path = dir.join(EPOCH_FILE);
    match eddy_base::fs::read_line_file(&path)? {
        None if write => {
            let epoch = new_epoch();
            eddy_base::fs::replace_file(&path, format!("{epoch}\n").as_bytes())?;
            Ok(Some(epoch))
        }
        read => Ok(read),
    }
}

/// 128 random bits from the standard library's per-process hash keys, as hex.
fn new_epoch() -> String {
    let half = || {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_i64(crate::record::now_ns());
        h.finish()
    };
    format!("{:016x}{:016x}", half(), half())
}

impl Bus for Log {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    fn shared(&self) -> bool {
        false
    }

    fn epoch(&self) -> Result<String> {
        load_or_create_epoch(self.dir(), !self.is_read_only())?.ok_or_else(|| Error::BadMetadata {
            path: self.dir().join(EPOCH_FILE),
            reason: "missing: no writer has opened this log since it got epochs".to_string(),
        })
    }

    fn ensure_topic(&self, name: &str, config: &TopicConfig) -> Result<u32> {
        Ok(self
            .topic_or_create(name, config.clone())?
            .partition_count())
    }

    fn partition_count(&self, topic: &str) -> Result<u32> {
        Ok(self.topic(topic)?.partition_count())
    }

    fn produce(
        &self,
        topic: &str,
        records: Vec<Record>,
        choice: PartitionChoice,
    ) -> Result<Vec<AppendAck>> {
        self.topic(topic)?.produce(records, choice)
    }

    fn takes_laid_out(&self) -> bool {
        true
    }

    fn produce_laid_out(
        &self,
        topic: &str,
        batches: Vec<(u32, EncodedBatch)>,
    ) -> Result<Vec<AppendAck>> {
        self.topic(topic)?.produce_laid_out(batches)
    }

    fn offsets(&self, topic: &str, partition: u32) -> Result<(u64, u64)> {
        let topic = self.topic(topic)?;
        let p = topic.partition(partition)?;
        Ok((p.start_offset(), p.end_offset()))
    }

    fn reader(&self, topic: &str, partition: u32, offset: u64) -> Result<Box<dyn BusReader>> {
        Ok(Box::new(self.topic(topic)?.reader(partition, offset)?))
    }

    fn reader_skipping_damage(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
    ) -> Result<Box<dyn BusReader>> {
        Ok(Box::new(
            self.topic(topic)?
                .reader(partition, offset)?
                .skipping_damage(),
        ))
    }

    fn never_reuse_below(&self, topic: &str, partition: u32, offset: u64) -> Result<()> {
        self.topic(topic)?
            .partition(partition)?
            .advance_to(offset)?;
        Ok(())
    }

    fn commit(&self, group: &str, topic: &str, offsets: &[(u32, u64)]) -> Result<()> {
        let t = self.topic(topic)?;
        for &(p, _) in offsets {
            t.partition(p)?;
        }
        let offsets: Vec<(&str, u32, u64)> = offsets.iter().map(|&(p, o)| (topic, p, o)).collect();
        self.groups().commit(group, &offsets)
    }

    fn committed(&self, group: &str, topic: &str, partition: u32) -> Result<Option<u64>> {
        self.topic(topic)?.partition(partition)?;
        Ok(self.groups().committed(group, topic, partition))
    }

    fn join(
        &self,
        group: &str,
        topic: &str,
        on_change: Box<dyn FnMut(Membership) + Send>,
    ) -> Result<Box<dyn GroupMember>> {
        crate::config::validate_name("consumer group", group)?;
        Ok(Box::new(SoleMember {
            topic: self.topic(topic)?,
            on_change,
            owned: Vec::new(),
        }))
    }

    fn offset_for_time(&self, topic: &str, partition: u32, time_ns: i64) -> Result<u64> {
        self.topic(topic)?
            .partition(partition)?
            .offset_for_time(time_ns)
    }
}

impl BusReader for PartitionReader {
    fn partition(&self) -> u32 {
        PartitionReader::partition(self).id()
    }

    fn position(&self) -> u64 {
        PartitionReader::position(self)
    }

    fn seek(&mut self, offset: u64) -> Result<()> {
        PartitionReader::seek(self, offset);
        Ok(())
    }

    fn poll(&mut self, timeout: Duration) -> Result<Vec<StoredRecord>> {
        #[cfg(any(test, feature = "fault-injection"))]
        if let Some(slowed) = crate::fault::slow_poll(self, timeout) {
            return slowed;
        }
        self.poll_wait(timeout)
    }

    fn poll_laid_out(&mut self, timeout: Duration) -> Result<Vec<Polled>> {
        #[cfg(any(test, feature = "fault-injection"))]
        if let Some(slowed) = crate::fault::slow_poll_laid_out(self, timeout) {
            return slowed;
        }
        self.poll_laid_out_wait(timeout)
    }

    fn skipped(&self) -> u64 {
        PartitionReader::skipped(self)
    }
}

/// The only member a group of the embedded log can have: it owns every partition from its first
/// poll on.
struct SoleMember {
    topic: Arc<Topic>,
    on_change: Box<dyn FnMut(Membership) + Send>,
    owned: Vec<u32>,
}

impl GroupMember for SoleMember {
    fn poll(&mut self, timeout: Duration) -> Result<()> {
        if self.owned.is_empty() {
            self.owned = (0..self.topic.partition_count()).collect();
            (self.on_change)(Membership::Assigned(self.owned.clone()));
        } else {
            // Nothing can move; wait as a broker's poll would, so callers' loops do not spin.
            std::thread::sleep(timeout);
        }
        Ok(())
    }

    fn owned(&self) -> Vec<u32> {
        self.owned.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn epoch_survives_reopening_and_a_new_directory_gets_another() {
        let dir = tempfile::tempdir().unwrap();
        let first = Log::open(dir.path()).unwrap().epoch().unwrap();
        let again = Log::open(dir.path()).unwrap().epoch().unwrap();
        assert_eq!(first, again);
        let other = tempfile::tempdir().unwrap();
        assert_ne!(first, Log::open(other.path()).unwrap().epoch().unwrap());
    }

    #[test]
    fn the_sole_member_of_a_group_is_assigned_every_partition_once() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path()).unwrap();
        let config = TopicConfig {
            partitions: 3,
            ..TopicConfig::default()
        };
        assert_eq!(log.ensure_topic("t", &config).unwrap(), 3);
        let heard = Arc::new(Mutex::new(Vec::new()));
        let h = heard.clone();
        let bus: &dyn Bus = &log;
        let mut member = bus
            .join("g", "t", Box::new(move |m| h.lock().unwrap().push(m)))
            .unwrap();
        member.poll(Duration::ZERO).unwrap();
        member.poll(Duration::ZERO).unwrap();
        assert_eq!(member.owned(), vec![0, 1, 2]);
        assert_eq!(
            *heard.lock().unwrap(),
            vec![Membership::Assigned(vec![0, 1, 2])]
        );
    }
}
