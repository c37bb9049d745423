//! Elasticsearch `_bulk` bodies: NDJSON pairs of an action line (`index` or `create`, with
//! `_index` and `_id`) and a document line. The document is read as the native door reads a
//! JSON event (`@timestamp`, nested objects as dotted fields, the line as `@rawstring`); an
//! `_id` becomes the event's client `@id`, so a shipper's retry is stored once. `delete` and
//! `update` are refused item by item (eddy keeps events, it does not edit them).
//!
//! A broken action line makes the whole body unreadable (where the next pair starts is then
//! unknown); a broken document is that item's error, as Elasticsearch reports it.

use std::borrow::Cow;

use eddy_event::{Event, Parser};

use super::ProtocolError;

/// One action of a bulk body.
#[derive(Debug)]
pub struct BulkItem {
    /// `index`, `create`, `update` or `delete`: the key of the answer's item.
    pub action: String,
    /// The index it names (or the path's, or empty).
    pub index: String,
    /// Its `_id`, if given.
    pub id: Option<String>,
    /// The event, or why this item is refused (an Elasticsearch error type and reason).
    pub event: Result<Event, ItemError>,
}

/// Why one item is refused.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemError {
    /// HTTP status of the item.
    pub status: u16,
    /// The Elasticsearch error type (`mapper_parsing_exception`, …).
    pub kind: &'static str,
    /// What is wrong.
    pub reason: String,
}

const PROTOCOL: &str = "Elasticsearch _bulk";

/// An action's metadata (other keys, such as `routing`, are ignored).
#[derive(serde::Deserialize)]
struct Meta<'a> {
    #[serde(borrow, default)]
    _index: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    _id: Option<Cow<'a, str>>,
}

/// The items of a bulk body; `path_index` is the `{index}` of `/{index}/_bulk`.
pub fn bulk(
    body: &[u8],
    path_index: Option<&str>,
    max_event: usize,
    now: i64,
) -> Result<Vec<BulkItem>, ProtocolError> {
    let text = std::str::from_utf8(body).map_err(|e| {
        ProtocolError::new(
            PROTOCOL,
            format!("byte {}", e.valid_up_to()),
            "the body is not UTF-8",
        )
    })?;
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty());
    let mut items = Vec::new();
    while let Some((number, line)) = lines.next() {
        let at = || format!("line {number}");
        let action: std::collections::BTreeMap<Cow<'_, str>, Meta<'_>> = serde_json::from_str(line)
            .map_err(|e| {
                ProtocolError::new(
                    PROTOCOL,
                    format!("line {number}, column {}", e.column()),
                    format!("the action line is not a JSON object of one action: {e}"),
                )
            })?;
        let one = action.len() == 1;
        let (name, meta) = match action.into_iter().next() {
            Some(pair) if one => pair,
            _ => {
                return Err(ProtocolError::new(
                    PROTOCOL,
                    at(),
                    "an action line has exactly one key: index, create, update or delete",
                ))
            }
        };
        let name = name.into_owned();
        let index = meta
            ._index
            .map(Cow::into_owned)
            .or_else(|| path_index.map(str::to_string))
            .unwrap_or_default();
        let id = meta._id.map(Cow::into_owned);
        let event = match name.as_str() {
            "index" | "create" => {
                let Some((doc_number, doc)) = lines.next() else {
                    return Err(ProtocolError::new(
                        PROTOCOL,
                        at(),
                        format!("the {name} action has no document line after it"),
                    ));
                };
                document(doc, doc_number, id.as_deref(), max_event, now)
            }
            "update" => {
                // Its partial document follows; it is skipped with the item.
                lines.next();
                Err(unsupported(&name))
            }
            "delete" => Err(unsupported(&name)),
            other => {
                return Err(ProtocolError::new(
                    PROTOCOL,
                    at(),
                    format!("unknown action {other:?}: expected index, create, update or delete"),
                ))
            }
        };
        items.push(BulkItem {
            action: name,
            index,
            id,
            event,
        });
    }
    Ok(items)
}

fn unsupported(action: &str) -> ItemError {
    ItemError {
        status: 400,
        kind: "action_request_validation_exception",
        reason: format!("eddy stores events and does not {action} them; use index or create"),
    }
}

fn document(
    doc: &str,
    number: usize,
    id: Option<&str>,
    max_event: usize,
    now: i64,
) -> Result<Event, ItemError> {
    if doc.len() > max_event {
        return Err(ItemError {
            status: 413,
            kind: "illegal_argument_exception",
            reason: format!(
                "the document on line {number} is {} bytes, over the limit of {max_event} (http.max_event_bytes)",
                doc.len()
            ),
        });
    }
    if !doc.starts_with('{') {
        return Err(ItemError {
            status: 400,
            kind: "mapper_parsing_exception",
            reason: format!("the document on line {number} is not a JSON object"),
        });
    }
    let mut event = Parser::Json.parse(doc, now).map_err(|e| ItemError {
        status: 400,
        kind: "mapper_parsing_exception",
        reason: format!("failed to parse the document on line {number}: {e}"),
    })?;
    if let Some(id) = id {
        event.id = eddy_event::client_id(id).map_err(|reason| ItemError {
            status: 400,
            kind: "illegal_argument_exception",
            reason: format!("_id on line {}: {reason}", number - 1),
        })?;
        event.id_from_client = true;
        // Shown as sent, as the native door shows a client's text `@id`.
        if uuid::Uuid::parse_str(id).is_err() {
            event
                .fields
                .insert("@id".into(), eddy_event::Value::Str(id.into()));
        }
        // The fields are no longer what the JSON parser makes of the line.
        event.parsed_by = None;
    }
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use eddy_event::Value;
    use proptest::prelude::*;

    #[test]
    fn pairs_become_events_with_their_index_and_id() {
        let body = "{\"index\":{\"_index\":\"web\",\"_id\":\"a1\"}}\n{\"@timestamp\":\"2026-01-05T10:00:00Z\",\"msg\":\"hi\",\"http\":{\"status\":200}}\n\
                    {\"create\":{}}\n{\"msg\":\"two\"}\n{\"delete\":{\"_id\":\"x\"}}\n{\"update\":{\"_id\":\"y\"}}\n{\"doc\":{}}\n{\"index\":{}}\nnot json\n";
        let items = bulk(body.as_bytes(), Some("fallback"), 1000, 7).unwrap();
        assert_eq!(items.len(), 5);
        let first = items[0].event.as_ref().unwrap();
        assert_eq!(items[0].index, "web");
        assert!(first.id_from_client);
        assert_eq!(first.id, eddy_event::client_id("a1").unwrap());
        assert_eq!(first.fields["@id"], Value::from("a1"));
        assert_eq!(first.parsed_by, None);
        assert_eq!(first.fields["http.status"], Value::Int(200));
        assert_eq!(first.timestamp, 1_767_607_200_000_000_000);
        assert_eq!(items[1].index, "fallback");
        assert_eq!(items[1].action, "create");
        assert_eq!(items[2].event.as_ref().unwrap_err().status, 400);
        assert_eq!(items[3].action, "update");
        let bad = items[4].event.as_ref().unwrap_err();
        assert_eq!(bad.kind, "mapper_parsing_exception");
        assert!(bad.reason.contains("line 9"), "{bad:?}");
    }

    #[test]
    fn a_broken_action_line_refuses_the_body_saying_where() {
        let e = bulk(b"{\"index\":{}}\n{\"a\":1}\n{\"index\":\n", None, 1000, 0).unwrap_err();
        assert!(e.at.starts_with("line 3"), "{e}");
        let e = bulk(b"{\"index\":{}}\n", None, 1000, 0).unwrap_err();
        assert!(e.reason.contains("no document line"), "{e}");
        let e = bulk(b"{\"upsert\":{}}\n{}\n", None, 1000, 0).unwrap_err();
        assert!(e.reason.contains("unknown action"), "{e}");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Err(e) = bulk(&body, None, 100, 0) {
                prop_assert!(!e.at.is_empty() && !e.reason.is_empty());
            }
        }

        #[test]
        fn arbitrary_lines_never_panic(lines in proptest::collection::vec("[{}\":a-z_ 0-9\\[\\]]{0,30}", 0..8)) {
            let _ = bulk(lines.join("\n").as_bytes(), Some("i"), 100, 0);
        }
    }
}
