//! Property-test strategies for values and events, shared by the crates that store events
//! (feature `arbitrary`).

use std::collections::BTreeMap;

use proptest::prelude::*;

use crate::{Event, Parser, Value};

/// Any value but NaN (which breaks equality).
pub fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        any::<f64>()
            .prop_filter("NaN breaks equality", |f| !f.is_nan())
            .prop_map(Value::Float),
        ".{0,40}".prop_map(Value::Str),
    ]
}

/// Events with any timestamps and `@id`, and the given raw texts, tags, fields and parsers.
pub fn event(
    raw: impl Strategy<Value = Option<String>>,
    tags: impl Strategy<Value = BTreeMap<String, String>>,
    fields: impl Strategy<Value = BTreeMap<String, Value>>,
    parsed_by: impl Strategy<Value = Option<Parser>>,
) -> impl Strategy<Value = Event> {
    (
        any::<i64>(),
        any::<i64>(),
        (any::<u128>(), any::<bool>(), parsed_by),
        raw,
        tags,
        fields,
    )
        .prop_map(
            |(timestamp, ingest_timestamp, (id, id_from_client, parsed_by), raw, tags, fields)| {
                Event {
                    timestamp,
                    ingest_timestamp,
                    id: uuid::Uuid::from_u128(id),
                    id_from_client,
                    parsed_by,
                    raw,
                    tags,
                    fields,
                }
            },
        )
}
