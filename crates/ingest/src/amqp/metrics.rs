//! The collectors' own metrics (`eddy_amqp_*`), beside the doors' per-door counters (which
//! count their events under `door="amqp"`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CollectorLabel {
    collector: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabel {
    collector: String,
    outcome: &'static str,
}

/// What became of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Its events are durable (or were already: duplicates); acknowledged.
    Acked,
    /// Malformed or refused by the gatekeeper: rejected without requeue (the broker
    /// dead-letters it if the queue has a dead-letter exchange, else drops it).
    Rejected,
    /// Could not be stored now (the bus failed): given back to the broker to deliver again.
    Requeued,
}

impl Outcome {
    fn name(self) -> &'static str {
        match self {
            Outcome::Acked => "acked",
            Outcome::Rejected => "rejected",
            Outcome::Requeued => "requeued",
        }
    }
}

/// Every collector's metrics.
#[derive(Debug, Default)]
pub struct AmqpMetrics {
    messages: Family<OutcomeLabel, Counter>,
    connected: Family<CollectorLabel, Gauge>,
    connection_failures: Family<CollectorLabel, Counter>,
}

impl AmqpMetrics {
    /// The metrics, at zero, registered into `root`.
    pub fn register(root: &mut Registry) -> AmqpMetrics {
        let m = AmqpMetrics::default();
        let registry = root.sub_registry_with_prefix("eddy_amqp");
        registry.register(
            "messages",
            "Messages consumed, by collector and outcome: acked (durable), rejected (malformed or refused by the schema; not requeued), requeued (not stored)",
            m.messages.clone(),
        );
        registry.register(
            "connected",
            "1 while a collector consumes from its broker, 0 while it waits to reconnect",
            m.connected.clone(),
        );
        registry.register(
            "connection_failures",
            "Times a collector could not connect or lost its connection (it retries with back-off)",
            m.connection_failures.clone(),
        );
        m
    }

    /// `n` messages of `collector` had `outcome`.
    pub fn messages(&self, collector: &str, outcome: Outcome, n: usize) {
        self.messages
            .get_or_create(&OutcomeLabel {
                collector: collector.to_string(),
                outcome: outcome.name(),
            })
            .inc_by(n as u64);
    }

    /// Whether `collector` is consuming.
    pub fn connected(&self, collector: &str, yes: bool) {
        self.connected
            .get_or_create(&CollectorLabel {
                collector: collector.to_string(),
            })
            .set(i64::from(yes));
    }

    /// `collector` failed to connect or lost its connection.
    pub fn connection_failed(&self, collector: &str) {
        self.connection_failures
            .get_or_create(&CollectorLabel {
                collector: collector.to_string(),
            })
            .inc();
    }
}
