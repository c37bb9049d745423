//! The segment store: where the digest keeps each repository's events, compressed and prunable.
//!
//! [`block`] lays out (in the codes of [`layout`], texts cut by [`split`]) and compresses runs of
//! events with their time range and a [`bloom`] filter of their [`tokens`]; [`segment`] is the
//! file that holds a data source's blocks behind a footer; the [`catalogue`] is the small index
//! of every segment; [`store`] holds a repository's segments and work in progress and answers a
//! [`scan`] with a [`plan`] of the blocks to read; [`digest`] turns the bus into segments, and
//! [`maintenance`] applies retention and merges small segments; the digest tells its
//! [`progress`] (position and latency, for the lag rule); [`repair`] replaces damaged
//! segments with what their readable blocks and the bus still hold. A query reads a block as a
//! [`view`]: its columns decoded, events built only where needed.

#![deny(missing_docs)]

pub mod block;
pub mod bloom;
pub mod bus_block;
pub mod catalogue;
pub mod columns;
pub mod digest;
pub mod layout;
pub mod maintenance;
pub mod plan;
pub mod progress;
pub mod repair;
pub mod scan;
pub mod sealed_marks;
pub mod sections;
pub mod segment;
pub mod split;
pub mod store;
pub mod template;
pub mod template_walk;
pub mod tokens;
pub mod view;

pub use block::{BlockBuilder, Compression};
pub use bloom::{BloomError, BloomFilter};
pub use digest::Digest;
pub use plan::{BlockTask, Cut, Plan, ScanStats};
pub use scan::Scan;
pub use segment::{Footer, SegmentError, SegmentFile, SegmentInfo, SegmentWriter};
pub use store::{wip_file_raw_bytes, Appender, RepoStore, StoreConfig, WorkInProgress};
pub use tokens::{event_tokens, is_whole_token, text_tokens};
pub use view::{BlockView, Bound, Deferred, Needs, Parts, ReadBuffers, SplitColumns, TextBound};
