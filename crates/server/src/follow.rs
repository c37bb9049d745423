//! Brings this node in line with the cluster's shared state ([`crate::cluster_state`]): opens
//! the repositories other nodes created, starts their alert rules and pipelines, and stops
//! those they removed. It runs whenever the shared state moved, on a thread of its own, and
//! right after this node's own API changes, so that a `201` means "running here too".
//! What the configuration file names is left alone: it wins over what was created.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use eddy_base::sync::lock;

use crate::periodic::Periodic;
use crate::AppState;

/// How often the thread looks at the shared state's generation.
const EVERY: Duration = Duration::from_millis(200);

/// What this node has done of the shared state.
#[derive(Debug, Default)]
pub(crate) struct Followed {
    /// The generation last followed.
    generation: Option<u64>,
    /// The alert rules and pipelines started from it, to stop when it loses them.
    alerts: BTreeSet<String>,
    pipelines: BTreeSet<String>,
}

impl AppState {
    /// Opens, starts and stops what the shared state gained or lost since the last call; does
    /// nothing on the embedded bus.
    pub(crate) fn follow_shared_state(&self) {
        let Some(shared) = &self.cluster_state else {
            return;
        };
        let mut followed = lock(&self.followed);
        let generation = shared.generation();
        if followed.generation == Some(generation) {
            return;
        }
        followed.generation = Some(generation);
        self.open_shared_repositories();
        let alerts = self.created_alerts().all();
        followed.alerts = follow_kind(
            &alerts,
            &self.config.alerts,
            &followed.alerts,
            |name, config| {
                if !self.alerts.contains(name) {
                    self.start_alert(name, config.clone());
                }
            },
            |name| {
                self.alerts.stop(name);
            },
        );
        let pipelines = self.created_pipelines().all();
        followed.pipelines = follow_kind(
            &pipelines,
            &self.config.pipelines,
            &followed.pipelines,
            |name, config| {
                if !self.pipelines.contains(name) {
                    self.start_pipeline(name, config.clone());
                }
            },
            |name| {
                self.pipelines.stop(name);
            },
        );
    }

    fn open_shared_repositories(&self) {
        for (name, config) in self.created_repositories().all() {
            if self.config.repositories.contains_key(&name) || self.repository(&name).is_some() {
                continue;
            }
            match self.open_repository(&name, &config) {
                Ok(repo) => {
                    self.auth.add_repository_tokens(&name, &config);
                    self.repositories.insert(repo);
                    tracing::info!(repository = name, "repository created by another node");
                }
                Err(e) => tracing::error!(
                    repository = name,
                    "cannot open a repository another node created (tried again when the \
                     cluster's state changes): {e}"
                ),
            }
        }
    }
}

/// Starts every created thing the configuration does not name, stops those started before
/// that are gone; returns the names now started.
fn follow_kind<T>(
    created: &BTreeMap<String, T>,
    configured: &BTreeMap<String, T>,
    started: &BTreeSet<String>,
    start: impl Fn(&str, &T),
    stop: impl Fn(&str),
) -> BTreeSet<String> {
    for name in started.iter().filter(|n| !created.contains_key(*n)) {
        if !configured.contains_key(name) {
            stop(name);
        }
    }
    let mut now = BTreeSet::new();
    for (name, config) in created.iter().filter(|(n, _)| !configured.contains_key(*n)) {
        start(name, config);
        now.insert(name.clone());
    }
    now
}

/// Follows the shared state on a thread while the server runs, if the bus is shared.
pub(crate) fn start(state: &Arc<AppState>) -> Option<Periodic> {
    state.cluster_state.as_ref()?;
    let state = state.clone();
    Some(Periodic::start(
        "cluster-state-apply",
        EVERY,
        true,
        move || state.follow_shared_state(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[test]
    fn things_created_elsewhere_start_and_those_removed_stop_but_configured_ones_stay() {
        let created = BTreeMap::from([("a".to_string(), 1), ("c".to_string(), 3)]);
        let configured = BTreeMap::from([("c".to_string(), 30), ("d".to_string(), 40)]);
        let before = BTreeSet::from(["b".to_string(), "d".to_string()]);
        let (started, stopped) = (RefCell::new(Vec::new()), RefCell::new(Vec::new()));
        let now = follow_kind(
            &created,
            &configured,
            &before,
            |n, _| started.borrow_mut().push(n.to_string()),
            |n| stopped.borrow_mut().push(n.to_string()),
        );
        assert_eq!(started.into_inner(), ["a"]);
        assert_eq!(stopped.into_inner(), ["b"]);
        assert_eq!(now, BTreeSet::from(["a".to_string()]));
    }
}
