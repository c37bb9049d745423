//! eddy's stream runtime: questions answered as events arrive, over the bus rather than the
//! store.
//!
//! - [`live`]: live queries. Per repository a tap reads the bus as events are appended and
//!   feeds the views; a view is one running live query shared by every client asking the
//!   same. The window semantics are the query engine's (`eddy_query::live`).
//! - [`pipelines`]: a repository's events, through a query, to [`sink::Sink`]s, as consumer
//!   groups of the bus with at-least-once delivery.
//! - [`alerts`]: rules on live queries evaluated per group, their notices to `_alerts` and
//!   webhooks, and their memory across restarts.
//! - [`config`]: the `[live]` and `[pipelines.<name>]` settings, checked into a typed
//!   [`config::PipelinePlan`] before anything runs.
//! - [`metrics`]: their self-metrics.
//!
//! Repositories are read through a [`ReadHandle`] (name, topic, store); a pipeline writing
//! into a repository goes through the doors' own `eddy_ingest::Ingest::store`.

#![deny(missing_docs)]

pub mod alerts;
pub mod config;
pub mod live;
pub mod metrics;
pub mod pipelines;
pub mod sink;
mod workers;

use std::sync::Arc;

use eddy_log::Topic;
use eddy_store::RepoStore;

/// A repository as the stream runtime reads it.
#[derive(Debug, Clone)]
pub struct ReadHandle {
    /// Its name.
    pub name: String,
    /// Its bus topic.
    pub topic: Arc<Topic>,
    /// Its segments and work in progress.
    pub store: Arc<RepoStore>,
}

impl From<&eddy_ingest::Repository> for ReadHandle {
    fn from(repo: &eddy_ingest::Repository) -> ReadHandle {
        ReadHandle {
            name: repo.name.clone(),
            topic: repo.topic.clone(),
            store: repo.store.clone(),
        }
    }
}
