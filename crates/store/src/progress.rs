//! What a digest tells of its progress, for the lag rule and `/metrics`: per partition its
//! position in the bus and the ingest time it has caught up to, and per data source the
//! ingest-to-digest latency it observed.
//!
//! The committed offset is no measure of the digest's lag: it moves only when segments seal
//! (an hour by default). The position moves with every batch the digest appends.
//!
//! Sources are bounded: at most [`MAX_TRACKED_SOURCES`] are tracked at once; a source not seen
//! for [`SOURCE_FORGOTTEN_AFTER`] makes room for a new one, and sources beyond the bound are
//! counted in [`DigestProgress::untracked_sources`] only.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use eddy_base::sync::lock;

/// Most data sources whose latency a digest tracks at once.
pub const MAX_TRACKED_SOURCES: usize = 1000;

/// A source the digest has not seen for this long is no longer tracked (ns: ten minutes).
pub const SOURCE_FORGOTTEN_AFTER: i64 = 600 * 1_000_000_000;

/// One partition's digest progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PartitionProgress {
    /// The next bus offset the digest reads: every record below it has been digested.
    pub position: u64,
    /// The ingest time (ns) the digest has caught up to: when the last record it digested was
    /// ingested or, when the bus had nothing more for it, when it looked. Records it has not
    /// read yet were ingested about then or later, so `now - caught_up_ns` bounds their age.
    pub caught_up_ns: i64,
    /// The ingest-to-digest latency (ns) of the last record digested.
    pub latency_ns: i64,
    /// When this was observed (ns, wall clock of the digest's node).
    pub at_ns: i64,
}

/// One data source's latency as the digest observed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceLatency {
    /// Ingest-to-digest latency (ns) of the source's last record digested.
    pub latency_ns: i64,
    /// When that record was digested (ns).
    pub seen_ns: i64,
}

/// A running digest's progress, shared by its workers and read by the lag rule and metrics.
#[derive(Debug, Default)]
pub struct DigestProgress {
    partitions: Mutex<BTreeMap<u32, PartitionProgress>>,
    sources: Mutex<Sources>,
}

#[derive(Debug, Default)]
struct Sources {
    by_source: HashMap<String, SourceLatency>,
    untracked: u64,
    last_sweep_ns: i64,
}

/// What a worker saw in one poll of the bus: fed record by record, then handed to
/// [`DigestProgress::report`]. Sources are borrowed from the poll's records: a name is copied
/// only when the progress first tracks it, not per event.
#[derive(Debug)]
pub struct Observed<'a> {
    /// Whether the poll came back empty: the digest was at the end of the partition.
    idle: bool,
    last_ingest_ns: Option<i64>,
    /// Runs of one source: its name and the latest ingest time of the run.
    runs: Vec<(&'a str, i64)>,
}

impl<'a> Observed<'a> {
    /// A poll that returned `records` records.
    pub fn poll(records: usize) -> Observed<'a> {
        Observed {
            idle: records == 0,
            last_ingest_ns: None,
            runs: Vec::new(),
        }
    }

    /// A record of `source` ingested at `ingest_ns`, digested.
    pub fn note(&mut self, source: &'a str, ingest_ns: i64) {
        self.last_ingest_ns = Some(ingest_ns);
        match self.runs.last_mut() {
            Some((s, at)) if *s == source => *at = (*at).max(ingest_ns),
            _ => self.runs.push((source, ingest_ns)),
        }
    }
}

impl DigestProgress {
    /// Records a worker's poll of `partition` that left it at `position`.
    pub fn report(&self, partition: u32, position: u64, observed: Observed<'_>) {
        self.report_at(partition, position, observed, eddy_log::now_ns());
    }

    fn report_at(&self, partition: u32, position: u64, observed: Observed<'_>, now: i64) {
        {
            let mut partitions = lock(&self.partitions);
            let previous = partitions.get(&partition).copied();
            let (caught_up_ns, latency_ns) = match (observed.idle, observed.last_ingest_ns) {
                (_, Some(ingested)) => (ingested, now.saturating_sub(ingested).max(0)),
                (true, None) => (now, 0),
                // Records that were not events: no ingest time to go by.
                (false, None) => previous.map_or((now, 0), |p| (p.caught_up_ns, p.latency_ns)),
            };
            partitions.insert(
                partition,
                PartitionProgress {
                    position,
                    caught_up_ns,
                    latency_ns,
                    at_ns: now,
                },
            );
        }
        if observed.runs.is_empty() {
            return;
        }
        let mut sources = lock(&self.sources);
        sources.sweep(now);
        for (source, ingested) in observed.runs {
            let latency = SourceLatency {
                latency_ns: now.saturating_sub(ingested).max(0),
                seen_ns: now,
            };
            if let Some(known) = sources.by_source.get_mut(source) {
                *known = latency;
            } else if sources.by_source.len() < MAX_TRACKED_SOURCES {
                sources.by_source.insert(source.to_string(), latency);
            } else {
                sources.untracked += 1;
            }
        }
    }

    /// Every partition's last progress.
    pub fn partitions(&self) -> BTreeMap<u32, PartitionProgress> {
        lock(&self.partitions).clone()
    }

    /// The tracked sources' latencies.
    pub fn sources(&self) -> Vec<(String, SourceLatency)> {
        let sources = lock(&self.sources);
        sources
            .by_source
            .iter()
            .map(|(s, l)| (s.clone(), *l))
            .collect()
    }

    /// Records of sources seen while [`MAX_TRACKED_SOURCES`] others were tracked.
    pub fn untracked_sources(&self) -> u64 {
        lock(&self.sources).untracked
    }
}

impl Sources {
    /// Forgets the sources not seen for a while, at most once a minute.
    fn sweep(&mut self, now: i64) {
        if now.saturating_sub(self.last_sweep_ns) < 60 * 1_000_000_000 {
            return;
        }
        self.last_sweep_ns = now;
        self.by_source
            .retain(|_, l| now.saturating_sub(l.seen_ns) < SOURCE_FORGOTTEN_AFTER);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn a_busy_poll_catches_up_to_its_last_records_ingest_time_and_an_empty_one_to_now() {
        let progress = DigestProgress::default();
        let mut seen = Observed::poll(3);
        seen.note("#host=a", 100 * S);
        seen.note("#host=a", 101 * S);
        seen.note("#host=b", 102 * S);
        progress.report_at(2, 10, seen, 105 * S);
        let p = progress.partitions()[&2];
        assert_eq!(
            (p.position, p.caught_up_ns, p.latency_ns),
            (10, 102 * S, 3 * S)
        );
        let mut sources = progress.sources();
        sources.sort_by(|a, b| a.0.cmp(&b.0));
        let latencies: Vec<(&str, i64)> = sources
            .iter()
            .map(|(s, l)| (s.as_str(), l.latency_ns))
            .collect();
        assert_eq!(latencies, vec![("#host=a", 4 * S), ("#host=b", 3 * S)]);

        // Records that are not events keep what was known.
        progress.report_at(2, 11, Observed::poll(1), 106 * S);
        assert_eq!(progress.partitions()[&2].caught_up_ns, 102 * S);
        progress.report_at(2, 11, Observed::poll(0), 107 * S);
        let p = progress.partitions()[&2];
        assert_eq!((p.position, p.caught_up_ns, p.latency_ns), (11, 107 * S, 0));
    }

    #[test]
    fn sources_past_the_bound_are_counted_not_tracked_until_old_ones_are_forgotten() {
        let progress = DigestProgress::default();
        let report = |first: usize, count: usize, now: i64| {
            let names: Vec<String> = (first..first + count)
                .map(|i| format!("#host=h{i}"))
                .collect();
            let mut seen = Observed::poll(count);
            for name in &names {
                seen.note(name, now - S);
            }
            progress.report_at(0, 1, seen, now);
        };
        report(0, MAX_TRACKED_SOURCES + 5, 1000 * S);
        assert_eq!(progress.sources().len(), MAX_TRACKED_SOURCES);
        assert_eq!(progress.untracked_sources(), 5);
        // Long after, a new source finds room again.
        report(5000, 1, 1000 * S + SOURCE_FORGOTTEN_AFTER + 61 * S);
        let sources = progress.sources();
        assert_eq!(sources.len(), 1);
        assert_eq!(sources[0].0, "#host=h5000");
    }
}
