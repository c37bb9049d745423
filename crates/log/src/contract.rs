//! The bus's contract: what every bus eddy runs on provides, the embedded [`crate::Log`] and
//! Apache Kafka alike. The doors, the digest and the cluster code hold a `dyn Bus` and never
//! ask which one it is.
//!
//! Offsets follow Kafka's conventions: a partition's records have consecutive offsets from its
//! start; a committed offset is the next one the group will read. Offsets are comparable only
//! within one [`Bus::epoch`]: a bus whose storage was reset starts again at 0 under a new epoch.

use std::time::Duration;

use bytes::Bytes;

use crate::batch::EncodedBatch;
use crate::config::TopicConfig;
use crate::error::Result;
use crate::partition::AppendAck;
use crate::record::{Record, StoredRecord};
use crate::topic::PartitionChoice;

/// A partitioned, durable log of records with consumer groups.
pub trait Bus: Send + Sync + 'static {
    /// Which implementation this is, for messages and metrics: `"embedded"` or `"kafka"`.
    fn kind(&self) -> &'static str;

    /// Whether other nodes may read and digest this bus's partitions (Kafka), or only this
    /// process (the embedded log). On a shared bus what one node learnt from a partition, what
    /// it sealed, say, must be told through the bus for the next owner to know it.
    fn shared(&self) -> bool;

    /// An identity of the bus's storage that changes when the storage is reset (Kafka's cluster
    /// id; the embedded log's data directory id). A reader that recorded offsets under another
    /// epoch must not trust them.
    fn epoch(&self) -> Result<String>;

    /// Creates `name` with `config` if it does not exist, and returns its partition count
    /// (the existing count when it existed). Settings a bus has no equivalent of are ignored;
    /// each implementation documents which.
    fn ensure_topic(&self, name: &str, config: &TopicConfig) -> Result<u32>;

    /// The number of partitions of an existing topic.
    fn partition_count(&self, topic: &str) -> Result<u32>;

    /// Appends `records`, split by partition as `choice` says, and returns once every share is
    /// durable (embedded: fsynced per the durability policy; Kafka: `acks=all`). One ack per
    /// partition written, in partition order. If one share fails, others may have been stored.
    fn produce(
        &self,
        topic: &str,
        records: Vec<Record>,
        choice: PartitionChoice,
    ) -> Result<Vec<AppendAck>>;

    /// Whether [`Bus::produce_laid_out`] stores batches laid out above (the embedded log: true;
    /// Kafka: false, its producers take records).
    fn takes_laid_out(&self) -> bool {
        false
    }

    /// Appends each batch (built by [`EncodedBatch::laid_out`], or any encoded batch) to its
    /// partition, every batch written before any is waited for (as [`Bus::produce`]), and
    /// returns one ack per batch, in the order given, once all are durable per the durability
    /// policy. If one fails, the batches before it may have been stored. A bus that does not
    /// take laid-out batches returns [`crate::Error::LaidOutUnsupported`].
    fn produce_laid_out(
        &self,
        topic: &str,
        batches: Vec<(u32, EncodedBatch)>,
    ) -> Result<Vec<AppendAck>> {
        let _ = (topic, batches);
        Err(crate::Error::LaidOutUnsupported { bus: self.kind() })
    }

    /// The offsets a partition holds now: `(first, next)`; `first == next` when it is empty.
    fn offsets(&self, topic: &str, partition: u32) -> Result<(u64, u64)>;

    /// A reader of one partition from `offset`, outside any group (it commits nothing).
    fn reader(&self, topic: &str, partition: u32, offset: u64) -> Result<Box<dyn BusReader>>;

    /// Like [`Bus::reader`], but records the bus cannot give back because its storage is
    /// damaged are passed over and counted in [`BusReader::skipped`] instead of failing every
    /// poll: what the digest needs to go on past a torn disk. A bus that cannot lose records
    /// that way reads as [`Bus::reader`] does.
    fn reader_skipping_damage(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
    ) -> Result<Box<dyn BusReader>> {
        self.reader(topic, partition, offset)
    }

    /// Makes sure offsets below `offset` are never handed out again, even if the partition's
    /// storage lost them since they were read (the embedded log after a cut tail; Kafka never
    /// reuses an offset within an epoch, so there it is nothing to do).
    fn never_reuse_below(&self, topic: &str, partition: u32, offset: u64) -> Result<()> {
        let _ = (topic, partition, offset);
        Ok(())
    }

    /// Records `group`'s next offsets to read for partitions of `topic`, durably.
    fn commit(&self, group: &str, topic: &str, offsets: &[(u32, u64)]) -> Result<()>;

    /// `group`'s committed next offset for a partition, if it ever committed one.
    fn committed(&self, group: &str, topic: &str, partition: u32) -> Result<Option<u64>>;

    /// Joins `group` as one member consuming `topic`. The bus shares the topic's partitions among
    /// the members and moves them when members come and go; `on_change` hears of every move,
    /// synchronously, from inside [`GroupMember::poll`]. A partition is revoked from this member
    /// before any other member is given it, so a handler that stops its work on a partition
    /// before returning never overlaps with the next owner (unless this process dies, when the
    /// bus moves the partition after its session times out).
    fn join(
        &self,
        group: &str,
        topic: &str,
        on_change: Box<dyn FnMut(Membership) + Send>,
    ) -> Result<Box<dyn GroupMember>>;

    /// The first offset of a partition whose record timestamp (ns) is at or after `time_ns`;
    /// the partition's next offset when none is. Records before it all have earlier
    /// timestamps, so reading from it misses none at or after `time_ns`.
    fn offset_for_time(&self, topic: &str, partition: u32, time_ns: i64) -> Result<u64>;
}

/// Reads one partition in offset order.
pub trait BusReader: Send {
    /// The partition read.
    fn partition(&self) -> u32;

    /// The offset of the next record [`BusReader::poll`] returns.
    fn position(&self) -> u64;

    /// Moves to `offset`; the next poll starts there.
    fn seek(&mut self, offset: u64) -> Result<()>;

    /// The next records from the position, waiting up to `timeout` when there are none yet.
    /// An empty result means nothing arrived in time. Records before the partition's first
    /// offset (deleted by retention) are an [`crate::Error::OffsetOutOfRange`].
    fn poll(&mut self, timeout: Duration) -> Result<Vec<StoredRecord>>;

    /// Like [`BusReader::poll`], but a batch laid out above the log (see [`crate::layout`](mod@crate::layout))
    /// that starts at or after the position comes whole, as [`Polled::LaidOut`], without its
    /// layout being called; one the position falls inside comes as the records from the
    /// position on. Consecutive other records are grouped in one [`Polled::Records`]. A bus
    /// that stores no laid-out batches gives only records.
    fn poll_laid_out(&mut self, timeout: Duration) -> Result<Vec<Polled>> {
        let records = self.poll(timeout)?;
        Ok(if records.is_empty() {
            Vec::new()
        } else {
            vec![Polled::Records(records)]
        })
    }

    /// Records passed over as unreadable so far (see [`Bus::reader_skipping_damage`]).
    fn skipped(&self) -> u64 {
        0
    }
}

/// A laid-out batch as stored (see [`crate::layout`](mod@crate::layout)): its payload, and the header's facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaidOutBatch {
    /// Offset of its first record; its records have the offsets up to
    /// `base_offset + record_count`.
    pub base_offset: u64,
    /// Records in the batch (> 0).
    pub record_count: u32,
    /// Timestamp of record 0, ns.
    pub first_timestamp: i64,
    /// Largest record timestamp, ns.
    pub max_timestamp: i64,
    /// The payload as written, its first byte the layout id.
    pub payload: Bytes,
}

/// What [`BusReader::poll_laid_out`] hands out, in offset order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Polled {
    /// Consecutive records.
    Records(Vec<StoredRecord>),
    /// One laid-out batch, whole.
    LaidOut(LaidOutBatch),
}

/// One member's place in a consumer group.
pub trait GroupMember: Send {
    /// Keeps the membership alive and delivers moves to the `on_change` handler. Call it at
    /// least every few seconds, or the bus counts the member as gone.
    fn poll(&mut self, timeout: Duration) -> Result<()>;

    /// The partitions this member owns now.
    fn owned(&self) -> Vec<u32>;
}

/// A move of partitions to or from this member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Membership {
    /// These partitions are this member's now.
    Assigned(Vec<u32>),
    /// These partitions are no longer this member's: stop working on them before returning.
    Revoked(Vec<u32>),
}

/// Hands `each` the records of `partition` of `topic` from `from` up to, not including, `end`,
/// in order, while it returns `true`: how a small internal topic (a journal, marks) is read
/// up to an end asked for first. The records are expected to be there: a bus that gives
/// nothing for 5 s before `end` is an error.
pub fn read_range(
    bus: &dyn Bus,
    topic: &str,
    partition: u32,
    from: u64,
    end: u64,
    each: &mut dyn FnMut(StoredRecord) -> bool,
) -> Result<()> {
    if from >= end {
        return Ok(());
    }
    let mut reader = bus.reader(topic, partition, from)?;
    while reader.position() < end {
        let records = reader.poll(Duration::from_secs(5))?;
        if records.is_empty() {
            return Err(crate::Error::Broker {
                bus: bus.kind(),
                operation: format!("read {topic}[{partition}] up to offset {end}"),
                message: format!("nothing came back at offset {}", reader.position()),
            });
        }
        for r in records.into_iter().filter(|r| r.offset < end) {
            if !each(r) {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Follows a journal on a thread named `name` while `owner` lives: every `every`,
/// `catch_up(owner)` applies what the journal gained; a failure is logged and tried again a
/// second later. What a registry or directory that several nodes write uses to see the others'
/// changes.
pub fn follow_journal<T, E>(
    name: &str,
    owner: std::sync::Weak<T>,
    every: Duration,
    catch_up: fn(&T) -> std::result::Result<(), E>,
) where
    T: Send + Sync + 'static,
    E: std::fmt::Display + 'static,
{
    let thread = name.to_string();
    let spawned = std::thread::Builder::new()
        .name(thread.clone())
        .spawn(move || loop {
            std::thread::sleep(every);
            let Some(owner) = owner.upgrade() else {
                return;
            };
            if let Err(e) = catch_up(&owner) {
                tracing::error!(thread, "following a journal failed, retrying: {e}");
                std::thread::sleep(Duration::from_secs(1));
            }
        });
    if let Err(e) = spawned {
        tracing::error!("cannot start the journal follower {name}: {e}");
    }
}

impl std::fmt::Debug for dyn Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bus({})", self.kind())
    }
}
