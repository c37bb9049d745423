//! Self-metrics, served at `GET /metrics` in the Prometheus text format: one registry into
//! which the doors and the stream runtime register their own.

use std::sync::Arc;

use eddy_ingest::metrics::IngestMetrics;
use eddy_stream::metrics::StreamMetrics;
use prometheus_client::registry::Registry;

/// Every part's metrics, in one registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// The doors' (`eddy_ingest_*`, `eddy_bus_*`).
    pub ingest: Arc<IngestMetrics>,
    /// Live queries' and pipelines' (`eddy_live_*`, `eddy_pipeline_*`).
    pub stream: Arc<StreamMetrics>,
    /// Requests refused by a token's limits (`eddy_limited_total`).
    pub limits: crate::limits::LimitMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// All metrics registered, at zero.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let stream = Arc::new(StreamMetrics::register(&mut registry));
        let ingest = Arc::new(IngestMetrics::register(&mut registry));
        let limits = crate::limits::LimitMetrics::register(&mut registry);
        Metrics {
            limits,
            registry,
            ingest,
            stream,
        }
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        self.ingest.refresh();
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
