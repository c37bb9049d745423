//! Record layouts: batches whose records section a layer above the log lays out.
//!
//! A batch with the [`crate::batch::LAID_OUT`] attribute carries a payload the log does not
//! interpret (the segment store's columnar block of a repository topic's events, say). Its first
//! byte names the layout. The log still numbers its records (one offset each), CRCs, indexes and
//! fsyncs it like any other batch; only turning the payload back into records needs the layout.
//!
//! Layouts live in a process-wide registry rather than being handed to every `Log::open`: the
//! log sits below the crates that define them, and only the process that writes laid-out batches
//! (which registers its layouts at start) needs to read their records. Recovery, damage search
//! and retention never need a layout; a reader that meets a batch whose layout this process has
//! not registered gets [`crate::Error::UnknownLayout`].

use std::sync::{Arc, OnceLock};

use bytes::Bytes;

/// One record of a laid-out batch, as its layout gives it back. Laid-out records have no
/// headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaidOutRecord {
    /// Timestamp, ns since the Unix epoch.
    pub timestamp: i64,
    /// Key, if the record has one.
    pub key: Option<Bytes>,
    /// The record's value.
    pub value: Bytes,
}

/// Turns the payload of a laid-out batch back into records.
pub trait RecordLayout: Send + Sync {
    /// The `count` records of `payload` (whose first byte is this layout's id), in offset order.
    /// An error says why the payload is malformed; the log reports it as corrupt data at the
    /// batch's place (the CRC matched, so the bytes are as written).
    fn records(&self, payload: &Bytes, count: u32) -> Result<Vec<LaidOutRecord>, String>;
}

/// One slot per layout id: set once, then read without a lock.
static LAYOUTS: [OnceLock<Arc<dyn RecordLayout>>; 256] = [const { OnceLock::new() }; 256];

/// Registers the layout whose payloads start with byte `id` (a second registration of an id is
/// ignored: the first stays, so readers never see an id change meaning mid-run).
pub fn register_layout(id: u8, layout: Arc<dyn RecordLayout>) {
    if LAYOUTS[usize::from(id)].set(layout).is_err() {
        tracing::debug!(id, "record layout already registered; keeping the first");
    }
}

/// The layout registered for `id`, if any.
pub fn layout(id: u8) -> Option<Arc<dyn RecordLayout>> {
    LAYOUTS[usize::from(id)].get().cloned()
}
