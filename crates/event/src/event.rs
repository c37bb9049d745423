//! The event: what every door produces and everything downstream consumes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::value::Value;

/// One event.
///
/// `timestamp` is the event's own time (detected from its content, else the arrival time),
/// `ingest_timestamp` the arrival time; both in ns since the Unix epoch, UTC. `tags` (`#name`)
/// form the data source key; `fields` hold everything else, nested JSON flattened to dotted
/// names (`http.request.method`, arrays by index: `items.0`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// `@timestamp`, ns.
    #[serde(rename = "@timestamp")]
    pub timestamp: i64,
    /// `@ingesttimestamp`, ns.
    #[serde(rename = "@ingesttimestamp")]
    pub ingest_timestamp: i64,
    /// `@id`: a UUIDv7 (time-ordered), assigned at ingest unless the client sent one.
    #[serde(rename = "@id")]
    pub id: Uuid,
    /// The client sent `@id` (rather than eddy assigning it): such events are de-duplicated,
    /// because a client that retries resends the same id.
    #[serde(skip)]
    pub id_from_client: bool,
    /// The parser that made `fields` from `raw`, if `fields` are exactly what it makes (the
    /// store keeps only `raw` then, and the parser re-derives the fields when they are read).
    /// Whoever changes `fields` or `raw` afterwards must clear it.
    #[serde(skip)]
    pub parsed_by: Option<crate::Parser>,
    /// `@rawstring`: the original line, when there is one.
    #[serde(
        rename = "@rawstring",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub raw: Option<String>,
    /// Tags, without the `#`.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Typed fields.
    #[serde(default)]
    pub fields: BTreeMap<String, Value>,
}

impl Event {
    /// An event that arrived at `now` (ns), with a fresh UUIDv7 and no content yet.
    pub fn new(now: i64) -> Event {
        Event {
            id: new_id(now),
            ..Event::unnamed(now)
        }
    }

    /// [`Event::new`] with the nil id, for a reader that sets or ignores the id (making one
    /// costs a counter shared by every thread).
    pub fn unnamed(now: i64) -> Event {
        Event {
            timestamp: now,
            ingest_timestamp: now,
            id: uuid::Uuid::nil(),
            id_from_client: false,
            parsed_by: None,
            raw: None,
            tags: BTreeMap::new(),
            fields: BTreeMap::new(),
        }
    }

    /// The data source key: the tags as `#name=value` pairs in name order.
    pub fn data_source(&self) -> String {
        let mut out = String::new();
        for (k, v) in &self.tags {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push('#');
            out.push_str(k);
            out.push('=');
            out.push_str(v);
        }
        out
    }
}

/// A UUIDv7 for an event that arrived at `now_ns`: the arrival time in ms, then a random
/// 26-bit number drawn once per process, then a 48-bit counter (RFC 9562 §6.2, method 1).
///
/// Unique across processes by the random part and the time, within one by the counter; and,
/// unlike 74 fresh random bits per event, cheap to make and compressible when stored in order
/// (a random id would cost about as much as a compressed 200-byte log line).
pub fn new_id(now_ns: i64) -> Uuid {
    static PROCESS: OnceLock<[u8; 4]> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let process = PROCESS.get_or_init(|| {
        let r = Uuid::new_v4();
        let b = r.as_bytes();
        [b[0], b[1], b[2], b[3]]
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed).to_be_bytes();
    let mut tail = [0u8; 10];
    tail[..4].copy_from_slice(process);
    tail[4..].copy_from_slice(&n[2..]);
    let ms = u64::try_from(now_ns.div_euclid(1_000_000)).unwrap_or(0);
    uuid::Builder::from_unix_timestamp_millis(ms, &tail).into_uuid()
}

/// The longest `@id` a client may send, in bytes.
pub const MAX_CLIENT_ID_BYTES: usize = 256;

/// The event id for a client's `@id`: a UUID as it is; any other text up to
/// [`MAX_CLIENT_ID_BYTES`] maps to a UUIDv8 made from its SHA-256, so the same text always gives
/// the same id (what de-duplication compares). Err: why the text cannot be an id.
pub fn client_id(text: &str) -> Result<Uuid, String> {
    if let Ok(id) = Uuid::parse_str(text) {
        return Ok(id);
    }
    if text.is_empty() {
        return Err("@id is empty".into());
    }
    if text.len() > MAX_CLIENT_ID_BYTES {
        return Err(format!(
            "@id is {} bytes long; at most {MAX_CLIENT_ID_BYTES} bytes are allowed",
            text.len()
        ));
    }
    use sha2::Digest;
    let digest = sha2::Sha256::new()
        .chain_update(b"eddy client @id\0")
        .chain_update(text.as_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    Ok(uuid::Builder::from_custom_bytes(bytes).into_uuid())
}

/// Flattens a JSON value into dotted field names: objects by key, arrays by index. A scalar at
/// the top goes under `prefix` (or `value` if the prefix is empty).
pub fn flatten_json(value: serde_json::Value, prefix: &str, out: &mut BTreeMap<String, Value>) {
    let key = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                flatten_json(v, &key(&k), out);
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.into_iter().enumerate() {
                flatten_json(v, &key(&i.to_string()), out);
            }
        }
        scalar => {
            let name = if prefix.is_empty() {
                "value".to_string()
            } else {
                prefix.to_string()
            };
            let v = match scalar {
                serde_json::Value::Null => Value::Null,
                serde_json::Value::Bool(b) => Value::Bool(b),
                serde_json::Value::Number(n) => match n.as_i64() {
                    Some(i) => Value::Int(i),
                    None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
                },
                serde_json::Value::String(s) => Value::Str(s),
                serde_json::Value::Array(_) | serde_json::Value::Object(_) => return,
            };
            out.insert(name, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattens_nested_json_to_dotted_names() {
        let v: serde_json::Value =
            serde_json::from_str(r#"{"a":{"b":1,"c":[true,{"d":"x"}]},"e":null,"f":1.5}"#).unwrap();
        let mut out = BTreeMap::new();
        flatten_json(v, "", &mut out);
        assert_eq!(out["a.b"], Value::Int(1));
        assert_eq!(out["a.c.0"], Value::Bool(true));
        assert_eq!(out["a.c.1.d"], Value::Str("x".into()));
        assert_eq!(out["e"], Value::Null);
        assert_eq!(out["f"], Value::Float(1.5));
    }

    #[test]
    fn ids_are_time_ordered_v7_and_unique_within_a_millisecond() {
        let a = new_id(1_000_000_000_000);
        let b = new_id(2_000_000_000_000);
        assert_eq!(a.get_version_num(), 7);
        assert_eq!(a.get_variant(), uuid::Variant::RFC4122);
        assert!(a < b);
        let same_ms: std::collections::HashSet<Uuid> =
            (0..10_000).map(|_| new_id(3_000_000_000_000)).collect();
        assert_eq!(same_ms.len(), 10_000);
        let t = new_id(1_795_500_000_123_456_789).get_timestamp().unwrap();
        assert_eq!(t.to_unix(), (1_795_500_000, 123_000_000));
    }

    #[test]
    fn data_source_is_the_sorted_tags() {
        let mut e = Event::new(0);
        e.tags.insert("type".into(), "accesslog".into());
        e.tags.insert("host".into(), "web-1".into());
        assert_eq!(e.data_source(), "#host=web-1 #type=accesslog");
    }
}
