//! The bodies of the protocols users' shippers already speak, turned into events: pure
//! functions from bytes to [`Event`]s or a [`ProtocolError`] naming what is wrong and where.
//! No I/O here: the HTTP layer reads the body, answers in the protocol's own form and stores
//! the events through the same path as the native door (budget, gatekeeper, de-duplication,
//! durable acknowledgement).
//!
//! - [`otlp`]: OpenTelemetry logs and metrics (protobuf and JSON);
//! - [`elastic`]: Elasticsearch `_bulk` NDJSON;
//! - [`loki`]: Loki push (JSON, protobuf with snappy);
//! - [`influx`]: Influx line protocol;
//! - [`hec`]: Splunk HTTP Event Collector (events, raw).

pub mod elastic;
pub mod hec;
pub mod influx;
pub mod loki;
pub mod otlp;

use std::collections::BTreeMap;

use eddy_event::{Event, Value};

/// Why a protocol body cannot be read: what is wrong and where.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{protocol} body: {reason} (at {at})")]
pub struct ProtocolError {
    /// The protocol (`OTLP logs`, `Loki push`, …).
    pub protocol: &'static str,
    /// Where: a byte offset, a line, a JSON path.
    pub at: String,
    /// What is wrong.
    pub reason: String,
}

impl ProtocolError {
    pub(crate) fn new(
        protocol: &'static str,
        at: impl Into<String>,
        reason: impl Into<String>,
    ) -> ProtocolError {
        ProtocolError {
            protocol,
            at: at.into(),
            reason: reason.into(),
        }
    }
}

/// Where a JSON error is, as `line L, column C`.
pub(crate) fn json_at(e: &serde_json::Error) -> String {
    format!("line {}, column {}", e.line(), e.column())
}

/// Sets a field, unless the door already set one by that name: then it goes under
/// `<prefix>.<name>` (a client's attribute never overwrites what the door derived).
pub(crate) fn set_field(
    fields: &mut BTreeMap<String, Value>,
    taken: &[&str],
    prefix: &str,
    name: String,
    value: Value,
) {
    if taken.contains(&name.as_str()) {
        fields.insert(format!("{prefix}.{name}"), value);
    } else {
        fields.insert(name, value);
    }
}

/// A fresh event at `now` with `@timestamp` `at` where one was given.
pub(crate) fn event_at(now: i64, at: Option<i64>) -> Event {
    let mut e = Event::new(now);
    if let Some(t) = at {
        e.timestamp = t;
    }
    e
}
