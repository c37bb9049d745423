//! Humio's lag rule: a data source whose partition runs behind is spread over more partitions.
//!
//! Every source ingest produces is placed on its key's partition. When one of the partitions a
//! source lands on lags more than `lag_threshold` (the age of its oldest undigested record, see
//! [`crate::lag`]), the source's records are spread over twice as many partitions (1, 2, 4, …
//! ways, at most the partition count), the next doubling no sooner than `lag_threshold` later
//! so that the last one has time to help. Once all its partitions stay under half the threshold
//! for `lag_calm`, it is spread over half as many again (hysteresis: a lag around the threshold
//! does not make the spread flap).
//!
//! Spreading changes only where a record is placed, through its [`eddy_log::Record::salt`]
//! (salt `s` of `w` ways is [`eddy_log::partition_for_salted_key`]): the record's key stays the
//! data source, so segments and queries still group by source, and a source spread over several
//! partitions has a work in progress per partition, which queries read together.
//!
//! The sources tracked are bounded by `lag_max_sources`: past it, new sources are placed on
//! their key's partition and never spread; a source on one partition that ingest has not seen
//! for [`FORGET_AFTER`] makes room.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use eddy_base::sync::lock;

/// A source on one partition that ingest has not produced for this long is no longer tracked.
pub const FORGET_AFTER: Duration = Duration::from_secs(600);

/// The rule's settings (`[ingest] lag_threshold`, `lag_calm`, `lag_max_sources`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LagRule {
    /// A partition further behind than this spreads its sources.
    pub threshold: Duration,
    /// How long the partitions of a spread source stay under half the threshold before it is
    /// spread over half as many.
    pub calm: Duration,
    /// Most sources tracked at once.
    pub max_sources: usize,
}

/// One source's placement.
#[derive(Debug)]
struct Placement {
    ways: u32,
    next_salt: u32,
    last_seen: Instant,
    changed: Option<Instant>,
    calm_since: Option<Instant>,
}

/// A change of a source's spread, as logged and returned by [`Spreading::update`].
#[derive(Debug, Clone, PartialEq)]
pub struct SpreadChange {
    /// The data source.
    pub source: String,
    /// Ways before.
    pub from: u32,
    /// Ways now.
    pub to: u32,
    /// Why, in words.
    pub why: String,
}

/// One repository's sources and how many partitions each is spread over.
#[derive(Debug)]
pub struct Spreading {
    repository: String,
    rule: LagRule,
    partitions: u32,
    sources: std::sync::Mutex<HashMap<String, Placement>>,
}

impl Spreading {
    /// No source spread yet, over a topic of `partitions` partitions.
    pub fn new(repository: &str, rule: LagRule, partitions: u32) -> Spreading {
        Spreading {
            repository: repository.to_string(),
            rule,
            partitions: partitions.max(1),
            sources: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The salts of records with these keys (in order), noting the sources as produced now:
    /// 0 for a source on one partition, and in turn `0..ways` for a spread one.
    pub fn salts<'k>(&self, keys: impl IntoIterator<Item = Option<&'k str>>) -> Vec<u32> {
        let now = Instant::now();
        let mut sources = lock(&self.sources);
        let mut salts = Vec::new();
        // The previous record's source, when it is on one partition: runs of one source are
        // the rule, and need no look-up after their first record.
        let mut last_at_home: Option<&str> = None;
        for key in keys {
            let Some(key) = key else {
                salts.push(0);
                continue;
            };
            if last_at_home == Some(key) {
                salts.push(0);
                continue;
            }
            let salt = if let Some(p) = sources.get_mut(key) {
                p.last_seen = now;
                let salt = p.next_salt % p.ways;
                p.next_salt = (salt + 1) % p.ways;
                if p.ways == 1 {
                    last_at_home = Some(key);
                }
                salt
            } else {
                if sources.len() < self.rule.max_sources {
                    let home = Placement {
                        ways: 1,
                        next_salt: 0,
                        last_seen: now,
                        changed: None,
                        calm_since: None,
                    };
                    sources.insert(key.to_string(), home);
                }
                last_at_home = Some(key);
                0
            };
            salts.push(salt);
        }
        salts
    }

    /// Applies the rule to the partitions' lags now (`lag[p]`: partition `p`'s lag, `None`
    /// when unknown, which never spreads anything), and returns the changes, each logged.
    pub fn update(&self, lag: &[Option<Duration>]) -> Vec<SpreadChange> {
        self.update_at(lag, Instant::now())
    }

    fn update_at(&self, lag: &[Option<Duration>], now: Instant) -> Vec<SpreadChange> {
        let n = self.partitions;
        let half = self.rule.threshold / 2;
        let mut changes = Vec::new();
        let mut sources = lock(&self.sources);
        for (source, p) in sources.iter_mut() {
            let (worst, at) = (0..p.ways)
                .map(|salt| eddy_log::partition_for_salted_key(source.as_bytes(), salt, n))
                .filter_map(|part| Some((lag.get(part as usize).copied().flatten()?, part)))
                .max()
                .unwrap_or((Duration::ZERO, 0));
            let settled = p
                .changed
                .is_none_or(|c| now.duration_since(c) >= self.rule.threshold);
            let to = if worst > self.rule.threshold && p.ways < n && settled {
                p.calm_since = None;
                Some((
                    (p.ways * 2).min(n),
                    format!(
                        "partition {at} is {:.1} s behind, more than the lag threshold of {:.1} s",
                        worst.as_secs_f64(),
                        self.rule.threshold.as_secs_f64()
                    ),
                ))
            } else if p.ways > 1 && worst < half {
                let since = *p.calm_since.get_or_insert(now);
                (now.duration_since(since) >= self.rule.calm).then(|| {
                    p.calm_since = None;
                    (
                        p.ways / 2,
                        format!(
                        "its partitions stayed under half the lag threshold ({:.1} s) for {:.0} s",
                        half.as_secs_f64(),
                        self.rule.calm.as_secs_f64()
                    ),
                    )
                })
            } else {
                if worst >= half {
                    p.calm_since = None;
                }
                None
            };
            if let Some((ways, why)) = to {
                tracing::info!(
                    repository = %self.repository,
                    source = %source,
                    from = p.ways,
                    ways,
                    "data source spread over {ways} partition(s): {why}"
                );
                changes.push(SpreadChange {
                    source: source.clone(),
                    from: p.ways,
                    to: ways,
                    why,
                });
                p.ways = ways;
                p.next_salt = 0;
                p.changed = Some(now);
            }
        }
        sources.retain(|_, p| p.ways > 1 || now.duration_since(p.last_seen) < FORGET_AFTER);
        changes
    }

    /// The sources spread over more than one partition, with their ways.
    pub fn spread(&self) -> Vec<(String, u32)> {
        let mut spread: Vec<(String, u32)> = lock(&self.sources)
            .iter()
            .filter(|(_, p)| p.ways > 1)
            .map(|(s, p)| (s.clone(), p.ways))
            .collect();
        spread.sort();
        spread
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn rule() -> LagRule {
        LagRule {
            threshold: 10 * SECOND,
            calm: 60 * SECOND,
            max_sources: 3,
        }
    }

    fn home(source: &str) -> usize {
        eddy_log::partition_for_key(source.as_bytes(), 4) as usize
    }

    /// Lags with `behind` on partition `p`, zero elsewhere.
    fn lagging(p: usize, behind: Duration) -> Vec<Option<Duration>> {
        let mut lag = vec![Some(Duration::ZERO); 4];
        lag[p] = Some(behind);
        lag
    }

    #[test]
    fn a_lagging_partition_doubles_its_sources_ways_once_per_threshold_up_to_the_partition_count() {
        let spreading = Spreading::new("main", rule(), 4);
        let hot = "#host=hot";
        assert_eq!(spreading.salts([Some(hot)]), vec![0]);
        let t0 = Instant::now();
        let behind = lagging(home(hot), 30 * SECOND);
        let changes = spreading.update_at(&behind, t0);
        assert_eq!(changes.len(), 1);
        assert_eq!((changes[0].from, changes[0].to), (1, 2));
        assert!(
            changes[0].why.contains("30.0 s behind"),
            "{}",
            changes[0].why
        );
        // Not again before the first spread had time to help.
        assert!(spreading.update_at(&behind, t0 + 5 * SECOND).is_empty());
        assert_eq!(spreading.update_at(&behind, t0 + 10 * SECOND)[0].to, 4);
        assert!(spreading.update_at(&behind, t0 + 20 * SECOND).is_empty());
        assert_eq!(spreading.spread(), vec![(hot.to_string(), 4)]);
        // Its records go round its four partitions, each record's key unchanged.
        let salts = spreading.salts([Some(hot); 8]);
        assert_eq!(salts, vec![0, 1, 2, 3, 0, 1, 2, 3]);
    }

    #[test]
    fn a_spread_shrinks_only_after_its_partitions_stay_calm_and_a_lag_near_the_threshold_does_not_flap(
    ) {
        let spreading = Spreading::new("main", rule(), 4);
        let hot = "#host=hot";
        spreading.salts([Some(hot)]);
        let t0 = Instant::now();
        spreading.update_at(&lagging(home(hot), 30 * SECOND), t0);
        assert_eq!(spreading.spread(), vec![(hot.to_string(), 2)]);
        // Between half the threshold and the threshold: neither up nor down.
        let near = lagging(home(hot), 7 * SECOND);
        for s in [20, 100, 200] {
            assert!(spreading.update_at(&near, t0 + s * SECOND).is_empty());
        }
        let calm = lagging(home(hot), SECOND);
        assert!(spreading.update_at(&calm, t0 + 300 * SECOND).is_empty());
        // A lag in between restarts the calm.
        assert!(spreading.update_at(&near, t0 + 330 * SECOND).is_empty());
        assert!(spreading.update_at(&calm, t0 + 340 * SECOND).is_empty());
        assert!(spreading.update_at(&calm, t0 + 399 * SECOND).is_empty());
        let changes = spreading.update_at(&calm, t0 + 400 * SECOND);
        assert_eq!((changes[0].from, changes[0].to), (2, 1));
        assert!(spreading.spread().is_empty());
        assert_eq!(spreading.salts([Some(hot); 3]), vec![0, 0, 0]);
    }

    #[test]
    fn unknown_lags_and_other_partitions_spread_nothing_and_sources_past_the_bound_stay_home() {
        let spreading = Spreading::new("main", rule(), 4);
        let sources: Vec<String> = (0..5).map(|i| format!("#host=h{i}")).collect();
        let salts = spreading.salts(sources.iter().map(|s| Some(s.as_str())));
        assert_eq!(salts, vec![0; 5]);
        let t0 = Instant::now();
        assert!(spreading.update_at(&[None; 4], t0).is_empty());
        // Every partition far behind: only the three tracked sources spread.
        let changes = spreading.update_at(&[Some(60 * SECOND); 4], t0);
        assert_eq!(changes.len(), 3);
        assert_eq!(spreading.salts([Some(sources[4].as_str()); 2]), vec![0, 0]);
        assert_eq!(spreading.salts([None, None]), vec![0, 0]);
    }
}
