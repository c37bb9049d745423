//! eddy's query language and engine.
//!
//! A query is a pipeline, `error status>=500 | groupBy(host, function=count())`: filters and
//! per-event steps, then collecting stages (aggregates, sorts) whose state merges across
//! threads. [`syntax`] parses it with positions for errors, [`filter`] says what it requires so
//! the store can skip segments and blocks, [`engine`] holds the operators and [`run`] runs a
//! query over a repository. The language is described in `docs/query-language.md`.

#![deny(missing_docs)]

pub mod blockwise;
pub mod engine;
pub mod expr;
pub mod fields;
pub mod filter;
pub mod format;
pub mod live;
pub mod run;
pub mod search;
pub mod sketch;
pub mod syntax;

pub use live::{Added, Live, LiveError, Window};
pub use run::{prepare, run, run_with_partials, Answer, Options, Partials, Prepared, Progress};
pub use syntax::{parse, QueryError};
