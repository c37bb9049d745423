//! The registry: subjects, their versions and the schemas they name, kept as a journal of
//! changes in eddy's own bus (the internal topic [`TOPIC`], one partition, kept forever) and
//! replayed when the server starts. No other database.
//!
//! On a bus several nodes share (Kafka), the journal is the cluster's registry: every node
//! replays it, follows it ([`Registry::follow`]), and writes to it. Writers do not lock each
//! other out: a node decides a change on what it has read, appends it, and reads the journal
//! through its own record. Replaying applies a registration only if it still fits (its id
//! free or naming the same schema, its version the subject's next): of two nodes that chose the
//! same id for different schemas, the later record is passed over on every node alike, and its
//! writer decides again on the newer state.
//!
//! The rules are the Confluent registry's: a schema has one id wherever it is registered, and
//! registering it again returns that id; versions count up per subject and are never reused;
//! deleting is soft (a deleted version stays readable by id, since producers may still send
//! data framed with it); a new version must be compatible with the subject's live versions by
//! the subject's mode (or the global one).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use eddy_log::{Bus, PartitionChoice, Record, TopicConfig};
use serde::{Deserialize, Serialize};

use crate::compat::Compatibility;
use crate::incompatibility::Incompatibility;
use crate::schema::{Schema, SchemaType};

/// The internal topic holding the registry's journal.
pub const TOPIC: &str = "_schemas";

/// One change to the registry, as the journal stores it (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    /// A schema registered under a subject.
    Registered {
        /// Its id (the same for the same schema under any subject).
        id: u32,
        /// The subject.
        subject: String,
        /// The new version of the subject.
        version: u32,
        /// The schema's text as registered.
        schema: String,
        /// Its kind (left out for Avro, as journals before JSON Schema support have it).
        #[serde(default, skip_serializing_if = "SchemaType::is_default")]
        schema_type: SchemaType,
    },
    /// A version soft-deleted.
    Deleted {
        /// The subject.
        subject: String,
        /// The version.
        version: u32,
    },
    /// A compatibility mode set, for a subject or (without one) globally.
    Compatibility {
        /// The subject, or none for the global mode.
        subject: Option<String>,
        /// The mode's name, or none to fall back to the global mode.
        mode: Option<String>,
    },
}

/// What the registry refuses, with the Confluent error codes.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// 40401.
    #[error("subject {0:?} not found")]
    SubjectNotFound(String),
    /// 40402.
    #[error("version {version} of subject {subject:?} not found")]
    VersionNotFound {
        /// The subject.
        subject: String,
        /// The version asked for.
        version: String,
    },
    /// 40403.
    #[error("schema {0} not found")]
    SchemaNotFound(u32),
    /// 409.
    #[error("the schema is incompatible with an earlier version: {}", list(.0))]
    Incompatible(Vec<Incompatibility>),
    /// 42201.
    #[error(transparent)]
    InvalidSchema(#[from] crate::error::SchemaError),
    /// 42202.
    #[error("{0:?} is not a version: a number from 1, or \"latest\"")]
    InvalidVersion(String),
    /// 42203.
    #[error("{0}")]
    InvalidCompatibility(String),
    /// 50001: the journal could not be written or read.
    #[error("the registry's journal failed: {0}")]
    Journal(String),
}

impl RegistryError {
    /// The Confluent error code.
    pub fn code(&self) -> u32 {
        match self {
            RegistryError::SubjectNotFound(_) => 40401,
            RegistryError::VersionNotFound { .. } => 40402,
            RegistryError::SchemaNotFound(_) => 40403,
            RegistryError::Incompatible(_) => 409,
            RegistryError::InvalidSchema(_) => 42201,
            RegistryError::InvalidVersion(_) => 42202,
            RegistryError::InvalidCompatibility(_) => 42203,
            RegistryError::Journal(_) => 50001,
        }
    }
}

fn list(found: &[Incompatibility]) -> String {
    let all: Vec<String> = found.iter().map(ToString::to_string).collect();
    all.join("; ")
}

/// A registered version of a subject.
#[derive(Debug, Clone)]
pub struct Version {
    /// The subject.
    pub subject: String,
    /// Its number in the subject.
    pub version: u32,
    /// The schema's id.
    pub id: u32,
    /// The schema's text as registered.
    pub schema: String,
    /// Its kind.
    pub schema_type: SchemaType,
    /// Soft-deleted.
    pub deleted: bool,
}

/// What registering did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registered {
    /// The schema's id.
    pub id: u32,
    /// The subject's version holding it.
    pub version: u32,
    /// Whether this call added the version (false: it was there).
    pub added: bool,
}

#[derive(Debug, Default)]
struct State {
    /// Schemas by id: the text first registered and the parsed schema.
    schemas: BTreeMap<u32, (String, Arc<Schema>)>,
    /// Ids by kind and SHA-256 of the canonical form.
    by_fingerprint: HashMap<(SchemaType, [u8; 32]), u32>,
    /// Ids of Avro schemas by CRC-64-AVRO (single-object encoding names schemas by it).
    by_crc64: HashMap<[u8; 8], u32>,
    subjects: BTreeMap<String, Vec<Version>>,
    global: Compatibility,
    modes: HashMap<String, Compatibility>,
    /// The journal's next offset to apply.
    applied: u64,
}

impl State {
    /// Applies `change`; returns whether it still fitted (see the module's notes on writers).
    fn apply(&mut self, change: Change) -> Result<bool, RegistryError> {
        match change {
            Change::Registered {
                id,
                subject,
                version,
                schema,
                schema_type,
            } => {
                let parsed = Arc::new(Schema::parse(schema_type, &schema)?);
                let fingerprint = (schema_type, parsed.sha256());
                let id_fits = match self.schemas.get(&id) {
                    Some((_, known)) => (known.kind(), known.sha256()) == fingerprint,
                    None => !self.by_fingerprint.contains_key(&fingerprint),
                };
                let next_version = self
                    .subjects
                    .get(&subject)
                    .and_then(|vs| vs.iter().map(|v| v.version).max())
                    .map_or(1, |v| v + 1);
                if !id_fits || version != next_version {
                    return Ok(false);
                }
                self.by_fingerprint
                    .entry((schema_type, parsed.sha256()))
                    .or_insert(id);
                if let Some(avro) = parsed.as_avro() {
                    self.by_crc64.entry(avro.crc64()).or_insert(id);
                }
                self.schemas
                    .entry(id)
                    .or_insert_with(|| (schema.clone(), parsed));
                self.subjects
                    .entry(subject.clone())
                    .or_default()
                    .push(Version {
                        subject,
                        version,
                        id,
                        schema,
                        schema_type,
                        deleted: false,
                    });
            }
            Change::Deleted { subject, version } => {
                let versions = self.subjects.get_mut(&subject).into_iter().flatten();
                for v in versions.filter(|v| v.version == version) {
                    v.deleted = true;
                }
            }
            Change::Compatibility { subject, mode } => {
                let mode = mode
                    .map(|m| m.parse())
                    .transpose()
                    .map_err(RegistryError::InvalidCompatibility)?;
                match (subject, mode) {
                    (None, Some(mode)) => self.global = mode,
                    (None, None) => self.global = Compatibility::default(),
                    (Some(s), Some(mode)) => {
                        self.modes.insert(s, mode);
                    }
                    (Some(s), None) => {
                        self.modes.remove(&s);
                    }
                }
            }
        }
        Ok(true)
    }

    fn live(&self, subject: &str) -> impl Iterator<Item = &Version> {
        self.subjects
            .get(subject)
            .into_iter()
            .flatten()
            .filter(|v| !v.deleted)
    }

    fn mode(&self, subject: &str) -> Compatibility {
        self.modes.get(subject).copied().unwrap_or(self.global)
    }

    /// What stands against registering `new` under `subject` by its mode.
    fn incompatibilities(&self, subject: &str, new: &Schema) -> Vec<Incompatibility> {
        let earlier: Vec<(u32, &Schema)> = self
            .live(subject)
            .filter_map(|v| Some((v.version, self.parsed(v.id)?)))
            .collect();
        self.mode(subject).check(new, &earlier)
    }

    fn parsed(&self, id: u32) -> Option<&Schema> {
        self.schemas.get(&id).map(|(_, s)| s.as_ref())
    }
}

/// How many times a write decides again after another node's change came first.
const RACES: usize = 16;

/// The registry.
pub struct Registry {
    state: RwLock<State>,
    bus: Arc<dyn Bus>,
    /// Counts changes, so that gates know when to look again.
    generation: AtomicU64,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// Opens the registry kept in `bus`, replaying its journal.
    pub fn open(bus: Arc<dyn Bus>) -> Result<Registry, RegistryError> {
        bus.ensure_topic(TOPIC, &TopicConfig::journal())
            .map_err(journal)?;
        let registry = Registry {
            state: RwLock::new(State::default()),
            bus,
            generation: AtomicU64::new(0),
        };
        registry.catch_up(&mut registry.write(), None)?;
        Ok(registry)
    }

    /// Follows the journal on a thread while the registry lives, so that what other nodes
    /// register is known here within a moment. Only a shared bus needs it: on one node every
    /// change is this process's own.
    pub fn follow(self: &Arc<Self>) {
        eddy_log::follow_journal(
            "registry-follow",
            Arc::downgrade(self),
            Duration::from_millis(200),
            Registry::catch_up_if_behind,
        );
    }

    /// Applies the journal's records from where `state` stands to the journal's end, and at
    /// least through offset `through`; returns whether the record at `through` fitted.
    fn catch_up(&self, state: &mut State, through: Option<u64>) -> Result<bool, RegistryError> {
        let (first, end) = self.bus.offsets(TOPIC, 0).map_err(journal)?;
        let end = end.max(through.map_or(0, |t| t + 1));
        if state.applied >= end {
            return Ok(false);
        }
        let from = state.applied.max(first);
        let mut fitted = Ok(false);
        let mut each = |r: eddy_log::StoredRecord| {
            let applied = serde_json::from_slice::<Change>(&r.value)
                .map_err(|e| journal(format!("record {} of {TOPIC}: {e}", r.offset)))
                .and_then(|change| state.apply(change));
            match applied {
                Ok(applied) => {
                    state.applied = r.offset + 1;
                    if Some(r.offset) == through {
                        fitted = Ok(applied);
                    }
                    true
                }
                Err(e) => {
                    fitted = Err(e);
                    false
                }
            }
        };
        eddy_log::read_range(&*self.bus, TOPIC, 0, from, end, &mut each).map_err(journal)?;
        let fitted = fitted?;
        self.generation.fetch_add(1, Ordering::Release);
        Ok(fitted)
    }

    /// Whether the journal holds records this registry has not applied.
    /// Catches up if the journal holds records not applied yet; the state is locked only then.
    fn catch_up_if_behind(&self) -> Result<(), RegistryError> {
        let (_, end) = self.bus.offsets(TOPIC, 0).map_err(journal)?;
        if self.read().applied < end {
            self.catch_up(&mut self.write(), None)?;
        }
        Ok(())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        eddy_base::sync::read(&self.state)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        eddy_base::sync::write(&self.state)
    }

    /// The state, caught up with the journal, to decide a change on.
    fn fresh(&self) -> Result<std::sync::RwLockWriteGuard<'_, State>, RegistryError> {
        let mut state = self.write();
        self.catch_up(&mut state, None)?;
        Ok(state)
    }

    /// Writes `change` to the journal (durable when this returns) and applies the journal
    /// through it; returns whether it fitted (false: another node's change came first, and
    /// the caller decides again).
    fn commit(&self, state: &mut State, change: Change) -> Result<bool, RegistryError> {
        let value = serde_json::to_vec(&change).map_err(|e| journal(e.to_string()))?;
        let acks = self
            .bus
            .produce(
                TOPIC,
                vec![Record::new(value)],
                PartitionChoice::Explicit(0),
            )
            .map_err(journal)?;
        let offset = acks
            .first()
            .map(|a| a.last_offset)
            .ok_or_else(|| journal(format!("{TOPIC} acknowledged nothing")))?;
        self.catch_up(state, Some(offset))
    }

    /// Changes so far in this process: a gate rebuilds its contract when this moves.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Every version of `subject`, deleted ones too, oldest first, with the parsed schemas.
    pub fn history(&self, subject: &str) -> Vec<(Version, Arc<Schema>)> {
        let state = self.read();
        let versions = state.subjects.get(subject).into_iter().flatten();
        versions
            .filter_map(|v| Some((v.clone(), state.schemas.get(&v.id)?.1.clone())))
            .collect()
    }

    /// Registers `schema` under `subject`: the existing version if it is there already, else a
    /// new version if it is compatible by the subject's mode.
    pub fn register(
        &self,
        subject: &str,
        kind: SchemaType,
        schema: &str,
    ) -> Result<Registered, RegistryError> {
        let parsed = Schema::parse(kind, schema)?;
        for _ in 0..RACES {
            if let Some(done) = self.try_register(subject, kind, schema, &parsed)? {
                return Ok(done);
            }
        }
        Err(lost_races())
    }

    /// One attempt of [`Registry::register`]: `None` if another node's change came first.
    fn try_register(
        &self,
        subject: &str,
        kind: SchemaType,
        schema: &str,
        parsed: &Schema,
    ) -> Result<Option<Registered>, RegistryError> {
        let mut state = self.fresh()?;
        let known = state.by_fingerprint.get(&(kind, parsed.sha256())).copied();
        if let Some(v) = state.live(subject).find(|v| Some(v.id) == known) {
            return Ok(Some(Registered {
                id: v.id,
                version: v.version,
                added: false,
            }));
        }
        let found = state.incompatibilities(subject, parsed);
        if !found.is_empty() {
            return Err(RegistryError::Incompatible(found));
        }
        let id = known.unwrap_or_else(|| state.schemas.keys().last().map_or(1, |id| id + 1));
        // Deleted versions keep their numbers: a number is never reused.
        let version = state
            .subjects
            .get(subject)
            .and_then(|vs| vs.iter().map(|v| v.version).max())
            .map_or(1, |v| v + 1);
        let change = Change::Registered {
            id,
            subject: subject.to_string(),
            version,
            schema: schema.to_string(),
            schema_type: kind,
        };
        let fitted = self.commit(&mut state, change)?;
        Ok(fitted.then_some(Registered {
            id,
            version,
            added: true,
        }))
    }

    /// The live version of `subject` holding `schema`, if any.
    pub fn lookup(
        &self,
        subject: &str,
        kind: SchemaType,
        schema: &str,
    ) -> Result<Version, RegistryError> {
        let parsed = Schema::parse(kind, schema)?;
        let state = self.read();
        if state.live(subject).next().is_none() {
            return Err(RegistryError::SubjectNotFound(subject.to_string()));
        }
        let id = state.by_fingerprint.get(&(kind, parsed.sha256())).copied();
        let found = state.live(subject).find(|v| Some(v.id) == id).cloned();
        found.ok_or_else(|| RegistryError::SchemaNotFound(id.unwrap_or(0)))
    }

    /// The subjects with a live version.
    pub fn subjects(&self) -> Vec<String> {
        let state = self.read();
        let live = state
            .subjects
            .iter()
            .filter(|(_, vs)| vs.iter().any(|v| !v.deleted));
        live.map(|(s, _)| s.clone()).collect()
    }

    /// The live version numbers of `subject`.
    pub fn versions(&self, subject: &str) -> Result<Vec<u32>, RegistryError> {
        let state = self.read();
        let versions: Vec<u32> = state.live(subject).map(|v| v.version).collect();
        match versions.is_empty() {
            true => Err(RegistryError::SubjectNotFound(subject.to_string())),
            false => Ok(versions),
        }
    }

    /// Version `version` of `subject`: a number, or `latest` (or `-1`).
    pub fn version(&self, subject: &str, version: &str) -> Result<Version, RegistryError> {
        let state = self.read();
        if state.live(subject).next().is_none() {
            return Err(RegistryError::SubjectNotFound(subject.to_string()));
        }
        let found = match version {
            "latest" | "-1" => state.live(subject).last(),
            n => {
                let n: u32 = n
                    .parse()
                    .ok()
                    .filter(|&n| n >= 1)
                    .ok_or_else(|| RegistryError::InvalidVersion(n.to_string()))?;
                state.live(subject).find(|v| v.version == n)
            }
        };
        found
            .cloned()
            .ok_or_else(|| RegistryError::VersionNotFound {
                subject: subject.to_string(),
                version: version.to_string(),
            })
    }

    /// The schema with `id` (also when every version naming it is deleted).
    pub fn schema(&self, id: u32) -> Result<(String, Arc<Schema>), RegistryError> {
        self.read()
            .schemas
            .get(&id)
            .cloned()
            .ok_or(RegistryError::SchemaNotFound(id))
    }

    /// Soft-deletes version `version` (a number or `latest`) of `subject`; returns its number.
    pub fn delete_version(&self, subject: &str, version: &str) -> Result<u32, RegistryError> {
        let v = self.version(subject, version)?;
        let change = Change::Deleted {
            subject: subject.to_string(),
            version: v.version,
        };
        // A delete always fits: deleting twice is deleting once.
        self.commit(&mut *self.fresh()?, change)?;
        Ok(v.version)
    }

    /// Soft-deletes every version of `subject`; returns their numbers.
    pub fn delete_subject(&self, subject: &str) -> Result<Vec<u32>, RegistryError> {
        let versions = self.versions(subject)?;
        for v in &versions {
            self.delete_version(subject, &v.to_string())?;
        }
        Ok(versions)
    }

    /// Every reason `schema` cannot follow version `version` of `subject` by the subject's
    /// mode (NONE checks as BACKWARD would, so that a check always says something).
    pub fn check(
        &self,
        subject: &str,
        version: &str,
        kind: SchemaType,
        schema: &str,
    ) -> Result<Vec<Incompatibility>, RegistryError> {
        let parsed = Schema::parse(kind, schema)?;
        let against = self.version(subject, version)?;
        let state = self.read();
        let old = state
            .parsed(against.id)
            .ok_or(RegistryError::SchemaNotFound(against.id))?;
        let mode = match state.mode(subject) {
            Compatibility::None => Compatibility::Backward,
            // Against one version, transitive is the same as not.
            m => m,
        };
        Ok(mode.check(&parsed, &[(against.version, old)]))
    }

    /// Every reason `schema` could not be registered under `subject` now, by the subject's
    /// mode against its live versions (empty: it could).
    pub fn check_subject(
        &self,
        subject: &str,
        kind: SchemaType,
        schema: &str,
    ) -> Result<Vec<Incompatibility>, RegistryError> {
        let parsed = Schema::parse(kind, schema)?;
        Ok(self.read().incompatibilities(subject, &parsed))
    }

    /// The mode of `subject` (its own, else the global one), or the global mode.
    pub fn compatibility(&self, subject: Option<&str>) -> Compatibility {
        let state = self.read();
        match subject {
            Some(s) => state.mode(s),
            None => state.global,
        }
    }

    /// Whether `subject` has a mode of its own.
    pub fn has_own_compatibility(&self, subject: &str) -> bool {
        self.read().modes.contains_key(subject)
    }

    /// Sets the mode of `subject` or the global one (`None`: back to the default).
    pub fn set_compatibility(
        &self,
        subject: Option<&str>,
        mode: Option<Compatibility>,
    ) -> Result<(), RegistryError> {
        let change = Change::Compatibility {
            subject: subject.map(str::to_string),
            mode: mode.map(|m| m.name().to_string()),
        };
        // A mode always fits: the last one written wins on every node.
        self.commit(&mut *self.fresh()?, change)?;
        Ok(())
    }
}

fn journal(e: impl ToString) -> RegistryError {
    RegistryError::Journal(e.to_string())
}

fn lost_races() -> RegistryError {
    RegistryError::Journal(format!(
        "other nodes changed the registry {RACES} times while this one tried; try again"
    ))
}

/// A registry in a fresh temporary bus, for tests.
#[cfg(test)]
pub(crate) fn scratch() -> (tempfile::TempDir, Arc<Registry>) {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(eddy_log::Log::open(dir.path()).unwrap());
    let registry = Arc::new(Registry::open(log).unwrap());
    (dir, registry)
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str =
        r#"{"type": "record", "name": "Order", "fields": [{"name": "id", "type": "long"}]}"#;
    const V2: &str = r#"{"type": "record", "name": "Order", "fields": [{"name": "id", "type": "long"},
        {"name": "note", "type": "string", "default": ""}]}"#;
    const BAD: &str =
        r#"{"type": "record", "name": "Order", "fields": [{"name": "id", "type": "string"}]}"#;

    #[test]
    fn ids_are_stable_versions_count_up_and_deletes_are_soft() {
        let (_dir, r) = scratch();
        let a = r.register("orders-value", SchemaType::Avro, V1).unwrap();
        assert_eq!((a.id, a.version, a.added), (1, 1, true));
        // The same schema, written differently, again: the same id and version.
        let again = r
            .register(
                "orders-value",
                SchemaType::Avro,
                r#"{"name":"Order","type":"record","fields":[{"type":"long","name":"id"}]}"#,
            )
            .unwrap();
        assert_eq!((again.id, again.version, again.added), (1, 1, false));
        // Under another subject: the same id, that subject's version 1.
        let other = r.register("audit-value", SchemaType::Avro, V1).unwrap();
        assert_eq!((other.id, other.version), (1, 1));
        let b = r.register("orders-value", SchemaType::Avro, V2).unwrap();
        assert_eq!((b.id, b.version), (2, 2));

        let e = r
            .register("orders-value", SchemaType::Avro, BAD)
            .unwrap_err();
        assert_eq!(e.code(), 409);
        assert!(
            e.to_string()
                .contains("Order.id: type changed from long to string"),
            "{e}"
        );

        assert_eq!(r.delete_version("orders-value", "2").unwrap(), 2);
        assert_eq!(r.versions("orders-value").unwrap(), [1]);
        // Deleted, yet readable by id: producers may still send data framed with it.
        assert!(r.schema(2).is_ok());
        assert_eq!(r.version("orders-value", "2").unwrap_err().code(), 40402);
        // Registering it again makes a new version: numbers are never reused.
        assert_eq!(
            r.register("orders-value", SchemaType::Avro, V2)
                .unwrap()
                .version,
            3
        );
        assert_eq!(r.version("nope", "1").unwrap_err().code(), 40401);
        assert_eq!(r.version("orders-value", "x").unwrap_err().code(), 42202);
        assert_eq!(
            r.register("orders-value", SchemaType::Avro, "{")
                .unwrap_err()
                .code(),
            42201
        );
    }

    #[test]
    fn the_registry_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = Arc::new(eddy_log::Log::open(dir.path()).unwrap());
            let r = Registry::open(log).unwrap();
            r.register("orders-value", SchemaType::Avro, V1).unwrap();
            r.register("orders-value", SchemaType::Avro, V2).unwrap();
            r.delete_version("orders-value", "1").unwrap();
            r.set_compatibility(Some("orders-value"), Some(Compatibility::Full))
                .unwrap();
            r.set_compatibility(None, Some(Compatibility::None))
                .unwrap();
        }
        let log = Arc::new(eddy_log::Log::open(dir.path()).unwrap());
        let r = Registry::open(log).unwrap();
        assert_eq!(r.subjects(), ["orders-value"]);
        assert_eq!(r.versions("orders-value").unwrap(), [2]);
        assert_eq!(r.schema(1).unwrap().0, V1);
        assert_eq!(r.compatibility(Some("orders-value")), Compatibility::Full);
        assert_eq!(r.compatibility(None), Compatibility::None);
        // Ids go on from where they were.
        let c = r
            .register(
                "other",
                SchemaType::Avro,
                r#"{"type": "enum", "name": "E", "symbols": ["A"]}"#,
            )
            .unwrap();
        assert_eq!(c.id, 3);
    }

    #[test]
    fn json_schemas_have_their_own_ids_and_modes_apply_to_them() {
        let (_dir, r) = scratch();
        let open = r#"{"type": "object", "properties": {"id": {"type": "integer"}}}"#;
        let a = r.register("clicks", SchemaType::Json, open).unwrap();
        // The same text as another kind is another schema.
        let enum_text = r#"{"type": "enum", "name": "E", "symbols": ["A"]}"#;
        let b = r.register("other", SchemaType::Avro, enum_text).unwrap();
        assert_ne!(a.id, b.id);
        let required =
            r#"{"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}}"#;
        let e = r
            .register("clicks", SchemaType::Json, required)
            .unwrap_err();
        assert_eq!(e.code(), 409);
        assert!(e.to_string().contains("id: became required"), "{e}");
        let kinds = r
            .register("clicks", SchemaType::Avro, enum_text)
            .unwrap_err();
        assert!(
            kinds
                .to_string()
                .contains("schema type changed from JSON to AVRO"),
            "{kinds}"
        );
        assert_eq!(
            r.version("clicks", "1").unwrap().schema_type,
            SchemaType::Json
        );
    }

    #[test]
    fn checks_answer_with_reasons_whatever_the_mode() {
        let (_dir, r) = scratch();
        r.register("orders-value", SchemaType::Avro, V1).unwrap();
        assert!(r
            .check("orders-value", "latest", SchemaType::Avro, V2)
            .unwrap()
            .is_empty());
        let found = r.check("orders-value", "1", SchemaType::Avro, BAD).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, "Order.id");
    }
}
