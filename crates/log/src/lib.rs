//! eddy's bus: an append-only, partitioned, durable commit log on local disk.
//!
//! A [`Log`] is a data directory of [`Topic`]s. A topic has N [`Partition`]s; a record
//! ([`Record`]: key, value, timestamp, headers) goes to the partition its key hashes to, or to an
//! explicit one. A partition is a sequence of [`segment`] files of record [`batch`]es, each batch
//! checked by a CRC32C, each segment with a sparse offset and time [`index`] so a
//! [`PartitionReader`] seeks instead of scanning. Appends are acknowledged per the
//! [`Durability`] policy, by default only after fsync, with concurrent appenders sharing one
//! fsync. Readers see only acknowledged data and are woken the moment more arrives. [`Groups`]
//! keep consumer groups' committed offsets. Retention deletes whole sealed segments by age and
//! size. Damaged bytes are [`Damage`]: found by recovery and readers, skipped only when a reader
//! asks ([`PartitionReader::skip_damage`]), cut out by [`repair_topic`]; offsets are never
//! reused after recovery loses records ([`Partition::advance_to`]). A batch may be laid out by
//! a layer above ([`EncodedBatch::laid_out`]): the log numbers, indexes and checks it like any
//! other, reads its records through a [`layout`](mod@layout) registered in the process, and hands it out
//! whole to [`BusReader::poll_laid_out`].
//!
//! ```no_run
//! use eddy_log::{Log, PartitionChoice, Record, TopicConfig};
//! # fn main() -> eddy_log::Result<()> {
//! let log = Log::open("/var/lib/eddy/bus")?;
//! let topic = log.topic_or_create("events", TopicConfig { partitions: 4, ..TopicConfig::default() })?;
//! topic.produce(vec![Record::new("hello").with_key("host-1")], PartitionChoice::ByKey)?;
//! let mut reader = topic.reader(0, 0)?;
//! let records = reader.poll_wait(std::time::Duration::from_secs(1))?;
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

pub mod batch;
mod bus;
mod config;
mod contract;
mod damage;
mod embedded;
mod error;
#[cfg(any(test, feature = "fault-injection"))]
pub mod fault;
mod groups;
pub mod index;
pub mod layout;
mod lock;
mod partition;
mod record;
mod repair;
pub mod segment;
mod signal;
mod topic;

pub use batch::{Compression, EncodedBatch};
pub use bus::{Log, LogBuilder};
pub use config::{validate_name, Durability, TopicConfig, MAX_PARTITIONS};
pub use contract::{
    follow_journal, read_range, Bus, BusReader, GroupMember, LaidOutBatch, Membership, Polled,
};
pub use damage::Damage;
pub use error::{CorruptReason, Error, IoError, Result};
pub use groups::{GroupOffsets, Groups};
pub use layout::{layout, register_layout, LaidOutRecord, RecordLayout};
pub use partition::{AppendAck, Partition, PartitionInfo, PartitionReader, RetentionOutcome};
pub use record::{now_ns, Header, Record, StoredRecord};
pub use repair::{repair_topic, Repair};
pub use topic::{
    partition_by_key, partition_for_key, partition_for_salted_key, PartitionChoice, Topic,
    TopicInfo,
};
