//! The gatekeeper: a repository bound to a subject takes only events that fit it.
//!
//! - JSON events are checked against the subject's Avro schema (converted to Avro, as the Gilt
//!   gateway does) or JSON Schema; a refusal names the field and the reason.
//! - Binary Avro arrives in any of the three [`framing`]s. The frame must name a
//!   version of the bound subject (deleted ones too: producers may still use them). The datum is
//!   decoded with the schema it was written with and resolved to the schema the binding reads
//!   with, so data of older versions arrives in today's shape.
//!
//! Which versions count is the binding's [`Versions`] policy. A [`Gate`] keeps the contract it
//! built and rebuilds it only when the registry has changed.

use std::str::FromStr;
use std::sync::{Arc, Mutex};

use apache_avro::reader::datum::GenericDatumReader;
use eddy_base::sync::lock;
use serde_json::Value as Json;

use crate::avro_json::{Converter, Rejection};
use crate::framing::{self, Writer};
use crate::registry::Registry;
use crate::schema::Schema;

/// Which versions of the subject an event may fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Versions {
    /// The latest live version (the default); binary data of older versions is resolved to it.
    #[default]
    Latest,
    /// Any live version; binary data is kept as written.
    Any,
    /// This version; binary data of other versions is resolved to it.
    Pinned(u32),
}

impl FromStr for Versions {
    type Err = String;

    fn from_str(s: &str) -> Result<Versions, String> {
        match s {
            "latest" => Ok(Versions::Latest),
            "any" => Ok(Versions::Any),
            n => n
                .parse()
                .ok()
                .filter(|&n| n >= 1)
                .map(Versions::Pinned)
                .ok_or_else(|| {
                    format!("{s:?} is not a version policy: latest, any or a version number")
                }),
        }
    }
}

impl std::fmt::Display for Versions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Versions::Latest => f.write_str("latest"),
            Versions::Any => f.write_str("any"),
            Versions::Pinned(n) => write!(f, "{n}"),
        }
    }
}

/// A repository's binding to a subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The subject.
    pub subject: String,
    /// Which of its versions count.
    pub versions: Versions,
}

/// Why a gate cannot check anything yet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GateError {
    /// The subject has no live version.
    #[error("subject {0:?} has no schema: register one before sending events")]
    NoSchema(String),
    /// The pinned version does not exist.
    #[error("version {version} of subject {subject:?} does not exist")]
    NoVersion {
        /// The subject.
        subject: String,
        /// The version.
        version: u32,
    },
}

/// A registry's view for one binding, rebuilt when the registry changes.
pub struct Gate {
    registry: Arc<Registry>,
    binding: Binding,
    cached: Mutex<Option<(u64, Arc<Contract>)>>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("binding", &self.binding)
            .finish()
    }
}

impl Gate {
    /// A gate for `binding`.
    pub fn new(registry: Arc<Registry>, binding: Binding) -> Gate {
        // Avro lengths come from untrusted bytes: no datum may make apache-avro allocate more
        // than this (the first caller in a process sets it).
        apache_avro::util::max_allocation_bytes(64 << 20);
        Gate {
            registry,
            binding,
            cached: Mutex::new(None),
        }
    }

    /// What it is bound to.
    pub fn binding(&self) -> &Binding {
        &self.binding
    }

    /// The contract in force now.
    pub fn contract(&self) -> Result<Arc<Contract>, GateError> {
        let generation = self.registry.generation();
        let mut cached = lock(&self.cached);
        if let Some((g, c)) = cached.as_ref() {
            if *g == generation {
                return Ok(c.clone());
            }
        }
        let contract = Arc::new(Contract::build(&self.registry, &self.binding)?);
        *cached = Some((generation, contract.clone()));
        Ok(contract)
    }
}

/// A version of the subject, as the gate uses it.
struct Known {
    version: u32,
    id: u32,
    schema: Arc<Schema>,
}

/// What a binding accepts, from one state of the registry.
pub struct Contract {
    subject: String,
    /// What JSON events are checked against: an event must fit one, the first is reported.
    checks: Vec<Known>,
    /// Every Avro version, deleted ones too: what binary data may be written with.
    writers: Vec<Known>,
    /// What binary data is resolved to (none: kept as written).
    reader: Option<Arc<Schema>>,
}

impl std::fmt::Debug for Contract {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let versions: Vec<u32> = self.checks.iter().map(|k| k.version).collect();
        f.debug_struct("Contract")
            .field("subject", &self.subject)
            .field("checks", &versions)
            .finish_non_exhaustive()
    }
}

impl Contract {
    fn build(registry: &Registry, binding: &Binding) -> Result<Contract, GateError> {
        let subject = &binding.subject;
        let history = registry.history(subject);
        let known = |(v, schema): &(crate::registry::Version, Arc<Schema>)| Known {
            version: v.version,
            id: v.id,
            schema: schema.clone(),
        };
        let live: Vec<Known> = history
            .iter()
            .filter(|(v, _)| !v.deleted)
            .map(known)
            .collect();
        let checks: Vec<Known> = match binding.versions {
            Versions::Latest => live.into_iter().last().into_iter().collect(),
            Versions::Any => live.into_iter().rev().collect(),
            Versions::Pinned(n) => {
                let pinned = history.iter().find(|(v, _)| v.version == n).map(known);
                vec![pinned.ok_or_else(|| GateError::NoVersion {
                    subject: subject.clone(),
                    version: n,
                })?]
            }
        };
        if checks.is_empty() {
            return Err(GateError::NoSchema(subject.clone()));
        }
        let reader = match binding.versions {
            Versions::Any => None,
            _ => checks.first().map(|k| k.schema.clone()),
        };
        let writers = history
            .iter()
            .filter(|(_, s)| s.as_avro().is_some())
            .map(known)
            .collect();
        Ok(Contract {
            subject: subject.clone(),
            checks,
            writers,
            reader,
        })
    }

    /// The subject.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// A checker for a batch of JSON events (the schemas' named types are resolved once).
    pub fn checker(&self) -> Checker<'_> {
        let prepared = self
            .checks
            .iter()
            .map(|k| match k.schema.as_ref() {
                Schema::Avro(a) => Prepared::Avro(Converter::new(a.schema())),
                Schema::Json(j) => Prepared::Json(j),
            })
            .collect();
        Checker {
            contract: self,
            prepared,
        }
    }

    /// Decodes one framed Avro datum at the start of `bytes`: the event as JSON, and how many
    /// bytes the frame took.
    pub fn decode(&self, bytes: &[u8]) -> Result<(Json, usize), Rejection> {
        let whole = |reason: String| Rejection {
            path: String::new(),
            reason,
        };
        let (writer, mut datum) = framing::split(bytes).map_err(|e| whole(e.to_string()))?;
        let found = self.writers.iter().find(|k| {
            let Some(a) = k.schema.as_avro() else {
                return false;
            };
            match writer {
                Writer::Id(id) => k.id == id,
                Writer::Crc64(fp) => a.crc64() == fp,
                Writer::Sha256(fp) => a.sha256() == fp,
            }
        });
        let Some(known) = found else {
            return Err(whole(format!(
                "{writer} is not an Avro version of subject {:?}",
                self.subject
            )));
        };
        let Some(writer_schema) = avro_model(&known.schema) else {
            return Err(whole("the writer schema is not Avro".into()));
        };
        let undecodable = |e: apache_avro::Error| {
            whole(format!(
                "the datum does not decode with version {} (schema id {}): {e}",
                known.version, known.id
            ))
        };
        let value = GenericDatumReader::builder(writer_schema)
            .maybe_reader_schema(self.reader.as_deref().and_then(avro_model))
            .build()
            .and_then(|r| r.read_value(&mut datum))
            .map_err(undecodable)?;
        let json =
            Json::try_from(value).map_err(|e| whole(format!("the datum has no JSON form: {e}")))?;
        Ok((json, bytes.len() - datum.len()))
    }
}

fn avro_model(s: &Schema) -> Option<&apache_avro::Schema> {
    s.as_avro().map(|a| a.schema())
}

enum Prepared<'a> {
    Avro(Converter<'a>),
    Json(&'a crate::json::JsonSchema),
}

/// Checks JSON events against a contract.
pub struct Checker<'a> {
    contract: &'a Contract,
    prepared: Vec<Prepared<'a>>,
}

impl Checker<'_> {
    /// Whether `event` fits; if not, every reason it does not fit the first schema checked
    /// (Avro gives the first; JSON Schema all).
    /// eddy's own fields (`@timestamp`, `@id`) and tags (`#host`) at the top are not the
    /// producer's data and are not checked.
    /// It takes the event to remove those in place rather than copy it.
    pub fn check(&self, event: Json) -> Result<(), Vec<Rejection>> {
        self.resolve(event).map(|_| ())
    }

    /// [`check`](Self::check), and for an Avro schema the event as the datum it converts to,
    /// in JSON: with the schema's defaults filled in, as a binary datum of the same subject
    /// gets them (`None` for JSON Schema, which has no defaults to fill).
    pub fn resolve(&self, mut event: Json) -> Result<Option<Json>, Vec<Rejection>> {
        if let Json::Object(o) = &mut event {
            o.retain(|k, _| !k.starts_with('@') && !k.starts_with('#'));
        }
        let event = &event;
        let mut first = None;
        for p in &self.prepared {
            let found = match p {
                Prepared::Avro(c) => match c.convert(event) {
                    Ok(datum) => return Ok(Json::try_from(datum).ok()),
                    Err(r) => vec![r],
                },
                Prepared::Json(j) => {
                    let v = j.violations(event);
                    if v.is_empty() {
                        return Ok(None);
                    }
                    v.into_iter()
                        .map(|v| Rejection {
                            path: v.path,
                            reason: v.reason,
                        })
                        .collect()
                }
            };
            first.get_or_insert(found);
        }
        let mut found = first.unwrap_or_default();
        if self.contract.checks.len() > 1 {
            let latest = &self.contract.checks[0];
            for r in &mut found {
                r.reason = format!("{} (version {}, the latest)", r.reason, latest.version);
            }
        }
        Err(found)
    }

    /// [`check`](Self::check) on JSON text.
    pub fn check_text(&self, text: &str) -> Result<(), Vec<Rejection>> {
        let event: Json = serde_json::from_str(text).map_err(|e| {
            vec![Rejection {
                path: String::new(),
                reason: format!("not JSON: {e}"),
            }]
        })?;
        self.check(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::SchemaType;
    use proptest::prelude::*;
    use serde_json::json;

    const V1: &str = r#"{"type": "record", "name": "Order", "fields": [
        {"name": "id", "type": "long"}, {"name": "total", "type": "double"}]}"#;
    const V2: &str = r#"{"type": "record", "name": "Order", "fields": [
        {"name": "id", "type": "long"}, {"name": "total", "type": "double"},
        {"name": "currency", "type": "string", "default": "EUR"}]}"#;

    fn registry() -> (tempfile::TempDir, Arc<Registry>) {
        let (dir, r) = crate::registry::scratch();
        r.register("orders", SchemaType::Avro, V1).unwrap();
        (dir, r)
    }

    fn bound(registry: Arc<Registry>, subject: &str, versions: Versions) -> Gate {
        let subject = subject.to_string();
        Gate::new(registry, Binding { subject, versions })
    }

    fn datum(schema: &str, value: apache_avro::types::Value) -> Vec<u8> {
        crate::avro::AvroSchema::parse(schema)
            .unwrap()
            .encode(value)
            .unwrap()
    }

    fn order(id: i64, total: f64) -> apache_avro::types::Value {
        use apache_avro::types::Value;
        Value::Record(vec![
            ("id".into(), Value::Long(id)),
            ("total".into(), Value::Double(total)),
        ])
    }

    #[test]
    fn json_events_resolve_to_the_bound_avro_schema_with_its_defaults() {
        let (_d, registry) = registry();
        registry.register("orders", SchemaType::Avro, V2).unwrap();
        let gate = bound(registry, "orders", Versions::Latest);
        let contract = gate.contract().unwrap();
        let resolved = contract
            .checker()
            .resolve(json!({"id": 1, "total": 2.5}))
            .unwrap()
            .unwrap();
        assert_eq!(resolved["currency"], "EUR", "{resolved}");
        assert_eq!(resolved["id"], 1, "{resolved}");
    }

    #[test]
    fn json_events_fit_the_latest_version_and_refusals_name_the_field() {
        let (_dir, r) = registry();
        let gate = bound(r.clone(), "orders", Versions::Latest);
        let c = gate.contract().unwrap();
        let checker = c.checker();
        assert!(checker.check_text(r#"{"id": 1, "total": 2.5}"#).is_ok());
        let own =
            r##"{"id": 1, "total": 2.5, "@timestamp": "2026-11-24T10:00:00Z", "#host": "a"}"##;
        assert!(checker.check_text(own).is_ok());
        let e = checker
            .check_text(r#"{"id": 1, "total": "2.5"}"#)
            .unwrap_err();
        assert_eq!(
            e[0].to_string(),
            r#"total: expected a number, found string "2.5""#
        );
        // A new version: the gate sees it without being told.
        r.register("orders", SchemaType::Avro, V2).unwrap();
        let c = gate.contract().unwrap();
        let e = c
            .checker()
            .check(json!({"id": 1, "total": 1, "currency": 7}))
            .unwrap_err();
        assert_eq!(e[0].path, "currency");
    }

    #[test]
    fn binary_data_of_older_versions_is_resolved_to_the_latest_in_all_three_framings() {
        let (_dir, r) = registry();
        let v1 = r.version("orders", "1").unwrap();
        r.register("orders", SchemaType::Avro, V2).unwrap();
        let gate = bound(r.clone(), "orders", Versions::Latest);
        let c = gate.contract().unwrap();
        let parsed = crate::avro::AvroSchema::parse(V1).unwrap();
        let d = datum(V1, order(7, 9.5));
        let mut body = framing::confluent(v1.id, &d);
        body.extend(framing::single_object(parsed.crc64(), &d));
        body.extend(framing::sha256(parsed.sha256(), &d));
        let mut at = 0;
        let mut events = Vec::new();
        while at < body.len() {
            let (event, used) = c.decode(&body[at..]).unwrap();
            events.push(event);
            at += used;
        }
        assert_eq!(events.len(), 3);
        for e in events {
            assert_eq!(e, json!({"id": 7, "total": 9.5, "currency": "EUR"}));
        }
        // Kept as written under `any`.
        let any = bound(r.clone(), "orders", Versions::Any);
        let (e, _) = any
            .contract()
            .unwrap()
            .decode(&framing::confluent(v1.id, &d))
            .unwrap();
        assert_eq!(e, json!({"id": 7, "total": 9.5}));
    }

    #[test]
    fn frames_naming_other_schemas_or_bad_data_are_refused_with_a_reason() {
        let (_dir, r) = registry();
        let other = r
            .register(
                "audit",
                SchemaType::Avro,
                r#"{"type": "record", "name": "A", "fields": [{"name": "x", "type": "int"}]}"#,
            )
            .unwrap();
        let gate = bound(r.clone(), "orders", Versions::Latest);
        let c = gate.contract().unwrap();
        let e = c.decode(&framing::confluent(other.id, &[2])).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"schema id 2 is not an Avro version of subject "orders""#
        );
        let e = c.decode(&framing::confluent(1, &[2])).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("the datum does not decode with version 1 (schema id 1)"),
            "{e}"
        );
        let unbound = bound(r, "nope", Versions::Latest);
        assert_eq!(
            unbound.contract().unwrap_err(),
            GateError::NoSchema("nope".into())
        );
    }

    #[test]
    fn json_schema_subjects_list_every_violation() {
        let (_dir, r) = registry();
        r.register(
            "clicks",
            SchemaType::Json,
            r#"{"type": "object", "required": ["url"],
            "properties": {"url": {"type": "string"}, "ms": {"type": "integer", "minimum": 0}}}"#,
        )
        .unwrap();
        let gate = bound(r, "clicks", Versions::Any);
        let c = gate.contract().unwrap();
        assert!(c.checker().check(json!({"url": "/", "ms": 3})).is_ok());
        let e = c.checker().check(json!({"ms": -1})).unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e.iter().any(|r| r.path == "ms"), "{e:?}");
        assert!(c.decode(&framing::confluent(2, &[])).is_err());
    }

    #[test]
    fn version_policies_parse() {
        assert_eq!("latest".parse::<Versions>().unwrap(), Versions::Latest);
        assert_eq!("any".parse::<Versions>().unwrap(), Versions::Any);
        assert_eq!("3".parse::<Versions>().unwrap(), Versions::Pinned(3));
        assert!("0".parse::<Versions>().unwrap_err().contains("latest, any"));
    }

    /// Built once: proptest calls the property thousands of times.
    static NESTED: std::sync::LazyLock<(tempfile::TempDir, Arc<Contract>)> =
        std::sync::LazyLock::new(nested_contract);

    fn nested_contract() -> (tempfile::TempDir, Arc<Contract>) {
        let (dir, r) = crate::registry::scratch();
        r.register("deep", SchemaType::Avro, r#"{"type": "record", "name": "R", "fields": [
            {"name": "s", "type": "string"}, {"name": "b", "type": "bytes"},
            {"name": "a", "type": {"type": "array", "items": ["null", "long", "string"]}},
            {"name": "m", "type": {"type": "map", "values": {"type": "fixed", "name": "F", "size": 3}}},
            {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["X", "Y"]}},
            {"name": "next", "type": ["null", "R"], "default": null}]}"#).unwrap();
        let c = bound(r, "deep", Versions::Latest).contract().unwrap();
        (dir, c)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn arbitrary_bytes_in_any_framing_decode_or_say_why(
            magic in 0usize..4,
            datum in proptest::collection::vec(any::<u8>(), 0..96),
        ) {
            let c = &NESTED.1;
            let parsed = c.writers[0].schema.as_avro().unwrap();
            let bytes = match magic {
                0 => framing::confluent(1, &datum),
                1 => framing::single_object(parsed.crc64(), &datum),
                2 => framing::sha256(parsed.sha256(), &datum),
                _ => datum.clone(),
            };
            match c.decode(&bytes) {
                Ok((_, used)) => prop_assert!(used <= bytes.len()),
                Err(e) => prop_assert!(!e.reason.is_empty()),
            }
        }
    }
}
