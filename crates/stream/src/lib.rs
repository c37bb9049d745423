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
//! Repositories are read through a [`ReadHandle`] (name, bus and topic, store) over any
//! [`eddy_log::Bus`]: the embedded log or Kafka. A pipeline writing into a repository goes
//! through the doors' own `eddy_ingest::Ingest::store`.

#![deny(missing_docs)]

pub mod alerts;
pub mod config;
pub mod live;
pub mod metrics;
pub mod pipelines;
mod seed;
pub mod sink;
mod workers;

use std::sync::Arc;

use eddy_log::Bus;
use eddy_store::RepoStore;

/// A repository as the stream runtime reads it.
#[derive(Debug, Clone)]
pub struct ReadHandle {
    /// Its name.
    pub name: String,
    /// The bus its events are on.
    pub bus: Arc<dyn Bus>,
    /// Its topic on that bus.
    pub topic: String,
    /// Its segments and work in progress.
    pub store: Arc<RepoStore>,
}

impl ReadHandle {
    /// Whether a live window's past comes from the bus rather than from this node's store. On
    /// a shared bus other nodes digest some of the partitions, so the local store holds only a
    /// share of the window, while the tap reads every partition: seeding from the bus (every
    /// partition, from the window's start) is the only complete source.
    pub fn seeds_from_bus(&self) -> bool {
        self.bus.shared()
    }

    /// Per partition, the bus's next offset now.
    pub fn end_offsets(&self) -> Result<Vec<u64>, eddy_log::Error> {
        (0..self.bus.partition_count(&self.topic)?)
            .map(|p| Ok(self.bus.offsets(&self.topic, p)?.1))
            .collect()
    }
}

impl From<&eddy_ingest::Repository> for ReadHandle {
    fn from(repo: &eddy_ingest::Repository) -> ReadHandle {
        ReadHandle {
            name: repo.name.clone(),
            bus: repo.bus.clone(),
            topic: repo.topic.name().to_string(),
            store: repo.store.clone(),
        }
    }
}
