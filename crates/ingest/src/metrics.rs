//! The doors' self-metrics (`eddy_ingest_*`, `eddy_bus_*`), registered into the registry that
//! `eddy serve` renders at `GET /metrics` in the Prometheus text format.
//!
//! Counters are bumped where things happen; gauges of current state (bytes in flight, queue
//! depths, remembered ids) are set when scraped.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use eddy_base::sync::lock;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Which door an event came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Door {
    /// `POST /api/v1/ingest/…`.
    Http,
    /// A TCP listener.
    Tcp,
    /// A UDP listener.
    Udp,
    /// A pipeline's repository sink.
    Pipeline,
    /// An AMQP collector.
    Amqp,
    /// OTLP/HTTP (`/v1/logs`, `/v1/metrics`).
    Otlp,
    /// Elasticsearch `_bulk`.
    Elastic,
    /// Loki push.
    Loki,
    /// Influx line protocol.
    Influx,
    /// Splunk HTTP Event Collector.
    Hec,
}

impl Door {
    /// Its label value.
    pub fn name(self) -> &'static str {
        match self {
            Door::Http => "http",
            Door::Tcp => "tcp",
            Door::Udp => "udp",
            Door::Pipeline => "pipeline",
            Door::Amqp => "amqp",
            Door::Otlp => "otlp",
            Door::Elastic => "elastic",
            Door::Loki => "loki",
            Door::Influx => "influx",
            Door::Hec => "hec",
        }
    }
}

/// Why events were refused (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// A line did not parse.
    Parse,
    /// An event or body over the limits.
    TooLarge,
    /// No or a wrong token.
    Auth,
    /// Back-pressure: no room within the queue timeout.
    Overload,
    /// The bus could not store them.
    Bus,
    /// The request itself was malformed (encoding, UTF-8, parameters).
    BadRequest,
    /// The event does not fit the repository's schema (the gatekeeper).
    Schema,
    /// The body did not arrive in time (`http.body_idle_timeout`, `http.body_timeout`).
    Timeout,
}

impl RejectReason {
    fn name(self) -> &'static str {
        match self {
            RejectReason::Parse => "parse",
            RejectReason::TooLarge => "too_large",
            RejectReason::Auth => "auth",
            RejectReason::Overload => "overload",
            RejectReason::Bus => "bus",
            RejectReason::BadRequest => "bad_request",
            RejectReason::Schema => "schema",
            RejectReason::Timeout => "timeout",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DoorRepo {
    door: &'static str,
    repository: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct Rejected {
    door: &'static str,
    repository: String,
    reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DoorLabel {
    door: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct QuantileLabel {
    door: &'static str,
    quantile: &'static str,
}

/// Acknowledgement latencies of the last one to two minutes, for ready-made quantiles.
#[derive(Debug)]
struct RecentLatency {
    current: hdrhistogram::Histogram<u64>,
    previous: hdrhistogram::Histogram<u64>,
    since: Instant,
}

/// How long a window of [`RecentLatency`] lasts before it becomes the previous one.
const LATENCY_WINDOW: Duration = Duration::from_secs(60);

impl RecentLatency {
    fn new() -> Option<RecentLatency> {
        // µs, 3 significant digits, up to an hour.
        let h = hdrhistogram::Histogram::new_with_max(3_600_000_000, 3).ok()?;
        Some(RecentLatency {
            previous: h.clone(),
            current: h,
            since: Instant::now(),
        })
    }

    fn rotate(&mut self) {
        if self.since.elapsed() >= LATENCY_WINDOW {
            std::mem::swap(&mut self.current, &mut self.previous);
            self.current.reset();
            self.since = Instant::now();
        }
    }

    fn record(&mut self, seconds: f64) {
        self.rotate();
        self.current.saturating_record((seconds * 1e6) as u64);
    }

    /// p50 and p99 in seconds, if anything was recorded.
    fn quantiles(&mut self) -> Option<(f64, f64)> {
        self.rotate();
        let mut both = self.previous.clone();
        both.add(&self.current).ok()?;
        (!both.is_empty()).then(|| {
            (
                both.value_at_quantile(0.5) as f64 / 1e6,
                both.value_at_quantile(0.99) as f64 / 1e6,
            )
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ListenerLabel {
    door: &'static str,
    listener: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RepoLabel {
    repository: String,
}

/// A listener's gauge in `family`, to keep and update without looking it up again.
fn listener_gauge(family: &Family<ListenerLabel, Gauge>, door: Door, listener: &str) -> Gauge {
    family
        .get_or_create(&ListenerLabel {
            door: door.name(),
            listener: listener.to_string(),
        })
        .clone()
}

fn ack_histogram() -> Histogram {
    // 50 µs … ~13 s in factors of 2: durable acks are sub-millisecond to seconds.
    Histogram::new(exponential_buckets(50e-6, 2.0, 19))
}

/// Every metric of the server.
#[derive(Debug)]
pub struct IngestMetrics {
    events: Family<DoorRepo, Counter>,
    bytes: Family<DoorRepo, Counter>,
    rejected: Family<Rejected, Counter>,
    duplicates: Family<RepoLabel, Counter>,
    dropped: Family<ListenerLabel, Counter>,
    ack: Family<DoorLabel, Histogram, fn() -> Histogram>,
    recent: Mutex<HashMap<Door, RecentLatency>>,
    ack_recent: Family<QuantileLabel, Gauge<f64, AtomicU64>>,
    inflight_bytes: Gauge,
    inflight_limit: Gauge,
    queue: Family<ListenerLabel, Gauge>,
    kernel_drops: Family<ListenerLabel, Gauge>,
    waiting: Gauge,
    connections: Family<ListenerLabel, Gauge>,
    grouped_tags: Family<RepoLabel, Gauge>,
    dedup_ids: Family<RepoLabel, Gauge>,
    bus_damage: BusDamage,
    footprint: FootprintGauges,
    connection_limits: ConnectionLimitMetrics,
    /// The AMQP collectors' own (`eddy_amqp_*`).
    pub amqp: crate::amqp::metrics::AmqpMetrics,
    /// Consumer lag and the lag rule's (`eddy_digest_*`, `eddy_spread_ways`, …).
    pub lag: crate::lag::LagMetrics,
    requests: Family<DoorStatus, Counter>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DoorStatus {
    door: &'static str,
    status: u16,
}

/// A repository's state as `/metrics` shows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RepositoryGauges {
    /// Tags auto-grouped so far.
    pub grouped_tags: usize,
    /// Client ids remembered for de-duplication.
    pub dedup_ids: usize,
    /// Damaged stretches found in the repository's bus topic.
    pub bus_damaged_stretches: usize,
    /// Records those stretches held.
    pub bus_damaged_records: u64,
    /// Records the digest skipped because the bus could not give them back.
    pub digest_unreadable_records: u64,
}

/// What a repository takes on disk, by part (`GET /api/v1/repositories` and the
/// `eddy_repository_*_bytes` gauges).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Footprint {
    /// The bus topic's segment files.
    pub bus_bytes: u64,
    /// Sealed store segments (their indexes included).
    pub segment_bytes: u64,
    /// Work in progress written so far (`.wip` files).
    pub work_in_progress_bytes: u64,
    /// The catalogue of sealed segments.
    pub catalogue_bytes: u64,
    /// Bytes of the events before compression, sealed and in progress.
    pub raw_bytes: u64,
    /// Events not sealed yet (in work in progress).
    pub unsealed_events: u64,
    /// `raw_bytes` ÷ all the bytes on disk above.
    pub ratio: f64,
}

/// A repository's footprint as gauges.
#[derive(Debug, Default)]
struct FootprintGauges {
    bytes: Family<PartLabel, Gauge>,
    raw: Family<RepoLabel, Gauge>,
    ratio: Family<RepoLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PartLabel {
    repository: String,
    part: &'static str,
}

/// Damaged bus data, by repository (gauges read at scrape time).
#[derive(Debug, Default)]
struct BusDamage {
    stretches: Family<RepoLabel, Gauge>,
    records: Family<RepoLabel, Gauge>,
    digest_unreadable: Family<RepoLabel, Gauge>,
}

/// Connections refused at a door's limit, and slow requests cut by a timeout.
#[derive(Debug, Default)]
struct ConnectionLimitMetrics {
    refused: Family<ListenerLabel, Counter>,
    timed_out: Family<PhaseLabel, Counter>,
    tls_failed: Family<ListenerLabel, Counter>,
    tls_reloads: Family<OutcomeLabel, Counter>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PhaseLabel {
    door: &'static str,
    phase: &'static str,
}

/// What a slow client was too slow to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlowPhase {
    /// The request's headers (`http.header_read_timeout`).
    Headers,
    /// The request's body (`http.body_idle_timeout`, `http.body_timeout`).
    Body,
    /// A whole line on a TCP connection (`ingest.tcp_idle_timeout`).
    Line,
    /// The TLS handshake (`tls.handshake_timeout`).
    Handshake,
}

impl IngestMetrics {
    /// A connection refused because `listener` was at its connection limit.
    pub fn refused_connection(&self, door: Door, listener: &str) {
        self.connection_limits
            .refused
            .get_or_create(&ListenerLabel {
                door: door.name(),
                listener: listener.to_string(),
            })
            .inc();
    }

    /// A TLS handshake on `listener` that failed (not TLS, no or a bad client certificate).
    pub fn tls_handshake_failed(&self, door: Door, listener: &str) {
        self.connection_limits
            .tls_failed
            .get_or_create(&ListenerLabel {
                door: door.name(),
                listener: listener.to_string(),
            })
            .inc();
    }

    /// The TLS certificate files changed: put in force (`true`) or refused, the old kept.
    pub fn tls_reloaded(&self, in_force: bool) {
        let outcome = if in_force { "reloaded" } else { "refused" };
        self.connection_limits
            .tls_reloads
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    /// A request cut because its client was too slow.
    pub fn timed_out(&self, door: Door, phase: SlowPhase) {
        let phase = match phase {
            SlowPhase::Headers => "headers",
            SlowPhase::Body => "body",
            SlowPhase::Line => "line",
            SlowPhase::Handshake => "handshake",
        };
        self.connection_limits
            .timed_out
            .get_or_create(&PhaseLabel {
                door: door.name(),
                phase,
            })
            .inc();
    }
}

impl IngestMetrics {
    /// The doors' metrics, at zero, registered into `root`.
    pub fn register(root: &mut Registry) -> IngestMetrics {
        let m = IngestMetrics {
            events: Family::default(),
            bytes: Family::default(),
            rejected: Family::default(),
            duplicates: Family::default(),
            dropped: Family::default(),
            ack: Family::new_with_constructor(ack_histogram),
            recent: Mutex::new(HashMap::new()),
            ack_recent: Family::default(),
            inflight_bytes: Gauge::default(),
            inflight_limit: Gauge::default(),
            queue: Family::default(),
            kernel_drops: Family::default(),
            waiting: Gauge::default(),
            connections: Family::default(),
            grouped_tags: Family::default(),
            dedup_ids: Family::default(),
            bus_damage: BusDamage::default(),
            footprint: FootprintGauges::default(),
            connection_limits: ConnectionLimitMetrics::default(),
            amqp: crate::amqp::metrics::AmqpMetrics::register(root),
            lag: crate::lag::LagMetrics::register(root),
            requests: Family::default(),
        };
        let bus = root.sub_registry_with_prefix("eddy_bus");
        bus.register(
            "damaged_stretches",
            "Damaged stretches found in a repository's bus topic (readers skip them; eddy topic verify names them, eddy topic repair cuts them out)",
            m.bus_damage.stretches.clone(),
        );
        bus.register(
            "damaged_records",
            "Records held by the damaged stretches of a repository's bus topic",
            m.bus_damage.records.clone(),
        );
        bus.register(
            "digest_unreadable_records",
            "Records the digest skipped because the bus could not give them back (not in the store)",
            m.bus_damage.digest_unreadable.clone(),
        );
        let repository = root.sub_registry_with_prefix("eddy_repository");
        repository.register(
            "disk_bytes",
            "Bytes a repository takes on disk, by part: bus, segments, work_in_progress, catalogue",
            m.footprint.bytes.clone(),
        );
        repository.register(
            "raw_bytes",
            "Bytes of a repository's events before compression, sealed and in progress",
            m.footprint.raw.clone(),
        );
        repository.register(
            "disk_ratio",
            "A repository's raw bytes over all it takes on disk (bus included)",
            m.footprint.ratio.clone(),
        );
        let registry = root.sub_registry_with_prefix("eddy_ingest");
        registry.register(
            "events",
            "Events stored, by door and repository",
            m.events.clone(),
        );
        registry.register(
            "requests",
            "Requests answered by the protocol doors (OTLP, Elasticsearch, Loki, Influx, HEC), by door and HTTP status",
            m.requests.clone(),
        );
        registry.register(
            "bytes",
            "Bytes of events stored (as received, uncompressed), by door and repository",
            m.bytes.clone(),
        );
        registry.register(
            "rejected_events",
            "Events refused, by door, repository and reason (a refused HTTP request counts its events, or 1 if it could not be read)",
            m.rejected.clone(),
        );
        registry.register(
            "duplicate_events",
            "Events dropped because their client @id was stored within the de-duplication window",
            m.duplicates.clone(),
        );
        registry.register(
            "dropped_datagrams",
            "UDP datagrams dropped because the listener's queue was full",
            m.dropped.clone(),
        );
        registry.register(
            "ack_seconds",
            "Time from receiving a batch to its events being durable in the bus",
            m.ack.clone(),
        );
        registry.register(
            "ack_recent_seconds",
            "Acknowledgement latency quantiles (0.5, 0.99) over the last one to two minutes",
            m.ack_recent.clone(),
        );
        registry.register(
            "inflight_bytes",
            "Bytes of events being parsed or stored now",
            m.inflight_bytes.clone(),
        );
        registry.register(
            "inflight_limit_bytes",
            "ingest.max_inflight_bytes",
            m.inflight_limit.clone(),
        );
        registry.register(
            "queued_datagrams",
            "UDP datagrams received and waiting to be stored",
            m.queue.clone(),
        );
        registry.register(
            "kernel_dropped_datagrams",
            "UDP datagrams the kernel dropped for a listener's socket before eddy read them (Linux, read every second)",
            m.kernel_drops.clone(),
        );
        registry.register(
            "waiting_requests",
            "HTTP requests waiting for room in the in-flight budget",
            m.waiting.clone(),
        );
        registry.register(
            "tcp_connections",
            "Open connections of the HTTP door and of each TCP listener",
            m.connections.clone(),
        );
        registry.register(
            "refused_connections",
            "Connections closed at once because their door (the HTTP door or a TCP listener) was at its connection limit",
            m.connection_limits.refused.clone(),
        );
        registry.register(
            "timed_out_requests",
            "Requests cut because their TLS handshake, headers or body (HTTP) or a whole line (TCP) did not arrive in time",
            m.connection_limits.timed_out.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes that failed on the HTTP door or a TCP listener (not TLS, no or a bad client certificate)",
            m.connection_limits.tls_failed.clone(),
        );
        registry.register(
            "tls_reloads",
            "Changes of the TLS certificate files: reloaded (in force for new connections) or refused (the previous ones kept)",
            m.connection_limits.tls_reloads.clone(),
        );
        registry.register(
            "grouped_tags",
            "Tags auto-grouped into buckets because of their many distinct values",
            m.grouped_tags.clone(),
        );
        registry.register(
            "dedup_ids",
            "Client @ids remembered for de-duplication",
            m.dedup_ids.clone(),
        );
        m
    }

    /// `n` events of `bytes` bytes stored.
    pub fn stored(&self, door: Door, repository: &str, n: usize, bytes: usize) {
        let labels = DoorRepo {
            door: door.name(),
            repository: repository.to_string(),
        };
        self.events.get_or_create(&labels).inc_by(n as u64);
        self.bytes.get_or_create(&labels).inc_by(bytes as u64);
    }

    /// A protocol door's request answered with `status`.
    pub fn request(&self, door: Door, status: u16) {
        self.requests
            .get_or_create(&DoorStatus {
                door: door.name(),
                status,
            })
            .inc();
    }

    /// `n` events refused.
    pub fn rejected(&self, door: Door, repository: &str, reason: RejectReason, n: usize) {
        self.rejected
            .get_or_create(&Rejected {
                door: door.name(),
                repository: repository.to_string(),
                reason: reason.name(),
            })
            .inc_by(n as u64);
    }

    /// `n` duplicates dropped.
    pub fn duplicates(&self, repository: &str, n: usize) {
        if n > 0 {
            self.duplicates
                .get_or_create(&RepoLabel {
                    repository: repository.to_string(),
                })
                .inc_by(n as u64);
        }
    }

    /// One datagram dropped by a listener.
    pub fn dropped(&self, door: Door, listener: &str) {
        self.dropped
            .get_or_create(&ListenerLabel {
                door: door.name(),
                listener: listener.to_string(),
            })
            .inc();
    }

    /// A batch acknowledged `seconds` after it arrived.
    pub fn ack(&self, door: Door, seconds: f64) {
        self.ack
            .get_or_create(&DoorLabel { door: door.name() })
            .observe(seconds);
        let mut recent = lock(&self.recent);
        let window = match recent.entry(door) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => match RecentLatency::new() {
                Some(r) => e.insert(r),
                None => return,
            },
        };
        window.record(seconds);
    }

    /// The gauge of a UDP listener's queue.
    pub fn queue_gauge(&self, listener: &str) -> Gauge {
        listener_gauge(&self.queue, Door::Udp, listener)
    }

    /// The gauge of the kernel's drops for a UDP listener.
    pub fn kernel_drop_gauge(&self, listener: &str) -> Gauge {
        listener_gauge(&self.kernel_drops, Door::Udp, listener)
    }

    /// The gauge of HTTP requests waiting for room.
    pub fn waiting_gauge(&self) -> &Gauge {
        &self.waiting
    }

    /// The gauge of a door's open connections (the HTTP door or a TCP listener).
    pub fn connection_gauge(&self, door: Door, listener: &str) -> Gauge {
        listener_gauge(&self.connections, door, listener)
    }

    /// Sets the gauges read at scrape time.
    pub fn set_state(&self, inflight: usize, limit: usize) {
        self.inflight_bytes.set(inflight as i64);
        self.inflight_limit.set(limit as i64);
    }

    /// Sets a repository's gauges.
    pub fn set_repository(&self, repository: &str, g: &RepositoryGauges) {
        let labels = RepoLabel {
            repository: repository.to_string(),
        };
        let set = |family: &Family<RepoLabel, Gauge>, v: u64| {
            family
                .get_or_create(&labels)
                .set(i64::try_from(v).unwrap_or(i64::MAX));
        };
        set(&self.grouped_tags, g.grouped_tags as u64);
        set(&self.dedup_ids, g.dedup_ids as u64);
        set(&self.bus_damage.stretches, g.bus_damaged_stretches as u64);
        set(&self.bus_damage.records, g.bus_damaged_records);
        set(
            &self.bus_damage.digest_unreadable,
            g.digest_unreadable_records,
        );
    }

    /// Sets a repository's footprint gauges (call it before each scrape).
    pub fn set_footprint(&self, repository: &str, f: &Footprint) {
        let as_gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        for (part, v) in [
            ("bus", f.bus_bytes),
            ("segments", f.segment_bytes),
            ("work_in_progress", f.work_in_progress_bytes),
            ("catalogue", f.catalogue_bytes),
        ] {
            self.footprint
                .bytes
                .get_or_create(&PartLabel {
                    repository: repository.to_string(),
                    part,
                })
                .set(as_gauge(v));
        }
        let labels = RepoLabel {
            repository: repository.to_string(),
        };
        self.footprint
            .raw
            .get_or_create(&labels)
            .set(as_gauge(f.raw_bytes));
        self.footprint.ratio.get_or_create(&labels).set(f.ratio);
    }

    /// Sets the gauges that summarise recent observations; call it before each scrape.
    pub fn refresh(&self) {
        let mut recent = lock(&self.recent);
        for (door, r) in recent.iter_mut() {
            if let Some((p50, p99)) = r.quantiles() {
                for (quantile, v) in [("0.5", p50), ("0.99", p99)] {
                    self.ack_recent
                        .get_or_create(&QuantileLabel {
                            door: door.name(),
                            quantile,
                        })
                        .set(v);
                }
            }
        }
    }
}

/// Metrics registered alone, for tests.
#[cfg(test)]
pub(crate) fn registered() -> (std::sync::Arc<IngestMetrics>, Registry) {
    let mut registry = Registry::default();
    let m = IngestMetrics::register(&mut registry);
    (std::sync::Arc::new(m), registry)
}

/// The text exposition of metrics registered alone, for tests.
#[cfg(test)]
pub(crate) fn rendered(m: &IngestMetrics, registry: &Registry) -> String {
    m.refresh();
    let mut text = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut text, registry);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_gauges() {
        let (m, registry) = registered();
        m.stored(Door::Http, "main", 3, 300);
        m.rejected(Door::Tcp, "main", RejectReason::Parse, 2);
        m.ack(Door::Http, 0.001);
        m.dropped(Door::Udp, "127.0.0.1:8125");
        m.set_state(10, 100);
        let text = rendered(&m, &registry);
        for needle in [
            r#"eddy_ingest_events_total{door="http",repository="main"} 3"#,
            r#"eddy_ingest_bytes_total{door="http",repository="main"} 300"#,
            r#"eddy_ingest_rejected_events_total{door="tcp",repository="main",reason="parse"} 2"#,
            r#"eddy_ingest_dropped_datagrams_total{door="udp",listener="127.0.0.1:8125"} 1"#,
            r#"eddy_ingest_ack_seconds_count{door="http"} 1"#,
            r#"eddy_ingest_ack_recent_seconds{door="http",quantile="0.5"} 0.001"#,
            r#"eddy_ingest_ack_recent_seconds{door="http",quantile="0.99"} 0.001"#,
            "eddy_ingest_inflight_bytes 10",
            "# EOF",
        ] {
            assert!(text.contains(needle), "{needle} missing in\n{text}");
        }
    }
}
