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

/// The partition of `key` under placement salt `salt`: salt 0 is the key's own partition
/// ([`partition_for_key`]); salts 1, 2, … walk from there through the other partitions with a
/// stride that the key's hash picks among those coprime with the count. So salts `0..w` are `w`
/// distinct partitions (for `w` up to the count), the one key of a source spread `w` ways
/// lands on exactly `w` partitions, and sources of one partition spread in different
/// directions. (Hashing key and salt together could put two salts in one partition and
/// spread less than asked.)
pub fn partition_for_salted_key(key: &[u8], salt: u32, partitions: u32) -> u32 {
    let n = u64::from(partitions.max(1));
    let home = xxhash_rust::xxh3::xxh3_64(key) % n;
    if salt == 0 || n == 1 {
        return home as u32;
    }
    let mut stride = 1 + xxhash_rust::xxh3::xxh3_64_with_seed(key, SPREAD_SEED) % (n - 1);
    while gcd(stride, n) != 1 {
        stride = stride % (n - 1) + 1;
    }
    ((home + (u64::from(salt) % n) * stride) % n) as u32
}

/// The seed of the hash that picks a spread key's stride (any fixed value; changing it moves
/// spread records, which readers do not mind).
const SPREAD_SEED: u64 = 0x5eed_5a17;

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The partition of `record` under [`PartitionChoice::ByKey`]: its key's under its salt
/// ([`partition_for_salted_key`]), or `unkeyed`, the partition the call's records without a key
/// share. Every bus places records by this rule, so a key lands in the same partitions on all
/// of them.
pub fn partition_by_key(record: &Record, partitions: u32, unkeyed: u32) -> u32 {
    record.key.as_ref().map_or(unkeyed, |k| {
        partition_for_salted_key(k, record.salt, partitions)
    })
}

/// Which partition a batch goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionChoice {
    /// Hash each record's key (with its [`Record::salt`], see [`partition_by_key`]); records
    /// without a key go round-robin, one batch at a time.
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
        self.wait_for_all(&acks)?;
        Ok(acks)
    }

    /// Appends each encoded batch (laid out above, see [`EncodedBatch::laid_out`], or not) to
    /// its partition, all written before any is waited for as in [`Topic::produce`], and
    /// returns one ack per batch in the order given, once all are durable. Each batch is
    /// checked against `max_batch_bytes` as any other. If one fails, the batches before it may
    /// have been stored.
    pub fn produce_laid_out(&self, batches: Vec<(u32, EncodedBatch)>) -> Result<Vec<AppendAck>> {
        if batches.is_empty() {
            return Err(Error::EmptyBatch);
        }
        // Look every partition up first, so a bad number stores nothing.
        for (p, _) in &batches {
            self.partition(*p)?;
        }
        let mut acks = Vec::with_capacity(batches.len());
        for (p, batch) in batches {
            acks.push(self.partitions[p as usize].write_encoded(batch)?);
        }
        self.wait_for_all(&acks)?;
        Ok(acks)
    }

    /// Returns once every ack's records are durable per the durability policy.
    fn wait_for_all(&self, acks: &[AppendAck]) -> Result<()> {
        for ack in acks {
            self.partitions[ack.partition as usize].wait_for(*ack)?;
        }
        Ok(())
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

    #[test]
    fn salt_zero_is_the_keys_own_partition_and_w_salts_are_w_distinct_partitions() {
        for n in 1..=12u32 {
            for i in 0..50 {
                let key = format!("#host=h{i}");
                let k = key.as_bytes();
                assert_eq!(partition_for_salted_key(k, 0, n), partition_for_key(k, n));
                let all: std::collections::HashSet<u32> =
                    (0..n).map(|s| partition_for_salted_key(k, s, n)).collect();
                assert_eq!(all.len(), n as usize, "key {key}, {n} partitions");
                assert!(all.iter().all(|&p| p < n));
                // Past the count, salts come round again.
                assert_eq!(
                    partition_for_salted_key(k, n + 1, n),
                    partition_for_salted_key(k, 1, n)
                );
            }
        }
        // Two keys of one partition need not spread onto the same second partition.
        let seconds: std::collections::HashSet<u32> = (0..200)
            .map(|i| format!("k{i}"))
            .filter(|k| partition_for_key(k.as_bytes(), 8) == 3)
            .map(|k| partition_for_salted_key(k.as_bytes(), 1, 8))
            .collect();
        assert!(seconds.len() > 1, "{seconds:?}");
    }

    #[test]
    fn salted_records_keep_their_key_and_land_on_the_salted_partition() {
        let record = Record::new("v").with_key("#host=a").with_salt(1);
        assert_eq!(
            partition_by_key(&record, 4, 0),
            partition_for_salted_key(b"#host=a", 1, 4)
        );
        assert_eq!(record.key.as_deref(), Some(&b"#host=a"[..]));
    }
}
