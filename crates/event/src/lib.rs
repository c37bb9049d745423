//! eddy's event model and line parsers, shared by every door and everything downstream.
//!
//! An [`Event`] has a time (`@timestamp`, ns), an arrival time, a time-ordered id (UUIDv7), the
//! original line (`@rawstring`), tags that form its data source, and typed [`Value`] fields
//! with nested JSON flattened to dotted names. A [`Parser`] (`json`, `kv`, `accesslog`, `syslog`, `statsd`, `none`)
//! turns a line into an event and [`time`] finds the event's own time in common fields and
//! formats; a bad line is a [`ParseError`] naming the column, the field and the reason. [`codec`]
//! is the binary form of an event as a bus record value.

#![deny(missing_docs)]

#[cfg(any(test, feature = "arbitrary"))]
pub mod arbitrary;
pub mod codec;
mod event;
mod fields;
pub mod parse;
pub mod time;
pub mod units;
mod value;
pub mod wire;

pub use event::{client_id, flatten_json, new_id, Event, MAX_CLIENT_ID_BYTES};
pub use fields::FlatFields;
pub use parse::{ParseError, Parser};
pub use value::{Value, ValueRef};
