//! A topic: a name, a configuration and N partitions; records are spread by key.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::batch::EncodedBatch;
use crate::config::{ConfigCell, TopicConfig};
use crate::error::{Error, Result};
use crate::partition::{AppendAck, Partition, PartitionInfo, PartitionReader};
use crate::record::{now_ns, Record, StoredRecord};
use crate::signal::Signal;

/// A topic of the log.
#[derive(Debug)]
pub struct Topic {
    name: Arc<str>,
    config: Arc<ConfigCell>,
    partitions: Vec<Arc<Partition>>,
    signal: Arc<Signal>,
    round_robin: AtomicU32,
}

/// The partition for a key: XXH3-64 of the key bytes modulo the partition count. Stable across
/// versions and machines, so a key always lands in the same partition of a topic.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    (xxhash_rust::xxh3::xxh3_64(key) % u64::from(partitions.max(1))) as u32
}

/// The partition of `record` under [`PartitionChoice::ByKey`]: its key's
/// ([`partition_for_key`]), or `unkeyed`, the partition the call's records without a key share.
/// Every bus places records by this rule, so a key lands in the same partition on all of them.
pub fn partition_by_key(record: &Record, partitions: u32, unkeyed: u32) -> u32 {
    record
        .key
        .as_ref()
        .map_or(unkeyed, |k| partition_for_key(k, partitions))
}

/// Which partition a batch goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionChoice {
    /// Hash each record's key; records without a key go round-robin, one batch at a time.
    ByKey,
    /// This partition, whatever the keys.
    Explicit(u32),
}

/// A snapshot of a topic for `describe`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TopicInfo {
    /// Topic name.
    pub name: String,
    /// Its configuration.
    pub config: TopicConfig,
    /// Per-partition offsets and sizes.
    pub partitions: Vec<PartitionInfo>,
}

impl Topic {
    pub(crate) fn new(
        name: Arc<str>,
        config: Arc<ConfigCell>,
        partitions: Vec<Arc<Partition>>,
        signal: Arc<Signal>,
    ) -> Topic {
        Topic {
            name,
            config,
            partitions,
            signal,
            round_robin: AtomicU32::new(0),
        }
    }

    /// The topic's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The topic's configuration in force now (a snapshot: [`crate::Log::reconfigure_topic`]
    /// may replace it).
    pub fn config(&self) -> Arc<TopicConfig> {
        self.config.get()
    }

    pub(crate) fn set_config(&self, config: TopicConfig) {
        self.config.set(config);
    }

    /// Number of partitions.
    pub fn partition_count(&self) -> u32 {
        self.partitions.len() as u32
    }

    /// One partition, or an error naming the valid range.
    pub fn partition(&self, partition: u32) -> Result<&Arc<Partition>> {
        self.partitions
            .get(partition as usize)
            .ok_or_else(|| Error::PartitionOutOfRange {
                topic: self.name.to_string(),
                partition,
                partitions: self.partition_count(),
            })
    }

    /// All partitions.
    pub fn partitions(&self) -> &[Arc<Partition>] {
        &self.partitions
    }

    /// Appends records, splitting them by partition; returns one ack per partition written, in
    /// partition order. Each partition's share is one batch, durable when this returns. Every
    /// share is written before any is waited for, so the shares' fsyncs (led by this thread or
    /// by a concurrent producer's group commit) overlap the writes instead of following each
    /// other write by write; no thread is started per request. If one fails, the others may
    /// still have been stored.
    pub fn produce(&self, records: Vec<Record>, choice: PartitionChoice) -> Result<Vec<AppendAck>> {
        if records.is_empty() {
            return Err(Error::EmptyBatch);
        }
        // Checked once, here, so an error names the record's place in `records`; the
        // partitions' shares are then encoded without checking again.
        let config = self.config.get();
        crate::batch::check_record_sizes(&records, config.max_record_bytes)?;
        let write = |p: &Partition, group: &[Record]| {
            p.write_encoded(EncodedBatch::encode(group, config.compression, now_ns()))
        };
        let n = self.partition_count();
        let acks = match choice {
            PartitionChoice::Explicit(p) => vec![write(self.partition(p)?, &records)?],
            PartitionChoice::ByKey => {
                let unkeyed = self.round_robin.fetch_add(1, Ordering::Relaxed) % n;
                let mut groups: Vec<Vec<Record>> = vec![Vec::new(); n as usize];
                for r in records {
                    groups[partition_by_key(&r, n, unkeyed) as usize].push(r);
                }
                let mut acks = Vec::new();
                for (p, group) in groups.iter().enumerate() {
                    if !group.is_empty() {
                        acks.push(write(&self.partitions[p], group)?);
                    }
                }
                acks
            }
        };
        for ack in &acks {
            self.partitions[ack.partition as usize].wait_for(*ack)?;
        }
        Ok(acks)
    }

    /// A reader of one partition starting at `offset`.
    pub fn reader(&self, partition: u32, offset: u64) -> Result<PartitionReader> {
        Ok(PartitionReader::new(
            self.partition(partition)?.clone(),
            offset,
        ))
    }

    /// Offsets and sizes of every partition.
    pub fn info(&self) -> TopicInfo {
        TopicInfo {
            name: self.name.to_string(),
            config: (*self.config.get()).clone(),
            partitions: self.partitions.iter().map(|p| p.info()).collect(),
        }
    }

    /// Waits until any partition gets new data after the signal version `seen`, or `timeout`.
    /// Returns the new version. Get `seen` from [`Topic::version`] *before* reading.
    pub fn wait_for_data(&self, seen: u64, timeout: Duration) -> u64 {
        self.signal.wait_past(seen, timeout)
    }

    /// The current data version; it changes whenever any partition gets readable data.
    pub fn version(&self) -> u64 {
        self.signal.version()
    }

    /// An async receiver that changes whenever any partition gets readable data.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.signal.subscribe()
    }

    /// Reads the next records from a set of readers of this topic, waiting up to `timeout` for
    /// data if all are at the end. Returns `(partition, records)` pairs.
    pub fn poll_many(
        &self,
        readers: &mut [PartitionReader],
        timeout: Duration,
    ) -> Result<Vec<(u32, Vec<StoredRecord>)>> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let seen = self.version();
            let mut out = Vec::new();
            for r in readers.iter_mut() {
                let records = r.poll()?;
                if !records.is_empty() {
                    out.push((r.partition().id(), records));
                }
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if !out.is_empty() || left.is_zero() {
                return Ok(out);
            }
            self.wait_for_data(seen, left);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_hash_is_stable_and_in_range() {
        // Pinned: changing the hash would move every key of existing topics.
        let pinned: Vec<u32> = ["host-1", "host-2", "web", ""]
            .iter()
            .map(|k| partition_for_key(k.as_bytes(), 16))
            .collect();
        assert_eq!(pinned, vec![10, 1, 15, 2]);
        for i in 0..1000 {
            assert!(partition_for_key(format!("k{i}").as_bytes(), 7) < 7);
        }
        let spread: std::collections::HashSet<u32> = (0..200)
            .map(|i| partition_for_key(format!("k{i}").as_bytes(), 8))
            .collect();
        assert_eq!(spread.len(), 8);
    }
}
