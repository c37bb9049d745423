//! Reading an event's fields by name, the way queries name them: `@timestamp` (ns),
//! `@ingesttimestamp`, `@id`, `@rawstring`, `#tag` for a tag, anything else a field (or, when no
//! field has that name, a tag).

use std::borrow::Cow;

use eddy_event::{Event, Value};
use eddy_store::Parts;

/// The value of `name` in `event`, if it has one.
pub fn get<'e>(event: &'e Event, name: &str) -> Option<Cow<'e, Value>> {
    if let Some(v) = event.fields.get(name) {
        return Some(Cow::Borrowed(v));
    }
    match name {
        "@timestamp" => Some(Cow::Owned(Value::Int(event.timestamp))),
        "@ingesttimestamp" => Some(Cow::Owned(Value::Int(event.ingest_timestamp))),
        "@id" => Some(Cow::Owned(Value::Str(event.id.to_string()))),
        "@rawstring" => event
            .raw
            .as_ref()
            .map(|r| Cow::Owned(Value::Str(r.clone()))),
        _ => {
            let tag = name.strip_prefix('#').unwrap_or(name);
            event
                .tags
                .get(tag)
                .map(|v| Cow::Owned(Value::Str(v.clone())))
        }
    }
}

/// The text of `name` in `event` (numbers as written by [`Value::to_text`]).
pub fn text<'e>(event: &'e Event, name: &str) -> Option<Cow<'e, str>> {
    if name == "@rawstring" {
        return event.raw.as_deref().map(Cow::Borrowed);
    }
    if let Some(tag) = name.strip_prefix('#') {
        if !event.fields.contains_key(name) {
            return event.tags.get(tag).map(|v| Cow::Borrowed(v.as_str()));
        }
    }
    match get(event, name)? {
        Cow::Borrowed(Value::Str(s)) => Some(Cow::Borrowed(s)),
        v => Some(Cow::Owned(v.to_text())),
    }
}

/// Sets `name` in `event`: a field (tags and `@` fields are not assignable and become fields
/// of that name).
pub fn set(event: &mut Event, name: &str, value: Value) {
    event.fields.insert(name.to_string(), value);
}

/// An event that is only a row of named values (what aggregates produce).
pub fn row(fields: impl IntoIterator<Item = (String, Value)>) -> Event {
    let mut e = Event::new(0);
    e.fields = fields.into_iter().collect();
    e
}

/// Notes in `parts` what reading `name` takes from a stored event: `@rawstring` its text,
/// other `@` fields nothing, any other name its fields (a parser runs) and tags (a plain name
/// falls back to a tag).
pub fn note_read(parts: &mut Parts, name: &str) {
    if name == "@rawstring" {
        parts.raw = true;
    } else if !name.starts_with('@') {
        parts.fields = true;
        parts.tags = true;
    }
}
