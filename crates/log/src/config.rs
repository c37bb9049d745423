//! Settings: the durability policy of the whole log and the per-topic configuration.
//!
//! Defaults live here, in one place, and every field says what it does.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::batch::Compression;
use crate::error::{Error, IoContext, Result};

/// When an append is acknowledged, relative to fsync. This is the log's durability guarantee.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// The default. An append returns only after its bytes are on stable storage (fdatasync).
    /// Concurrent appenders to a partition share one fsync (group commit): one becomes the
    /// leader, waits `linger` for others to join, and syncs for all of them. Readers see a record
    /// only once it is durable, so nothing a crash could lose is ever visible.
    Fsync {
        /// How long the group-commit leader waits for more appenders before syncing. Zero still
        /// groups every append that arrives while a sync is running.
        linger: Duration,
    },
    /// Weaker, for users who choose speed over safety: an append returns once its bytes are in
    /// the OS page cache and is visible to readers at once; a background thread fsyncs every
    /// `interval`. A machine crash (not a process crash) can lose up to `interval` of
    /// acknowledged records.
    Interval {
        /// Time between background fsyncs.
        interval: Duration,
    },
}

impl Default for Durability {
    fn default() -> Self {
        Durability::Fsync {
            linger: Duration::ZERO,
        }
    }
}

/// Configuration of one topic, persisted next to its partitions as `topic.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopicConfig {
    /// Number of partitions, 1..=1024. Fixed at creation: changing it would move keys.
    pub partitions: u32,
    /// Compression of batches appended through [`crate::Topic::produce`]; `none` by default
    /// because the bus is short-lived and the store compresses later.
    pub compression: Compression,
    /// Size at which the active segment is sealed and a new one started, in bytes.
    pub segment_bytes: u64,
    /// Age at which a non-empty active segment is sealed, in ms, so that time-based retention
    /// can delete data even from a quiet topic.
    pub segment_ms: u64,
    /// Delete sealed segments whose newest record is older than this, in ms; `None` keeps all.
    pub retention_ms: Option<u64>,
    /// Delete the oldest sealed segments while a partition holds more than this many bytes;
    /// `None` keeps all.
    pub retention_bytes: Option<u64>,
    /// Largest single record (key + value + headers), in bytes.
    pub max_record_bytes: usize,
    /// Largest encoded batch, in bytes.
    pub max_batch_bytes: usize,
    /// Bytes between entries of the sparse offset and time indexes.
    pub index_interval_bytes: u64,
    /// Consumer groups that hold back retention: a segment is deleted (by age or size) only
    /// once every one of these groups has committed past its last record; a group that has not
    /// committed on a partition holds all of it. The store's digest uses this so that the bus
    /// never drops events that are not yet in a sealed store segment.
    pub retain_for_groups: Vec<String>,
    /// Keep only the newest record of each key (Kafka's `cleanup.policy=compact`): for
    /// journals of named things, where a record replaces the one of its key before it. The
    /// embedded log keeps every record (its journals are written by one node and stay small);
    /// readers must accept both.
    pub compacted: bool,
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            partitions: 1,
            compression: Compression::None,
            segment_bytes: 256 << 20,
            segment_ms: 7 * 24 * 3600 * 1000,
            retention_ms: Some(7 * 24 * 3600 * 1000),
            retention_bytes: None,
            max_record_bytes: 1 << 20,
            max_batch_bytes: 64 << 20,
            index_interval_bytes: 4096,
            retain_for_groups: Vec::new(),
            compacted: false,
        }
    }
}

impl TopicConfig {
    /// A journal's topic: one partition (one order every reader agrees on), kept forever.
    pub fn journal() -> TopicConfig {
        TopicConfig {
            partitions: 1,
            retention_ms: None,
            retention_bytes: None,
            ..TopicConfig::default()
        }
    }

    /// A journal of named things, each record replacing the one of its key before it: one
    /// partition, every key's newest record kept forever, older ones compacted away.
    pub fn compacted_journal() -> TopicConfig {
        TopicConfig {
            compacted: true,
            ..TopicConfig::journal()
        }
    }
}

/// A topic's configuration, shared by the topic and its partitions, and replaced whole when the
/// topic is reconfigured (see [`crate::Log::reconfigure_topic`]): readers take a snapshot.
#[derive(Debug)]
pub(crate) struct ConfigCell(std::sync::RwLock<std::sync::Arc<TopicConfig>>);

impl ConfigCell {
    pub(crate) fn new(config: TopicConfig) -> ConfigCell {
        ConfigCell(std::sync::RwLock::new(std::sync::Arc::new(config)))
    }

    /// The configuration in force now.
    pub(crate) fn get(&self) -> std::sync::Arc<TopicConfig> {
        eddy_base::sync::read(&self.0).clone()
    }

    pub(crate) fn set(&self, config: TopicConfig) {
        *eddy_base::sync::write(&self.0) = std::sync::Arc::new(config);
    }
}

/// Most partitions a topic may have.
pub const MAX_PARTITIONS: u32 = 1024;

impl TopicConfig {
    /// Reads and validates a topic's `topic.json`.
    pub(crate) fn read(path: &std::path::Path) -> Result<TopicConfig> {
        let bytes = std::fs::read(path).context(|| format!("reading {}", path.display()))?;
        let config: TopicConfig =
            serde_json::from_slice(&bytes).map_err(|e| Error::BadMetadata {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        config.validate().map_err(|e| Error::BadMetadata {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Ok(config)
    }

    /// Checks every setting and reports all problems at once.
    pub fn validate(&self) -> Result<()> {
        let mut problems = Vec::new();
        if self.partitions == 0 || self.partitions > MAX_PARTITIONS {
            problems.push((
                "partitions",
                self.partitions.to_string(),
                format!("must be 1..={MAX_PARTITIONS}"),
            ));
        }
        if self.segment_bytes < 4096 {
            problems.push((
                "segment_bytes",
                self.segment_bytes.to_string(),
                "must be at least 4096".into(),
            ));
        }
        if self.segment_bytes > u32::MAX as u64 {
            problems.push((
                "segment_bytes",
                self.segment_bytes.to_string(),
                format!("must be at most {} (index positions are 32-bit)", u32::MAX),
            ));
        }
        if self.segment_ms == 0 {
            problems.push(("segment_ms", "0".into(), "must be at least 1".into()));
        }
        if self.max_record_bytes == 0 || self.max_record_bytes > self.max_batch_bytes {
            problems.push((
                "max_record_bytes",
                self.max_record_bytes.to_string(),
                format!("must be 1..=max_batch_bytes ({})", self.max_batch_bytes),
            ));
        }
        if self.max_batch_bytes > crate::batch::MAX_PAYLOAD_LEN {
            problems.push((
                "max_batch_bytes",
                self.max_batch_bytes.to_string(),
                format!("must be at most {}", crate::batch::MAX_PAYLOAD_LEN),
            ));
        }
        if self.index_interval_bytes == 0 {
            problems.push((
                "index_interval_bytes",
                "0".into(),
                "must be at least 1".into(),
            ));
        }
        for group in &self.retain_for_groups {
            if let Err(e) = validate_name("consumer group", group) {
                problems.push(("retain_for_groups", group.clone(), e.to_string()));
            }
        }
        match problems.len() {
            0 => Ok(()),
            1 => {
                let (setting, value, reason) = problems.remove(0);
                Err(Error::InvalidConfig {
                    setting,
                    value,
                    reason,
                })
            }
            _ => {
                let (setting, value, first) = problems.remove(0);
                let rest: Vec<String> = problems
                    .into_iter()
                    .map(|(s, v, r)| format!("{s} = {v}: {r}"))
                    .collect();
                Err(Error::InvalidConfig {
                    setting,
                    value,
                    reason: format!("{first}; also {}", rest.join("; ")),
                })
            }
        }
    }
}

/// Checks a topic or consumer group name: 1 to 249 characters of `[A-Za-z0-9._-]`, not `.` or
/// `..` (names become directory and file names).
pub fn validate_name(kind: &'static str, name: &str) -> Result<()> {
    let bad = |reason: String| Error::InvalidName {
        kind,
        name: name.to_string(),
        reason,
    };
    if name.is_empty() {
        return Err(bad("must not be empty".into()));
    }
    if name.len() > 249 {
        return Err(bad(format!(
            "is {} characters, the limit is 249",
            name.len()
        )));
    }
    if name == "." || name == ".." {
        return Err(bad("must not be \".\" or \"..\"".into()));
    }
    if let Some((i, c)) = name
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(bad(format!(
            "character {c:?} at position {i} is not allowed; use letters, digits, '.', '_' and '-'"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_with_the_reason() {
        validate_name("topic", "web.access-logs_2").unwrap();
        let err = validate_name("topic", "a/b").unwrap_err().to_string();
        assert!(err.contains("'/' at position 1"), "{err}");
        assert!(validate_name("topic", "").is_err());
        assert!(validate_name("topic", "..").is_err());
        let long = "x".repeat(250);
        assert!(validate_name("topic", &long)
            .unwrap_err()
            .to_string()
            .contains("250"));
    }

    #[test]
    fn config_reports_every_problem() {
        let cfg = TopicConfig {
            partitions: 0,
            segment_bytes: 10,
            ..TopicConfig::default()
        };
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("partitions = 0"), "{err}");
        assert!(err.contains("segment_bytes = 10"), "{err}");
        TopicConfig::default().validate().unwrap();
    }
}
