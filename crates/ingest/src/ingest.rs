//! What every door shares after parsing: the in-flight budget that gives back-pressure, the
//! self-metrics, and the one `store` that turns events into durable bus records, once per
//! client `@id`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy_base::sync::lock;
use eddy_event::Event;
use eddy_log::PartitionChoice;
use uuid::Uuid;

use crate::budget::Budget;
use crate::config::{IngestConfig, ListenerConfig};
use crate::dedup::Reservation;
use crate::metrics::{Door, IngestMetrics, RejectReason};
use crate::repository::Repository;

/// What a successful store did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stored {
    /// Events now durable.
    pub events: usize,
    /// Events dropped as duplicates of ones stored before.
    pub duplicates: usize,
}

/// Why events were not stored.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another request is storing an event with the same `@id`; retrying will find it stored.
    #[error("an event with @id {0} is being stored by another request; retry")]
    Busy(Uuid),
    /// The bus failed.
    #[error("the bus could not store the events: {0}")]
    Bus(#[from] eddy_log::Error),
}

/// The state shared by every door.
#[derive(Debug)]
pub struct Ingest {
    /// Limits and windows.
    pub config: IngestConfig,
    /// The largest single event, in bytes (`http.max_event_bytes`, which the listeners obey
    /// too).
    pub max_event_bytes: usize,
    /// Back-pressure.
    pub budget: Budget,
    /// Self-metrics.
    pub metrics: Arc<IngestMetrics>,
    tickets: AtomicU64,
    warnings: AtomicU64,
}

impl Ingest {
    /// Shared state for `config`, counting into `metrics`.
    pub fn new(
        config: IngestConfig,
        max_event_bytes: usize,
        metrics: Arc<IngestMetrics>,
    ) -> Ingest {
        Ingest {
            max_event_bytes,
            budget: Budget::new(config.max_inflight_bytes),
            config,
            metrics,
            tickets: AtomicU64::new(1),
            warnings: AtomicU64::new(0),
        }
    }

    /// Stores `events` (which arrived at `received` as `bytes` bytes) in `repo`, durably, once
    /// per client `@id`. Blocks until the bus has them: call it off the async workers. If an
    /// `@id` is being stored by another request, waits for it up to `queue_timeout`.
    pub fn store(
        &self,
        door: Door,
        repo: &Repository,
        mut events: Vec<Event>,
        bytes: usize,
        received: Instant,
    ) -> Result<Stored, StoreError> {
        if events.is_empty() {
            return Ok(Stored::default());
        }
        let result = loop {
            match self.store_once(repo, &mut events) {
                Err(StoreError::Busy(_)) if received.elapsed() < self.config.queue_timeout => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                other => break other,
            }
        };
        match &result {
            Ok(s) => {
                self.metrics.stored(door, &repo.name, s.events, bytes);
                self.metrics.duplicates(&repo.name, s.duplicates);
                self.metrics.ack(door, received.elapsed().as_secs_f64());
            }
            Err(StoreError::Busy(_)) => {}
            Err(StoreError::Bus(e)) => {
                tracing::error!(repository = %repo.name, error = %e, "the bus could not store events");
            }
        }
        result
    }

    /// Parses lines from a TCP or UDP listener and stores the good ones; bad lines are counted
    /// and logged (there is no one to answer).
    pub fn store_lines(
        &self,
        door: Door,
        repo: &Repository,
        listener: &ListenerConfig,
        lines: Vec<String>,
        bytes: usize,
        received: Instant,
    ) -> Result<Stored, StoreError> {
        let now = eddy_log::now_ns();
        let mut events = Vec::with_capacity(lines.len());
        let parse_line = repo.line_parse();
        for line in &lines {
            match parse_line(listener.parser, line, now) {
                Ok(mut e) => {
                    add_tags(&mut e, &listener.tags);
                    events.push(e);
                }
                Err(e) => {
                    self.metrics
                        .rejected(door, &repo.name, RejectReason::Parse, 1);
                    self.warn_sometimes(|| {
                        tracing::warn!(listener = %listener.listen, error = %e, line = %truncate(line, 200), "rejected a line that does not parse");
                    });
                }
            }
        }
        self.drop_refused(door, repo, &mut events);
        let tried = events.len();
        let result = self.store(door, repo, events, bytes, received);
        if result.is_err() {
            self.metrics
                .rejected(door, &repo.name, RejectReason::Bus, tried);
        }
        result
    }

    /// Drops (counting and logging them) the events that do not fit the repository's schema:
    /// a listener has no one to answer.
    fn drop_refused(&self, door: Door, repo: &Repository, events: &mut Vec<Event>) {
        let refused = match repo.refused(events) {
            Ok(r) => r,
            Err(e) => {
                self.warn_sometimes(|| tracing::warn!(repository = %repo.name, error = %e, "rejected events: the gatekeeper has nothing to check them against"));
                (0..events.len()).map(|i| (i, Vec::new())).collect()
            }
        };
        if refused.is_empty() {
            return;
        }
        self.metrics
            .rejected(door, &repo.name, RejectReason::Schema, refused.len());
        if let Some((_, why)) = refused.first().filter(|(_, why)| !why.is_empty()) {
            self.warn_sometimes(|| tracing::warn!(repository = %repo.name, refused = refused.len(), reason = %why[0], "rejected events that do not fit the schema"));
        }
        let mut refused = refused.iter().map(|(i, _)| *i).peekable();
        let mut index = 0;
        events.retain(|_| {
            let drop = refused.next_if_eq(&index).is_some();
            index += 1;
            !drop
        });
    }

    /// Logs the 1st, 2nd, 4th, 8th… occurrence: a flood of bad lines must not flood the log.
    pub fn warn_sometimes(&self, log: impl FnOnce()) {
        let n = self.warnings.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_power_of_two() {
            log();
        }
    }

    fn store_once(&self, repo: &Repository, events: &mut Vec<Event>) -> Result<Stored, StoreError> {
        let total = events.len();
        let ticket = self.tickets.fetch_add(1, Ordering::Relaxed);
        if events.iter().any(|e| e.id_from_client) {
            let ids: Vec<Option<Uuid>> = events
                .iter()
                .map(|e| e.id_from_client.then_some(e.id))
                .collect();
            let keep = match lock(&repo.dedup).reserve(&ids, ticket, eddy_log::now_ns()) {
                Reservation::Keep(keep) => keep,
                Reservation::Busy(id) => return Err(StoreError::Busy(id)),
            };
            let mut keep = keep.into_iter();
            events.retain(|_| keep.next().unwrap_or(true));
        }
        let reserved: Vec<Uuid> = events
            .iter()
            .filter(|e| e.id_from_client)
            .map(|e| e.id)
            .collect();
        let stored = events.len();
        if stored > 0 {
            let (keys, salts) = self.keys_and_salts(repo, events);
            let produced = if crate::bus_blocks::writes_blocks(repo) {
                crate::bus_blocks::produce(repo, events, &keys, &salts)
            } else {
                let records =
                    crate::bus_blocks::records(events.iter(), keys.into_iter().zip(salts));
                repo.bus
                    .produce(repo.topic.name(), records, PartitionChoice::ByKey)
                    .map(drop)
            };
            events.clear();
            if let Err(e) = produced {
                lock(&repo.dedup).release(reserved);
                return Err(e.into());
            }
            if !reserved.is_empty() {
                lock(&repo.dedup).commit(reserved, eddy_log::now_ns());
            }
        }
        Ok(Stored {
            events: stored,
            duplicates: total - stored,
        })
    }

    /// Each event's data source key (none without tags) and placement salt.
    fn keys_and_salts(
        &self,
        repo: &Repository,
        events: &[Event],
    ) -> (Vec<Option<String>>, Vec<u32>) {
        let keys: Vec<Option<String>> = {
            let mut grouping = lock(&repo.grouping);
            events
                .iter()
                .map(|e| (!e.tags.is_empty()).then(|| grouping.key(&e.tags)))
                .collect()
        };
        // The lag rule spreads a source by the records' salts; their keys stay the source.
        let salts = repo.spreading.salts(keys.iter().map(Option::as_deref));
        (keys, salts)
    }
}

/// Adds a listener's configured tags to an event (tags the event already has win).
pub fn add_tags(event: &mut Event, tags: &BTreeMap<String, String>) {
    for (k, v) in tags {
        event.tags.entry(k.clone()).or_insert_with(|| v.clone());
    }
}

fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
