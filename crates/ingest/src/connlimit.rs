//! A door's limit on open connections (the HTTP door, each TCP listener).
//!
//! A connection past the limit is closed at once rather than left in the kernel's backlog:
//! a flood of idle or slow clients then costs a refusal each, counted in
//! `eddy_ingest_refused_connections_total` and logged at most once per
//! [`REFUSAL_LOG_INTERVAL`] with the number refused since.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use eddy_base::sync::lock;
use std::time::{Duration, Instant};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::{Door, IngestMetrics};

/// Least time between two log lines about refused connections, per door.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The open connections of one door.
#[derive(Debug)]
pub struct ConnectionLimit {
    slots: Arc<Semaphore>,
    max: usize,
    open: Gauge,
    metrics: Arc<IngestMetrics>,
    door: Door,
    listener: String,
    refusals: RateLimitedLog,
}

/// An open connection's place under the limit, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    open: Gauge,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.dec();
    }
}

impl ConnectionLimit {
    /// At most `max` open connections on `listener`.
    pub fn new(metrics: Arc<IngestMetrics>, door: Door, listener: SocketAddr, max: usize) -> Self {
        let listener = listener.to_string();
        ConnectionLimit {
            slots: Arc::new(Semaphore::new(max)),
            max,
            open: metrics.connection_gauge(door, &listener),
            metrics,
            door,
            listener,
            refusals: RateLimitedLog::new(REFUSAL_LOG_INTERVAL),
        }
    }

    /// A slot for the connection from `peer`, or `None` (counted and logged) at the limit.
    pub fn admit(&self, peer: SocketAddr) -> Option<Slot> {
        match self.slots.clone().try_acquire_owned() {
            Ok(permit) => {
                self.open.inc();
                Some(Slot {
                    _permit: permit,
                    open: self.open.clone(),
                })
            }
            Err(_) => {
                self.metrics.refused_connection(self.door, &self.listener);
                self.refusals.note(|refused| {
                    tracing::warn!(
                        door = self.door.name(),
                        listener = %self.listener,
                        %peer,
                        refused,
                        limit = self.max,
                        "refused connections: the door is at its connection limit"
                    );
                });
                None
            }
        }
    }
}

/// Logs at most once per interval, telling how many events happened since the last line.
#[derive(Debug)]
pub struct RateLimitedLog {
    interval: Duration,
    last: Mutex<Option<Instant>>,
    since: AtomicU64,
}

impl RateLimitedLog {
    /// At most one line per `interval`.
    pub fn new(interval: Duration) -> RateLimitedLog {
        RateLimitedLog {
            interval,
            last: Mutex::new(None),
            since: AtomicU64::new(0),
        }
    }

    /// Counts one event; calls `log` with the count since the last line when a line is due.
    pub fn note(&self, log: impl FnOnce(u64)) {
        self.since.fetch_add(1, Ordering::Relaxed);
        let mut last = lock(&self.last);
        if last.is_some_and(|at| at.elapsed() < self.interval) {
            return;
        }
        *last = Some(Instant::now());
        log(self.since.swap(0, Ordering::Relaxed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_past_the_limit_are_refused_counted_and_logged_once_per_interval() {
        let (metrics, registry) = crate::metrics::registered();
        let addr: SocketAddr = "127.0.0.1:7280".parse().unwrap();
        let limit = ConnectionLimit::new(metrics.clone(), Door::Http, addr, 2);
        let (a, b) = (limit.admit(addr).unwrap(), limit.admit(addr).unwrap());
        let mut logged = Vec::new();
        for _ in 0..5 {
            assert!(limit.admit(addr).is_none());
            limit.refusals.note(|n| logged.push(n));
        }
        // The first refusal logs (itself); the rest wait for the interval.
        assert!(logged.is_empty(), "admit logged already: {logged:?}");
        drop(a);
        let c = limit.admit(addr);
        assert!(c.is_some(), "a slot given back is taken again");
        drop((b, c));
        let text = crate::metrics::rendered(&metrics, &registry);
        assert!(
            text.contains(
                r#"eddy_ingest_refused_connections_total{door="http",listener="127.0.0.1:7280"} 5"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"eddy_ingest_tcp_connections{door="http",listener="127.0.0.1:7280"} 0"#
            ),
            "{text}"
        );
    }

    #[test]
    fn the_rate_limited_log_reports_how_many_it_held_back() {
        let log = RateLimitedLog::new(Duration::ZERO);
        let mut lines = Vec::new();
        log.note(|n| lines.push(n));
        log.note(|n| lines.push(n));
        assert_eq!(lines, vec![1, 1]);
        let log = RateLimitedLog::new(Duration::from_secs(3600));
        let mut lines = Vec::new();
        for _ in 0..4 {
            log.note(|n| lines.push(n));
        }
        assert_eq!(lines, vec![1], "one line per interval");
        *log.last.lock().unwrap() = None;
        log.note(|n| lines.push(n));
        assert_eq!(lines, vec![1, 4], "the next line counts those held back");
    }
}
