//! The things created through the API (repositories, alert rules, pipelines), by name: kept
//! in a file of the data directory (`repositories.json`, `alerts.json`, `pipelines.json`,
//! replaced atomically and durably) on the embedded bus, and in the cluster's shared state
//! ([`crate::cluster_state`]) on a shared bus, so that every node has what any node created.
//!
//! A node that joins a cluster with such a file brings what it holds into the shared state,
//! once, at start (a name the cluster has already keeps the cluster's settings).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::de::DeserializeOwned;
use serde::Serialize;

use eddy_base::io::IoContext;
use eddy_base::sync::lock;

use crate::cluster_state::{ClusterState, Kind, StateError};

/// Why a creation or removal was not kept.
#[derive(Debug, thiserror::Error)]
pub enum KeepError {
    /// The data directory's file could not be written; nothing changed.
    #[error("could not write the data directory's file: {0}")]
    File(#[from] eddy_base::io::IoError),
    /// The shared state could not be written or read back.
    #[error(transparent)]
    Shared(#[from] StateError),
}

/// The things of one kind created through the API.
#[derive(Debug)]
pub struct Created<T> {
    kind: Kind,
    file: PathBuf,
    /// The file's content on the embedded bus; on a shared bus only a lock that serializes
    /// this node's changes.
    local: Mutex<BTreeMap<String, T>>,
    shared: Option<Arc<ClusterState>>,
}

/// Held while a creation or removal is decided and made, so that one node makes one at a time.
pub struct Changing<'a, T>(MutexGuard<'a, BTreeMap<String, T>>);

impl<T: Serialize + DeserializeOwned + Clone> Created<T> {
    /// Reads `file` (none if it does not exist); with `shared`, brings what it holds that the
    /// cluster lacks into the shared state.
    pub fn open(
        kind: Kind,
        file: PathBuf,
        shared: Option<Arc<ClusterState>>,
    ) -> std::io::Result<Created<T>> {
        let local: BTreeMap<String, T> = read_file(&file)?;
        if let Some(state) = &shared {
            for (name, value) in &local {
                state
                    .create(kind, name, value)
                    .map_err(std::io::Error::other)?;
            }
        }
        // On a shared bus the file's content lives in the shared state from here on.
        let local = if shared.is_some() {
            BTreeMap::new()
        } else {
            local
        };
        Ok(Created {
            kind,
            file,
            local: Mutex::new(local),
            shared,
        })
    }

    /// Every thing of this kind, by name.
    pub fn all(&self) -> BTreeMap<String, T> {
        match &self.shared {
            Some(state) => state.all(self.kind),
            None => lock(&self.local).clone(),
        }
    }

    /// Whether `name` exists, asked during a change.
    pub fn contains(&self, held: &Changing<'_, T>, name: &str) -> bool {
        match &self.shared {
            Some(state) => state.contains(self.kind, name),
            None => held.0.contains_key(name),
        }
    }

    /// Starts a change: holds this node's other changes off until it is dropped.
    pub fn changing(&self) -> Changing<'_, T> {
        Changing(lock(&self.local))
    }

    /// Keeps `name`; returns `false`, keeping nothing, when it exists already (in the shared
    /// state: when another node's creation came first).
    pub fn add(&self, held: &mut Changing<'_, T>, name: &str, value: T) -> Result<bool, KeepError> {
        if let Some(state) = &self.shared {
            return Ok(state.create(self.kind, name, &value)?);
        }
        if held.0.contains_key(name) {
            return Ok(false);
        }
        held.0.insert(name.to_string(), value);
        if let Err(e) = write_file(&self.file, &held.0) {
            held.0.remove(name);
            return Err(e.into());
        }
        Ok(true)
    }

    /// Forgets `name`; returns whether it existed.
    pub fn remove(&self, held: &mut Changing<'_, T>, name: &str) -> Result<bool, KeepError> {
        if let Some(state) = &self.shared {
            return Ok(state.remove(self.kind, name)?);
        }
        let Some(old) = held.0.remove(name) else {
            return Ok(false);
        };
        if let Err(e) = write_file(&self.file, &held.0) {
            held.0.insert(name.to_string(), old);
            return Err(e.into());
        }
        Ok(true)
    }
}

/// Reads a file of created things (none if it does not exist).
pub(crate) fn read_file<T: DeserializeOwned>(path: &Path) -> std::io::Result<BTreeMap<String, T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(e),
    }
}

/// Replaces a file of created things, atomically and durably.
pub(crate) fn write_file<T: Serialize>(
    path: &Path,
    things: &BTreeMap<String, T>,
) -> Result<(), eddy_base::io::IoError> {
    let bytes = serde_json::to_vec_pretty(things)
        .map_err(std::io::Error::other)
        .context(|| format!("encoding {}", path.display()))?;
    // It may hold tokens: only the owner may read it.
    eddy_base::fs::replace_private_file(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_the_embedded_bus_creations_are_kept_in_the_file_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("things.json");
        let created = Created::<u32>::open(Kind::Pipeline, file.clone(), None).unwrap();
        let mut held = created.changing();
        assert!(created.add(&mut held, "a", 1).unwrap());
        assert!(!created.add(&mut held, "a", 2).unwrap());
        assert!(created.add(&mut held, "b", 3).unwrap());
        assert!(created.remove(&mut held, "b").unwrap());
        assert!(!created.remove(&mut held, "b").unwrap());
        drop(held);
        let again = Created::<u32>::open(Kind::Pipeline, file, None).unwrap();
        assert_eq!(again.all(), BTreeMap::from([("a".to_string(), 1)]));
    }

    #[test]
    fn a_node_joining_a_cluster_brings_its_file_into_the_shared_state() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("things.json");
        write_file(&file, &BTreeMap::from([("mine".to_string(), 7u32)])).unwrap();
        let bus: Arc<dyn eddy_log::Bus> =
            Arc::new(eddy_log::Log::open(dir.path().join("bus")).unwrap());
        let state = ClusterState::open(bus).unwrap();
        state.put(Kind::Pipeline, "theirs", &8u32).unwrap();
        let created = Created::<u32>::open(Kind::Pipeline, file, Some(state.clone())).unwrap();
        assert_eq!(
            created.all(),
            BTreeMap::from([("mine".to_string(), 7), ("theirs".to_string(), 8)])
        );
        assert!(state.contains(Kind::Pipeline, "mine"));
    }

    #[test]
    fn an_unreadable_file_is_an_error_that_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("things.json");
        std::fs::write(&file, b"{broken").unwrap();
        let e = Created::<u32>::open(Kind::Pipeline, file, None).unwrap_err();
        assert!(e.to_string().contains("things.json"), "{e}");
    }
}
