//! Consumer groups: the committed offset of each group for each topic partition.
//!
//! Each group is one JSON file, `groups/<group>.json`, replaced atomically on every commit: the
//! new content is written to a temporary file, fsynced, renamed over the old one, and the
//! directory is fsynced. A crash leaves either the old or the new offsets, never a mix.
//! A committed offset is the next offset the group will read (Kafka's convention).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use eddy_base::fs::replace_file;
use eddy_base::sync::lock;

use crate::config::validate_name;
use crate::error::{Error, IoContext, Result};

/// topic → partition → next offset to read.
pub type GroupOffsets = BTreeMap<String, BTreeMap<u32, u64>>;

#[derive(Debug, Serialize, Deserialize)]
struct GroupFile {
    version: u32,
    offsets: GroupOffsets,
}

/// The store of all groups' committed offsets.
#[derive(Debug)]
pub struct Groups {
    dir: PathBuf,
    cache: Mutex<BTreeMap<String, GroupOffsets>>,
}

impl Groups {
    /// Loads every group. `writer`: this process owns the log and may clean up after crashes.
    pub(crate) fn open(dir: PathBuf, writer: bool) -> Result<Groups> {
        std::fs::create_dir_all(&dir).context(|| format!("creating {}", dir.display()))?;
        let mut cache = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).context(|| format!("listing {}", dir.display()))? {
            let entry = entry.context(|| format!("listing {}", dir.display()))?;
            let path = entry.path();
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
            else {
                if writer && path.extension().is_some_and(|e| e == "tmp") {
                    let _ = std::fs::remove_file(&path); // a commit cut short by a crash
                }
                continue;
            };
            cache.insert(name.to_string(), read_group(&path)?);
        }
        Ok(Groups {
            dir,
            cache: Mutex::new(cache),
        })
    }

    /// Durably records `offsets` (topic, partition, next offset) for `group`, all at once.
    pub fn commit(&self, group: &str, offsets: &[(&str, u32, u64)]) -> Result<()> {
        validate_name("consumer group", group)?;
        let mut cache = lock(&self.cache);
        let mut updated = cache.get(group).cloned().unwrap_or_default();
        for &(topic, partition, offset) in offsets {
            updated
                .entry(topic.to_string())
                .or_default()
                .insert(partition, offset);
        }
        self.write(group, &updated)?;
        cache.insert(group.to_string(), updated);
        Ok(())
    }

    fn write(&self, group: &str, offsets: &GroupOffsets) -> Result<()> {
        let path = self.dir.join(format!("{group}.json"));
        let body = serde_json::to_vec_pretty(&GroupFile {
            version: 1,
            offsets: offsets.clone(),
        })
        .map_err(|e| Error::BadMetadata {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        // The temporary file is unique per process: a reader process may commit its own groups
        // at the same time.
        Ok(replace_file(&path, &body)?)
    }

    /// The committed offset of `group` for a partition, if any.
    pub fn committed(&self, group: &str, topic: &str, partition: u32) -> Option<u64> {
        let cache = lock(&self.cache);
        cache.get(group)?.get(topic)?.get(&partition).copied()
    }

    /// The highest offset any group has committed for a partition (0 if none has): every
    /// record below it has been seen by some consumer.
    pub fn highest_committed(&self, topic: &str, partition: u32) -> u64 {
        let cache = lock(&self.cache);
        cache
            .values()
            .filter_map(|g| g.get(topic)?.get(&partition).copied())
            .max()
            .unwrap_or(0)
    }

    /// All offsets of one group.
    pub fn get(&self, group: &str) -> Option<GroupOffsets> {
        let cache = lock(&self.cache);
        cache.get(group).cloned()
    }

    /// Names of all groups.
    pub fn list(&self) -> Vec<String> {
        let cache = lock(&self.cache);
        cache.keys().cloned().collect()
    }

    /// Forgets a topic in every group (when the topic is deleted).
    pub(crate) fn forget_topic(&self, topic: &str) -> Result<()> {
        let mut cache = lock(&self.cache);
        let names: Vec<String> = cache
            .iter()
            .filter(|(_, o)| o.contains_key(topic))
            .map(|(g, _)| g.clone())
            .collect();
        for group in names {
            if let Some(offsets) = cache.get_mut(&group) {
                offsets.remove(topic);
                let offsets = offsets.clone();
                self.write(&group, &offsets)?;
            }
        }
        Ok(())
    }
}

fn read_group(path: &Path) -> Result<GroupOffsets> {
    let bytes = std::fs::read(path).context(|| format!("reading {}", path.display()))?;
    let file: GroupFile = serde_json::from_slice(&bytes).map_err(|e| Error::BadMetadata {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if file.version != 1 {
        return Err(Error::BadMetadata {
            path: path.to_path_buf(),
            reason: format!("unknown version {}", file.version),
        });
    }
    Ok(file.offsets)
}
