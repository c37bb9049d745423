//! The log as a whole: a data directory of topics and consumer groups, and the background
//! thread that enforces retention and runs the `Interval` durability policy's fsyncs.
//!
//! ```text
//!  <data dir>/LOCK                              held (flock) while a process has the log open
//!  <data dir>/topics/<topic>/topic.json         the topic's configuration
//!  <data dir>/topics/<topic>/<partition>/       segments: <base>.log, .index, .timeindex
//!  <data dir>/groups/<group>.json               committed offsets of a consumer group
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use eddy_base::fs::{replace_file, sync_dir};
use eddy_base::sync::{lock, read, wait_timeout, write};

use crate::config::{validate_name, Durability, TopicConfig};
use crate::error::{Error, IoContext, IoError, Result};
use crate::groups::Groups;
use crate::partition::{Access, Partition, RetentionOutcome};
use crate::record::now_ns;
use crate::signal::Signal;
use crate::topic::Topic;

/// Builder for [`Log`]: `Log::builder(dir).durability(..).open()`.
#[derive(Debug, Clone)]
pub struct LogBuilder {
    dir: PathBuf,
    durability: Durability,
    retention_check: Duration,
    read_only: bool,
    refresh: Duration,
}

impl LogBuilder {
    /// Sets the durability policy (default: fsync before acknowledging, with group commit).
    pub fn durability(mut self, durability: Durability) -> LogBuilder {
        self.durability = durability;
        self
    }

    /// Sets how often retention runs in the background (default 60 s; zero disables it).
    pub fn retention_check(mut self, every: Duration) -> LogBuilder {
        self.retention_check = every;
        self
    }

    /// Opens the log read-only, for reading while another process (the one holding the `LOCK`)
    /// writes it. Nothing on disk is changed but consumer group offsets. Readers see what that
    /// process has acknowledged, taking in new data every `refresh` (default 10 ms); with no
    /// writer running they see every whole batch on disk. Topics created after the open are
    /// not seen.
    pub fn read_only(mut self, refresh: Duration) -> LogBuilder {
        self.read_only = true;
        self.refresh = refresh.max(Duration::from_millis(1));
        self
    }

    /// Opens the log, creating the directory if needed and recovering every partition.
    pub fn open(self) -> Result<Log> {
        Log::open_with(self)
    }
}

struct Shared {
    dir: PathBuf,
    durability: Durability,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    groups: Groups,
    stop: Mutex<bool>,
    stop_cv: Condvar,
    read_only: bool,
    _lock: Option<std::fs::File>,
}

/// The embedded commit log: topics of partitioned, durable, append-only segments.
pub struct Log {
    shared: Arc<Shared>,
    maintenance: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Log({})", self.shared.dir.display())
    }
}

impl Log {
    /// A builder for a log in `dir`.
    pub fn builder(dir: impl Into<PathBuf>) -> LogBuilder {
        LogBuilder {
            dir: dir.into(),
            durability: Durability::default(),
            retention_check: Duration::from_secs(60),
            read_only: false,
            refresh: Duration::from_millis(10),
        }
    }

    /// Opens the log in `dir` with the default (durable) settings.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Log> {
        Log::builder(dir).open()
    }

    fn open_with(b: LogBuilder) -> Result<Log> {
        let dir = b.dir;
        let lock_path = dir.join("LOCK");
        if b.read_only && !lock_path.exists() {
            return Err(Error::Io(IoError {
                context: format!("opening the log in {} read-only", dir.display()),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no eddy log there"),
            }));
        }
        std::fs::create_dir_all(dir.join("topics"))
            .context(|| format!("creating {}", dir.display()))?;
        let (lock, writer_running) = crate::lock::try_lock(&dir)?;
        let (access, lock) = if b.read_only {
            // A reader never keeps the lock: a writer may start while it reads.
            drop(lock);
            (
                Access::ReadOnly {
                    live: writer_running,
                },
                None,
            )
        } else if writer_running {
            return Err(crate::lock::locked(&dir));
        } else {
            crate::lock::record_holder(&lock);
            (Access::Write, Some(lock))
        };
        let write = access == Access::Write;
        let groups = Groups::open(dir.join("groups"), write)?;
        let mut topics = BTreeMap::new();
        let topics_dir = dir.join("topics");
        for entry in std::fs::read_dir(&topics_dir)
            .context(|| format!("listing {}", topics_dir.display()))?
        {
            let entry = entry.context(|| format!("listing {}", topics_dir.display()))?;
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with('.') {
                if write {
                    // A creation or deletion cut short by a crash.
                    tracing::info!(dir = %entry.path().display(), "removing an unfinished topic directory");
                    let _ = std::fs::remove_dir_all(entry.path());
                }
                continue;
            }
            if !entry.path().is_dir() {
                tracing::warn!(file = %entry.path().display(), "ignoring a file that is not a topic directory");
                continue;
            }
            let config = TopicConfig::read(&entry.path().join("topic.json"))?;
            let floor = |partition| groups.highest_committed(&name, partition);
            let topic = open_topic(&entry.path(), &name, config, b.durability, access, floor)?;
            topics.insert(name, Arc::new(topic));
        }
        if write {
            // Written before anything reads it, so read-only handles find it too.
            crate::embedded::load_or_create_epoch(&dir, true)?;
        }
        let shared = Arc::new(Shared {
            dir,
            durability: b.durability,
            topics: RwLock::new(topics),
            groups,
            stop: Mutex::new(false),
            stop_cv: Condvar::new(),
            read_only: !write,
            _lock: lock,
        });
        let mut jobs = Vec::new();
        match b.durability {
            Durability::Interval { interval } if write => {
                jobs.push((Job::Flush, interval.max(Duration::from_millis(1))))
            }
            _ => {}
        }
        if write && !b.retention_check.is_zero() {
            jobs.push((Job::Retention, b.retention_check));
        }
        if !write {
            jobs.push((Job::Refresh, b.refresh));
        }
        let maintenance = if jobs.is_empty() {
            None
        } else {
            let s = shared.clone();
            Some(
                std::thread::Builder::new()
                    .name("eddy-log-maintenance".into())
                    .spawn(move || maintenance(s, jobs))
                    .context(|| "starting the log's maintenance thread".to_string())?,
            )
        };
        Ok(Log {
            shared,
            maintenance,
        })
    }

    fn check_writable(&self) -> Result<()> {
        if self.shared.read_only {
            return Err(Error::ReadOnly);
        }
        Ok(())
    }

    /// True if this handle was opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.shared.read_only
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The durability policy in force.
    pub fn durability(&self) -> Durability {
        self.shared.durability
    }

    /// Creates a topic; fails if it exists or the config is invalid.
    pub fn create_topic(&self, name: &str, config: TopicConfig) -> Result<Arc<Topic>> {
        self.check_writable()?;
        validate_name("topic", name)?;
        config.validate()?;
        let mut topics = write(&self.shared.topics);
        if topics.contains_key(name) {
            return Err(Error::TopicExists(name.to_string()));
        }
        let topics_dir = self.shared.dir.join("topics");
        let staging = topics_dir.join(format!(".creating-{name}"));
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging).context(|| format!("creating {}", staging.display()))?;
        replace_file(&staging.join("topic.json"), &topic_json(&config)?)?;
        let final_dir = topics_dir.join(name);
        std::fs::rename(&staging, &final_dir)
            .context(|| format!("renaming {} to {}", staging.display(), final_dir.display()))?;
        sync_dir(&topics_dir)?;
        let topic = Arc::new(open_topic(
            &final_dir,
            name,
            config,
            self.shared.durability,
            Access::Write,
            |_| 0,
        )?);
        topics.insert(name.to_string(), topic.clone());
        tracing::info!(
            topic = name,
            partitions = topic.partition_count(),
            "created topic"
        );
        Ok(topic)
    }

    /// Replaces the settings of an existing topic that may change while it lives (compression,
    /// retention, the protecting groups, segment rolling), persisting them in its `topic.json`.
    /// The partition count cannot change: it would move keys. Batches already written keep the
    /// compression they were written with.
    pub fn reconfigure_topic(&self, name: &str, config: TopicConfig) -> Result<()> {
        self.check_writable()?;
        config.validate()?;
        let topic = self.topic(name)?;
        let current = topic.config();
        if config.partitions != current.partitions {
            return Err(Error::InvalidConfig {
                setting: "partitions",
                value: config.partitions.to_string(),
                reason: format!(
                    "topic {name} has {} partitions; the count is fixed at creation",
                    current.partitions
                ),
            });
        }
        if *current == config {
            return Ok(());
        }
        let dir = self.shared.dir.join("topics").join(name);
        replace_file(&dir.join("topic.json"), &topic_json(&config)?)?;
        tracing::info!(topic = name, ?config, "reconfigured topic");
        topic.set_config(config);
        Ok(())
    }

    /// The topic, or [`Error::UnknownTopic`].
    pub fn topic(&self, name: &str) -> Result<Arc<Topic>> {
        read(&self.shared.topics)
            .get(name)
            .cloned()
            .ok_or_else(|| Error::UnknownTopic(name.to_string()))
    }

    /// The topic, created with `config` if it does not exist.
    pub fn topic_or_create(&self, name: &str, config: TopicConfig) -> Result<Arc<Topic>> {
        match self.topic(name) {
            Ok(t) => Ok(t),
            Err(Error::UnknownTopic(_)) => match self.create_topic(name, config) {
                Err(Error::TopicExists(_)) => self.topic(name),
                other => other,
            },
            Err(e) => Err(e),
        }
    }

    /// All topics, by name.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        read(&self.shared.topics).values().cloned().collect()
    }

    /// Deletes a topic and all its data, and forgets it in every consumer group.
    pub fn delete_topic(&self, name: &str) -> Result<()> {
        self.check_writable()?;
        let mut topics = write(&self.shared.topics);
        if topics.remove(name).is_none() {
            return Err(Error::UnknownTopic(name.to_string()));
        }
        let topics_dir = self.shared.dir.join("topics");
        let doomed = topics_dir.join(format!(".deleting-{name}"));
        std::fs::rename(topics_dir.join(name), &doomed)
            .context(|| format!("renaming topic {name} for deletion"))?;
        sync_dir(&topics_dir)?;
        std::fs::remove_dir_all(&doomed).context(|| format!("deleting {}", doomed.display()))?;
        self.shared.groups.forget_topic(name)?;
        tracing::info!(topic = name, "deleted topic");
        Ok(())
    }

    /// Consumer groups' committed offsets.
    pub fn groups(&self) -> &Groups {
        &self.shared.groups
    }

    /// Runs retention on every topic now.
    pub fn enforce_retention(&self) -> Result<RetentionOutcome> {
        enforce_retention(&self.shared)
    }

    /// Fsyncs everything written (a no-op in `Fsync` mode, where appends are already durable).
    pub fn flush(&self) -> Result<()> {
        flush_all(&self.shared)
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        *lock(&self.shared.stop) = true;
        self.shared.stop_cv.notify_all();
        if let Some(handle) = self.maintenance.take() {
            let _ = handle.join();
        }
        if let Err(e) = flush_all(&self.shared) {
            tracing::error!(error = %e, "final fsync at close failed");
        }
    }
}

fn open_topic(
    dir: &Path,
    name: &str,
    config: TopicConfig,
    durability: Durability,
    access: Access,
    floor: impl Fn(u32) -> u64,
) -> Result<Topic> {
    let name: Arc<str> = Arc::from(name);
    let config = Arc::new(crate::config::ConfigCell::new(config));
    let signal = Arc::new(Signal::default());
    let count = config.get().partitions;
    let mut partitions = Vec::with_capacity(count as usize);
    for id in 0..count {
        let pdir = dir.join(id.to_string());
        if access == Access::Write && pdir.is_dir() {
            crate::repair::finish(&pdir)?;
        }
        partitions.push(Arc::new(Partition::open(
            name.clone(),
            id,
            dir.join(id.to_string()),
            config.clone(),
            durability,
            signal.clone(),
            access,
            floor(id),
        )?));
    }
    Ok(Topic::new(name, config, partitions, signal))
}

fn topic_json(config: &TopicConfig) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(config).map_err(|e| Error::InvalidConfig {
        setting: "topic",
        value: format!("{config:?}"),
        reason: e.to_string(),
    })
}

fn all_partitions(shared: &Shared) -> Vec<Arc<Partition>> {
    let topics = read(&shared.topics);
    topics
        .values()
        .flat_map(|t| t.partitions().iter().cloned())
        .collect()
}

fn flush_all(shared: &Shared) -> Result<()> {
    let mut first_error = None;
    for p in all_partitions(shared) {
        if let Err(e) = p.flush() {
            tracing::error!(topic = p.topic(), partition = p.id(), error = %e, "fsync failed");
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// The offset below which retention may delete in a partition: the least committed offset of
/// the topic's protecting groups (0 for a group that has not committed there).
fn retention_floor(shared: &Shared, topic: &Topic, partition: u32) -> u64 {
    topic
        .config()
        .retain_for_groups
        .iter()
        .map(|g| {
            shared
                .groups
                .committed(g, topic.name(), partition)
                .unwrap_or(0)
        })
        .min()
        .unwrap_or(u64::MAX)
}

fn enforce_retention(shared: &Shared) -> Result<RetentionOutcome> {
    let now = now_ns();
    let topics: Vec<Arc<Topic>> = read(&shared.topics).values().cloned().collect();
    let mut total = RetentionOutcome::default();
    for topic in topics {
        for p in topic.partitions() {
            let o = p.enforce_retention(now, retention_floor(shared, &topic, p.id()))?;
            total.segments += o.segments;
            total.bytes += o.bytes;
        }
    }
    Ok(total)
}

#[derive(Debug, Clone, Copy)]
enum Job {
    /// The `Interval` policy's background fsync.
    Flush,
    /// Age and size retention.
    Retention,
    /// A read-only log taking in what the writing process committed.
    Refresh,
}

fn run_job(shared: &Shared, job: Job) {
    match job {
        Job::Flush => {
            let _ = flush_all(shared);
        }
        Job::Retention => {
            if let Err(e) = enforce_retention(shared) {
                tracing::error!(error = %e, "retention failed");
            }
        }
        Job::Refresh => {
            for p in all_partitions(shared) {
                if let Err(e) = p.refresh() {
                    tracing::warn!(topic = p.topic(), partition = p.id(), error = %e, "cannot take in new data");
                }
            }
        }
    }
}

fn maintenance(shared: Arc<Shared>, jobs: Vec<(Job, Duration)>) {
    let start = Instant::now();
    let mut due: Vec<Instant> = jobs.iter().map(|(_, every)| start + *every).collect();
    loop {
        let wake = due.iter().min().copied();
        {
            let mut stop = lock(&shared.stop);
            while !*stop {
                let left = wake.map_or(Duration::from_secs(3600), |w| {
                    w.saturating_duration_since(Instant::now())
                });
                if left.is_zero() {
                    break;
                }
                stop = wait_timeout(&shared.stop_cv, stop, left);
            }
            if *stop {
                return;
            }
        }
        let now = Instant::now();
        for ((job, every), at) in jobs.iter().zip(due.iter_mut()) {
            if now >= *at {
                run_job(&shared, *job);
                *at = now + *every;
            }
        }
    }
}
