//! eddy's query language and engine.
//!
//! A query is a pipeline, `error status>=500 | groupBy(host, function=count())`: filters and
//! per-event steps, then collecting stages (aggregates, sorts) whose state merges across
//! threads. The modules, from the text to the answer:
//!
//! - [`syntax`] parses the text, with positions for errors; [`expr`] checks and evaluates the
//!   expressions of `eval` and `:=`, [`format`](mod@format) the format strings of `format()`;
//! - [`filter`] compiles the search conditions and says what they require, so the store can
//!   skip segments and blocks; [`search`] finds words and patterns in text, and [`blockwise`]
//!   decides text conditions for a whole block at once; [`columnar`] answers field filters and
//!   aggregates from a block's field columns without building events;
//! - [`compile`] turns a parsed query into a program of the operators that [`engine`] holds
//!   (per-event steps, collecting stages and their mergeable state, over [`fields`] of events
//!   and the [`sketch`]es of approximate aggregates);
//! - [`run`](mod@run) runs a query over a repository; [`partial`] carries a node's unfinished
//!   answer to the node that merges several (queries across nodes); [`live`] keeps one running as data streams in;
//!   [`discover`] says which fields a repository's events have, over the same scan.
//!
//! The language is described in `docs/query-language.md`.

#![deny(missing_docs)]

pub mod blockwise;
pub mod columnar;
pub mod compile;
pub mod discover;
pub mod engine;
pub mod expr;
pub mod fields;
pub mod filter;
pub mod format;
pub mod live;
pub mod partial;
pub mod regex_dfa;
pub mod run;
pub mod search;
pub mod sketch;
pub mod syntax;

pub use live::{Added, Live, LiveError, Window};
pub use partial::{Partial, PartialError};
pub use run::{
    prepare, run, run_partial, run_with_partials, Answer, Options, Partials, Prepared, Progress,
};
pub use syntax::{parse, QueryError};
