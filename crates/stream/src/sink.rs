//! Where a pipeline's results go: one [`Sink`] per `[[pipelines.<name>.sinks]]` entry, with
//! its buffering and retry settings read once, when the configuration is checked.

use std::time::Duration;

/// A pipeline's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    /// Store into this repository (de-duplicated by the events' ids).
    Repository(String),
    /// Append to this bus topic (rebroadcast), created if needed.
    Topic(String),
    /// POST JSON arrays to this URL, retried with back-off until it answers 2xx.
    Webhook(String),
    /// Push to the websocket channel of this name.
    Websocket(String),
}

/// A sink with its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkPlan {
    /// Where.
    pub sink: Sink,
    /// With the pipeline's `split`: only events whose split field has this value.
    pub on: Option<String>,
    /// Deliver once this many events are waiting.
    pub buffer_events: usize,
    /// … or once the oldest waiting event has waited this long.
    pub buffer_time: Duration,
    /// The longest wait between two attempts of a failing delivery.
    pub max_backoff: Duration,
}

/// Events waiting for one sink by default, before delivery.
pub const DEFAULT_BUFFER_EVENTS: usize = 500;
/// How long the oldest waiting event waits by default.
pub const DEFAULT_BUFFER_TIME: Duration = Duration::from_millis(200);
/// The longest pause between two attempts of a failing delivery by default.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The HTTP client of webhooks (pipelines' sinks and alerts' notices): a status is an
/// answer, not an error, and no request hangs longer than 10 s. Keep it: connections are
/// reused between deliveries.
pub fn webhook_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}
