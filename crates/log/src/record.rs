//! Records as producers hand them in and as readers get them back.

use bytes::Bytes;

/// A named header value carried with a record (e.g. a schema id or a trace id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Header name, UTF-8.
    pub name: String,
    /// Header value, any bytes.
    pub value: Bytes,
}

/// A record to append: key, value, timestamp and headers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    /// Optional key; records with the same key go to the same partition.
    pub key: Option<Bytes>,
    /// The payload.
    pub value: Bytes,
    /// Event time in ns since the Unix epoch; `None` means "the time of the append".
    pub timestamp: Option<i64>,
    /// Headers, in order.
    pub headers: Vec<Header>,
    /// Which of its key's partitions the record goes to when its data source is spread over
    /// several (see [`crate::partition_for_salted_key`]); 0, the default, is the key's own
    /// partition. Only placement: the bus does not store it, and the key stays the record's.
    pub salt: u32,
}

impl Record {
    /// A record with just a value.
    pub fn new(value: impl Into<Bytes>) -> Record {
        Record {
            value: value.into(),
            ..Record::default()
        }
    }

    /// Sets the key.
    pub fn with_key(mut self, key: impl Into<Bytes>) -> Record {
        self.key = Some(key.into());
        self
    }

    /// Sets the timestamp (ns since the Unix epoch).
    pub fn with_timestamp(mut self, ns: i64) -> Record {
        self.timestamp = Some(ns);
        self
    }

    /// Sets the placement salt (see [`Record::salt`]).
    pub fn with_salt(mut self, salt: u32) -> Record {
        self.salt = salt;
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Bytes>) -> Record {
        self.headers.push(Header {
            name: name.into(),
            value: value.into(),
        });
        self
    }
}

/// A record read back from a partition, with the offset and timestamp the log holds for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// Position in the partition.
    pub offset: u64,
    /// Timestamp in ns since the Unix epoch.
    pub timestamp: i64,
    /// Key, if the producer gave one.
    pub key: Option<Bytes>,
    /// The payload.
    pub value: Bytes,
    /// Headers, in order.
    pub headers: Vec<Header>,
}

/// Now, in ns since the Unix epoch; see [`eddy_base::time::now_ns`] for its overflow policy.
pub use eddy_base::time::now_ns;
