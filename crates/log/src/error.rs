//! The log's error type: one variant per cause, each naming the value, the limit or the place.

use std::path::PathBuf;

pub use eddy_base::io::IoError;

/// Everything the log can refuse or fail at.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O operation failed; its context says which and on what path.
    #[error(transparent)]
    Io(#[from] IoError),

    /// A topic or consumer group name breaks the naming rules.
    #[error("invalid {kind} name {name:?}: {reason}")]
    InvalidName {
        /// "topic" or "consumer group".
        kind: &'static str,
        /// The name as given.
        name: String,
        /// Which rule it breaks.
        reason: String,
    },

    /// A setting is out of its allowed range.
    #[error("invalid setting {setting} = {value}: {reason}")]
    InvalidConfig {
        /// The setting's name.
        setting: &'static str,
        /// The value as given.
        value: String,
        /// The allowed range.
        reason: String,
    },

    /// The topic does not exist.
    #[error("topic {0:?} does not exist")]
    UnknownTopic(String),

    /// The topic already exists.
    #[error("topic {0:?} already exists")]
    TopicExists(String),

    /// A partition number is not below the topic's partition count.
    #[error("partition {partition} is out of range for topic {topic:?}, which has {partitions} partitions (0..={max})", max = partitions.saturating_sub(1))]
    PartitionOutOfRange {
        /// The topic.
        topic: String,
        /// The partition asked for.
        partition: u32,
        /// How many partitions the topic has.
        partitions: u32,
    },

    /// One record is larger than the topic allows.
    #[error("record {index} of the batch is {size} bytes, over the limit of {limit} bytes (max_record_bytes)")]
    RecordTooLarge {
        /// Position of the record in the appended batch.
        index: usize,
        /// Encoded size of its key, value and headers.
        size: usize,
        /// The topic's `max_record_bytes`.
        limit: usize,
    },

    /// A whole batch is larger than the topic allows.
    #[error("batch of {records} records is {size} bytes encoded, over the limit of {limit} bytes (max_batch_bytes); split it")]
    BatchTooLarge {
        /// Records in the batch.
        records: usize,
        /// Encoded size.
        size: usize,
        /// The topic's `max_batch_bytes`.
        limit: usize,
    },

    /// An append with no records.
    #[error("cannot append an empty batch")]
    EmptyBatch,

    /// A read asked for an offset the partition does not hold.
    #[error("offset {requested} is out of range for {topic}/{partition}: the partition holds offsets {earliest}..{latest} (retention may have deleted older data)")]
    OffsetOutOfRange {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The offset asked for.
        requested: u64,
        /// The oldest offset still held.
        earliest: u64,
        /// The next offset to be written.
        latest: u64,
    },

    /// Bytes on disk are not a valid batch.
    #[error("corrupt data in {} at byte {position}: {reason}", path.display())]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// Byte offset of the bad batch in that file.
        position: u64,
        /// What check failed.
        reason: CorruptReason,
    },

    /// A batch is laid out by a layout this process has not registered (see [`crate::layout`](mod@crate::layout)):
    /// its bytes are whole, but this process cannot read its records. Not damage, so readers
    /// that skip damage do not skip it.
    #[error("{} at byte {position}: {}", path.display(), CorruptReason::UnknownLayout(*layout))]
    UnknownLayout {
        /// The segment file.
        path: PathBuf,
        /// Byte offset of the batch in that file.
        position: u64,
        /// The layout id the payload starts with.
        layout: u8,
    },

    /// This bus does not store batches laid out above it ([`crate::Bus::takes_laid_out`] is
    /// false): produce records instead.
    #[error("the {bus} bus does not take batches laid out above it; produce records instead")]
    LaidOutUnsupported {
        /// Which bus ("kafka").
        bus: &'static str,
    },

    /// An earlier write or fsync failed, so the partition refuses further writes: the state of the
    /// file after a failed fsync is unknown, and pretending otherwise would acknowledge lost data.
    #[error("partition {topic}/{partition} refuses writes after an earlier failure ({cause}); reopen the log to recover")]
    Poisoned {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The first failure.
        cause: String,
    },

    /// Another process holds the data directory.
    #[error(
        "data directory {} is in use by another eddy process{} (lock file {})",
        dir.display(),
        holder.map(|pid| format!(", pid {pid}")).unwrap_or_default(),
        dir.join("LOCK").display()
    )]
    Locked {
        /// The data directory.
        dir: PathBuf,
        /// The process id the holder wrote into the lock file, when it could be read.
        holder: Option<u32>,
    },

    /// The log was opened read-only (another process writes it).
    #[error(
        "the log is open read-only (another process owns it); writes must go through that process"
    )]
    ReadOnly,

    /// The log is shut down.
    #[error("the log is closed")]
    Closed,

    /// A bus other than the embedded log (a Kafka broker) refused or failed an operation.
    #[error("{bus} bus: {operation} failed: {message}")]
    Broker {
        /// Which bus ("kafka").
        bus: &'static str,
        /// What was being done, with the topic and partition where there is one.
        operation: String,
        /// The broker's or client's own words.
        message: String,
    },

    /// A metadata file (topic config, group offsets) cannot be parsed.
    #[error("cannot parse {}: {reason}", path.display())]
    BadMetadata {
        /// The file.
        path: PathBuf,
        /// Why it is invalid.
        reason: String,
    },
}

/// Why a batch failed verification. Kept separate so the decoder can report it without a path,
/// and the segment adds the path and position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CorruptReason {
    /// The header's length field is impossible.
    #[error("batch length {0} is invalid")]
    BadLength(u64),
    /// Unknown format version.
    #[error("unknown batch format version {0}")]
    BadMagic(u8),
    /// Attribute bits that no version defines.
    #[error("unknown attributes {0:#04x}")]
    BadAttributes(u8),
    /// The CRC does not match the contents.
    #[error("CRC32C mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Crc {
        /// CRC in the header.
        stored: u32,
        /// CRC of the bytes.
        computed: u32,
    },
    /// The batch's base offset breaks the partition's sequence.
    #[error("batch base offset {found} where {expected} was expected")]
    OffsetGap {
        /// The next offset the partition expected.
        expected: u64,
        /// The base offset in the header.
        found: u64,
    },
    /// The payload did not decompress.
    #[error("payload does not decompress: {0}")]
    Decompress(String),
    /// The records inside the payload are malformed.
    #[error("malformed record {index}: {what}")]
    Record {
        /// Position of the record in the batch.
        index: u32,
        /// What was wrong.
        what: &'static str,
    },
    /// The file ends inside a batch.
    #[error("file ends inside a batch ({needed} more bytes needed)")]
    Truncated {
        /// Bytes missing.
        needed: u64,
    },
    /// A laid-out batch (see [`crate::layout`](mod@crate::layout)) names a layout this process has not registered.
    /// Not damage: the batch's CRC matched; this process just cannot turn it into records.
    #[error("a batch laid out by layout {0} cannot be read by this process, which has no layout {0} registered; the batch is not damaged (its CRC matches), only a process that registers the layout (the eddy server) can read its records")]
    UnknownLayout(u8),
    /// A laid-out batch's layout refused its payload, or gave a different number of records
    /// than the header counts.
    #[error("laid-out batch (layout {id}) does not decode: {message}")]
    Layout {
        /// The layout id.
        id: u8,
        /// The layout's own words.
        message: String,
    },
}

/// The log's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) use eddy_base::io::IoContext;
