//! The doors' settings: limits and windows shared by every door (`[ingest]`), the TCP and UDP
//! listeners (`[[tcp]]`, `[[udp]]`) and the repositories (`[repositories.<name>]`). They are
//! sections of `eddy serve`'s configuration file; its loader checks them with the `check`
//! functions here, reporting every problem at once.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use eddy_event::units;
use eddy_event::Parser;
use eddy_store::StoreConfig;
use serde::{Deserialize, Deserializer};

/// Limits and windows shared by every door.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Bytes of events being parsed or stored at once, over all doors. When full, HTTP waits up
    /// to `queue_timeout` and then answers 429, TCP stops reading, UDP queues then drops.
    pub max_inflight_bytes: usize,
    /// How long an HTTP request waits for room before it gets 429.
    #[serde(deserialize_with = "duration")]
    pub queue_timeout: Duration,
    /// `Retry-After` sent with 429 and 503.
    #[serde(deserialize_with = "duration")]
    pub retry_after: Duration,
    /// An event whose client-supplied `@id` was stored within this window is stored once.
    #[serde(deserialize_with = "duration")]
    pub dedup_window: Duration,
    /// Ids remembered at most per repository; the oldest are forgotten first.
    pub dedup_max_ids: usize,
    /// Datagrams received but not yet stored, per UDP listener; beyond, they are dropped and
    /// counted.
    pub udp_queue_datagrams: usize,
    /// Open TCP connections at most, per listener; more are closed at once, counted in
    /// `eddy_ingest_refused_connections_total` and logged.
    pub max_tcp_connections: usize,
    /// A TCP connection that completes no line for this long is closed (what it sent whole is
    /// stored), so quiet or stuck clients do not hold a listener's connections for ever.
    /// Shippers reconnect; counted in `eddy_ingest_timed_out_requests_total{phase="line"}`.
    #[serde(deserialize_with = "duration")]
    pub tcp_idle_timeout: Duration,
    /// The lag rule (see `eddy_ingest::spread`): a partition whose oldest undigested record is
    /// older than this spreads the data sources placed on it over more partitions (1, 2, 4, …
    /// ways). The same for every repository.
    #[serde(deserialize_with = "duration")]
    pub lag_threshold: Duration,
    /// How long the partitions of a spread data source stay under half `lag_threshold` before
    /// it is spread over half as many.
    #[serde(deserialize_with = "duration")]
    pub lag_calm: Duration,
    /// Data sources per repository the lag rule tracks at once; sources past it stay on their
    /// own partition. 0 turns the rule off.
    pub lag_max_sources: usize,
}

impl IngestConfig {
    /// The lag rule's settings.
    pub fn lag_rule(&self) -> crate::spread::LagRule {
        crate::spread::LagRule {
            threshold: self.lag_threshold,
            calm: self.lag_calm,
            max_sources: self.lag_max_sources,
        }
    }
}

/// A TCP or UDP listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Repository its events go to.
    #[serde(default = "main_repository")]
    pub repository: String,
    /// How each line or datagram is parsed.
    #[serde(default = "json_parser")]
    pub parser: Parser,
    /// Tags added to every event (they join the data source).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// TCP only: whether the listener serves TLS. Unset, it does when `[tls]` has a certificate;
    /// `false` keeps it plain (for senders that cannot speak TLS); `true` demands `[tls]`.
    #[serde(default)]
    pub tls: Option<bool>,
    /// TCP only: each connection's first line is a token, which must hold `ingest:` on the
    /// listener's repository; a connection without one is closed before any event is stored.
    #[serde(default)]
    pub token_first_line: bool,
}

impl ListenerConfig {
    /// Whether this TCP listener serves TLS, given whether `[tls]` is configured.
    pub fn serves_tls(&self, tls_configured: bool) -> bool {
        tls_configured && self.tls != Some(false)
    }
}

/// The repository a listener writes to unless it names one, and the one an empty
/// configuration has.
pub fn main_repository() -> String {
    "main".to_string()
}

fn json_parser() -> Parser {
    Parser::Json
}

/// Reads a duration written as text (`"500ms"`, `"10m"`), saying what is wrong with a bad one.
pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!(
            "{text:?} is not a duration like \"500ms\" or \"10m\": {e}"
        ))
    })
}

/// One repository.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RepositoryConfig {
    /// Partitions of its bus topic (fixed once created).
    pub partitions: u32,
    /// Ingest tokens accepted as `Authorization: Bearer <token>`. Empty: no token needed.
    pub tokens: Vec<String>,
    /// Tokens that may query the repository (with the admin tokens). Once any token is
    /// configured, only these read: ingest tokens never do.
    pub read_tokens: Vec<String>,
    /// Distinct values one tag may take before it is auto-grouped: its values are then hashed
    /// into `tag_buckets` buckets for the data source key (the event keeps the real value), so
    /// the number of data sources stays bounded.
    pub max_tag_values: usize,
    /// Buckets of an auto-grouped tag.
    pub tag_buckets: u32,
    /// A data source's work in progress is sealed into a segment at this many bytes of events.
    pub segment_size: String,
    /// … or once it is this old.
    pub segment_age: String,
    /// Bytes of events per compressed block.
    pub block_size: String,
    /// Block compression: `zstd`, `zstd-N`, `lz4` or `none`.
    pub compression: String,
    /// Segments whose newest event is older than this are deleted (none: kept).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention: Option<String>,
    /// The oldest segments are deleted while the repository's segments are larger.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_size: Option<String>,
    /// The schema subject every event must fit (the gatekeeper); none: any event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<SchemaBinding>,
    /// Compression of the repository's bus batches: `zstd` (the default: about a third fewer
    /// bytes than `lz4` for a few per cent more instructions per event), `lz4` or `none`.
    /// Batches written before a change keep their codec and stay readable.
    pub bus_compression: String,
    /// Whether a door writes a request's share for one data source, once it weighs a quarter
    /// of a store block or more, as the block the store will keep (templates, columns, token
    /// filter, compressed), which the digest then appends as it is: the bus holds about what
    /// the segments will, and the digest does not derive those events again. Smaller shares,
    /// and every share on a Kafka bus, are one record per event. Readers of the bus see the
    /// same events either way.
    pub bus_blocks: bool,
    /// The bus keeps events the digest has sealed into segments for this long, as a safety
    /// window (for live views seeded from the bus, and a second chance after a store fault).
    /// What the digest has not sealed is kept whatever this says.
    pub bus_retention: String,
    /// … and at most this many bytes of them (over all partitions); again, never what the
    /// digest has not sealed.
    pub bus_retention_size: String,
    /// Whether the digest runs: `false` leaves events in the bus, acknowledged but not
    /// searchable and never deleted by the bus window, until it runs again (maintenance, and
    /// benchmarks that show what digesting costs).
    pub digest: bool,
}

/// A repository's binding to a registry subject: `schema = { subject = "orders", versions =
/// "latest" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaBinding {
    /// The subject.
    pub subject: String,
    /// Which versions count: `latest` (the default), `any`, or a version number.
    #[serde(default = "latest")]
    pub versions: String,
}

fn latest() -> String {
    "latest".into()
}

impl SchemaBinding {
    /// The binding the gatekeeper uses, or why this one is wrong.
    pub fn binding(&self) -> Result<eddy_schema::gate::Binding, String> {
        if self.subject.trim().is_empty() {
            return Err("schema.subject must not be empty".into());
        }
        Ok(eddy_schema::gate::Binding {
            subject: self.subject.clone(),
            versions: self
                .versions
                .parse()
                .map_err(|e| format!("schema.versions: {e}"))?,
        })
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_inflight_bytes: 256 << 20,
            queue_timeout: Duration::from_secs(1),
            retry_after: Duration::from_secs(1),
            dedup_window: Duration::from_secs(600),
            dedup_max_ids: 1_000_000,
            udp_queue_datagrams: 65_536,
            max_tcp_connections: 1024,
            tcp_idle_timeout: Duration::from_secs(600),
            lag_threshold: Duration::from_secs(10),
            lag_calm: Duration::from_secs(60),
            lag_max_sources: 10_000,
        }
    }
}

impl Default for RepositoryConfig {
    fn default() -> Self {
        RepositoryConfig {
            partitions: 4,
            tokens: Vec::new(),
            read_tokens: Vec::new(),
            max_tag_values: 1000,
            tag_buckets: 32,
            segment_size: "1GiB".into(),
            segment_age: "1h".into(),
            block_size: "1MiB".into(),
            compression: "zstd".into(),
            retention: None,
            retention_size: None,
            schema: None,
            bus_compression: "zstd".into(),
            bus_blocks: true,
            bus_retention: "1h".into(),
            bus_retention_size: "1GiB".into(),
            digest: true,
        }
    }
}

/// Shortest ingest token accepted: shorter ones are guessable.
pub const MIN_TOKEN_LEN: usize = 16;

impl RepositoryConfig {
    /// Problems with this repository's settings, each prefixed with `at`.
    pub fn check(&self, at: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if self.partitions == 0 || self.partitions > eddy_log::MAX_PARTITIONS {
            problems.push(format!(
                "{at}.partitions = {} must be 1..={}",
                self.partitions,
                eddy_log::MAX_PARTITIONS
            ));
        }
        if self.max_tag_values == 0 {
            problems.push(format!("{at}.max_tag_values must be at least 1"));
        }
        if self.tag_buckets == 0 {
            problems.push(format!("{at}.tag_buckets must be at least 1"));
        }
        check_tokens(&format!("{at}.tokens"), &self.tokens, &mut problems);
        check_tokens(
            &format!("{at}.read_tokens"),
            &self.read_tokens,
            &mut problems,
        );
        if let Err(mut p) = self.store_config(at) {
            problems.append(&mut p);
        }
        if let Some(Err(e)) = self.schema.as_ref().map(SchemaBinding::binding) {
            problems.push(format!("{at}.{e}"));
        }
        if let Err(mut p) = self.bus_settings(at) {
            problems.append(&mut p);
        }
        problems
    }

    /// The settings of the repository's bus topic that follow this configuration, applied to
    /// `topic` (a new topic's defaults, or an existing topic's configuration): compression,
    /// retention behind the digest, and segments small enough for retention to free space.
    pub fn bus_topic_config(
        &self,
        at: &str,
        topic: eddy_log::TopicConfig,
    ) -> Result<eddy_log::TopicConfig, Vec<String>> {
        let bus = self.bus_settings(at)?;
        let partitions = u64::from(topic.partitions.max(1));
        let bytes_per_partition = (bus.retention_bytes / partitions).max(1);
        let retention_ms = u64::try_from(bus.retention.as_millis()).unwrap_or(u64::MAX);
        let mut groups = topic.retain_for_groups.clone();
        if !groups.iter().any(|g| g == eddy_store::digest::GROUP) {
            groups.push(eddy_store::digest::GROUP.to_string());
        }
        Ok(eddy_log::TopicConfig {
            compression: bus.compression,
            retention_ms: Some(retention_ms),
            retention_bytes: Some(bytes_per_partition),
            // Only sealed bus segments are deleted: roll them often enough that the window
            // and the size cap can free space in steps of a fraction of either (a topic made
            // with smaller segments keeps them).
            segment_ms: (retention_ms / 4)
                .clamp(1000, 3_600_000)
                .min(topic.segment_ms),
            segment_bytes: (bytes_per_partition / 4)
                .clamp(1 << 20, 64 << 20)
                .min(topic.segment_bytes),
            retain_for_groups: groups,
            ..topic
        })
    }

    fn bus_settings(&self, at: &str) -> Result<BusSettings, Vec<String>> {
        let mut problems = Vec::new();
        let compression = self.bus_compression.parse().unwrap_or_else(|e| {
            problems.push(format!("{at}.bus_compression: {e}"));
            eddy_log::Compression::None
        });
        let retention = units::parse_duration(&self.bus_retention).unwrap_or_else(|e| {
            problems.push(format!("{at}.bus_retention: {e}"));
            Duration::ZERO
        });
        let retention_bytes = units::parse_size(&self.bus_retention_size).unwrap_or_else(|e| {
            problems.push(format!("{at}.bus_retention_size: {e}"));
            0
        });
        if problems.is_empty() {
            Ok(BusSettings {
                compression,
                retention,
                retention_bytes,
            })
        } else {
            Err(problems)
        }
    }
}

/// A repository's bus settings, parsed.
struct BusSettings {
    compression: eddy_log::Compression,
    retention: Duration,
    retention_bytes: u64,
}

impl RepositoryConfig {
    /// The store settings, or what is wrong with them (each prefixed with `at`).
    pub fn store_config(&self, at: &str) -> Result<StoreConfig, Vec<String>> {
        let mut problems = Vec::new();
        let mut config = StoreConfig::default();
        let mut size = |key: &str, text: &str, min: u64| match units::parse_size(text) {
            Ok(n) if n >= min => n,
            Ok(_) => {
                problems.push(format!(
                    "{at}.{key} = {text:?} must be at least {min} bytes"
                ));
                min
            }
            Err(e) => {
                problems.push(format!("{at}.{key}: {e}"));
                min
            }
        };
        config.segment_bytes = size("segment_size", &self.segment_size, 4096);
        config.block_bytes =
            usize::try_from(size("block_size", &self.block_size, 1024).min(64 << 20))
                .unwrap_or(1 << 20);
        config.retention_bytes = self
            .retention_size
            .as_ref()
            .map(|t| size("retention_size", t, 1));
        let mut duration = |key: &str, text: &str| match units::parse_duration(text) {
            Ok(d) => d,
            Err(e) => {
                problems.push(format!("{at}.{key}: {e}"));
                Duration::from_secs(1)
            }
        };
        config.segment_age = duration("segment_age", &self.segment_age);
        config.retention_age = self.retention.as_ref().map(|t| duration("retention", t));
        match self.compression.parse() {
            Ok(c) => config.compression = c,
            Err(e) => problems.push(format!("{at}.compression: {e}")),
        }
        config.merge_below = config.segment_bytes / 4;
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(problems)
        }
    }
}

/// Adds a problem for each token in `tokens` shorter than [`MIN_TOKEN_LEN`] (never printing it).
pub fn check_tokens(at: &str, tokens: &[String], problems: &mut Vec<String>) {
    for (i, token) in tokens.iter().enumerate() {
        if token.len() < MIN_TOKEN_LEN {
            // Never print the token itself.
            problems.push(format!(
                "{at}[{i}] is {} characters; tokens need at least {MIN_TOKEN_LEN}",
                token.len()
            ));
        }
    }
}

/// The bus topic of a repository.
pub fn topic_of(repository: &str) -> String {
    format!("repo.{repository}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topic_made_without_the_digest_group_gets_it_with_the_bus_window_and_cap() {
        let config = RepositoryConfig::default();
        let old = eddy_log::TopicConfig {
            partitions: 4,
            retain_for_groups: vec!["audit".into()],
            ..eddy_log::TopicConfig::default()
        };
        let new = config.bus_topic_config("repositories.main", old).unwrap();
        assert_eq!(new.partitions, 4);
        assert_eq!(new.compression, eddy_log::Compression::Zstd);
        assert_eq!(new.retention_ms, Some(3_600_000));
        assert_eq!(new.retention_bytes, Some((1 << 30) / 4));
        assert_eq!(
            new.retain_for_groups,
            vec!["audit".to_string(), eddy_store::digest::GROUP.to_string()]
        );
        // Segments roll within the window, so that it can free space.
        assert!(new.segment_ms <= 3_600_000 / 4);
        new.validate().unwrap();
    }

    #[test]
    fn bad_bus_settings_are_all_named() {
        let config = RepositoryConfig {
            bus_compression: "brotli".into(),
            bus_retention: "soon".into(),
            bus_retention_size: "big".into(),
            ..RepositoryConfig::default()
        };
        let problems = config.check("repositories.web").join("\n");
        for key in ["bus_compression", "bus_retention:", "bus_retention_size"] {
            assert!(
                problems.contains(&format!("repositories.web.{key}")),
                "{problems}"
            );
        }
    }
}
