//! The segment store, where the digest will keep events compressed and prunable (issue 4).
//!
//! So far its pruning primitives: [`tokens`] defines the searchable tokens of an event (the
//! query engine derives a search's required tokens with the same function), and [`bloom`] is
//! the per-block filter that says "cannot contain" for a token, so a search skips blocks
//! without decompressing them.

#![deny(missing_docs)]

pub mod bloom;
pub mod tokens;

pub use bloom::{BloomError, BloomFilter};
pub use tokens::{event_tokens, text_tokens};
