//! Compatibility between Avro schemas, by the specification's schema-resolution rules: whether
//! a reader schema can read what a writer schema wrote, and if not, every reason, each with the
//! path of the field (`Order.total: type changed from long to string`). Standard checkers answer
//! only "incompatible"; a producer needs to know which field to fix.
//!
//! The modes are those of the Confluent registry: BACKWARD means the new schema reads data of
//! the latest version, FORWARD that the latest version reads data of the new one, FULL both;
//! the TRANSITIVE forms check every earlier version instead of the latest only.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use apache_avro::schema::{InnerDecimalSchema, Name, RecordSchema, UuidSchema};
use apache_avro::Schema;

use crate::incompatibility::Incompatibility;

/// A compatibility mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compatibility {
    /// Anything goes.
    None,
    /// The new schema reads data of the latest version (the default).
    #[default]
    Backward,
    /// The new schema reads data of every version.
    BackwardTransitive,
    /// The latest version reads data of the new schema.
    Forward,
    /// Every version reads data of the new schema.
    ForwardTransitive,
    /// Backward and forward with the latest version.
    Full,
    /// Backward and forward with every version.
    FullTransitive,
}

impl Compatibility {
    /// Every mode, as the Confluent API names them.
    pub const ALL: [Compatibility; 7] = [
        Compatibility::None,
        Compatibility::Backward,
        Compatibility::BackwardTransitive,
        Compatibility::Forward,
        Compatibility::ForwardTransitive,
        Compatibility::Full,
        Compatibility::FullTransitive,
    ];

    /// The name in the Confluent API.
    pub fn name(self) -> &'static str {
        match self {
            Compatibility::None => "NONE",
            Compatibility::Backward => "BACKWARD",
            Compatibility::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Compatibility::Forward => "FORWARD",
            Compatibility::ForwardTransitive => "FORWARD_TRANSITIVE",
            Compatibility::Full => "FULL",
            Compatibility::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    fn backward(self) -> bool {
        matches!(
            self,
            Compatibility::Backward
                | Compatibility::BackwardTransitive
                | Compatibility::Full
                | Compatibility::FullTransitive
        )
    }

    fn forward(self) -> bool {
        matches!(
            self,
            Compatibility::Forward
                | Compatibility::ForwardTransitive
                | Compatibility::Full
                | Compatibility::FullTransitive
        )
    }

    fn transitive(self) -> bool {
        matches!(
            self,
            Compatibility::BackwardTransitive
                | Compatibility::ForwardTransitive
                | Compatibility::FullTransitive
        )
    }

    /// Every reason `new` may not be registered after `earlier` (the subject's live versions,
    /// oldest first, with their version numbers). Empty means compatible.
    pub fn check(
        self,
        new: &crate::schema::Schema,
        earlier: &[(u32, &crate::schema::Schema)],
    ) -> Vec<Incompatibility> {
        let against = match self.transitive() {
            true => earlier,
            false => earlier
                .split_last()
                .map_or(&[][..], |(_, rest)| &earlier[rest.len()..]),
        };
        let mut found = Vec::new();
        for &(version, old) in against {
            if self.backward() {
                let consequence =
                    format!("data written with version {version} cannot be read by the new schema");
                found.extend(reads(new, old, true, &consequence));
            }
            if self.forward() {
                let consequence =
                    format!("version {version} cannot read data written with the new schema");
                found.extend(reads(old, new, false, &consequence));
            }
        }
        found
    }
}

impl fmt::Display for Compatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Compatibility {
    type Err = String;

    fn from_str(s: &str) -> Result<Compatibility, String> {
        Compatibility::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let names: Vec<&str> = Compatibility::ALL.iter().map(|c| c.name()).collect();
                format!("unknown compatibility {s:?}; one of {}", names.join(", "))
            })
    }
}

/// Every reason `reader` cannot read data written with `writer`, of either kind.
fn reads(
    reader: &crate::schema::Schema,
    writer: &crate::schema::Schema,
    reader_is_new: bool,
    consequence: &str,
) -> Vec<Incompatibility> {
    use crate::schema::Schema as Any;
    match (reader, writer) {
        (Any::Avro(r), Any::Avro(w)) => {
            can_read(r.schema(), w.schema(), reader_is_new, consequence)
        }
        (Any::Json(r), Any::Json(w)) => {
            crate::json_compat::can_read(r.value(), w.value(), reader_is_new, consequence)
        }
        (r, w) => {
            let (old, new) = match reader_is_new {
                true => (w.kind(), r.kind()),
                false => (r.kind(), w.kind()),
            };
            vec![Incompatibility {
                path: "(root)".into(),
                reason: format!("schema type changed from {old} to {new}"),
                consequence: consequence.to_string(),
            }]
        }
    }
}

/// Every reason `reader` cannot read data written with `writer`. `reader_is_new` says which of
/// the two is the new schema, for the wording ("added" or "removed", "from" and "to").
pub fn can_read(
    reader: &Schema,
    writer: &Schema,
    reader_is_new: bool,
    consequence: &str,
) -> Vec<Incompatibility> {
    let mut checker = Checker {
        readers: named(reader),
        writers: named(writer),
        reader_is_new,
        consequence,
        seen: HashSet::new(),
        found: Vec::new(),
    };
    let root = match physical(reader, &checker.readers) {
        Some(Physical::Record(r)) => r.name.name().to_string(),
        _ => String::from("(root)"),
    };
    checker.check(reader, writer, &root);
    checker.found
}

/// The named types (records, enums, fixed) a schema defines, by full name.
pub(crate) fn named(schema: &Schema) -> HashMap<String, &Schema> {
    fn walk<'a>(s: &'a Schema, out: &mut HashMap<String, &'a Schema>) {
        match s {
            // A record defined twice (or recursively) is walked once.
            Schema::Record(r) if out.insert(full(&r.name), s).is_none() => {
                for f in &r.fields {
                    walk(&f.schema, out);
                }
            }
            Schema::Enum(e) => {
                out.insert(full(&e.name), s);
            }
            Schema::Fixed(f) => {
                out.insert(full(&f.name), s);
            }
            Schema::Array(a) => walk(&a.items, out),
            Schema::Map(m) => walk(&m.types, out),
            Schema::Union(u) => u.variants().iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = HashMap::new();
    walk(schema, &mut out);
    out
}

pub(crate) fn full(name: &Name) -> String {
    name.fullname(None)
}

/// A schema as it is encoded: logical types by their underlying type, references resolved.
pub(crate) enum Physical<'a> {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
    Array(&'a Schema),
    Map(&'a Schema),
    Union(&'a [Schema]),
    Record(&'a RecordSchema),
    Enum(&'a apache_avro::schema::EnumSchema),
    Fixed(&'a Name, usize),
}

pub(crate) fn physical<'a>(
    s: &'a Schema,
    names: &HashMap<String, &'a Schema>,
) -> Option<Physical<'a>> {
    Some(match s {
        Schema::Null => Physical::Null,
        Schema::Boolean => Physical::Boolean,
        Schema::Int | Schema::Date | Schema::TimeMillis => Physical::Int,
        Schema::Long
        | Schema::TimeMicros
        | Schema::TimestampMillis
        | Schema::TimestampMicros
        | Schema::TimestampNanos
        | Schema::LocalTimestampMillis
        | Schema::LocalTimestampMicros
        | Schema::LocalTimestampNanos => Physical::Long,
        Schema::Float => Physical::Float,
        Schema::Double => Physical::Double,
        Schema::Bytes | Schema::BigDecimal => Physical::Bytes,
        Schema::String => Physical::String,
        Schema::Array(a) => Physical::Array(&a.items),
        Schema::Map(m) => Physical::Map(&m.types),
        Schema::Union(u) => Physical::Union(u.variants()),
        Schema::Record(r) => Physical::Record(r),
        Schema::Enum(e) => Physical::Enum(e),
        Schema::Fixed(f) | Schema::Duration(f) => Physical::Fixed(&f.name, f.size),
        Schema::Decimal(d) => match &d.inner {
            InnerDecimalSchema::Bytes => Physical::Bytes,
            InnerDecimalSchema::Fixed(f) => Physical::Fixed(&f.name, f.size),
        },
        Schema::Uuid(UuidSchema::String) => Physical::String,
        Schema::Uuid(UuidSchema::Bytes) => Physical::Bytes,
        Schema::Uuid(UuidSchema::Fixed(f)) => Physical::Fixed(&f.name, f.size),
        Schema::Ref { name } => return physical(names.get(&full(name))?, names),
    })
}

/// How a type is named in a message.
fn describe(s: &Schema, names: &HashMap<String, &Schema>) -> String {
    match physical(s, names) {
        None => String::from("an unknown type"),
        Some(p) => match p {
            Physical::Null => "null".into(),
            Physical::Boolean => "boolean".into(),
            Physical::Int => "int".into(),
            Physical::Long => "long".into(),
            Physical::Float => "float".into(),
            Physical::Double => "double".into(),
            Physical::Bytes => "bytes".into(),
            Physical::String => "string".into(),
            Physical::Array(items) => format!("array of {}", describe(items, names)),
            Physical::Map(values) => format!("map of {}", describe(values, names)),
            Physical::Union(vs) => {
                let vs: Vec<String> = vs.iter().map(|v| describe(v, names)).collect();
                format!("union [{}]", vs.join(", "))
            }
            Physical::Record(r) => format!("record {}", full(&r.name)),
            Physical::Enum(e) => format!("enum {}", full(&e.name)),
            Physical::Fixed(n, size) => format!("fixed {} of {size} bytes", full(n)),
        },
    }
}

struct Checker<'a, 'c> {
    readers: HashMap<String, &'a Schema>,
    writers: HashMap<String, &'a Schema>,
    reader_is_new: bool,
    consequence: &'c str,
    /// Pairs of named types already compared (recursive types end here).
    seen: HashSet<(String, String)>,
    found: Vec<Incompatibility>,
}

impl<'a> Checker<'a, '_> {
    fn report(&mut self, path: &str, reason: String) {
        self.found.push(Incompatibility {
            path: path.to_string(),
            reason,
            consequence: self.consequence.to_string(),
        });
    }

    /// "from {old} to {new}", whichever of reader and writer is new.
    fn change(&self, reader: &str, writer: &str) -> String {
        match self.reader_is_new {
            true => format!("from {writer} to {reader}"),
            false => format!("from {reader} to {writer}"),
        }
    }

    /// Whether `reader` reads `writer` with no reason found (nothing reported).
    fn reads(&mut self, reader: &'a Schema, writer: &'a Schema, path: &str) -> bool {
        let before = self.found.len();
        self.check(reader, writer, path);
        let ok = self.found.len() == before;
        self.found.truncate(before);
        ok
    }

    fn check(&mut self, reader: &'a Schema, writer: &'a Schema, path: &str) {
        let (Some(r), Some(w)) = (
            physical(reader, &self.readers),
            physical(writer, &self.writers),
        ) else {
            self.report(path, String::from("refers to a type it does not define"));
            return;
        };
        use Physical as P;
        match (r, w) {
            // A union written: every branch the writer may have chosen must be readable.
            (_, P::Union(branches)) => {
                for b in branches {
                    if let Some(P::Union(_)) = physical(b, &self.writers) {
                        continue;
                    }
                    if !self.reads(reader, b, path) {
                        let (rd, wd) =
                            (describe(reader, &self.readers), describe(b, &self.writers));
                        let reason = match self.reader_is_new {
                            true => format!(
                                "the old schema allows {wd}, which the new {rd} cannot read"
                            ),
                            false => format!(
                                "the new schema allows {wd}, which the old {rd} cannot read"
                            ),
                        };
                        self.report(path, reason);
                    }
                }
            }
            // A union read: the first branch that reads what was written.
            (P::Union(branches), _) => {
                if !branches.iter().any(|b| self.reads(b, writer, path)) {
                    let (rd, wd) = (
                        describe(reader, &self.readers),
                        describe(writer, &self.writers),
                    );
                    self.report(path, format!("type changed {}", self.change(&rd, &wd)));
                }
            }
            (P::Null, P::Null)
            | (P::Boolean, P::Boolean)
            | (P::Int, P::Int)
            | (P::Long, P::Int | P::Long)
            | (P::Float, P::Int | P::Long | P::Float)
            | (P::Double, P::Int | P::Long | P::Float | P::Double)
            | (P::Bytes | P::String, P::Bytes | P::String) => {}
            (P::Array(ri), P::Array(wi)) => self.check(ri, wi, &format!("{path}[]")),
            (P::Map(rv), P::Map(wv)) => self.check(rv, wv, &format!("{path}{{}}")),
            (P::Fixed(rn, rs), P::Fixed(wn, ws)) => {
                if rn.name() != wn.name() {
                    let change = self.change(rn.name(), wn.name());
                    self.report(path, format!("fixed type renamed {change}"));
                }
                if rs != ws {
                    let change = self.change(&rs.to_string(), &ws.to_string());
                    self.report(path, format!("fixed size changed {change} bytes"));
                }
            }
            (P::Enum(re), P::Enum(we)) => {
                if re.name.name() != we.name.name() && !aliased(&re.aliases, &we.name) {
                    let change = self.change(re.name.name(), we.name.name());
                    self.report(path, format!("enum renamed {change}"));
                }
                if re.default.is_none() {
                    for symbol in we.symbols.iter().filter(|s| !re.symbols.contains(s)) {
                        let what = match self.reader_is_new {
                            true => "removed",
                            false => "added",
                        };
                        self.report(
                            path,
                            format!("symbol {symbol} {what}, and the reading enum has no default"),
                        );
                    }
                }
            }
            (P::Record(rr), P::Record(wr)) => self.record(rr, wr, path),
            _ => {
                let (rd, wd) = (
                    describe(reader, &self.readers),
                    describe(writer, &self.writers),
                );
                self.report(path, format!("type changed {}", self.change(&rd, &wd)));
            }
        }
    }

    fn record(&mut self, reader: &'a RecordSchema, writer: &'a RecordSchema, path: &str) {
        if reader.name.name() != writer.name.name() && !aliased(&reader.aliases, &writer.name) {
            let change = self.change(reader.name.name(), writer.name.name());
            self.report(path, format!("record renamed {change}"));
            return;
        }
        if !self.seen.insert((full(&reader.name), full(&writer.name))) {
            return;
        }
        for field in &reader.fields {
            let field_path = format!("{path}.{}", field.name);
            let written = writer
                .fields
                .iter()
                .find(|w| w.name == field.name || field.aliases.contains(&w.name));
            match written {
                Some(w) => self.check(&field.schema, &w.schema, &field_path),
                None if field.default.is_some() => {}
                None => {
                    let reason = match self.reader_is_new {
                        true => "field added without a default".to_string(),
                        false => {
                            "field removed, and the old schema has no default for it".to_string()
                        }
                    };
                    self.report(&field_path, reason);
                }
            }
        }
    }
}

/// Whether `aliases` (of a reading named type) name the writer's type.
fn aliased(aliases: &Option<Vec<apache_avro::schema::Alias>>, name: &Name) -> bool {
    aliases
        .iter()
        .flatten()
        .any(|a| a.name() == name.name() || a.fullname(None) == full(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::avro::AvroSchema;

    fn avro(text: &str) -> crate::schema::Schema {
        crate::schema::Schema::Avro(AvroSchema::parse(text).unwrap())
    }

    fn order(fields: &str) -> crate::schema::Schema {
        avro(&format!(
            r#"{{"type": "record", "name": "Order", "fields": [{fields}]}}"#
        ))
    }

    fn messages(
        mode: Compatibility,
        new: &crate::schema::Schema,
        earlier: &[&crate::schema::Schema],
    ) -> Vec<String> {
        let earlier: Vec<(u32, &crate::schema::Schema)> = earlier
            .iter()
            .enumerate()
            .map(|(i, s)| (i as u32 + 1, *s))
            .collect();
        mode.check(new, &earlier)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    const ID: &str = r#"{"name": "id", "type": "long"}"#;

    #[test]
    fn a_changed_type_names_the_field_and_both_types() {
        let old = order(&format!(r#"{ID}, {{"name": "total", "type": "long"}}"#));
        let new = order(&format!(r#"{ID}, {{"name": "total", "type": "string"}}"#));
        assert_eq!(
            messages(Compatibility::Backward, &new, &[&old]),
            ["Order.total: type changed from long to string; data written with version 1 cannot be read by the new schema"]
        );
        // Promotions read: long written, double read.
        let wider = order(&format!(r#"{ID}, {{"name": "total", "type": "double"}}"#));
        assert!(messages(Compatibility::Backward, &wider, &[&old]).is_empty());
        // But not the other way round.
        assert_eq!(
            messages(Compatibility::Forward, &wider, &[&old]),
            ["Order.total: type changed from long to double; version 1 cannot read data written with the new schema"]
        );
    }

    #[test]
    fn fields_added_and_removed_need_defaults_by_mode() {
        let old = order(ID);
        let with_default = order(&format!(
            r#"{ID}, {{"name": "note", "type": "string", "default": ""}}"#
        ));
        let without = order(&format!(r#"{ID}, {{"name": "note", "type": "string"}}"#));
        assert!(messages(Compatibility::Full, &with_default, &[&old]).is_empty());
        assert_eq!(
            messages(Compatibility::Backward, &without, &[&old]),
            ["Order.note: field added without a default; data written with version 1 cannot be read by the new schema"]
        );
        // Adding a field is forward compatible: the old schema ignores it.
        assert!(messages(Compatibility::Forward, &without, &[&old]).is_empty());
        // Removing a field without a default is not.
        assert_eq!(
            messages(Compatibility::Forward, &old, &[&without]),
            ["Order.note: field removed, and the old schema has no default for it; version 1 cannot read data written with the new schema"]
        );
        assert!(messages(Compatibility::Backward, &old, &[&without]).is_empty());
        assert!(messages(Compatibility::None, &without, &[&old]).is_empty());
    }

    #[test]
    fn transitive_modes_check_every_version() {
        let v1 = order(ID);
        let v2 = order(&format!(
            r#"{ID}, {{"name": "note", "type": "string", "default": ""}}"#
        ));
        // v3 drops the default: v2's data has the field, v1's does not.
        let v3 = order(&format!(r#"{ID}, {{"name": "note", "type": "string"}}"#));
        assert!(messages(Compatibility::Backward, &v3, &[&v1, &v2]).is_empty());
        assert_eq!(
            messages(Compatibility::BackwardTransitive, &v3, &[&v1, &v2]),
            ["Order.note: field added without a default; data written with version 1 cannot be read by the new schema"]
        );
        assert_eq!(
            messages(Compatibility::FullTransitive, &v3, &[&v1, &v2]).len(),
            1
        );
        assert!(messages(Compatibility::ForwardTransitive, &v3, &[&v1, &v2]).is_empty());
    }

    #[test]
    fn nested_records_arrays_maps_unions_and_enums_have_paths() {
        let old = order(
            r#"{"name": "items", "type": {"type": "array", "items": {"type": "record", "name": "Item",
                 "fields": [{"name": "sku", "type": "string"}, {"name": "qty", "type": "int"}]}}},
               {"name": "attrs", "type": {"type": "map", "values": "string"}},
               {"name": "coupon", "type": ["null", "string"], "default": null},
               {"name": "state", "type": {"type": "enum", "name": "State", "symbols": ["NEW", "PAID", "SENT"]}}"#,
        );
        let new = order(
            r#"{"name": "items", "type": {"type": "array", "items": {"type": "record", "name": "Item",
                 "fields": [{"name": "sku", "type": "string"}, {"name": "qty", "type": "boolean"}]}}},
               {"name": "attrs", "type": {"type": "map", "values": "long"}},
               {"name": "coupon", "type": "string"},
               {"name": "state", "type": {"type": "enum", "name": "State", "symbols": ["NEW", "PAID"]}}"#,
        );
        let found = messages(Compatibility::Backward, &new, &[&old]);
        let reasons: Vec<&str> = found.iter().map(|m| m.split(';').next().unwrap()).collect();
        assert_eq!(
            reasons,
            [
                "Order.items[].qty: type changed from int to boolean",
                "Order.attrs{}: type changed from string to long",
                "Order.coupon: the old schema allows null, which the new string cannot read",
                "Order.state: symbol SENT removed, and the reading enum has no default",
            ]
        );
    }

    #[test]
    fn recursive_and_aliased_types_resolve() {
        let list = |field: &str| {
            avro(&format!(
                r#"{{"type": "record", "name": "Node", "fields": [{{"name": "{field}", "type": "long", "aliases": ["value"]}},
                    {{"name": "next", "type": ["null", "Node"], "default": null}}]}}"#
            ))
        };
        assert!(messages(Compatibility::Full, &list("value"), &[&list("value")]).is_empty());
        // A renamed field reads through its alias.
        assert!(messages(Compatibility::Backward, &list("amount"), &[&list("value")]).is_empty());
    }

    #[test]
    fn json_schemas_check_by_the_same_modes_and_kinds_do_not_mix() {
        let json =
            |t: &str| crate::schema::Schema::Json(crate::json::JsonSchema::parse(t).unwrap());
        let old = json(r#"{"type": "object", "properties": {"total": {"type": "integer"}}}"#);
        let new = json(r#"{"type": "object", "properties": {"total": {"type": "string"}}}"#);
        assert_eq!(
            messages(Compatibility::Forward, &new, &[&old]),
            ["total: type changed from integer to string; version 1 cannot read data written with the new schema"]
        );
        assert_eq!(
            messages(Compatibility::Backward, &order(ID), &[&old]),
            ["(root): schema type changed from JSON to AVRO; data written with version 1 cannot be read by the new schema"]
        );
    }

    #[test]
    fn modes_parse_by_their_confluent_names() {
        for mode in Compatibility::ALL {
            assert_eq!(mode.name().parse::<Compatibility>().unwrap(), mode);
        }
        assert!("SIDEWAYS"
            .parse::<Compatibility>()
            .unwrap_err()
            .contains("FULL_TRANSITIVE"));
    }
}
