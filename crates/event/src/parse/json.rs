//! One JSON object per line.

use super::ParseError;
use crate::event::{flatten_json, Event};
use crate::value::Value;

pub(crate) fn parse(line: &str, event: &mut Event) -> Result<(), ParseError> {
    let value: serde_json::Value = serde_json::from_str(line).map_err(|e| {
        // serde_json counts columns in characters on the line; ours are bytes.
        let column = line
            .char_indices()
            .nth(e.column().saturating_sub(1))
            .map_or(line.len() + 1, |(i, _)| i + 1)
            .min(line.len() + 1)
            .max(1);
        ParseError {
            column,
            field: None,
            reason: format!("invalid JSON: {e}"),
        }
    })?;
    fill(value, event)
}

/// Takes a JSON object's keys into `event`.
pub(crate) fn fill(value: serde_json::Value, event: &mut Event) -> Result<(), ParseError> {
    let serde_json::Value::Object(map) = value else {
        return Err(ParseError {
            column: 1,
            field: None,
            reason: "expected a JSON object".into(),
        });
    };
    for (key, v) in map {
        if key == "@id" {
            let text = v.as_str().unwrap_or_default();
            event.id = uuid::Uuid::parse_str(text).map_err(|e| ParseError {
                column: 1,
                field: Some("@id".into()),
                reason: format!("{text:?} is not a UUID: {e}"),
            })?;
            event.id_from_client = true;
        } else if let Some(tag) = key.strip_prefix('#') {
            let text = match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            event.tags.insert(tag.to_string(), text);
        } else if key == "@rawstring" || key == "@ingesttimestamp" {
            // Set by eddy, not by clients.
        } else {
            flatten_json(v, &key, &mut event.fields);
        }
    }
    if let Some(Value::Null) = event.fields.get("@timestamp") {
        event.fields.remove("@timestamp");
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::parse::Parser;
    use crate::value::Value;

    #[test]
    fn objects_tags_ids_and_times() {
        let e = Parser::Json
            .parse(
                r##"{"@timestamp":"1970-01-01T00:00:05Z","#host":"web-1","@id":"0190b2e0-0000-7000-8000-000000000000","http":{"status":500}}"##,
                1,
            )
            .unwrap();
        assert_eq!(e.timestamp, 5_000_000_000);
        assert_eq!(e.tags["host"], "web-1");
        assert_eq!(e.id.to_string(), "0190b2e0-0000-7000-8000-000000000000");
        assert!(e.id_from_client);
        assert!(!Parser::Json.parse("{}", 1).unwrap().id_from_client);
        assert_eq!(e.fields["http.status"], Value::Int(500));
    }

    #[test]
    fn errors_say_where() {
        let err = Parser::Json.parse(r#"{"a": tru}"#, 0).unwrap_err();
        assert!(err.reason.contains("invalid JSON"), "{err}");
        assert!(err.column >= 7, "{err:?}");
        let err = Parser::Json.parse("[1,2]", 0).unwrap_err();
        assert!(err.reason.contains("object"));
        let err = Parser::Json.parse(r#"{"@id":"nope"}"#, 0).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("@id"));
    }
}
