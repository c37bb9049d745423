//! A message to events: its body read like an HTTP body of the same content type, then the
//! message's id (the `message-id` property, or a configured header) given to the events that
//! carry no `@id` of their own, so that a message the broker delivers again after a restart
//! is stored once.
//!
//! One event takes the message id as it is (mapped to a UUID as a client `@id` is); the events
//! of a message holding several take ids made from it and their position (`<its UUID>/<n>`, n
//! from 0), so each is de-duplicated on its own.

use eddy_event::{client_id, Event, Parser};
use lapin::types::AMQPValue;
use lapin::BasicProperties;

use crate::body::{self, Refusal};

/// What a message's body is, from its content type and the collector's parser: `None` is
/// JSON by [`crate::json_body`]'s rule (a document or NDJSON), `Some` a line parser.
pub fn line_parser(parser: Parser) -> Option<Parser> {
    (parser != Parser::Json).then_some(parser)
}

/// The message's id: the header `id_header` if configured (a string or a number), else the
/// `message-id` property. None: the message has none, and its events get fresh ids.
pub fn message_id(properties: &BasicProperties, id_header: Option<&str>) -> Option<String> {
    let id = match id_header {
        Some(name) => {
            let headers = properties.headers().as_ref()?;
            match headers.inner().get(name)? {
                AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                AMQPValue::ShortString(s) => s.as_str().to_string(),
                AMQPValue::LongLongInt(n) => n.to_string(),
                AMQPValue::LongInt(n) => n.to_string(),
                AMQPValue::LongUInt(n) => n.to_string(),
                AMQPValue::ShortInt(n) => n.to_string(),
                AMQPValue::ShortUInt(n) => n.to_string(),
                _ => return None,
            }
        }
        None => properties.message_id().as_ref()?.as_str().to_string(),
    };
    (!id.is_empty()).then_some(id)
}

/// Why a message's id cannot be an event id.
#[derive(Debug, thiserror::Error)]
#[error("the message id cannot be an event id: {0}")]
pub struct BadMessageId(String);

/// Gives `events` (all from one message) ids made from `message_id`, except those that carry
/// their own `@id`.
pub fn assign_ids(events: &mut [Event], message_id: &str) -> Result<(), BadMessageId> {
    let id = client_id(message_id).map_err(BadMessageId)?;
    let single = events.len() == 1;
    for (n, e) in events.iter_mut().enumerate() {
        if e.id_from_client {
            continue;
        }
        // Numbered after the message's own id, which is short whatever the message id's length.
        e.id = if single {
            id
        } else {
            client_id(&format!("{id}/{n}")).map_err(BadMessageId)?
        };
        e.id_from_client = true;
    }
    Ok(())
}

/// Why a message gives no events.
#[derive(Debug, thiserror::Error)]
pub enum Malformed {
    /// Its body, read as an HTTP body of its content type would be.
    #[error(transparent)]
    Body(#[from] Refusal),
    /// Its id.
    #[error(transparent)]
    Id(#[from] BadMessageId),
}

/// The events of a body that is not binary Avro (that needs the repository's schema: see
/// [`crate::body::avro`]), with ids from `message_id`. All or nothing, as the HTTP door: a
/// refusal names each bad line.
pub fn events(
    body: &[u8],
    content_type: &str,
    parser: Parser,
    max_event: usize,
    now: i64,
    message_id: Option<&str>,
) -> Result<Vec<Event>, Malformed> {
    let mut events = body::parse(body, content_type, line_parser(parser), max_event, now)?;
    if let Some(id) = message_id {
        assign_ids(&mut events, id)?;
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::{FieldTable, ShortString};
    use proptest::prelude::*;

    fn with_id(id: &str) -> BasicProperties {
        BasicProperties::default().with_message_id(ShortString::from(id))
    }

    #[test]
    fn the_message_id_or_the_configured_header_names_the_message() {
        assert_eq!(message_id(&with_id("m-1"), None).as_deref(), Some("m-1"));
        assert_eq!(message_id(&BasicProperties::default(), None), None);
        let mut headers = FieldTable::default();
        headers.insert("x-event-id".into(), AMQPValue::LongString("h-7".into()));
        let p = with_id("m-1").with_headers(headers);
        assert_eq!(message_id(&p, Some("x-event-id")).as_deref(), Some("h-7"));
        assert_eq!(message_id(&p, Some("x-other")), None);
    }

    #[test]
    fn one_event_takes_the_message_id_and_several_take_numbered_ones() {
        let one = events(
            b"{\"a\":1}",
            "application/json",
            Parser::Json,
            1 << 20,
            1,
            Some("m-1"),
        )
        .unwrap();
        assert_eq!(one[0].id, client_id("m-1").unwrap());
        assert!(one[0].id_from_client);
        let two = events(
            b"{\"a\":1}\n{\"a\":2,\"@id\":\"own\"}\n{\"a\":3}",
            "application/json",
            Parser::Json,
            1 << 20,
            1,
            Some("m-2"),
        )
        .unwrap();
        let m2 = client_id("m-2").unwrap();
        assert_eq!(two[0].id, client_id(&format!("{m2}/0")).unwrap());
        assert_eq!(two[1].id, client_id("own").unwrap());
        assert_eq!(two[2].id, client_id(&format!("{m2}/2")).unwrap());
    }

    #[test]
    fn a_malformed_body_is_refused_naming_the_line() {
        let err = events(
            b"{\"a\":1}\nnot json\n",
            "application/json",
            Parser::Json,
            1 << 20,
            1,
            None,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(err, "1 of 2 events are invalid; nothing was stored");
    }

    #[test]
    fn raw_lines_are_read_with_the_named_parser() {
        let e = events(
            b"a=1 b=x\nc=2\n",
            "text/plain",
            Parser::Kv,
            1 << 20,
            1,
            None,
        )
        .unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(
            e[0].fields.get("b"),
            Some(&eddy_event::Value::Str("x".into()))
        );
    }

    proptest! {
        #[test]
        fn any_body_and_id_give_events_with_stable_distinct_ids_or_a_refusal(
            body in proptest::collection::vec(any::<u8>(), 0..300),
            lines in proptest::collection::vec("[ -~]{0,40}", 0..6),
            id in "[ -~]{0,300}",
            json in any::<bool>(),
        ) {
            let text = lines.join("\n").into_bytes();
            for body in [&body[..], &text[..]] {
                let parser = if json { Parser::Json } else { Parser::Kv };
                let first = events(body, "application/json", parser, 1 << 20, 1, Some(&id));
                let again = events(body, "application/json", parser, 1 << 20, 1, Some(&id));
                match (first, again) {
                    (Ok(a), Ok(b)) => {
                        let ids: Vec<_> = a.iter().map(|e| e.id).collect();
                        prop_assert_eq!(&ids, &b.iter().map(|e| e.id).collect::<Vec<_>>());
                        prop_assert!(a.iter().all(|e| e.id_from_client));
                        let mut distinct = ids.clone();
                        distinct.sort();
                        distinct.dedup();
                        // Events may carry their own equal @ids; the message's never repeat.
                        let own = a.iter().filter(|e| e.raw.as_deref().is_some_and(|r| r.contains("@id"))).count();
                        prop_assert!(distinct.len() + own >= ids.len());
                    }
                    (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string()),
                    (a, b) => prop_assert!(false, "not deterministic: {:?} / {:?}", a.is_ok(), b.is_ok()),
                }
            }
        }
    }
}
