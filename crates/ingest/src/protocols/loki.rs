//! Loki push bodies (`/loki/api/v1/push`): JSON, or protobuf (`logproto.PushRequest`, as
//! prost structs below) compressed with snappy's block format, as Promtail and Grafana Alloy
//! send it.
//!
//! Each entry becomes an event: `@timestamp` its time (ns), `@rawstring` its line, the
//! stream's labels its tags (`{job="api", host="web-1"}` → `#job`, `#host`), and its
//! structured metadata its fields.

use std::collections::BTreeMap;

use eddy_event::{Event, Value};
use prost::Message;

use super::{event_at, ProtocolError};

const PROTOCOL: &str = "Loki push";

/// `logproto.PushRequest` and its parts (the fields eddy reads).
#[allow(missing_docs)]
pub mod proto {
    use prost::Message;

    #[derive(Clone, PartialEq, Message)]
    pub struct PushRequest {
        #[prost(message, repeated, tag = "1")]
        pub streams: Vec<Stream>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct Stream {
        #[prost(string, tag = "1")]
        pub labels: String,
        #[prost(message, repeated, tag = "2")]
        pub entries: Vec<Entry>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct Entry {
        #[prost(message, optional, tag = "1")]
        pub timestamp: Option<Timestamp>,
        #[prost(string, tag = "2")]
        pub line: String,
        #[prost(message, repeated, tag = "3")]
        pub structured_metadata: Vec<LabelPair>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct LabelPair {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    /// `google.protobuf.Timestamp`.
    #[derive(Clone, PartialEq, Message)]
    pub struct Timestamp {
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }
}

/// The events of a JSON push body.
pub fn json(body: &[u8], now: i64) -> Result<Vec<Event>, ProtocolError> {
    #[derive(serde::Deserialize)]
    struct Push {
        streams: Vec<JsonStream>,
    }
    #[derive(serde::Deserialize)]
    struct JsonStream {
        #[serde(default)]
        stream: BTreeMap<String, String>,
        values: Vec<Vec<serde_json::Value>>,
    }
    let push: Push = serde_json::from_slice(body)
        .map_err(|e| ProtocolError::new(PROTOCOL, super::json_at(&e), e.to_string()))?;
    let mut events = Vec::new();
    for (s, stream) in push.streams.into_iter().enumerate() {
        for (v, value) in stream.values.into_iter().enumerate() {
            let at = || format!("streams[{s}].values[{v}]");
            let (time, line, metadata) = match value.as_slice() {
                [t, l] => (t, l, None),
                [t, l, m] => (t, l, Some(m)),
                _ => {
                    return Err(ProtocolError::new(
                        PROTOCOL,
                        at(),
                        "an entry is [\"<unix ns>\", \"<line>\"] or [\"<unix ns>\", \"<line>\", {metadata}]",
                    ))
                }
            };
            let time: i64 = time.as_str().and_then(|t| t.parse().ok()).ok_or_else(|| {
                ProtocolError::new(
                    PROTOCOL,
                    at(),
                    format!("the time {time} is not a string of Unix nanoseconds"),
                )
            })?;
            let line = line
                .as_str()
                .ok_or_else(|| ProtocolError::new(PROTOCOL, at(), "the line is not a string"))?;
            let mut e = entry(&stream.stream, time, line, now);
            if let Some(m) = metadata {
                let m = m.as_object().ok_or_else(|| {
                    ProtocolError::new(PROTOCOL, at(), "structured metadata is not an object")
                })?;
                for (k, v) in m {
                    let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                    e.fields.insert(k.clone(), Value::Str(v));
                }
            }
            events.push(e);
        }
    }
    Ok(events)
}

/// The events of a snappy-compressed protobuf push body.
pub fn protobuf(body: &[u8], max_body: usize, now: i64) -> Result<Vec<Event>, ProtocolError> {
    let size = snap::raw::decompress_len(body)
        .map_err(|e| ProtocolError::new(PROTOCOL, "byte 0", format!("not snappy: {e}")))?;
    if size > max_body {
        return Err(ProtocolError::new(
            PROTOCOL,
            "byte 0",
            format!(
                "decompresses to {size} bytes, over the limit of {max_body} (http.max_body_bytes)"
            ),
        ));
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| {
            ProtocolError::new(
                PROTOCOL,
                format!("{} snappy bytes", body.len()),
                format!("not snappy: {e}"),
            )
        })?;
    let push = proto::PushRequest::decode(&raw[..]).map_err(|e| {
        ProtocolError::new(
            PROTOCOL,
            format!("{} bytes of protobuf", raw.len()),
            e.to_string(),
        )
    })?;
    let mut events = Vec::new();
    for (s, stream) in push.streams.into_iter().enumerate() {
        let labels = labels(&stream.labels).map_err(|(column, reason)| {
            ProtocolError::new(
                PROTOCOL,
                format!("streams[{s}].labels, column {column}"),
                reason,
            )
        })?;
        for entry_pb in stream.entries {
            let time = entry_pb.timestamp.map_or(now, |t| {
                t.seconds
                    .saturating_mul(1_000_000_000)
                    .saturating_add(i64::from(t.nanos))
            });
            let mut e = entry(&labels, time, &entry_pb.line, now);
            for pair in entry_pb.structured_metadata {
                e.fields.insert(pair.name, Value::Str(pair.value));
            }
            events.push(e);
        }
    }
    Ok(events)
}

fn entry(labels: &BTreeMap<String, String>, time: i64, line: &str, now: i64) -> Event {
    let mut e = event_at(now, Some(time));
    e.tags = labels.clone();
    e.raw = Some(line.to_string());
    e
}

/// A stream's labels in Loki's selector syntax: `{name="value", …}`. Err: the 1-based column
/// and why.
pub fn labels(text: &str) -> Result<BTreeMap<String, String>, (usize, String)> {
    let bytes = text.as_bytes();
    let mut out = BTreeMap::new();
    let mut i = 0;
    let skip_space = |i: &mut usize| {
        while *i < bytes.len() && bytes[*i].is_ascii_whitespace() {
            *i += 1;
        }
    };
    skip_space(&mut i);
    if bytes.get(i) != Some(&b'{') {
        return Err((i + 1, "labels start with {".into()));
    }
    i += 1;
    loop {
        skip_space(&mut i);
        match bytes.get(i) {
            Some(b'}') => break,
            None => return Err((i + 1, "labels end with }".into())),
            _ => {}
        }
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
            i += 1;
        }
        if i == start {
            return Err((i + 1, "expected a label name".into()));
        }
        let name = text[start..i].to_string();
        skip_space(&mut i);
        if bytes.get(i) != Some(&b'=') {
            return Err((i + 1, format!("expected = after label {name}")));
        }
        i += 1;
        skip_space(&mut i);
        if bytes.get(i) != Some(&b'"') {
            return Err((i + 1, format!("the value of label {name} is not quoted")));
        }
        i += 1;
        let mut value = String::new();
        loop {
            let Some(c) = text[i..].chars().next() else {
                return Err((i + 1, format!("the value of label {name} is not closed")));
            };
            i += c.len_utf8();
            match c {
                '"' => break,
                '\\' => {
                    let Some(escaped) = text[i..].chars().next() else {
                        return Err((i + 1, "a backslash ends the labels".into()));
                    };
                    i += escaped.len_utf8();
                    value.push(match escaped {
                        'n' => '\n',
                        't' => '\t',
                        other => other,
                    });
                }
                other => value.push(other),
            }
        }
        out.insert(name, value);
        skip_space(&mut i);
        match bytes.get(i) {
            Some(b',') => i += 1,
            Some(b'}') => {}
            _ => return Err((i + 1, "expected , or } after a label".into())),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn json_entries_take_labels_as_tags_and_metadata_as_fields() {
        let body = br#"{"streams":[{"stream":{"job":"api","host":"web-1"},"values":[["1700000000000000001","GET /a 200"],["1700000000000000002","boom",{"trace_id":"abc"}]]}]}"#;
        let events = json(body, 5).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].tags["job"], "api");
        assert_eq!(events[0].timestamp, 1_700_000_000_000_000_001);
        assert_eq!(events[1].raw.as_deref(), Some("boom"));
        assert_eq!(events[1].fields["trace_id"], Value::from("abc"));
        let e = json(br#"{"streams":[{"stream":{},"values":[["soon","x"]]}]}"#, 0).unwrap_err();
        assert_eq!(e.at, "streams[0].values[0]");
    }

    #[test]
    fn snappy_protobuf_reads_like_json() {
        let push = proto::PushRequest {
            streams: vec![proto::Stream {
                labels: r#"{job="api", host="web-1", msg="say \"hi\""}"#.into(),
                entries: vec![proto::Entry {
                    timestamp: Some(proto::Timestamp {
                        seconds: 1_700_000_000,
                        nanos: 5,
                    }),
                    line: "GET /a 200".into(),
                    structured_metadata: vec![proto::LabelPair {
                        name: "trace_id".into(),
                        value: "abc".into(),
                    }],
                }],
            }],
        };
        let body = snap::raw::Encoder::new()
            .compress_vec(&push.encode_to_vec())
            .unwrap();
        let events = protobuf(&body, 1 << 20, 0).unwrap();
        assert_eq!(events[0].timestamp, 1_700_000_000_000_000_005);
        assert_eq!(events[0].tags["host"], "web-1");
        assert_eq!(events[0].tags["msg"], "say \"hi\"");
        assert_eq!(events[0].fields["trace_id"], Value::from("abc"));
        let e = protobuf(&body, 10, 0).unwrap_err();
        assert!(e.reason.contains("over the limit"), "{e}");
    }

    #[test]
    fn broken_labels_say_where() {
        assert_eq!(labels("{a=\"1\" b=\"2\"}").unwrap_err().0, 8);
        assert!(labels("{a=1}").unwrap_err().1.contains("not quoted"));
        assert!(labels("{a=\"1").is_err());
        assert_eq!(labels("{}").unwrap().len(), 0);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Err(e) = json(&body, 0) {
                prop_assert!(!e.at.is_empty() && !e.reason.is_empty());
            }
            if let Err(e) = protobuf(&body, 1 << 16, 0) {
                prop_assert!(!e.at.is_empty() && !e.reason.is_empty());
            }
        }

        #[test]
        fn arbitrary_label_texts_never_panic(text in "\\PC{0,40}") {
            let _ = labels(&text);
        }
    }
}
