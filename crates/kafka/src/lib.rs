//! eddy's bus on Apache Kafka: [`KafkaBus`] implements [`eddy_log::Bus`] with librdkafka
//! (through `rdkafka`, built from its bundled source), so the doors, the digest and the cluster
//! code run on a Kafka cluster as they run on the embedded log.
//!
//! [`KafkaBus::connect`] takes a [`KafkaConfig`] and makes one idempotent producer
//! (`acks=all`, `enable.idempotence=true`) and one admin client. A produce call sends each
//! record to an explicit partition and waits for every delivery report before it returns the
//! per-partition acks. Readers are consumers assigned to one partition at an offset: they join
//! no group and commit nothing. A group member is a subscribed consumer with an eager
//! assignment strategy whose rebalance callbacks tell the handler of every move; it pauses what
//! it is assigned, because a member hands out ownership, not records. Commits and committed
//! offsets use a per-group consumer that never joins, or the member of that group this bus
//! made, while one lives (Kafka refuses commits from outside a group that has members). Every
//! failure of librdkafka or a broker is an [`eddy_log::Error::Broker`] naming the operation,
//! the topic and the partition; an unknown topic, a partition out of range, an empty batch and
//! a bad name are the same typed errors as the embedded log's.
//!
//! # Where Kafka differs from the embedded log
//!
//! - **Durability.** An ack means `acks=all`: every in-sync replica has the records in memory,
//!   not that anything was fsynced (Kafka relies on replication, not fsync). It is as strong as
//!   the cluster's `min.insync.replicas` (2 with replication factor 3, see the deployment
//!   guide) and unclean leader election being off.
//! - **Ack ranges.** The embedded log writes each partition's share of a produce call as one
//!   batch, so `base_offset..=last_offset` holds exactly that share. On Kafka, records of
//!   concurrent produce calls to one partition may interleave: the ack's range then also
//!   holds other calls' records. Order within one call's share is kept (the idempotent
//!   producer keeps order across retries). A record librdkafka reports delivered without an
//!   offset (the broker answered that the batch duplicates one it stored) widens no range and
//!   is logged as a warning.
//! - **Keys.** Placement is eddy's, not Kafka's: `PartitionChoice::ByKey` hashes with
//!   [`eddy_log::partition_by_key`] (with the record's placement salt, when the lag rule
//!   spreads its source) and produces to that partition explicitly, so a key lands in the same
//!   partitions on both buses (Kafka's own murmur2 partitioner is never used). The salt is not
//!   sent: the message's key is the record's.
//!   Unkeyed records of one call go to one partition, the next call's to the next one.
//! - **Timestamps.** Kafka keeps milliseconds; eddy nanoseconds. The Kafka timestamp is eddy's
//!   rounded down to the millisecond (so Kafka's time index and retention work) and the exact
//!   value travels in a last header, [`TIMESTAMP_HEADER`], which reading removes again, so
//!   eddy's records round-trip exactly. Messages written by other producers read with their
//!   Kafka timestamp in ns. A record without a timestamp gets the producing process's clock,
//!   not the broker's. A topic with `message.timestamp.type=LogAppendTime` keeps the broker's
//!   time as its Kafka timestamp; the header still carries eddy's.
//! - **Headers.** Kafka allows a header without a value; it reads as an empty value.
//! - **Offsets after retention.** Reading below a partition's first offset is
//!   [`eddy_log::Error::OffsetOutOfRange`] on both. Reading *past* the end differs: the
//!   embedded log waits for the offset to be written, Kafka answers out of range.
//! - **Retention.** `retention_ms` and `retention_bytes` become the topic's `retention.ms` and
//!   `retention.bytes` (`None` is -1, keep all) when [`eddy_log::Bus::ensure_topic`] creates
//!   it; an existing topic keeps its settings. Kafka deletes by time and size only:
//!   `retain_for_groups` (hold data until a group committed past it) has no equivalent, so the
//!   retention of a Kafka topic must be sized as a buffer longer than the digest can fall
//!   behind.
//! - **Segments and compaction.** `segment_ms` becomes `segment.ms` (time-based retention
//!   waits for a segment to roll, on both buses). `compacted` becomes `cleanup.policy=compact`
//!   (`compact,delete` with a `retention_ms`; else `delete`): Kafka then keeps only each key's newest record, while the embedded log
//!   keeps every record; the journals that use it are read so that both give the same state.
//! - **Other topic settings.** `compression` (Kafka compresses in the producer: set
//!   `compression.type` in [`KafkaConfig::properties`]), `segment_bytes`,
//!   `index_interval_bytes` and `max_batch_bytes` are not mapped: the cluster's defaults apply.
//! - **Message sizes.** The embedded log limits a record by the topic's `max_record_bytes` and
//!   a batch by `max_batch_bytes`. Kafka limits a record batch by the producer's
//!   `message.max.bytes` (1,000,000 bytes by default; set it in [`KafkaConfig::properties`])
//!   and the topic's `max.message.bytes`. A record over the producer's limit is
//!   `RecordTooLarge` before any of the call is sent; one the brokers refuse is an
//!   [`eddy_log::Error::Broker`].
//! - **Resources.** Each reader is its own librdkafka client (threads and connections), and
//!   waits at most 50 ms at the broker per fetch so that followers see records at once: far
//!   heavier than an embedded reader. Keep readers few and long-lived.
//! - **Compaction.** Neither bus compacts eddy's topics; a Kafka topic created elsewhere with
//!   `cleanup.policy=compact` has gaps in its offsets, which readers skip.
//! - **Epoch.** [`eddy_log::Bus::epoch`] is the Kafka cluster id, which changes when the
//!   cluster's storage is formatted anew. Each call asks the brokers (a metadata request);
//!   the embedded log reads a file. After the epoch changed, connect a new [`KafkaBus`]: this
//!   one remembers partition counts of topics the reset cluster may no longer have.
//! - **Groups.** The embedded log has one member per group, owning every partition; Kafka
//!   shares the partitions among members and moves them on rebalances. A member that stops
//!   polling for `session_timeout` (or dies) loses its partitions after that time, and
//!   librdkafka's own retries (a broker away for a while) are logged, not returned by
//!   [`eddy_log::GroupMember::poll`]. Topics are never auto-created
//!   (`allow.auto.create.topics=false`).
//!
//! With the `testing` feature, [`testing::Broker`] starts a Kafka-protocol broker on loopback
//! for tests.
//!
//! # The test broker's gaps
//!
//! That broker, tansu 0.6.0, is not Kafka, and its idempotent producer support loses records
//! once a produced message times out (details and measurements in docs/scale-out.md, "The
//! test broker's gaps"):
//!
//! - librdkafka then bumps the producer's epoch itself (KIP-360); tansu accepts only the epoch
//!   it issued and answers every later batch `PRODUCER_FENCED`, so every produce call fails
//!   while librdkafka bumps the epoch again and again;
//! - tansu answers `DUPLICATE_SEQUENCE_NUMBER` to any batch whose sequence is below the one it
//!   expects, stored or not, and librdkafka reports a duplicate as delivered: when the epoch
//!   wraps (after 32,767 bumps) to the one tansu accepts, with sequences restarted at 0, records
//!   are acknowledged and never stored.
//!
//! So a test or benchmark on it must not let messages time out (keep it fast), and a count
//! short of what was acknowledged after `ProducerFenced` errors is the broker's. Its end
//! offsets after multi-record batches, lookups by time and other gaps are listed in the same
//! place.

#![deny(missing_docs)]

mod bus;
mod config;
mod error;
mod member;
mod produce;
mod reader;
mod records;
#[cfg(feature = "testing")]
pub mod testing;

pub use bus::KafkaBus;
pub use config::KafkaConfig;
pub use records::TIMESTAMP_HEADER;
