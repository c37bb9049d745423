//! What the nodes of a cluster share besides the data: the nodes themselves
//! ([`crate::directory`]), repositories and their settings, the tokens eddy made, and the alert
//! rules and pipelines created through the API. On a shared
//! bus (Kafka) they are kept in the compacted one-partition topic `_cluster_state`, as Humio
//! keeps its global state in Kafka: every node replays it at start and follows it, and a
//! change made through any node's API reaches every node within a follow interval.
//!
//! Each record is one change of one named thing (`repository/web`, `token/tok_…`), keyed by
//! that name, so compaction keeps each thing's newest record. A creation applies only if the
//! name is free when the journal reaches it; two nodes creating the same name at once both
//! append, every node applies the first, and the second writer, reading the journal back,
//! finds it lost (its caller answers `409`) and restates the winner's value so that the
//! winner's record, not the loser's, is the one compaction keeps.
//!
//! On the embedded bus the node is the whole cluster: the same things stay in files of the
//! data directory ([`crate::created`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use eddy_base::sync::{lock, read, write};
use eddy_log::{Bus, PartitionChoice, Record, TopicConfig};

/// The topic holding the changes.
pub const TOPIC: &str = "_cluster_state";

/// How often a node looks for other nodes' changes.
const FOLLOW_EVERY: Duration = Duration::from_millis(250);

/// The kinds of shared things.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A node of the cluster and where it is reached ([`crate::directory`]).
    Node,
    /// A repository created through the API, with its settings.
    Repository,
    /// A token made with `eddy token create` (its digest, never its secret).
    Token,
    /// An alert rule created through the API.
    AlertRule,
    /// A pipeline created through the API.
    Pipeline,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Node => "node",
            Kind::Repository => "repository",
            Kind::Token => "token",
            Kind::AlertRule => "alert_rule",
            Kind::Pipeline => "pipeline",
        }
    }
}

/// One record of the topic.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Change {
    kind: Kind,
    name: String,
    /// The thing's new value; `None` removes it.
    value: Option<serde_json::Value>,
    /// Applies only if the name is free when the journal reaches it (a creation).
    #[serde(default)]
    only_if_new: bool,
    /// Which write this is: what a writer looks for when it reads the journal back.
    write: String,
    /// When it was written (ns since the Unix epoch).
    at: i64,
}

#[derive(Debug, Clone)]
struct Entry {
    value: serde_json::Value,
    write: String,
}

/// What went wrong with the shared state's topic.
#[derive(Debug, thiserror::Error)]
#[error("the cluster's shared state ({TOPIC}): {0}")]
pub struct StateError(String);

fn failed(e: impl ToString) -> StateError {
    StateError(e.to_string())
}

/// The shared things, as the journal says.
pub struct ClusterState {
    bus: Arc<dyn Bus>,
    entries: RwLock<BTreeMap<(Kind, String), Entry>>,
    /// The topic's next offset to apply; held while applying, so the follower and a writer
    /// reading back its own record never apply one twice.
    applied: Mutex<u64>,
    /// Counts applied changes: a reader caches what it derives and rebuilds when this moves.
    generation: AtomicU64,
}

impl std::fmt::Debug for ClusterState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClusterState({} entries)", read(&self.entries).len())
    }
}

impl ClusterState {
    /// Opens the state kept in `bus`, replaying its topic, and follows it on a thread.
    pub fn open(bus: Arc<dyn Bus>) -> Result<Arc<ClusterState>, StateError> {
        bus.ensure_topic(TOPIC, &TopicConfig::compacted_journal())
            .map_err(failed)?;
        let state = Arc::new(ClusterState {
            bus,
            entries: RwLock::new(BTreeMap::new()),
            applied: Mutex::new(0),
            generation: AtomicU64::new(0),
        });
        state.catch_up()?;
        eddy_log::follow_journal(
            "cluster-state-follow",
            Arc::downgrade(&state),
            FOLLOW_EVERY,
            ClusterState::catch_up_if_behind,
        );
        Ok(state)
    }

    /// Applies what the topic holds past what was applied.
    fn catch_up(&self) -> Result<(), StateError> {
        let mut applied = lock(&self.applied);
        let (first, end) = self.bus.offsets(TOPIC, 0).map_err(failed)?;
        let from = (*applied).max(first);
        eddy_log::read_range(&*self.bus, TOPIC, 0, from, end, &mut |r| {
            *applied = r.offset + 1;
            match serde_json::from_slice::<Change>(&r.value) {
                Ok(change) => self.apply(change),
                Err(e) => tracing::error!(
                    offset = r.offset,
                    "not a change of the cluster's state in {TOPIC}, passed over: {e}"
                ),
            }
            true
        })
        .map_err(failed)
    }

    fn catch_up_if_behind(&self) -> Result<(), StateError> {
        let (_, end) = self.bus.offsets(TOPIC, 0).map_err(failed)?;
        if *lock(&self.applied) < end {
            self.catch_up()?;
        }
        Ok(())
    }

    fn apply(&self, change: Change) {
        let mut entries = write(&self.entries);
        let key = (change.kind, change.name);
        match change.value {
            Some(_) if change.only_if_new && entries.contains_key(&key) => return,
            Some(value) => {
                let write = change.write;
                entries.insert(key, Entry { value, write });
            }
            None => {
                if entries.remove(&key).is_none() {
                    return;
                }
            }
        }
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Appends `change` and reads the journal up to it, so that it is applied here when this
    /// returns (if it applies at all).
    fn append(&self, change: &Change) -> Result<(), StateError> {
        let value = serde_json::to_vec(change).map_err(failed)?;
        let key = format!("{}/{}", change.kind.as_str(), change.name);
        let record = Record::new(value).with_key(key);
        self.bus
            .produce(TOPIC, vec![record], PartitionChoice::Explicit(0))
            .map_err(failed)?;
        self.catch_up()
    }

    fn change(kind: Kind, name: &str, value: Option<serde_json::Value>) -> Change {
        let id: [u8; 8] = rand::random();
        Change {
            kind,
            name: name.to_string(),
            value,
            only_if_new: false,
            write: id.iter().map(|b| format!("{b:02x}")).collect(),
            at: eddy_log::now_ns(),
        }
    }

    /// Creates `name` of `kind` unless the cluster has it already; returns whether this call
    /// created it (`false`: another node's creation came first, and stands).
    pub fn create<T: Serialize>(
        &self,
        kind: Kind,
        name: &str,
        value: &T,
    ) -> Result<bool, StateError> {
        if self.contains(kind, name) {
            return Ok(false);
        }
        let value = serde_json::to_value(value).map_err(failed)?;
        let change = Change {
            only_if_new: true,
            ..ClusterState::change(kind, name, Some(value))
        };
        self.append(&change)?;
        let key = (kind, name.to_string());
        let winner = read(&self.entries).get(&key).cloned();
        match winner {
            Some(w) if w.write == change.write => Ok(true),
            Some(w) => {
                // Ours is the key's newest record: restate the winner, so compaction keeps it.
                self.append(&Change {
                    write: w.write,
                    ..ClusterState::change(kind, name, Some(w.value))
                })?;
                Ok(false)
            }
            // Created and removed again by others in between: it was ours for a moment.
            None => Ok(true),
        }
    }

    /// Sets `name` of `kind` to `value`, created or replaced.
    pub fn put<T: Serialize>(&self, kind: Kind, name: &str, value: &T) -> Result<(), StateError> {
        let value = serde_json::to_value(value).map_err(failed)?;
        self.append(&ClusterState::change(kind, name, Some(value)))
    }

    /// Removes `name` of `kind`; returns whether the cluster had it.
    pub fn remove(&self, kind: Kind, name: &str) -> Result<bool, StateError> {
        if !self.contains(kind, name) {
            return Ok(false);
        }
        self.append(&ClusterState::change(kind, name, None))?;
        Ok(true)
    }

    /// Whether the cluster has `name` of `kind`.
    pub fn contains(&self, kind: Kind, name: &str) -> bool {
        read(&self.entries).contains_key(&(kind, name.to_string()))
    }

    /// Every thing of `kind`, by name. One that does not decode as a `T` (written by a newer
    /// or broken node) is logged and left out.
    pub fn all<T: serde::de::DeserializeOwned>(&self, kind: Kind) -> BTreeMap<String, T> {
        let entries = read(&self.entries);
        let mut out = BTreeMap::new();
        for ((k, name), entry) in entries.range((kind, String::new())..) {
            if *k != kind {
                break;
            }
            match serde_json::from_value(entry.value.clone()) {
                Ok(v) => {
                    out.insert(name.clone(), v);
                }
                Err(e) => tracing::error!(
                    kind = kind.as_str(),
                    name,
                    "a shared {} in {TOPIC} does not decode here, left out: {e}",
                    kind.as_str()
                ),
            }
        }
        out
    }

    /// Moves each time a change is applied.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_embedded() -> (tempfile::TempDir, Arc<dyn Bus>) {
        let dir = tempfile::tempdir().unwrap();
        let log: Arc<dyn Bus> = Arc::new(eddy_log::Log::open(dir.path()).unwrap());
        (dir, log)
    }

    #[test]
    fn changes_replay_in_order_and_a_second_creation_of_a_name_loses() {
        let (_dir, bus) = open_embedded();
        let a = ClusterState::open(bus.clone()).unwrap();
        assert!(a.create(Kind::Repository, "web", &1).unwrap());
        assert!(!a.create(Kind::Repository, "web", &2).unwrap());
        a.put(Kind::Token, "tok_1", &"x").unwrap();
        a.put(Kind::Token, "tok_1", &"y").unwrap();
        a.put(Kind::Token, "tok_2", &"z").unwrap();
        assert!(a.remove(Kind::Token, "tok_2").unwrap());
        assert!(!a.remove(Kind::Token, "tok_2").unwrap());
        let b = ClusterState::open(bus).unwrap();
        for s in [&a, &b] {
            assert_eq!(
                s.all::<i32>(Kind::Repository),
                BTreeMap::from([("web".into(), 1)])
            );
            assert_eq!(
                s.all::<String>(Kind::Token),
                BTreeMap::from([("tok_1".into(), "y".into())])
            );
            assert!(s.all::<String>(Kind::Pipeline).is_empty());
        }
    }

    #[test]
    fn a_creation_that_reaches_the_journal_second_is_passed_over_everywhere() {
        let (_dir, bus) = open_embedded();
        let a = ClusterState::open(bus.clone()).unwrap();
        let b = ClusterState::open(bus.clone()).unwrap();
        // Both decided on a journal without "web": both append, A's first.
        let first = Change {
            only_if_new: true,
            ..ClusterState::change(Kind::Repository, "web", Some(serde_json::json!("a")))
        };
        a.append(&first).unwrap();
        let second = Change {
            only_if_new: true,
            ..ClusterState::change(Kind::Repository, "web", Some(serde_json::json!("b")))
        };
        b.append(&second).unwrap();
        a.catch_up().unwrap();
        for s in [&a, &b, &ClusterState::open(bus).unwrap()] {
            assert_eq!(
                s.all::<String>(Kind::Repository),
                BTreeMap::from([("web".into(), "a".into())])
            );
        }
    }

    #[test]
    fn a_record_that_is_not_a_change_is_passed_over() {
        let (_dir, bus) = open_embedded();
        let a = ClusterState::open(bus.clone()).unwrap();
        bus.produce(
            TOPIC,
            vec![Record::new(&b"{not json"[..])],
            PartitionChoice::Explicit(0),
        )
        .unwrap();
        a.put(Kind::Pipeline, "p", &serde_json::json!({"from": "web"}))
            .unwrap();
        assert_eq!(a.all::<serde_json::Value>(Kind::Pipeline).len(), 1);
        // A value of the wrong shape is left out of the typed view, not fatal.
        a.put(Kind::Pipeline, "q", &"text").unwrap();
        let typed: BTreeMap<String, BTreeMap<String, String>> = a.all(Kind::Pipeline);
        assert_eq!(typed.keys().collect::<Vec<_>>(), ["p"]);
    }
}
