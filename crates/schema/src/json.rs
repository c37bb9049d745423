//! JSON Schemas: validation (by the `jsonschema` crate), a normalised form and its SHA-256.
//!
//! The normalised form is the schema as compact JSON with the keys of every object sorted and
//! no insignificant white space, so two texts of the same schema have one fingerprint (the
//! counterpart of Avro's Parsing Canonical Form).

use std::fmt;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::SchemaError;

/// Most violations listed for one instance: a badly wrong event must not make a huge answer.
const MAX_VIOLATIONS: usize = 20;

/// A parsed JSON Schema, ready to validate.
pub struct JsonSchema {
    value: Value,
    validator: jsonschema::Validator,
    canonical: String,
    sha256: [u8; 32],
}

impl fmt::Debug for JsonSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonSchema")
            .field("canonical", &self.canonical)
            .finish_non_exhaustive()
    }
}

/// One way an instance breaks a schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Where in the instance, as dotted field names (`items[2].qty`); empty for the whole.
    pub path: String,
    /// Why.
    pub reason: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.path.is_empty() {
            true => f.write_str(&self.reason),
            false => write!(f, "{}: {}", self.path, self.reason),
        }
    }
}

impl JsonSchema {
    /// Parses the text of a schema and compiles its validator.
    pub fn parse(text: &str) -> Result<JsonSchema, SchemaError> {
        let invalid = |reason: String| SchemaError::Invalid {
            kind: "JSON",
            reason,
        };
        let value: Value = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if !matches!(value, Value::Object(_) | Value::Bool(_)) {
            return Err(invalid("a JSON Schema is an object or a boolean".into()));
        }
        let validator = jsonschema::validator_for(&value).map_err(|e| invalid(e.to_string()))?;
        // serde_json's maps are ordered by key, so serialising sorts every object's keys.
        let canonical = value.to_string();
        let sha256 = Sha256::digest(canonical.as_bytes()).into();
        Ok(JsonSchema {
            value,
            validator,
            canonical,
            sha256,
        })
    }

    /// The schema as JSON.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// The normalised form.
    pub fn canonical_form(&self) -> &str {
        &self.canonical
    }

    /// SHA-256 of the normalised form.
    pub fn sha256(&self) -> [u8; 32] {
        self.sha256
    }

    /// Every way `instance` breaks the schema (up to 20); empty when it is valid.
    pub fn violations(&self, instance: &Value) -> Vec<Violation> {
        if self.validator.is_valid(instance) {
            return Vec::new();
        }
        self.validator
            .iter_errors(instance)
            .take(MAX_VIOLATIONS)
            .map(|e| Violation {
                path: dotted(e.instance_path().as_str()),
                reason: e.to_string(),
            })
            .collect()
    }
}

/// A JSON pointer (`/items/2/qty`) as eddy writes field paths (`items[2].qty`).
pub(crate) fn dotted(pointer: &str) -> String {
    let mut out = String::new();
    for part in pointer.split('/').skip(1) {
        let part = part.replace("~1", "/").replace("~0", "~");
        if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
            out.push('[');
            out.push_str(&part);
            out.push(']');
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&part);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ORDER: &str = r#"{"type": "object", "required": ["id"],
        "properties": {"id": {"type": "integer"}, "items": {"type": "array",
            "items": {"type": "object", "properties": {"qty": {"type": "integer", "minimum": 1}}}}}}"#;

    #[test]
    fn one_schema_written_two_ways_has_one_form_and_fingerprint() {
        let a = JsonSchema::parse(ORDER).unwrap();
        let b = JsonSchema::parse(
            r#"{"properties":{"items":{"items":{"properties":{"qty":{"minimum":1,"type":"integer"}},"type":"object"},"type":"array"},"id":{"type":"integer"}},"required":["id"],"type":"object"}"#,
        )
        .unwrap();
        assert_eq!(a.canonical_form(), b.canonical_form());
        assert!(a.canonical_form().starts_with(r#"{"properties":{"id":"#));
        assert_eq!(a.sha256(), b.sha256());
    }

    #[test]
    fn violations_name_the_field() {
        let s = JsonSchema::parse(ORDER).unwrap();
        assert!(s
            .violations(&json!({"id": 1, "items": [{"qty": 2}]}))
            .is_empty());
        let found = s.violations(&json!({"id": "x", "items": [{"qty": 2}, {"qty": 0}]}));
        let paths: Vec<&str> = found.iter().map(|v| v.path.as_str()).collect();
        assert_eq!(paths.len(), 2, "{found:?}");
        assert!(paths.contains(&"id"), "{found:?}");
        assert!(paths.contains(&"items[1].qty"), "{found:?}");
        let missing = s.violations(&json!({}));
        assert!(missing[0].reason.contains("\"id\""), "{missing:?}");
    }

    #[test]
    fn bad_schemas_say_why() {
        let e = JsonSchema::parse(r#"{"type": 12}"#).unwrap_err();
        assert!(e.to_string().starts_with("invalid JSON schema"), "{e}");
        assert!(JsonSchema::parse("[1]").is_err());
        assert!(JsonSchema::parse("{").is_err());
    }
}
