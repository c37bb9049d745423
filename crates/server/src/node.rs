//! What this node is in a cluster: the roles it plays (`cluster.roles`), and the bus its
//! repositories use (`[bus]`).
//!
//! The default is one node that does everything on the embedded log. In a cluster every node
//! names the same Kafka brokers; ingest nodes produce to them, digest nodes share the topics'
//! partitions through consumer groups, and query nodes fan queries out to the digest nodes.

use std::collections::BTreeMap;
use std::sync::Arc;

use eddy_log::{Bus, Log};
use serde::{Deserialize, Serialize};

/// A part a node plays.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Runs the doors: events in, produced to the bus, acknowledged once the bus has them.
    Ingest,
    /// Digests its share of the bus's partitions into its own segment store.
    Digest,
    /// Answers queries, over its own store and, with peers, fanned out to theirs.
    Query,
}

/// The roles a node plays when `cluster.roles` is not set: all of them.
pub fn every_role() -> Vec<Role> {
    vec![Role::Ingest, Role::Digest, Role::Query]
}

/// Every problem of `cluster.roles`.
pub fn role_problems(roles: &[Role]) -> Vec<String> {
    let mut problems = Vec::new();
    if roles.is_empty() {
        problems.push("cluster.roles is empty: give at least one of ingest, digest, query".into());
    }
    let mut seen = roles.to_vec();
    seen.sort();
    seen.dedup();
    if seen.len() != roles.len() {
        problems.push("cluster.roles names a role twice".into());
    }
    problems
}

/// A repository's settings as this node runs it: a node that does not digest runs no digest.
pub fn on_this_node(
    cluster: &crate::config::ClusterConfig,
    mut repository: crate::config::RepositoryConfig,
) -> crate::config::RepositoryConfig {
    repository.digest &= cluster.plays(Role::Digest);
    repository
}

/// `[bus]`: where the repositories' events go.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct BusConfig {
    /// `embedded` (the default: the log in the data directory) or `kafka`.
    pub kind: BusKind,
    /// Kafka's bootstrap servers, `host:port[,host:port…]`.
    pub brokers: Option<String>,
    /// Replication factor of the topics eddy creates on Kafka (production: 3, with the brokers'
    /// `min.insync.replicas = 2`); unset: the brokers' `default.replication.factor`.
    pub replication_factor: Option<i16>,
    /// More librdkafka client properties (security, timeouts), passed as they are.
    pub properties: BTreeMap<String, String>,
}

/// Which bus.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BusKind {
    /// The log in the data directory.
    #[default]
    Embedded,
    /// Apache Kafka (or a broker that speaks its protocol).
    Kafka,
}

impl BusConfig {
    /// Every problem of the section.
    pub fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match self.kind {
            BusKind::Kafka if self.brokers.as_deref().is_none_or(|b| b.trim().is_empty()) => {
                problems.push(
                    "bus.kind = \"kafka\" needs bus.brokers, e.g. \"kafka-1:9092,kafka-2:9092\""
                        .into(),
                )
            }
            BusKind::Embedded
                if self.brokers.is_some()
                    || self.replication_factor.is_some()
                    || !self.properties.is_empty() =>
            {
                problems.push(
                    "bus.brokers, bus.replication_factor and bus.properties apply only with \
                     bus.kind = \"kafka\""
                        .into(),
                )
            }
            _ => {}
        }
        problems
    }
}

/// The repositories' bus: the embedded log itself, or a Kafka client.
pub fn open_bus(config: &BusConfig, log: &Arc<Log>) -> Result<Arc<dyn Bus>, eddy_log::Error> {
    match config.kind {
        BusKind::Embedded => Ok(log.clone()),
        BusKind::Kafka => {
            let mut kafka =
                eddy_kafka::KafkaConfig::new(config.brokers.clone().unwrap_or_default());
            kafka.properties = config.properties.clone();
            kafka.replication_factor = config.replication_factor;
            Ok(Arc::new(eddy_kafka::KafkaBus::connect(kafka)?))
        }
    }
}

/// Puts this node in the directory if it digests, once its HTTP door is bound at `bound` (a
/// `listen` port 0 is known only then).
pub fn announce(
    config: &crate::config::Config,
    directory: &crate::directory::Directory,
    bound: std::net::SocketAddr,
    tls: bool,
) -> Result<(), crate::ServerError> {
    let cluster = &config.cluster;
    if !cluster.plays(Role::Digest) {
        return Ok(());
    }
    let name = match cluster.node.is_empty() {
        true => bound.to_string(),
        false => cluster.node.clone(),
    };
    match cluster.advertised_url(bound, tls) {
        Some(url) => directory.announce(&name, &url, &cluster.roles)?,
        None => tracing::warn!(
            node = name,
            "this digest node listens on every address and has no cluster.url: query nodes \
             will not find it in the node directory (set cluster.url, or list it in their \
             cluster.peers)"
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn problems(text: &str) -> String {
        match Config::parse(text) {
            Ok(_) => String::new(),
            Err(e) => e.problems.join("\n"),
        }
    }

    #[test]
    fn a_node_plays_every_role_on_the_embedded_bus_by_default() {
        let config = Config::parse("").unwrap();
        assert_eq!(config.cluster.roles, super::every_role());
        assert_eq!(config.bus.kind, super::BusKind::Embedded);
    }

    #[test]
    fn kafka_without_brokers_and_listeners_on_a_node_that_does_not_ingest_are_refused() {
        let p = problems("[bus]\nkind = \"kafka\"\n");
        assert!(p.contains("needs bus.brokers"), "{p}");
        let p = problems("[bus]\nbrokers = \"k:9092\"\n");
        assert!(p.contains("apply only with bus.kind = \"kafka\""), "{p}");
        let p = problems("[cluster]\nroles = []\n");
        assert!(p.contains("cluster.roles is empty"), "{p}");
        let p = problems("[cluster]\nroles = [\"digest\", \"digest\"]\n");
        assert!(p.contains("names a role twice"), "{p}");
        let p = problems(
            "[cluster]\nroles = [\"digest\"]\n[[tcp]]\nlisten = \"127.0.0.1:0\"\nrepository = \"main\"\nparser = \"none\"\n",
        );
        assert!(p.contains("tcp takes events in"), "{p}");
        let p = problems("[cluster]\nroles = [\"router\"]\n");
        assert!(p.contains("router"), "{p}");
    }
}
