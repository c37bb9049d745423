//! Consumer lag, as `/metrics` shows it and the lag rule ([`crate::spread`]) reads it.
//!
//! Per partition of a repository's topic: the bus's end offset, the digest's position (every
//! record below it is in the store's work in progress or sealed), the lag in records
//! (end − position) and in seconds, and the committed offset of each consumer group this node
//! runs on the topic. The committed offset of the digest moves only when segments seal, so it
//! says nothing of how far behind the digest is; the position does.
//!
//! The lag in seconds is how old the oldest undigested record is, bounded from above by the
//! ingest time the digest has caught up to ([`PartitionProgress::caught_up_ns`]): 0 when the
//! digest is at the end, otherwise `now − caught_up`. A digest that stalls therefore shows a
//! lag that grows by the second.
//!
//! Where the digest's progress comes from depends on the bus ([`eddy_log::Bus::shared`]): on
//! the embedded log the digest runs in this process and its workers report to it directly. On
//! Kafka the partitions are digested by whichever node the group gave them to; every digest
//! node publishes its partitions' progress to the single-partition topic [`PROGRESS_TOPIC`]
//! ([`ProgressTopic`]) and every node follows it. The newest report of a partition wins.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eddy_base::sync::lock;
use eddy_log::{Bus, BusReader, PartitionChoice, Record, TopicConfig};
use eddy_store::progress::PartitionProgress;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

use crate::repository::Repository;

/// The topic digest nodes publish their progress to, on a shared bus.
pub const PROGRESS_TOPIC: &str = "_digest_progress";

/// How long the progress topic keeps records (it is read from near its end, so older ones
/// only take room).
const PROGRESS_RETENTION: Duration = Duration::from_secs(3600);

/// Records of the progress topic read back when a node starts following it: enough for the
/// last report of every partition of every repository.
const PROGRESS_REREAD: u64 = 10_000;

/// A partition's progress is published again after this long even when unchanged, so that
/// readers tell a quiet partition from a dead digest.
const PUBLISH_AT_LEAST_EVERY: Duration = Duration::from_secs(5);

/// A report older than this is not published: its partition moved to another node.
const STALE_REPORT: Duration = Duration::from_secs(5);

/// One partition's lag as this node knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionLag {
    /// The partition.
    pub partition: u32,
    /// The bus's next offset (its end).
    pub end: u64,
    /// The digest's last progress, from this node or published by the node that digests it;
    /// `None` while no digest has reported.
    pub progress: Option<PartitionProgress>,
    /// Records the digest has yet to read.
    pub records: Option<u64>,
    /// Age bound of the oldest record the digest has yet to read (0 when none).
    pub behind: Option<Duration>,
    /// Committed next offsets, by consumer group this node runs.
    pub committed: BTreeMap<String, u64>,
}

/// A repository's lag: what other nodes published, and the last reading.
#[derive(Debug, Default)]
pub struct LagBoard {
    published: Mutex<BTreeMap<u32, PartitionProgress>>,
    last: Mutex<Vec<PartitionLag>>,
}

impl LagBoard {
    /// Takes a progress report another node published.
    pub fn published(&self, partition: u32, progress: PartitionProgress) {
        let mut published = lock(&self.published);
        let known = published.entry(partition).or_insert(progress);
        if progress.at_ns >= known.at_ns {
            *known = progress;
        }
    }

    /// The last reading ([`refresh`]).
    pub fn last(&self) -> Vec<PartitionLag> {
        lock(&self.last).clone()
    }
}

/// Reads the repository's lag now (the bus's ends and, per group this node runs, the committed
/// offsets: the digest's when it digests here, and `other_groups`, pipelines on the embedded
/// log, as `(group, [(partition, offset)])`), keeps it for the metrics and applies the lag
/// rule to it.
pub fn refresh(
    repo: &Repository,
    other_groups: &[(String, Vec<(u32, u64)>)],
) -> Result<Vec<PartitionLag>, eddy_log::Error> {
    let topic = repo.topic.name();
    let partitions = repo.bus.partition_count(topic)?;
    let local = repo.digest_progress();
    let published = lock(&repo.lag.published).clone();
    let now = eddy_log::now_ns();
    let mut lags = Vec::with_capacity(partitions as usize);
    for partition in 0..partitions {
        let (_, end) = repo.bus.offsets(topic, partition)?;
        let progress = [local.get(&partition), published.get(&partition)]
            .into_iter()
            .flatten()
            .max_by_key(|p| p.at_ns)
            .copied();
        let mut committed = BTreeMap::new();
        if repo.config.digest {
            if let Some(o) = repo
                .bus
                .committed(eddy_store::digest::GROUP, topic, partition)?
            {
                committed.insert(eddy_store::digest::GROUP.to_string(), o);
            }
        }
        for (group, offsets) in other_groups {
            if let Some(&(_, o)) = offsets.iter().find(|(p, _)| *p == partition) {
                committed.insert(group.clone(), o);
            }
        }
        lags.push(PartitionLag {
            partition,
            end,
            progress,
            records: progress.map(|p| end.saturating_sub(p.position)),
            behind: progress.map(|p| behind(&p, end, now)),
            committed,
        });
    }
    repo.spreading
        .update(&lags.iter().map(|l| l.behind).collect::<Vec<_>>());
    lock(&repo.lag.last).clone_from(&lags);
    Ok(lags)
}

/// How old the oldest record past the digest's position can be.
fn behind(progress: &PartitionProgress, end: u64, now: i64) -> Duration {
    if progress.position >= end {
        return Duration::ZERO;
    }
    let ns = now.saturating_sub(progress.caught_up_ns).max(0);
    Duration::from_nanos(u64::try_from(ns).unwrap_or(0))
}

/// One partition's progress as a digest node publishes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishedProgress {
    /// The repository's topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// Its progress.
    #[serde(flatten)]
    pub progress: PartitionProgress,
}

/// The progress topic of a shared bus: digest nodes publish to it, every node follows it.
pub struct ProgressTopic {
    bus: Arc<dyn Bus>,
    reader: Box<dyn BusReader>,
    /// Per topic and partition, what was last published and when.
    sent: HashMap<(String, u32), (u64, Instant)>,
}

impl std::fmt::Debug for ProgressTopic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProgressTopic({})", self.bus.kind())
    }
}

impl ProgressTopic {
    /// Creates the topic if needed and follows it from near its end.
    pub fn open(bus: Arc<dyn Bus>) -> Result<ProgressTopic, eddy_log::Error> {
        let config = TopicConfig {
            partitions: 1,
            retention_ms: Some(PROGRESS_RETENTION.as_millis() as u64),
            segment_ms: PROGRESS_RETENTION.as_millis() as u64,
            segment_bytes: 16 << 20,
            // One record per partition matters, the newest: compaction keeps just that.
            compacted: true,
            ..TopicConfig::default()
        };
        bus.ensure_topic(PROGRESS_TOPIC, &config)?;
        let (first, end) = bus.offsets(PROGRESS_TOPIC, 0)?;
        let reader = bus.reader(
            PROGRESS_TOPIC,
            0,
            end.saturating_sub(PROGRESS_REREAD).max(first),
        )?;
        Ok(ProgressTopic {
            bus,
            reader,
            sent: HashMap::new(),
        })
    }

    /// Publishes the progress of the partitions of `topic` that this node's digest reported
    /// lately, when it moved or was last published a while ago.
    pub fn publish(
        &mut self,
        topic: &str,
        progress: &BTreeMap<u32, PartitionProgress>,
    ) -> Result<(), eddy_log::Error> {
        let now = eddy_log::now_ns();
        let stale_ns = STALE_REPORT.as_nanos() as i64;
        let mut records = Vec::new();
        for (&partition, p) in progress {
            if now.saturating_sub(p.at_ns) > stale_ns {
                continue;
            }
            let key = (topic.to_string(), partition);
            let due = self.sent.get(&key).is_none_or(|&(position, at)| {
                position != p.position || at.elapsed() >= PUBLISH_AT_LEAST_EVERY
            });
            if !due {
                continue;
            }
            let published = PublishedProgress {
                topic: topic.to_string(),
                partition,
                progress: *p,
            };
            let value = serde_json::to_vec(&published).unwrap_or_default();
            records.push(Record::new(value).with_key(format!("{topic}/{partition}")));
            self.sent.insert(key, (p.position, Instant::now()));
        }
        if records.is_empty() {
            return Ok(());
        }
        self.bus
            .produce(PROGRESS_TOPIC, records, PartitionChoice::Explicit(0))
            .map(drop)
    }

    /// The reports published since the last call (other nodes' and this one's).
    pub fn poll(&mut self) -> Result<Vec<PublishedProgress>, eddy_log::Error> {
        let mut out = Vec::new();
        loop {
            let records = self.reader.poll(Duration::ZERO)?;
            if records.is_empty() {
                return Ok(out);
            }
            for r in records {
                match serde_json::from_slice::<PublishedProgress>(&r.value) {
                    Ok(p) => out.push(p),
                    Err(e) => tracing::warn!(
                        topic = PROGRESS_TOPIC,
                        offset = r.offset,
                        "not a digest progress report, skipped: {e}"
                    ),
                }
            }
        }
    }
}

/// The lag gauges (`eddy_bus_end_offset`, `eddy_digest_*`, `eddy_consumer_committed_offset`,
/// `eddy_spread_ways`), set from the last reading at each scrape.
#[derive(Debug, Default)]
pub struct LagMetrics {
    end: Family<PartitionLabel, Gauge>,
    position: Family<PartitionLabel, Gauge>,
    records: Family<PartitionLabel, Gauge>,
    seconds: Family<PartitionLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    committed: Family<GroupLabel, Gauge>,
    source_latency: Family<SourceLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    untracked_sources: Family<RepoLabel, Gauge>,
    ways: Family<SourceLabel, Gauge>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PartitionLabel {
    repository: String,
    partition: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct GroupLabel {
    repository: String,
    group: String,
    partition: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SourceLabel {
    repository: String,
    source: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RepoLabel {
    repository: String,
}

impl LagMetrics {
    /// The gauges, registered into `root`.
    pub fn register(root: &mut Registry) -> LagMetrics {
        let m = LagMetrics::default();
        root.sub_registry_with_prefix("eddy_bus").register(
            "end_offset",
            "The next offset of a repository's bus partition (its end)",
            m.end.clone(),
        );
        root.sub_registry_with_prefix("eddy_consumer").register(
            "committed_offset",
            "The committed next offset of each consumer group this node runs, by repository, group and partition (the digest's moves only when segments seal)",
            m.committed.clone(),
        );
        let digest = root.sub_registry_with_prefix("eddy_digest");
        digest.register(
            "position",
            "The next bus offset the digest reads: every record below it is digested (this node's digest, or the one another node published)",
            m.position.clone(),
        );
        digest.register(
            "lag_records",
            "Records of a bus partition the digest has yet to read (end offset minus position)",
            m.records.clone(),
        );
        digest.register(
            "lag_seconds",
            "How old the oldest record of a bus partition the digest has yet to read can be (0 when it is at the end)",
            m.seconds.clone(),
        );
        digest.register(
            "source_latency_seconds",
            "Ingest-to-digest latency of a data source's last record this node digested (at most 1000 sources per repository, those not seen for 10 minutes forgotten)",
            m.source_latency.clone(),
        );
        digest.register(
            "untracked_source_records",
            "Records of data sources the latency gauge did not track because 1000 others were",
            m.untracked_sources.clone(),
        );
        root.sub_registry_with_prefix("eddy_spread").register(
            "ways",
            "Partitions a data source is spread over by the lag rule (sources not listed are on one)",
            m.ways.clone(),
        );
        m
    }

    /// Forgets the per-source gauges before a scrape sets them again, so that sources no
    /// longer tracked or spread leave the exposition.
    pub fn begin_scrape(&self) {
        self.source_latency.clear();
        self.ways.clear();
    }

    /// Sets a repository's gauges from its last lag reading and its digest's sources (after
    /// [`LagMetrics::begin_scrape`]).
    pub fn set(&self, repo: &Repository) {
        let repository = || repo.name.clone();
        let as_gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        for lag in repo.lag.last() {
            let at = PartitionLabel {
                repository: repository(),
                partition: lag.partition,
            };
            self.end.get_or_create(&at).set(as_gauge(lag.end));
            if let (Some(p), Some(records), Some(behind)) = (lag.progress, lag.records, lag.behind)
            {
                self.position.get_or_create(&at).set(as_gauge(p.position));
                self.records.get_or_create(&at).set(as_gauge(records));
                self.seconds.get_or_create(&at).set(behind.as_secs_f64());
            }
            for (group, offset) in &lag.committed {
                self.committed
                    .get_or_create(&GroupLabel {
                        repository: repository(),
                        group: group.clone(),
                        partition: lag.partition,
                    })
                    .set(as_gauge(*offset));
            }
        }
        let stats = repo.digest_stats();
        for (source, latency) in stats.progress.sources() {
            self.source_latency
                .get_or_create(&SourceLabel {
                    repository: repository(),
                    source,
                })
                .set(latency.latency_ns as f64 / 1e9);
        }
        self.untracked_sources
            .get_or_create(&RepoLabel {
                repository: repository(),
            })
            .set(as_gauge(stats.progress.untracked_sources()));
        for (source, ways) in repo.spreading.spread() {
            self.ways
                .get_or_create(&SourceLabel {
                    repository: repository(),
                    source,
                })
                .set(i64::from(ways));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn a_digest_at_the_end_is_not_behind_and_one_that_is_behind_ages_with_the_clock() {
        let p = PartitionProgress {
            position: 10,
            caught_up_ns: 100 * S,
            latency_ns: 0,
            at_ns: 100 * S,
        };
        assert_eq!(behind(&p, 10, 500 * S), Duration::ZERO);
        assert_eq!(behind(&p, 11, 103 * S), Duration::from_secs(3));
        assert_eq!(behind(&p, 11, 110 * S), Duration::from_secs(10));
    }

    #[test]
    fn the_newest_published_report_of_a_partition_wins() {
        let board = LagBoard::default();
        let at = |position, at_ns| PartitionProgress {
            position,
            caught_up_ns: at_ns,
            latency_ns: 0,
            at_ns,
        };
        board.published(1, at(5, 20 * S));
        board.published(1, at(3, 10 * S));
        assert_eq!(lock(&board.published)[&1].position, 5);
        board.published(1, at(9, 30 * S));
        assert_eq!(lock(&board.published)[&1].position, 9);
    }

    #[test]
    fn progress_published_on_a_bus_is_read_back_by_a_follower() {
        let dir = tempfile::tempdir().unwrap();
        let log: Arc<dyn Bus> = Arc::new(eddy_log::Log::open(dir.path()).unwrap());
        let mut publisher = ProgressTopic::open(log.clone()).unwrap();
        let mut follower = ProgressTopic::open(log.clone()).unwrap();
        let now = eddy_log::now_ns();
        let report = |position| {
            BTreeMap::from([(
                2,
                PartitionProgress {
                    position,
                    caught_up_ns: now,
                    latency_ns: 7,
                    at_ns: now,
                },
            )])
        };
        publisher.publish("repo.main", &report(40)).unwrap();
        // Unchanged and recent: not published again.
        publisher.publish("repo.main", &report(40)).unwrap();
        publisher.publish("repo.main", &report(41)).unwrap();
        let read = follower.poll().unwrap();
        let positions: Vec<(String, u32, u64)> = read
            .iter()
            .map(|p| (p.topic.clone(), p.partition, p.progress.position))
            .collect();
        assert_eq!(
            positions,
            vec![
                ("repo.main".to_string(), 2, 40),
                ("repo.main".to_string(), 2, 41)
            ]
        );
        assert!(follower.poll().unwrap().is_empty());
    }
}
