//! Compatibility between JSON Schemas: whether every instance valid under the writer's schema
//! is valid under the reader's, with the path and reason of each way it may not be.
//!
//! The check is structural over the keywords producers evolve: `type` (an `integer` is a
//! `number`), `properties`, `required`, `additionalProperties`, `enum`/`const`, `items` and the
//! numeric, length and size bounds. Where a schema uses a keyword the check cannot compare
//! (`$ref`, `oneOf`, `anyOf`, `allOf`, `not`, `if`, `pattern`, ...), it must be unchanged:
//! otherwise the difference is reported rather than guessed compatible.

use serde_json::{Map, Value};

use crate::incompatibility::Incompatibility;

/// Keywords compared only for equality.
const OPAQUE: [&str; 14] = [
    "$ref",
    "oneOf",
    "anyOf",
    "allOf",
    "not",
    "if",
    "then",
    "else",
    "pattern",
    "patternProperties",
    "format",
    "dependentRequired",
    "dependentSchemas",
    "multipleOf",
];

/// Upper bounds: the reader's must not be below the writer's.
const UPPER: [&str; 5] = [
    "maximum",
    "exclusiveMaximum",
    "maxLength",
    "maxItems",
    "maxProperties",
];
/// Lower bounds: the reader's must not be above the writer's.
const LOWER: [&str; 5] = [
    "minimum",
    "exclusiveMinimum",
    "minLength",
    "minItems",
    "minProperties",
];

/// Every reason `reader` may reject an instance valid under `writer`.
pub fn can_read(
    reader: &Value,
    writer: &Value,
    reader_is_new: bool,
    consequence: &str,
) -> Vec<Incompatibility> {
    let mut c = Checker {
        reader_is_new,
        consequence,
        found: Vec::new(),
    };
    c.check(reader, writer, "(root)");
    c.found
}

struct Checker<'a> {
    reader_is_new: bool,
    consequence: &'a str,
    found: Vec<Incompatibility>,
}

impl Checker<'_> {
    fn report(&mut self, path: &str, reason: String) {
        self.found.push(Incompatibility {
            path: path.to_string(),
            reason,
            consequence: self.consequence.to_string(),
        });
    }

    /// "from old to new", whichever side is the new one.
    fn changed(&self, what: &str, reader: String, writer: String) -> String {
        let (old, new) = match self.reader_is_new {
            true => (writer, reader),
            false => (reader, writer),
        };
        format!("{what} changed from {old} to {new}")
    }

    fn check(&mut self, reader: &Value, writer: &Value, path: &str) {
        let (r, w) = match (reader, writer) {
            (Value::Bool(true), _) => return,
            (Value::Object(r), _) if r.is_empty() => return,
            (Value::Bool(false), _) => {
                return self.report(path, "the schema accepts nothing (false)".into())
            }
            (Value::Object(r), Value::Object(w)) => (r, w),
            // A writer of `true` (anything) read by a constrained reader.
            (Value::Object(_), _) => {
                return self.report(path, "constraints added where anything was accepted".into())
            }
            _ => return,
        };
        for key in OPAQUE {
            if r.get(key) != w.get(key) && r.contains_key(key) {
                let reason = match w.get(key) {
                    None => format!("`{key}` added"),
                    Some(_) => format!("`{key}` changed"),
                };
                self.report(path, reason);
            }
        }
        self.types(r, w, path);
        self.values(r, w, path);
        self.bounds(r, w, path);
        self.object(r, w, path);
        if let Some(items) = r.get("items") {
            let writer_items = w.get("items").unwrap_or(&Value::Bool(true));
            self.check(items, writer_items, &format!("{path}[]"));
        }
    }

    fn types(&mut self, r: &Map<String, Value>, w: &Map<String, Value>, path: &str) {
        let Some(reader_types) = r.get("type").map(types_of) else {
            return;
        };
        let writer_types = w.get("type").map(types_of);
        let accepted = |t: &str| {
            reader_types
                .iter()
                .any(|r| r == t || (r == "number" && t == "integer"))
        };
        let lost = match &writer_types {
            None => true,
            Some(ws) => ws.iter().any(|t| !accepted(t)),
        };
        if lost {
            let describe = |ts: &[String]| match ts {
                [one] => one.clone(),
                many => format!("[{}]", many.join(", ")),
            };
            let writer = writer_types.as_deref().map_or("any".into(), describe);
            let reason = self.changed("type", describe(&reader_types), writer);
            self.report(path, reason);
        }
    }

    fn values(&mut self, r: &Map<String, Value>, w: &Map<String, Value>, path: &str) {
        let allowed = |m: &Map<String, Value>| -> Option<Vec<Value>> {
            match (m.get("enum"), m.get("const")) {
                (Some(Value::Array(vs)), _) => Some(vs.clone()),
                (_, Some(c)) => Some(vec![c.clone()]),
                _ => None,
            }
        };
        let Some(reader) = allowed(r) else { return };
        match allowed(w) {
            None => self.report(path, "values restricted to an enum".into()),
            Some(writer) => {
                for v in writer.iter().filter(|v| !reader.contains(v)) {
                    let reason = match self.reader_is_new {
                        true => format!("enum value {v} removed"),
                        false => format!("enum value {v} added"),
                    };
                    self.report(path, reason);
                }
            }
        }
    }

    fn bounds(&mut self, r: &Map<String, Value>, w: &Map<String, Value>, path: &str) {
        let num = |m: &Map<String, Value>, k: &str| m.get(k).and_then(Value::as_f64);
        for (keys, tighter) in [
            (&UPPER, (|r: f64, w: f64| r < w) as fn(f64, f64) -> bool),
            (&LOWER, |r: f64, w: f64| r > w),
        ] {
            for key in keys.iter() {
                let Some(rb) = num(r, key) else { continue };
                match num(w, key) {
                    Some(wb) if !tighter(rb, wb) => {}
                    wb => {
                        let writer = wb.map_or("none".to_string(), |b| b.to_string());
                        let reason = self.changed(key, rb.to_string(), writer);
                        self.report(path, reason);
                    }
                }
            }
        }
    }

    fn object(&mut self, r: &Map<String, Value>, w: &Map<String, Value>, path: &str) {
        let empty = Map::new();
        let rp = properties(r).unwrap_or(&empty);
        let wp = properties(w).unwrap_or(&empty);
        let required = |m: &Map<String, Value>| -> Vec<String> {
            m.get("required")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default()
        };
        let writer_required = required(w);
        let field = |name: &str| match path {
            "(root)" => name.to_string(),
            p => format!("{p}.{name}"),
        };
        for name in required(r) {
            if !writer_required.contains(&name) {
                let reason = match (self.reader_is_new, wp.contains_key(&name)) {
                    (true, true) => "became required".into(),
                    (true, false) => "required field added".into(),
                    (false, _) => "no longer required".into(),
                };
                self.report(&field(&name), reason);
            }
        }
        let writer_extra = w.get("additionalProperties").unwrap_or(&Value::Bool(true));
        for (name, reader_schema) in rp {
            let writer_schema = wp.get(name).unwrap_or(writer_extra);
            self.check(reader_schema, writer_schema, &field(name));
        }
        let reader_extra = r.get("additionalProperties").unwrap_or(&Value::Bool(true));
        for (name, writer_schema) in wp.iter().filter(|(n, _)| !rp.contains_key(*n)) {
            if reader_extra == &Value::Bool(false) {
                let reason = match self.reader_is_new {
                    true => "field removed from a closed object (additionalProperties: false)",
                    false => "field added to an object the old schema closes",
                };
                self.report(&field(name), reason.into());
            } else {
                self.check(reader_extra, writer_schema, &field(name));
            }
        }
        if reader_extra == writer_extra {
            return;
        }
        if reader_extra == &Value::Bool(false) {
            let reason = match self.reader_is_new {
                true => "closed to other fields (additionalProperties: false)",
                false => "opened to other fields the old schema refuses",
            };
            self.report(path, reason.into());
        } else {
            self.check(reader_extra, writer_extra, &format!("{path}{{}}"));
        }
    }
}

fn properties(m: &Map<String, Value>) -> Option<&Map<String, Value>> {
    m.get("properties").and_then(Value::as_object)
}

fn types_of(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reasons(new: Value, old: Value) -> Vec<String> {
        can_read(&new, &old, true, "old data cannot be read")
            .iter()
            .map(|i| format!("{}: {}", i.path, i.reason))
            .collect()
    }

    #[test]
    fn widening_is_compatible() {
        let old = json!({"type": "object", "required": ["id"], "properties": {
            "id": {"type": "integer"}, "note": {"type": "string", "maxLength": 10}}});
        let new = json!({"type": "object", "required": ["id"], "properties": {
            "id": {"type": "number"}, "note": {"type": ["string", "null"], "maxLength": 20},
            "extra": {"type": "string"}}});
        // `extra` was allowed as anything by the open old schema: a new constraint on it.
        assert_eq!(
            reasons(new, old),
            vec!["extra: constraints added where anything was accepted"]
        );
    }

    #[test]
    fn every_narrowing_is_named_with_its_path() {
        let old = json!({"type": "object", "properties": {
            "total": {"type": "integer"},
            "status": {"enum": ["new", "paid", "sent"]},
            "items": {"type": "array", "items": {"type": "object",
                "properties": {"qty": {"type": "integer", "minimum": 0}}}},
            "gone": {"type": "string"}}});
        let new = json!({"type": "object", "required": ["total"], "additionalProperties": false,
            "properties": {
            "total": {"type": "string"},
            "status": {"enum": ["new", "paid"]},
            "items": {"type": "array", "items": {"type": "object",
                "properties": {"qty": {"type": "integer", "minimum": 1}}}}}});
        assert_eq!(
            reasons(new, old),
            vec![
                "total: became required",
                "items[].qty: minimum changed from 0 to 1",
                "status: enum value \"sent\" removed",
                "total: type changed from integer to string",
                "gone: field removed from a closed object (additionalProperties: false)",
                "(root): closed to other fields (additionalProperties: false)",
            ]
        );
    }

    #[test]
    fn keywords_it_cannot_compare_must_stay_unchanged() {
        let old = json!({"type": "string", "pattern": "^a"});
        assert!(reasons(old.clone(), old.clone()).is_empty());
        let new = json!({"type": "string", "pattern": "^ab"});
        assert_eq!(reasons(new, old), vec!["(root): `pattern` changed"]);
    }
}
