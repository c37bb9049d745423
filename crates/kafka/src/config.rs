//! How [`crate::KafkaBus`] reaches a Kafka cluster and what it asks of it.

use std::collections::BTreeMap;
use std::time::Duration;

/// Settings of the connection to a Kafka cluster. Defaults live in [`KafkaConfig::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// Brokers to bootstrap from, `host:port[,host:port…]`.
    pub bootstrap_servers: String,
    /// Replication factor of topics that [`eddy_log::Bus::ensure_topic`] creates; `None` leaves
    /// it to the brokers' `default.replication.factor` (brokers from Kafka 2.4 on). Production clusters want 3 (with
    /// `min.insync.replicas=2`, so that `acks=all` means two copies).
    pub replication_factor: Option<i16>,
    /// How long one request (metadata, offsets, commits, topic creation) may take before it
    /// fails with [`eddy_log::Error::Broker`].
    pub request_timeout: Duration,
    /// How long a produced record may wait for its `acks=all` acknowledgement, retries
    /// included, before its produce fails (librdkafka's `message.timeout.ms`).
    pub delivery_timeout: Duration,
    /// How long a group member may go without heartbeats, or without calling
    /// [`eddy_log::GroupMember::poll`], before the group moves its partitions
    /// (`session.timeout.ms` and `max.poll.interval.ms`): how long a crashed or stuck member's
    /// partitions stay unowned.
    pub session_timeout: Duration,
    /// More librdkafka properties, set on every client this bus makes (TLS, SASL, …). They are
    /// applied last, so they can also override what the bus sets; overriding `acks`,
    /// `enable.idempotence` or the assignment strategy breaks the bus's contract.
    pub properties: BTreeMap<String, String>,
}

impl KafkaConfig {
    /// Settings for the cluster at `bootstrap_servers`, with the defaults.
    pub fn new(bootstrap_servers: impl Into<String>) -> KafkaConfig {
        KafkaConfig {
            bootstrap_servers: bootstrap_servers.into(),
            replication_factor: None,
            request_timeout: Duration::from_secs(30),
            delivery_timeout: Duration::from_secs(120),
            session_timeout: Duration::from_secs(45),
            properties: BTreeMap::new(),
        }
    }
}
