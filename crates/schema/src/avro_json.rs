//! JSON events converted to Avro values by their schema, as the Gilt gateway does: plain JSON
//! (`{"id": 7, "note": null}`), not Avro's own JSON encoding, though a union branch may also be
//! named the Avro way (`{"string": "x"}`). A field missing from the event takes its default; a
//! field the schema does not know is refused. Every refusal names the field's path and says
//! what was expected.

use std::collections::HashMap;

use apache_avro::types::Value as Avro;
use apache_avro::Schema;
use serde_json::Value as Json;

use crate::compat::{full, named, physical, Physical};

/// Why an event does not fit its schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The field, dotted (`items[2].qty`); empty for the whole event.
    pub path: String,
    /// Why.
    pub reason: String,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.path.is_empty() {
            true => f.write_str(&self.reason),
            false => write!(f, "{}: {}", self.path, self.reason),
        }
    }
}

/// A schema ready to convert many events: its named types resolved once.
pub struct Converter<'a> {
    root: &'a Schema,
    names: HashMap<String, &'a Schema>,
}

impl<'a> Converter<'a> {
    /// Prepares `schema`.
    pub fn new(schema: &'a Schema) -> Converter<'a> {
        Converter {
            root: schema,
            names: named(schema),
        }
    }

    /// `event` as an Avro value of the schema, or the first reason it is not one.
    pub fn convert(&self, event: &Json) -> Result<Avro, Rejection> {
        let mut path = String::new();
        self.value(self.root, event, &mut path)
    }

    fn value(&self, schema: &Schema, v: &Json, path: &mut String) -> Result<Avro, Rejection> {
        let fail = |path: &String, reason: String| Rejection {
            path: path.clone(),
            reason,
        };
        let expected = |what: &str, path: &String| {
            fail(path, format!("expected {what}, found {}", kind_of(v)))
        };
        let Some(p) = physical(schema, &self.names) else {
            return Err(fail(path, "the schema names an unknown type".into()));
        };
        Ok(match p {
            Physical::Null => match v {
                Json::Null => Avro::Null,
                _ => return Err(expected("null", path)),
            },
            Physical::Boolean => {
                Avro::Boolean(v.as_bool().ok_or_else(|| expected("a boolean", path))?)
            }
            Physical::Int => {
                let n = v.as_i64().ok_or_else(|| expected("an int", path))?;
                Avro::Int(
                    i32::try_from(n)
                        .map_err(|_| fail(path, format!("{n} does not fit an int (32 bits)")))?,
                )
            }
            Physical::Long => Avro::Long(v.as_i64().ok_or_else(|| expected("a long", path))?),
            Physical::Float => {
                Avro::Float(v.as_f64().ok_or_else(|| expected("a number", path))? as f32)
            }
            Physical::Double => Avro::Double(v.as_f64().ok_or_else(|| expected("a number", path))?),
            Physical::String => Avro::String(
                v.as_str()
                    .ok_or_else(|| expected("a string", path))?
                    .to_string(),
            ),
            Physical::Bytes => Avro::Bytes(
                latin1(v)
                    .ok_or_else(|| expected("a string of bytes (code points 0 to 255)", path))?,
            ),
            Physical::Fixed(name, size) => {
                let bytes = latin1(v).ok_or_else(|| expected("a string of bytes", path))?;
                if bytes.len() != size {
                    return Err(fail(
                        path,
                        format!(
                            "{} is fixed at {size} bytes, found {}",
                            name.name(),
                            bytes.len()
                        ),
                    ));
                }
                Avro::Fixed(size, bytes)
            }
            Physical::Enum(e) => {
                let s = v.as_str().ok_or_else(|| expected("a symbol", path))?;
                match e.symbols.iter().position(|x| x == s) {
                    Some(i) => Avro::Enum(i as u32, s.to_string()),
                    None => {
                        return Err(fail(
                            path,
                            format!(
                                "{s:?} is not a symbol of {} ({})",
                                e.name.name(),
                                e.symbols.join(", ")
                            ),
                        ))
                    }
                }
            }
            Physical::Array(items) => {
                let a = v.as_array().ok_or_else(|| expected("an array", path))?;
                let mut out = Vec::with_capacity(a.len());
                for (i, item) in a.iter().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    out.push(self.value(items, item, path)?);
                    path.truncate(len);
                }
                Avro::Array(out)
            }
            Physical::Map(values) => {
                let o = v.as_object().ok_or_else(|| expected("an object", path))?;
                let mut out = HashMap::with_capacity(o.len());
                for (k, item) in o {
                    let len = push_field(path, k);
                    out.insert(k.clone(), self.value(values, item, path)?);
                    path.truncate(len);
                }
                Avro::Map(out)
            }
            Physical::Union(branches) => return self.union(branches, v, path),
            Physical::Record(r) => {
                let o = v
                    .as_object()
                    .ok_or_else(|| expected(&format!("record {}", r.name.name()), path))?;
                if let Some(unknown) = o.keys().find(|k| !r.lookup.contains_key(*k)) {
                    let len = push_field(path, unknown);
                    let e = fail(path, format!("not a field of {}", r.name.name()));
                    path.truncate(len);
                    return Err(e);
                }
                let mut out = Vec::with_capacity(r.fields.len());
                for f in &r.fields {
                    let len = push_field(path, &f.name);
                    let value = match (o.get(&f.name), &f.default) {
                        (Some(given), _) => self.value(&f.schema, given, path)?,
                        (None, Some(default)) => self.value(&f.schema, default, path)?,
                        (None, None) => {
                            return Err(fail(path, "missing, and the field has no default".into()))
                        }
                    };
                    path.truncate(len);
                    out.push((f.name.clone(), value));
                }
                Avro::Record(out)
            }
        })
    }

    /// A union: the branch named Avro's way (`{"long": 5}`), else the first branch that fits.
    fn union(&self, branches: &[Schema], v: &Json, path: &mut String) -> Result<Avro, Rejection> {
        if let Some((name, inner)) = v
            .as_object()
            .filter(|o| o.len() == 1)
            .and_then(|o| o.iter().next())
        {
            if let Some(i) = branches.iter().position(|b| self.branch_name(b) == *name) {
                return Ok(Avro::Union(
                    i as u32,
                    Box::new(self.value(&branches[i], inner, path)?),
                ));
            }
        }
        // A union of null and one type: that type's own reason says more than "no branch".
        let mut others = branches
            .iter()
            .enumerate()
            .filter(|(_, b)| !matches!(b, Schema::Null));
        if let (Some((i, only)), None, false) = (others.next(), others.next(), v.is_null()) {
            return Ok(Avro::Union(i as u32, Box::new(self.value(only, v, path)?)));
        }
        for (i, b) in branches.iter().enumerate() {
            if let Ok(value) = self.value(b, v, path) {
                return Ok(Avro::Union(i as u32, Box::new(value)));
            }
        }
        let names: Vec<String> = branches.iter().map(|b| self.branch_name(b)).collect();
        Err(Rejection {
            path: path.clone(),
            reason: format!(
                "{} fits no branch of the union [{}]",
                kind_of(v),
                names.join(", ")
            ),
        })
    }

    fn branch_name(&self, s: &Schema) -> String {
        match s {
            Schema::Record(r) => full(&r.name),
            Schema::Enum(e) => full(&e.name),
            Schema::Fixed(f) => full(&f.name),
            Schema::Ref { name } => full(name),
            Schema::Null => "null".into(),
            Schema::Boolean => "boolean".into(),
            Schema::Int => "int".into(),
            Schema::Long => "long".into(),
            Schema::Float => "float".into(),
            Schema::Double => "double".into(),
            Schema::Bytes => "bytes".into(),
            Schema::String => "string".into(),
            Schema::Array(_) => "array".into(),
            Schema::Map(_) => "map".into(),
            other => match physical(other, &self.names) {
                Some(Physical::Int) => "int".into(),
                Some(Physical::Long) => "long".into(),
                Some(Physical::String) => "string".into(),
                _ => "bytes".into(),
            },
        }
    }
}

fn push_field(path: &mut String, name: &str) -> usize {
    let len = path.len();
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(name);
    len
}

/// Avro's JSON form of bytes: a string whose code points 0 to 255 are the bytes.
fn latin1(v: &Json) -> Option<Vec<u8>> {
    v.as_str()?
        .chars()
        .map(|c| u8::try_from(u32::from(c)).ok())
        .collect()
}

fn kind_of(v: &Json) -> String {
    match v {
        Json::Null => "null".into(),
        Json::Bool(b) => format!("boolean {b}"),
        Json::Number(n) => format!("number {n}"),
        Json::String(s) if s.len() <= 40 => format!("string {s:?}"),
        Json::String(_) => "a string".into(),
        Json::Array(_) => "an array".into(),
        Json::Object(_) => "an object".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ORDER: &str = r#"{"type": "record", "name": "Order", "fields": [
        {"name": "id", "type": "long"},
        {"name": "total", "type": "double"},
        {"name": "note", "type": ["null", "string"], "default": null},
        {"name": "state", "type": {"type": "enum", "name": "State", "symbols": ["NEW", "PAID"]}, "default": "NEW"},
        {"name": "items", "type": {"type": "array", "items": {"type": "record", "name": "Item",
            "fields": [{"name": "sku", "type": "string"}, {"name": "qty", "type": "int"}]}}, "default": []},
        {"name": "attrs", "type": {"type": "map", "values": "string"}, "default": {}}]}"#;

    fn convert(event: Json) -> Result<Avro, String> {
        let schema = Schema::parse_str(ORDER).unwrap();
        Converter::new(&schema)
            .convert(&event)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_fitting_event_converts_and_encodes_as_its_schema() {
        let parsed = crate::avro::AvroSchema::parse(ORDER).unwrap();
        let schema = parsed.schema();
        let event = json!({"id": 7, "total": 12, "note": "gift", "items": [{"sku": "a", "qty": 2}],
            "attrs": {"k": "v"}});
        let value = Converter::new(schema).convert(&event).unwrap();
        let bytes = parsed.encode(value.clone()).unwrap();
        let reader = apache_avro::reader::datum::GenericDatumReader::builder(schema);
        let back = reader.build().unwrap().read_value(&mut &bytes[..]).unwrap();
        assert_eq!(back, value);
        // Defaults fill what is left out; the Avro way of naming a branch works too.
        let v = convert(json!({"id": 1, "total": 0.5, "note": {"string": "x"}})).unwrap();
        let Avro::Record(fields) = v else { panic!() };
        assert_eq!(fields[3], ("state".into(), Avro::Enum(0, "NEW".into())));
        assert_eq!(
            fields[2].1,
            Avro::Union(1, Box::new(Avro::String("x".into())))
        );
    }

    fn arbitrary_json() -> impl proptest::strategy::Strategy<Value = Json> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Json::Null),
            any::<bool>().prop_map(Json::from),
            any::<i64>().prop_map(Json::from),
            any::<f64>().prop_map(Json::from),
            prop_oneof![
                Just("NEW".to_string()),
                Just("id".to_string()),
                ".{0,8}".prop_map(String::from)
            ]
            .prop_map(Json::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            let keys = prop_oneof![
                Just("id".to_string()),
                Just("total".to_string()),
                Just("items".to_string()),
                Just("note".to_string()),
                Just("sku".to_string()),
                Just("qty".to_string()),
                "[a-z]{1,4}"
            ];
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Json::from),
                proptest::collection::btree_map(keys, inner, 0..6)
                    .prop_map(|m| Json::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        /// Whatever JSON arrives, the converter answers with a value or a reason, never a panic;
        /// and a value it gives encodes under the schema.
        #[test]
        fn arbitrary_json_converts_or_says_why(event in arbitrary_json()) {
            let parsed = crate::avro::AvroSchema::parse(ORDER).unwrap();
            match Converter::new(parsed.schema()).convert(&event) {
                Ok(value) => proptest::prop_assert!(parsed.encode(value).is_ok()),
                Err(e) => proptest::prop_assert!(!e.reason.is_empty()),
            }
        }
    }

    #[test]
    fn every_refusal_names_the_field_and_says_why() {
        let cases = [
            (
                json!({"total": 1}),
                "id: missing, and the field has no default",
            ),
            (
                json!({"id": "7", "total": 1}),
                "id: expected a long, found string \"7\"",
            ),
            (
                json!({"id": 7, "total": 1, "totl": 2}),
                "totl: not a field of Order",
            ),
            (
                json!({"id": 7, "total": 1, "state": "LOST"}),
                "state: \"LOST\" is not a symbol of State (NEW, PAID)",
            ),
            (
                json!({"id": 7, "total": 1, "items": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 5000000000_i64}]}),
                "items[1].qty: 5000000000 does not fit an int (32 bits)",
            ),
            (
                json!({"id": 7, "total": 1, "note": 5}),
                "note: expected a string, found number 5",
            ),
            (
                json!({"id": 7, "total": 1, "attrs": {"k": 1}}),
                "attrs.k: expected a string, found number 1",
            ),
            (json!([1]), "expected record Order, found an array"),
        ];
        for (event, why) in cases {
            assert_eq!(convert(event).unwrap_err(), why);
        }
    }
}
