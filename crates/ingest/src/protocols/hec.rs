//! Splunk HTTP Event Collector bodies.
//!
//! `/services/collector/event`: JSON event objects, one after another (a batch is the objects
//! concatenated, with or without whitespace between them). Each becomes an event:
//! - `event`: a string is the `@rawstring`; an object becomes fields (nested as dotted names)
//!   and its JSON the `@rawstring`; required;
//! - `time`: epoch seconds (a number or a string, with decimals) → `@timestamp`;
//! - `host` → tag `#host`, `sourcetype` → tag `#sourcetype`, `source` → field `source`;
//! - `index` → the repository of that name if there is one (the door decides), else the
//!   door's; kept as the field `index`;
//! - `fields`: indexed fields → fields.
//!
//! `/services/collector/raw`: each line is an event's `@rawstring`, with `host`, `source`,
//! `sourcetype` and `index` from the query string.

use std::collections::BTreeMap;

use eddy_event::{Event, Value};

use super::{event_at, ProtocolError};

const PROTOCOL: &str = "Splunk HEC";

/// Why an event body is refused, in HEC's terms.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HecError {
    /// HEC code 5: an empty body.
    #[error("No data")]
    NoData,
    /// HEC code 6: an object that does not parse; `event` is its 0-based number.
    #[error("Invalid data format: {0}")]
    InvalidFormat(ProtocolError, usize),
    /// HEC code 12: an object without `event`.
    #[error("Event field is required (event {0})")]
    EventRequired(usize),
    /// HEC code 13: `event` is empty.
    #[error("Event field cannot be blank (event {0})")]
    EventBlank(usize),
}

impl HecError {
    /// Its HEC `code`.
    pub fn code(&self) -> u16 {
        match self {
            HecError::NoData => 5,
            HecError::InvalidFormat(..) => 6,
            HecError::EventRequired(_) => 12,
            HecError::EventBlank(_) => 13,
        }
    }

    /// The 0-based number of the event at fault, if one is.
    pub fn event_number(&self) -> Option<usize> {
        match self {
            HecError::NoData => None,
            HecError::InvalidFormat(_, n)
            | HecError::EventRequired(n)
            | HecError::EventBlank(n) => Some(*n),
        }
    }
}

/// An event and the `index` it asked for.
#[derive(Debug)]
pub struct HecEvent {
    /// The event.
    pub event: Event,
    /// Its `index`, if given.
    pub index: Option<String>,
}

/// The events of an `/services/collector/event` body.
pub fn events(body: &[u8], now: i64) -> Result<Vec<HecEvent>, HecError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(HecError::NoData);
    }
    let mut out = Vec::new();
    let stream = serde_json::Deserializer::from_slice(body).into_iter::<serde_json::Value>();
    for (n, item) in stream.enumerate() {
        let item = item.map_err(|e| {
            HecError::InvalidFormat(
                ProtocolError::new(PROTOCOL, super::json_at(&e), e.to_string()),
                n,
            )
        })?;
        out.push(one(item, n, now)?);
    }
    Ok(out)
}

fn one(item: serde_json::Value, n: usize, now: i64) -> Result<HecEvent, HecError> {
    let serde_json::Value::Object(mut object) = item else {
        return Err(HecError::InvalidFormat(
            ProtocolError::new(PROTOCOL, format!("event {n}"), "not a JSON object"),
            n,
        ));
    };
    let event = object.remove("event").ok_or(HecError::EventRequired(n))?;
    let time = match object.get("time") {
        None | Some(serde_json::Value::Null) => None,
        Some(t) => {
            let seconds = match t {
                serde_json::Value::Number(x) => x.as_f64(),
                serde_json::Value::String(s) => s.trim().parse::<f64>().ok(),
                _ => None,
            };
            let ns = seconds
                .and_then(eddy_event::time::epoch_to_ns)
                .ok_or_else(|| {
                    HecError::InvalidFormat(
                        ProtocolError::new(
                            PROTOCOL,
                            format!("event {n}, field time"),
                            format!("{t} is not epoch seconds"),
                        ),
                        n,
                    )
                })?;
            Some(ns)
        }
    };
    let mut e = event_at(now, time);
    match event {
        serde_json::Value::String(s) if s.is_empty() => return Err(HecError::EventBlank(n)),
        serde_json::Value::Null => return Err(HecError::EventBlank(n)),
        serde_json::Value::String(s) => e.raw = Some(s),
        other => {
            e.raw = Some(other.to_string());
            eddy_event::flatten_json(other, "", &mut e.fields);
        }
    }
    let text = |v: &serde_json::Value| v.as_str().map_or_else(|| v.to_string(), str::to_string);
    if let Some(h) = object.get("host") {
        e.tags.insert("host".into(), text(h));
    }
    if let Some(s) = object.get("sourcetype") {
        e.tags.insert("sourcetype".into(), text(s));
    }
    if let Some(s) = object.get("source") {
        e.fields.insert("source".into(), Value::Str(text(s)));
    }
    let index = object.get("index").map(text);
    if let Some(i) = &index {
        e.fields.insert("index".into(), Value::Str(i.clone()));
    }
    if let Some(serde_json::Value::Object(fields)) = object.remove("fields") {
        for (k, v) in fields {
            eddy_event::flatten_json(v, &k, &mut e.fields);
        }
    }
    Ok(HecEvent { event: e, index })
}

/// The events of a `/services/collector/raw` body: one per non-blank line, with the query's
/// `host`, `source`, `sourcetype` and `index`.
pub fn raw(
    body: &[u8],
    query: &BTreeMap<String, String>,
    now: i64,
) -> Result<Vec<Event>, HecError> {
    let text = std::str::from_utf8(body).map_err(|e| {
        HecError::InvalidFormat(
            ProtocolError::new(
                PROTOCOL,
                format!("byte {}", e.valid_up_to()),
                "the body is not UTF-8",
            ),
            0,
        )
    })?;
    let mut out = Vec::new();
    for line in text.lines().map(|l| l.trim_end_matches('\r')) {
        if line.trim().is_empty() {
            continue;
        }
        let mut e = event_at(now, None);
        e.raw = Some(line.to_string());
        if let Some(h) = query.get("host") {
            e.tags.insert("host".into(), h.clone());
        }
        if let Some(s) = query.get("sourcetype") {
            e.tags.insert("sourcetype".into(), s.clone());
        }
        if let Some(s) = query.get("source") {
            e.fields.insert("source".into(), Value::Str(s.clone()));
        }
        if let Some(i) = query.get("index") {
            e.fields.insert("index".into(), Value::Str(i.clone()));
        }
        out.push(e);
    }
    if out.is_empty() {
        return Err(HecError::NoData);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn concatenated_events_map_time_host_source_sourcetype_index_and_fields() {
        let body = br#"{"time": 1426279439.5, "host": "web-1", "source": "app.log", "sourcetype": "access", "index": "web", "event": "GET / 200", "fields": {"dc": "eu"}}{"event": {"msg": "hi", "n": {"a": 1}}, "time": "1426279440"}
{"event":"third"}"#;
        let got = events(body, 7).unwrap();
        assert_eq!(got.len(), 3);
        let a = &got[0];
        assert_eq!(a.index.as_deref(), Some("web"));
        assert_eq!(a.event.timestamp, 1_426_279_439_500_000_000);
        assert_eq!(a.event.raw.as_deref(), Some("GET / 200"));
        assert_eq!(a.event.tags["host"], "web-1");
        assert_eq!(a.event.tags["sourcetype"], "access");
        assert_eq!(a.event.fields["source"], Value::from("app.log"));
        assert_eq!(a.event.fields["dc"], Value::from("eu"));
        assert_eq!(got[1].event.fields["n.a"], Value::Int(1));
        assert_eq!(got[1].event.timestamp, 1_426_279_440_000_000_000);
        assert_eq!(got[2].event.timestamp, 7);
    }

    #[test]
    fn refusals_carry_hec_codes_and_the_event_number() {
        assert_eq!(events(b"  ", 0).unwrap_err().code(), 5);
        let e = events(br#"{"event":"a"}{"event": tru}"#, 0).unwrap_err();
        assert_eq!((e.code(), e.event_number()), (6, Some(1)));
        let e = events(br#"{"event":"a"}{"host":"x"}"#, 0).unwrap_err();
        assert_eq!((e.code(), e.event_number()), (12, Some(1)));
        assert_eq!(events(br#"{"event":""}"#, 0).unwrap_err().code(), 13);
        assert_eq!(
            events(br#"{"event":"x","time":"soon"}"#, 0)
                .unwrap_err()
                .code(),
            6
        );
    }

    #[test]
    fn raw_lines_take_the_query_metadata() {
        let q = BTreeMap::from([("host".to_string(), "h".to_string())]);
        let got = raw(b"one\r\n\ntwo\n", &q, 0).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].raw.as_deref(), Some("two"));
        assert_eq!(got[1].tags["host"], "h");
        assert_eq!(raw(b"\n", &q, 0).unwrap_err().code(), 5);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = events(&body, 0).map_err(|e| e.to_string());
            let _ = raw(&body, &BTreeMap::new(), 0);
        }
    }
}
