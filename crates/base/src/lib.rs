//! The plumbing every eddy crate needs and none owns: it sits at the bottom of the workspace,
//! under `eddy-event` and `eddy-log`, and depends on nothing of eddy's.
//!
//! Each module holds one concern with one documented policy, so the crates above share it
//! instead of keeping copies that drift apart:
//! - [`sync`]: taking a `Mutex` or `RwLock` whose holder panicked (the guard is recovered);
//! - [`fs`]: replacing a file atomically and durably, and syncing a directory;
//! - [`io`]: [`io::IoError`], an I/O error with what was being done, and [`io::IoContext`]
//!   that attaches it;
//! - [`time`]: the wall clock in ns since the Unix epoch;
//! - [`varint`] and [`zigzag`]: the integer encodings of eddy's binary formats;
//! - [`codec`]: the compression codecs and the numbers each on-disk format gives them.
#![deny(missing_docs)]

pub mod codec;
pub mod fs;
pub mod io;
pub mod sync;
pub mod time;
pub mod varint;
pub mod zigzag;
