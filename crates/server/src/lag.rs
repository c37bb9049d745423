//! The lag watch: once a second it reads every repository's consumer lag and applies the lag
//! rule to it ([`eddy_ingest::lag`], [`eddy_ingest::spread`]). On a shared bus (Kafka) it also
//! publishes this node's digest progress to the progress topic and takes in what the other
//! digest nodes published there, so that an ingest node knows the lag of partitions it does
//! not digest.

use std::sync::Arc;
use std::time::Duration;

use eddy_ingest::lag::ProgressTopic;

use crate::node::Role;
use crate::periodic::Periodic;
use crate::AppState;

/// Time between two readings.
const EVERY: Duration = Duration::from_secs(1);

/// Starts the watch: a round at once, then every [`EVERY`].
pub(crate) fn start(state: Arc<AppState>) -> Periodic {
    let mut watch = Watch::default();
    Periodic::start("lag-watch", EVERY, true, move || watch.round(&state))
}

/// What the watch keeps between rounds.
#[derive(Default)]
struct Watch {
    progress: Option<ProgressTopic>,
    /// The last failure logged, so that one that lasts is logged once, not every second.
    last_failure: Option<String>,
}

impl Watch {
    fn round(&mut self, state: &AppState) {
        let mut failures = Vec::new();
        if state.bus.shared() {
            if let Err(e) = self.exchange_progress(state) {
                // Opened again next round.
                self.progress = None;
                failures.push(format!("the digest progress topic: {e}"));
            }
        }
        for repo in state.repositories() {
            let groups = pipeline_groups(state, &repo);
            if let Err(e) = eddy_ingest::lag::refresh(&repo, &groups) {
                failures.push(format!("repository {}: {e}", repo.name));
            }
        }
        let failure = (!failures.is_empty()).then(|| failures.join("; "));
        if failure != self.last_failure {
            match &failure {
                Some(f) => tracing::warn!("cannot read the consumer lag: {f}"),
                None if self.last_failure.is_some() => {
                    tracing::info!("the consumer lag is readable again")
                }
                None => {}
            }
            self.last_failure = failure;
        }
    }

    /// Publishes this node's digest progress and reads what every digest node published.
    fn exchange_progress(&mut self, state: &AppState) -> Result<(), eddy_log::Error> {
        let progress = match &mut self.progress {
            Some(p) => p,
            None => self
                .progress
                .insert(ProgressTopic::open(state.bus.clone())?),
        };
        let repositories = state.repositories();
        if state.config.cluster.plays(Role::Digest) {
            for repo in repositories.iter().filter(|r| r.config.digest) {
                progress.publish(repo.topic.name(), &repo.digest_progress())?;
            }
        }
        for report in progress.poll()? {
            if let Some(repo) = repositories.iter().find(|r| r.topic.name() == report.topic) {
                repo.lag.published(report.partition, report.progress);
            }
        }
        Ok(())
    }
}

/// The committed offsets of the pipelines this node runs on `repo` (on the embedded log), as
/// `(group, [(partition, offset)])`.
fn pipeline_groups(
    state: &AppState,
    repo: &eddy_ingest::Repository,
) -> Vec<(String, Vec<(u32, u64)>)> {
    let created = state.created_pipelines().all();
    let names = state
        .config
        .pipelines
        .iter()
        .chain(created.iter())
        .filter(|(name, p)| p.from == repo.name && state.pipelines.contains(name))
        .map(|(name, _)| name.clone());
    let topic = &repo.topic;
    let mut groups: Vec<(String, Vec<(u32, u64)>)> = names
        .map(|name| {
            let group = format!("pipeline.{name}");
            let offsets = (0..topic.partition_count())
                .filter_map(|p| {
                    let o = state.log.groups().committed(&group, topic.name(), p)?;
                    Some((p, o))
                })
                .collect();
            (group, offsets)
        })
        .collect();
    groups.sort();
    groups.dedup_by(|a, b| a.0 == b.0);
    groups
}
