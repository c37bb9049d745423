//! The stream runtime's self-metrics (`eddy_live_*`, `eddy_pipeline_*`, `eddy_alert_*`), registered into the
//! registry that `eddy serve` renders at `GET /metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// A pipeline's label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct PipelineLabel {
    /// The pipeline's name.
    pub pipeline: String,
}

/// An alert rule's label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct AlertLabel {
    /// The rule's name.
    pub alert: String,
}

/// An alert rule's channel's labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ChannelLabel {
    /// The rule's name.
    pub alert: String,
    /// The channel's name.
    pub channel: String,
}

/// Live queries', pipelines' and alerts' metrics.
#[derive(Debug)]
pub struct StreamMetrics {
    /// Live queries running (shared by their subscribers).
    pub live_views: Gauge,
    /// Websocket subscribers of live queries and channels.
    pub live_subscribers: Gauge,
    /// Time from an event's ingest to a websocket update that reflects it.
    pub live_freshness: Histogram,
    /// Websocket clients dropped for being too slow.
    pub live_dropped_clients: Counter,
    /// Live queries stopped (their memory bound).
    pub live_stopped: Counter,
    /// Events a pipeline read, by pipeline.
    pub pipeline_events: Family<PipelineLabel, Counter>,
    /// Events a pipeline delivered to its sinks, by pipeline.
    pub pipeline_delivered: Family<PipelineLabel, Counter>,
    /// Failed deliveries (retried), by pipeline.
    pub pipeline_failures: Family<PipelineLabel, Counter>,
    /// Evaluations of an alert rule, by rule.
    pub alert_evaluations: Family<AlertLabel, Counter>,
    /// Events that reached an alert rule after their time had left its window, by rule.
    pub alert_late_events: Family<AlertLabel, Counter>,
    /// Notices delivered (stored in `_alerts` and sent), by rule.
    pub alert_notifications: Family<AlertLabel, Counter>,
    /// Failed notice deliveries (retried), by rule.
    pub alert_failures: Family<AlertLabel, Counter>,
    /// Failed deliveries to a channel (retried), by rule and channel.
    pub alert_channel_failures: Family<ChannelLabel, Counter>,
}

impl StreamMetrics {
    /// The metrics, at zero, registered into `root`.
    pub fn register(root: &mut Registry) -> StreamMetrics {
        let m = StreamMetrics {
            live_views: Gauge::default(),
            live_subscribers: Gauge::default(),
            // 100 µs … ~26 s in factors of 2.
            live_freshness: Histogram::new(exponential_buckets(100e-6, 2.0, 19)),
            live_dropped_clients: Counter::default(),
            live_stopped: Counter::default(),
            pipeline_events: Family::default(),
            pipeline_delivered: Family::default(),
            pipeline_failures: Family::default(),
            alert_evaluations: Family::default(),
            alert_notifications: Family::default(),
            alert_failures: Family::default(),
            alert_late_events: Family::default(),
            alert_channel_failures: Family::default(),
        };
        let live = root.sub_registry_with_prefix("eddy_live");
        live.register(
            "views",
            "Live queries running, each shared by its subscribers",
            m.live_views.clone(),
        );
        live.register(
            "subscribers",
            "Websocket subscribers of live queries and channels",
            m.live_subscribers.clone(),
        );
        live.register("freshness_seconds", "Time from an event's ingest to the websocket update that carries it (events) or reflects it (aggregates)", m.live_freshness.clone());
        live.register(
            "dropped_clients",
            "Websocket clients dropped for being too slow",
            m.live_dropped_clients.clone(),
        );
        live.register(
            "stopped_queries",
            "Live queries stopped for going past their memory bound",
            m.live_stopped.clone(),
        );
        let pipelines = root.sub_registry_with_prefix("eddy_pipeline");
        pipelines.register(
            "events",
            "Events a pipeline read from its repository",
            m.pipeline_events.clone(),
        );
        pipelines.register(
            "delivered",
            "Events a pipeline delivered to its sinks (one per sink)",
            m.pipeline_delivered.clone(),
        );
        pipelines.register(
            "failures",
            "Failed deliveries to a sink (each is retried)",
            m.pipeline_failures.clone(),
        );
        let alerts = root.sub_registry_with_prefix("eddy_alert");
        alerts.register(
            "evaluations",
            "Evaluations of an alert rule",
            m.alert_evaluations.clone(),
        );
        alerts.register(
            "notifications",
            "Notices of an alert rule delivered (stored in _alerts and sent to its webhook)",
            m.alert_notifications.clone(),
        );
        alerts.register(
            "failures",
            "Failed deliveries of an alert rule's notices, and failed publications of its memory on a shared bus (each is retried)",
            m.alert_failures.clone(),
        );
        alerts.register(
            "late_events",
            "Events that reached an alert rule after their time had left its window (not counted in it)",
            m.alert_late_events.clone(),
        );
        alerts.register(
            "channel_failures",
            "Failed deliveries of an alert rule's notices to one of its channels (each is retried)",
            m.alert_channel_failures.clone(),
        );
        m
    }
}
