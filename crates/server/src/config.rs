//! `eddy serve`'s configuration: a TOML file whose structs are the schema and the docs.
//!
//! Every key has a default, so an empty file (or none) is a working configuration: one
//! repository `main` that accepts events without a token, on 127.0.0.1:7280. Unknown keys are
//! errors, and [`Config::validate`] reports every problem at once before anything starts.
//!
//! ```toml
//! data_dir = "eddy-data"
//! shutdown_timeout = "10s"         # after SIGTERM, open requests are cut past this
//!
//! [http]
//! listen = "127.0.0.1:7280"
//! max_body_bytes = 33554432
//! max_event_bytes = 1048576
//! max_connections = 1024           # open connections at most; more are refused and counted
//! header_read_timeout = "10s"      # a request's headers must arrive within this
//! body_idle_timeout = "10s"        # a body that sends nothing this long gets 408
//! body_timeout = "60s"             # a whole body must arrive within this, else 408
//!
//! admin_tokens = []          # for /api/v1/repositories and the registry; empty: none needed
//!
//! [ingest]
//! max_inflight_bytes = 268435456   # events being parsed or stored; beyond: back-pressure
//! queue_timeout = "1s"             # how long an HTTP request waits for room before 429
//! retry_after = "1s"               # the Retry-After of a 429 or 503
//! dedup_window = "10m"             # a client @id seen within this window is stored once
//! dedup_max_ids = 1000000          # ids remembered at most (oldest forgotten first)
//! udp_queue_datagrams = 65536      # datagrams waiting to be stored; beyond: counted drops
//! max_tcp_connections = 1024      # per TCP listener; more are refused and counted
//! tcp_idle_timeout = "10m"        # a TCP connection that completes no line for this long is closed
//!
//! [repositories.web]
//! partitions = 4
//! tokens = ["a-long-random-ingest-token"]
//! read_tokens = ["a-long-random-read-token"]   # for queries (with admin_tokens)
//! max_tag_values = 1000            # distinct values of one tag before it is auto-grouped
//! tag_buckets = 32                 # buckets an auto-grouped tag's values are hashed into
//! segment_size = "1GiB"            # a data source's work in progress is sealed at this size
//! segment_age = "1h"               # … or at this age
//! block_size = "1MiB"              # events per compressed block (bytes before compression)
//! compression = "zstd"             # zstd (level by layout) | zstd-1 … zstd-22 | lz4 | none
//! retention = "30d"                # segments whose newest event is older are deleted
//! retention_size = "500GiB"        # the oldest segments go while the repository is larger
//! bus_compression = "zstd"         # the bus's batches: zstd | lz4 | none
//! bus_blocks = true                # large shares of a request go to the bus as the store's blocks
//! bus_retention = "1h"             # the bus keeps digested events this long (undigested: always)
//! bus_retention_size = "1GiB"      # … and at most this much of them
//! digest = true                    # false: events stay in the bus, unsearchable
//! # The gatekeeper: every event must fit this registry subject (latest | any | a version).
//! schema = { subject = "web-value", versions = "latest" }
//!
//! [[tcp]]                          # newline-delimited lines (syslog also octet-counted)
//! listen = "127.0.0.1:5514"
//! repository = "web"
//! parser = "syslog"                # json | kv | accesslog | syslog | statsd | none
//! tags = { type = "syslog" }       # added to every event of this listener
//! tls = false                      # TCP: opt out of [tls] (unset: TLS when [tls] is set)
//!
//! [[udp]]                          # one event per datagram (statsd: one per line)
//! listen = "127.0.0.1:8125"
//! repository = "web"
//! parser = "statsd"
//!
//! [tls]                            # TLS on the HTTP door and every [[tcp]] listener
//! cert = "/etc/eddy/cert.pem"      # certificate chain (PEM), reloaded when it changes
//! key = "/etc/eddy/key.pem"        # its private key (PEM)
//! client_ca = "/etc/eddy/ca.pem"   # optional: clients must present a certificate it signed
//! reload_interval = "5s"           # how often the files are read for changes
//! handshake_timeout = "10s"        # a TLS handshake must complete within this
//! allow_insecure = false           # true: start with tokens on a public plaintext door
//! [limits]                         # every token's default; each may set its own
//! requests_per_second = 100.0
//! bytes_per_second = 10485760.0
//! query_seconds_per_second = 1.0   # query run time per second
//! live_queries = 10                # live query websockets at once
//!
//! [[amqp]]                         # consume a RabbitMQ queue; ack once durable
//! url = "amqp://guest:guest@127.0.0.1:5672/%2f"
//! queue = "events"
//! repository = "web"
//!
//! [cluster]                        # queries across nodes (docs/scale-out.md)
//! node = "a"                       # this node's name in answers (default: http.listen)
//! peers = ["http://10.0.0.2:7280"] # a query here also runs there; the answers are merged
//! peer_timeout = "10s"             # a peer slower than this is left out, and the answer says so
//! url = "http://10.0.0.1:7280"     # where others reach this node (Kafka's node directory)
//! token = "a-read-token-of-the-peers"
//! ```

use std::collections::BTreeMap;
#[cfg(test)]
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use eddy_ingest::amqp::AmqpConfig;
use eddy_ingest::config::{check_tokens, duration, main_repository};
pub use eddy_ingest::config::{
    IngestConfig, ListenerConfig, RepositoryConfig, SchemaBinding, MIN_TOKEN_LEN,
};
pub use eddy_ingest::tls::TlsConfig;
pub use eddy_stream::alerts::{AlertConfig, ChannelConfig};
pub use eddy_stream::config::{LiveConfig, PipelineConfig, SinkConfig};
use serde::Deserialize;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Directory of the bus (and later the segment store).
    pub data_dir: PathBuf,
    /// After SIGINT/SIGTERM, how long the doors have to finish the requests and batches they
    /// have read; connections still open then are cut (their requests are not acknowledged).
    #[serde(deserialize_with = "duration")]
    pub shutdown_timeout: Duration,
    /// The HTTP door.
    pub http: HttpConfig,
    /// Back-pressure and de-duplication, shared by every door.
    pub ingest: IngestConfig,
    /// Repositories by name; each is a topic `repo.<name>` of the bus. More can be created with
    /// `POST /api/v1/repositories`.
    pub repositories: BTreeMap<String, RepositoryConfig>,
    /// TCP listeners: one event per line (syslog also with octet-counting framing).
    pub tcp: Vec<ListenerConfig>,
    /// UDP listeners: one event per datagram (statsd: one per line of a datagram).
    pub udp: Vec<ListenerConfig>,
    /// AMQP 0-9-1 collectors: each consumes a queue on a broker, acknowledging a message once
    /// its events are durable.
    pub amqp: Vec<AmqpConfig>,
    /// Live queries.
    pub live: LiveConfig,
    /// Pipelines by name: a repository's events, through a query, to sinks. More can be
    /// created with `POST /api/v1/pipelines`.
    pub pipelines: BTreeMap<String, PipelineConfig>,
    /// Alert rules by name: a live query per group and a condition; notices go to the
    /// repository `_alerts` and a webhook. More can be created with `POST /api/v1/alerts`.
    pub alerts: BTreeMap<String, AlertConfig>,
    /// Where alert notices go, by name (webhook, slack, email, irc); rules name them in
    /// `channels`.
    pub channels: BTreeMap<String, ChannelConfig>,
    /// The doors for protocols shippers already speak, on the HTTP listener: OTLP,
    /// Elasticsearch `_bulk`, Loki push, Influx line protocol, Splunk HEC.
    pub doors: DoorsConfig,
    /// TLS on the HTTP door and the TCP listeners, and the rule that refuses tokens on a
    /// public door without it ([`crate::exposure`]).
    pub tls: TlsConfig,
    /// The default limits of every token (each token may set its own at creation); unset:
    /// unlimited.
    pub limits: crate::limits::TokenLimits,
    /// The repositories' bus: the embedded log (default) or Kafka.
    pub bus: crate::node::BusConfig,
    /// Queries across nodes: this node's name and the peers a query is sent to
    /// (`docs/scale-out.md`).
    pub cluster: ClusterConfig,
}

/// Queries across nodes: with peers, a query sent to this node also runs on every peer over
/// its own store, and the answer merges theirs with this node's.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// This node's name in answers (`nodes`) and in the warnings it adds; empty: the HTTP
    /// door's `listen` address.
    pub node: String,
    /// The base URLs of the other nodes a query fans out to (`http://host:port`); empty: this
    /// node answers from its own store only.
    pub peers: Vec<String>,
    /// How long a peer has to answer (10 s); a peer that takes longer is left out of the
    /// answer, which says so.
    #[serde(deserialize_with = "duration")]
    pub peer_timeout: Duration,
    /// The token sent to peers (`Authorization: Bearer`): one with `read:<repository>` (or
    /// `admin`) on each of them. Unset: none is sent.
    pub token: Option<String>,
    /// The parts this node plays: any of `ingest`, `digest`, `query` (all three by default).
    pub roles: Vec<crate::node::Role>,
    /// Where other nodes reach this one (`http://host:port`), announced in the cluster's node
    /// directory on a shared bus; unset: the HTTP door's `listen` address, unless that is every
    /// address (`0.0.0.0`).
    pub url: Option<String>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            node: String::new(),
            peers: Vec::new(),
            peer_timeout: Duration::from_secs(10),
            token: None,
            roles: crate::node::every_role(),
            url: None,
        }
    }
}

impl ClusterConfig {
    /// Whether this node plays `role`.
    pub fn plays(&self, role: crate::node::Role) -> bool {
        self.roles.contains(&role)
    }

    /// This node's name: `node`, else the HTTP door's address.
    pub fn node_name(&self, http: &HttpConfig) -> String {
        match self.node.is_empty() {
            true => http.listen.to_string(),
            false => self.node.clone(),
        }
    }

    /// The URL other nodes reach this one at: `url`, else the HTTP door's bound address when
    /// it is one address.
    pub fn advertised_url(&self, bound: std::net::SocketAddr, tls: bool) -> Option<String> {
        if let Some(url) = &self.url {
            return Some(url.trim_end_matches('/').to_string());
        }
        let scheme = if tls { "https" } else { "http" };
        (!bound.ip().is_unspecified()).then(|| format!("{scheme}://{bound}"))
    }

    /// What is wrong with the section, each naming its key.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        let not_a_base_url = |key: String, url: &str| {
            let rest = url
                .strip_prefix("http://")
                .or_else(|| url.strip_prefix("https://"));
            match rest {
                Some(rest) if !rest.trim_end_matches('/').is_empty() && !rest.contains(' ') => None,
                _ => Some(format!(
                    "{key}: {url:?} is not a base URL such as \"http://10.0.0.2:7280\""
                )),
            }
        };
        if let Some(url) = &self.url {
            problems.extend(not_a_base_url("cluster.url".to_string(), url));
        }
        for (i, peer) in self.peers.iter().enumerate() {
            problems.extend(not_a_base_url(format!("cluster.peers[{i}]"), peer));
            if !seen.insert(peer.trim_end_matches('/')) {
                problems.push(format!("cluster.peers[{i}]: {peer:?} is listed twice"));
            }
        }
        if self.peer_timeout.is_zero() {
            problems.push("cluster.peer_timeout must be longer than 0s".to_string());
        }
        problems.extend(crate::node::role_problems(&self.roles));
        if self.token.as_deref() == Some("") {
            problems.push(
                "cluster.token is empty: set a read token of the peers or remove the key"
                    .to_string(),
            );
        }
        problems
    }
}

/// The protocol doors, each off until enabled.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DoorsConfig {
    /// OTLP/HTTP: `POST /v1/logs`, `POST /v1/metrics`.
    pub otlp: DoorConfig,
    /// Elasticsearch: `POST /_bulk`, `POST /{index}/_bulk` (also under `/elastic`, where
    /// `GET /elastic/` answers as a cluster).
    pub elastic: DoorConfig,
    /// Loki: `POST /loki/api/v1/push`.
    pub loki: DoorConfig,
    /// Influx line protocol: `POST /api/v2/write`, `POST /write`.
    pub influx: DoorConfig,
    /// Splunk HEC: `POST /services/collector/event`, `POST /services/collector/raw`.
    pub hec: DoorConfig,
}

/// One protocol door.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DoorConfig {
    /// Serve the door's routes (false: they answer 404).
    pub enabled: bool,
    /// The repository its events go to. A request that names a destination (an Elasticsearch
    /// index, a HEC `index`, an Influx bucket or database) whose name is a repository's goes
    /// there instead. Tokens are the repository's ingest tokens.
    pub repository: String,
}

impl Default for DoorConfig {
    fn default() -> Self {
        DoorConfig {
            enabled: false,
            repository: main_repository(),
        }
    }
}

impl DoorsConfig {
    /// Each door's name and settings.
    pub fn each(&self) -> [(&'static str, &DoorConfig); 5] {
        [
            ("otlp", &self.otlp),
            ("elastic", &self.elastic),
            ("loki", &self.loki),
            ("influx", &self.influx),
            ("hec", &self.hec),
        ]
    }
}

/// The HTTP door.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on. Port 0 picks a free port (it is logged).
    pub listen: SocketAddr,
    /// Largest request body after decompression, in bytes; larger requests get 413.
    pub max_body_bytes: usize,
    /// Largest single event (one line, or one element of a JSON array), in bytes; 413 beyond.
    pub max_event_bytes: usize,
    /// Tokens for the repository API (`Authorization: Bearer <token>`). Empty: none needed;
    /// set them whenever the HTTP door is reachable beyond this machine.
    pub admin_tokens: Vec<String>,
    /// Open connections at most (1024); more are answered 503 and closed at once, counted in
    /// `eddy_ingest_refused_connections_total` and logged.
    pub max_connections: usize,
    /// A request's headers must arrive within this time (10 s) of the connection opening or
    /// of the previous answer on it; else the connection is closed. It also closes idle
    /// keep-alive connections.
    #[serde(deserialize_with = "duration")]
    pub header_read_timeout: Duration,
    /// A request body that sends nothing for this long (10 s) is answered 408 and its
    /// connection closed.
    #[serde(deserialize_with = "duration")]
    pub body_idle_timeout: Duration,
    /// A request body must arrive whole within this time (60 s) of its headers; else 408.
    #[serde(deserialize_with = "duration")]
    pub body_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("eddy-data"),
            shutdown_timeout: Duration::from_secs(10),
            http: HttpConfig::default(),
            ingest: IngestConfig::default(),
            repositories: BTreeMap::from([(main_repository(), RepositoryConfig::default())]),
            tcp: Vec::new(),
            udp: Vec::new(),
            amqp: Vec::new(),
            live: LiveConfig::default(),
            pipelines: BTreeMap::new(),
            alerts: BTreeMap::new(),
            channels: BTreeMap::new(),
            doors: DoorsConfig::default(),
            tls: TlsConfig::default(),
            limits: crate::limits::TokenLimits::default(),
            bus: crate::node::BusConfig::default(),
            cluster: ClusterConfig::default(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 7280)),
            max_body_bytes: 32 << 20,
            max_event_bytes: 1 << 20,
            admin_tokens: Vec::new(),
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            body_idle_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
        }
    }
}

/// Everything wrong with a configuration, each problem on its own line.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration{}:\n  - {}", source_name.as_ref().map(|p| format!(" in {p}")).unwrap_or_default(), problems.join("\n  - "))]
pub struct ConfigError {
    /// The file, if the configuration came from one.
    pub source_name: Option<String>,
    /// The problems.
    pub problems: Vec<String>,
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let name = Some(path.display().to_string());
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            source_name: name.clone(),
            problems: vec![format!("cannot read the file: {e}")],
        })?;
        Config::parse(&text).map_err(|mut e| {
            e.source_name = name;
            e
        })
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError {
            source_name: None,
            problems: vec![e.to_string().trim_end().replace('\n', "\n    ")],
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every setting and reports all problems at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if self.http.max_event_bytes == 0 || self.http.max_event_bytes > self.http.max_body_bytes {
            problems.push(format!(
                "http.max_event_bytes = {} must be between 1 and http.max_body_bytes ({})",
                self.http.max_event_bytes, self.http.max_body_bytes
            ));
        }
        if self.ingest.max_inflight_bytes < self.http.max_body_bytes {
            problems.push(format!(
                "ingest.max_inflight_bytes = {} must be at least http.max_body_bytes ({})",
                self.ingest.max_inflight_bytes, self.http.max_body_bytes
            ));
        }
        for (what, n) in [
            ("ingest.dedup_max_ids", self.ingest.dedup_max_ids),
            (
                "ingest.udp_queue_datagrams",
                self.ingest.udp_queue_datagrams,
            ),
            (
                "ingest.max_tcp_connections",
                self.ingest.max_tcp_connections,
            ),
            ("http.max_connections", self.http.max_connections),
        ] {
            if n == 0 {
                problems.push(format!("{what} must be at least 1"));
            }
        }
        for (what, d) in [
            ("http.header_read_timeout", self.http.header_read_timeout),
            ("http.body_idle_timeout", self.http.body_idle_timeout),
            ("http.body_timeout", self.http.body_timeout),
            ("ingest.tcp_idle_timeout", self.ingest.tcp_idle_timeout),
            ("ingest.lag_threshold", self.ingest.lag_threshold),
            ("ingest.lag_calm", self.ingest.lag_calm),
        ] {
            if d.is_zero() {
                problems.push(format!("{what} must be longer than 0s"));
            }
        }
        check_tokens("http.admin_tokens", &self.http.admin_tokens, &mut problems);
        problems.extend(self.tls.check());
        if !self.cluster.plays(crate::node::Role::Ingest) {
            let doors = &self.doors;
            let listening = [
                ("tcp", !self.tcp.is_empty()),
                ("udp", !self.udp.is_empty()),
                ("amqp", !self.amqp.is_empty()),
                ("doors.otlp", doors.otlp.enabled),
                ("doors.elastic", doors.elastic.enabled),
                ("doors.loki", doors.loki.enabled),
                ("doors.influx", doors.influx.enabled),
                ("doors.hec", doors.hec.enabled),
            ];
            for (what, on) in listening {
                if on {
                    problems.push(format!(
                        "{what} takes events in, but cluster.roles leaves out \"ingest\""
                    ));
                }
            }
        }
        problems.extend(self.bus.check());
        for (i, l) in self.tcp.iter().enumerate() {
            if l.tls == Some(true) && !self.tls.enabled() {
                problems.push(format!(
                    "tcp[{i}] ({}): tls = true needs [tls] cert and key",
                    l.listen
                ));
            }
        }
        for (i, l) in self.udp.iter().enumerate() {
            if l.token_first_line {
                problems.push(format!(
                    "udp[{i}] ({}): token_first_line is for TCP listeners only (a datagram is not a connection)",
                    l.listen
                ));
            }
            if l.tls.is_some() {
                problems.push(format!(
                    "udp[{i}] ({}): tls is for TCP listeners only (UDP has no TLS here)",
                    l.listen
                ));
            }
        }
        problems.extend(self.limits.problems("limits"));
        problems.extend(self.cluster.problems());
        if let Err(e) = self.live.max_query_bytes() {
            problems.push(e);
        }
        for (name, p) in &self.pipelines {
            problems.extend(p.problems(name));
        }
        for (name, a) in &self.alerts {
            problems.extend(a.problems(name));
            problems.extend(eddy_stream::alerts::unknown_channels(
                name,
                a,
                &self.channels,
            ));
        }
        for (name, c) in &self.channels {
            problems.extend(c.plan(name).err().unwrap_or_default());
        }
        if self.repositories.is_empty() {
            problems
                .push("no repositories: add at least one [repositories.<name>] table".to_string());
        }
        for (name, repo) in &self.repositories {
            if let Err(e) = eddy_log::validate_name("repository", name) {
                problems.push(format!("repositories.{name}: {e}"));
            }
            problems.extend(repo.check(&format!("repositories.{name}")));
        }
        for (name, door) in self.doors.each() {
            if door.enabled && !self.repositories.contains_key(&door.repository) {
                problems.push(format!(
                    "doors.{name}.repository: {:?} is not configured under [repositories]",
                    door.repository
                ));
            }
        }
        let mut addresses = std::collections::BTreeSet::new();
        for (kind, listeners) in [("tcp", &self.tcp), ("udp", &self.udp)] {
            for (i, l) in listeners.iter().enumerate() {
                let at = format!("{kind}[{i}] ({})", l.listen);
                if !self.repositories.contains_key(&l.repository) {
                    problems.push(format!(
                        "{at}: repository {:?} is not configured under [repositories]",
                        l.repository
                    ));
                }
                // Port 0 picks a free port each time: never a clash.
                if l.listen.port() != 0 && !addresses.insert((kind, l.listen)) {
                    problems.push(format!(
                        "{at}: another {kind} listener has the same address"
                    ));
                }
                if kind == "tcp" && l.listen.port() != 0 && l.listen == self.http.listen {
                    problems.push(format!("{at}: the HTTP door already listens there"));
                }
            }
        }
        for (i, c) in self.amqp.iter().enumerate() {
            let at = format!("amqp[{i}]");
            problems.extend(c.check(&at));
            if !self.repositories.contains_key(&c.repository) {
                problems.push(format!(
                    "{at}: repository {:?} is not configured under [repositories]",
                    c.repository
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError {
                source_name: None,
                problems,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The keys serde knows for `T`, read from its refusal of an unknown one ("expected one of
    /// `a`, `b`"), so the list follows the struct without being written twice.
    fn keys_of<T: serde::de::DeserializeOwned + std::fmt::Debug>() -> BTreeSet<String> {
        let refusal = toml::from_str::<T>("not_a_key_of_any_config = 0")
            .unwrap_err()
            .to_string();
        let expected = refusal.split("expected").nth(1).unwrap_or_default();
        expected
            .split('`')
            .skip(1)
            .step_by(2)
            .map(String::from)
            .collect()
    }

    /// The example with its commented-out settings (`# key = …`, `# [table]`) switched on.
    fn example_with_every_setting_on() -> toml::Table {
        let text: String = include_str!("../../../eddy.example.toml")
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest)
                    if rest.starts_with('[')
                        || rest.split_once(" = ").is_some_and(|(key, _)| {
                            key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                        }) =>
                {
                    format!("{rest}\n")
                }
                _ => format!("{line}\n"),
            })
            .collect();
        toml::from_str(&text).unwrap()
    }

    /// The keys used in `tables` (all tables of one struct), as a set.
    fn keys_in<'a>(tables: impl IntoIterator<Item = &'a toml::Value>) -> BTreeSet<String> {
        tables
            .into_iter()
            .flat_map(|t| t.as_table().unwrap().keys().cloned())
            .collect()
    }

    #[test]
    fn every_config_key_appears_in_the_example_file() {
        let example = example_with_every_setting_on();
        Config::parse(&toml::to_string(&example).unwrap()).unwrap();
        let table = |name: &str| {
            example[name]
                .as_table()
                .unwrap()
                .values()
                .collect::<Vec<_>>()
        };
        let array = |name: &str| example[name].as_array().unwrap().iter().collect::<Vec<_>>();
        let repositories = table("repositories");
        let pipelines = table("pipelines");
        let alerts = table("alerts");
        let channels = table("channels");
        let doors = table("doors");
        let listeners: Vec<_> = array("tcp").into_iter().chain(array("udp")).collect();
        let collectors = array("amqp");
        let schemas: Vec<_> = repositories
            .iter()
            .filter_map(|r| r.get("schema"))
            .collect();
        let sinks: Vec<_> = pipelines
            .iter()
            .flat_map(|p| p["sinks"].as_array().unwrap())
            .collect();
        let checks = [
            (
                "top level",
                keys_of::<Config>(),
                keys_in([&toml::Value::Table(example.clone())]),
            ),
            (
                "[http]",
                keys_of::<HttpConfig>(),
                keys_in([&example["http"]]),
            ),
            (
                "[ingest]",
                keys_of::<IngestConfig>(),
                keys_in([&example["ingest"]]),
            ),
            (
                "[live]",
                keys_of::<LiveConfig>(),
                keys_in([&example["live"]]),
            ),
            (
                "[repositories.*]",
                keys_of::<RepositoryConfig>(),
                keys_in(repositories),
            ),
            ("schema = {…}", keys_of::<SchemaBinding>(), keys_in(schemas)),
            (
                "[[tcp]] / [[udp]]",
                keys_of::<ListenerConfig>(),
                keys_in(listeners),
            ),
            ("[[amqp]]", keys_of::<AmqpConfig>(), keys_in(collectors)),
            (
                "[pipelines.*]",
                keys_of::<PipelineConfig>(),
                keys_in(pipelines),
            ),
            (
                "[[pipelines.*.sinks]]",
                keys_of::<SinkConfig>(),
                keys_in(sinks),
            ),
            ("[alerts.*]", keys_of::<AlertConfig>(), keys_in(alerts)),
            (
                "[channels.*]",
                keys_of::<ChannelConfig>(),
                keys_in(channels),
            ),
            (
                "[doors]",
                keys_of::<DoorsConfig>(),
                keys_in([&example["doors"]]),
            ),
            ("[doors.*]", keys_of::<DoorConfig>(), keys_in(doors)),
            ("[tls]", keys_of::<TlsConfig>(), keys_in([&example["tls"]])),
            (
                "[limits]",
                keys_of::<crate::limits::TokenLimits>(),
                keys_in([&example["limits"]]),
            ),
            (
                "[cluster]",
                keys_of::<ClusterConfig>(),
                keys_in([&example["cluster"]]),
            ),
        ];
        for (section, known, shown) in checks {
            assert!(!known.is_empty(), "{section}: no keys read from serde");
            let missing: Vec<_> = known.difference(&shown).collect();
            assert!(
                missing.is_empty(),
                "eddy.example.toml {section} lacks {missing:?}"
            );
        }
    }

    #[test]
    fn the_example_file_is_valid_and_its_defaults_are_the_defaults() {
        let c = Config::parse(include_str!("../../../eddy.example.toml")).unwrap();
        let d = Config::default();
        assert_eq!(c.http.listen, d.http.listen);
        assert_eq!(c.ingest.dedup_window, d.ingest.dedup_window);
        assert_eq!(c.ingest.max_inflight_bytes, d.ingest.max_inflight_bytes);
        assert_eq!(c.shutdown_timeout, d.shutdown_timeout);
        assert_eq!(c.http.max_connections, d.http.max_connections);
        assert_eq!(c.http.header_read_timeout, d.http.header_read_timeout);
        assert_eq!(c.http.body_idle_timeout, d.http.body_idle_timeout);
        assert_eq!(c.http.body_timeout, d.http.body_timeout);
        assert_eq!(c.ingest.max_tcp_connections, d.ingest.max_tcp_connections);
        assert_eq!(c.repositories, d.repositories);
        assert_eq!((c.tcp.len(), c.udp.len()), (2, 2));
    }

    #[test]
    fn listeners_must_name_a_configured_repository_and_distinct_addresses() {
        let err = Config::parse(
            "[[udp]]\nlisten = \"127.0.0.1:8125\"\nrepository = \"nope\"\nparser = \"statsd\"\n\
             [[udp]]\nlisten = \"127.0.0.1:8125\"\nparser = \"yaml\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("yaml"), "{err}");
        let err = Config::parse(
            "[[udp]]\nlisten = \"127.0.0.1:8125\"\nrepository = \"nope\"\n\
             [[udp]]\nlisten = \"127.0.0.1:8125\"\n[ingest]\ndedup_window = \"soon\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("soon"), "{err}");
        let err = Config::parse(
            "[[udp]]\nlisten = \"127.0.0.1:8125\"\nrepository = \"nope\"\n\
             [[udp]]\nlisten = \"127.0.0.1:8125\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("repository \"nope\" is not configured"),
            "{err}"
        );
        assert!(
            err.contains("udp[1] (127.0.0.1:8125): another udp listener"),
            "{err}"
        );
    }

    #[test]
    fn an_amqp_collector_must_name_a_configured_repository() {
        let err = Config::parse(
            "[[amqp]]\nurl = \"amqp://guest:guest@127.0.0.1:5672/%2f\"\nqueue = \"q\"\nrepository = \"nope\"\nprefetch = 0\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("amqp[0]: repository \"nope\" is not configured"),
            "{err}"
        );
        assert!(err.contains("amqp[0].prefetch must be at least 1"), "{err}");
    }

    #[test]
    fn cluster_peers_must_be_distinct_base_urls_and_the_timeout_positive() {
        let err = Config::parse(
            "[cluster]\npeers = [\"10.0.0.2:7280\", \"http://b:7280\", \"http://b:7280/\"]\npeer_timeout = \"0s\"\ntoken = \"\"\n",
        )
        .unwrap_err();
        let text = err.to_string();
        for says in [
            "cluster.peers[0]: \"10.0.0.2:7280\" is not a base URL",
            "cluster.peers[2]: \"http://b:7280/\" is listed twice",
            "cluster.peer_timeout must be longer than 0s",
            "cluster.token is empty",
        ] {
            assert!(text.contains(says), "{says} not in {text}");
        }
        let ok = Config::parse("[cluster]\nnode = \"a\"\npeers = [\"https://b:7280\"]\n").unwrap();
        assert_eq!(ok.cluster.node_name(&ok.http), "a");
        let default = Config::default();
        assert_eq!(default.cluster.node_name(&default.http), "127.0.0.1:7280");
    }

    #[test]
    fn empty_file_is_a_working_default() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.http.listen.port(), 7280);
        assert!(c.repositories.contains_key("main"));
    }

    #[test]
    fn every_problem_is_reported_at_once_and_tokens_are_not_printed() {
        let err = Config::parse(
            r#"
            [http]
            max_event_bytes = 0
            [repositories."bad/name"]
            [repositories.web]
            partitions = 0
            tokens = ["short-secret"]
            "#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("max_event_bytes = 0"), "{err}");
        assert!(err.contains("repositories.bad/name"), "{err}");
        assert!(err.contains("repositories.web.partitions = 0"), "{err}");
        assert!(err.contains("tokens[0] is 12 characters"), "{err}");
        assert!(!err.contains("short-secret"), "{err}");
    }

    #[test]
    fn every_problem_of_a_pipeline_is_reported() {
        let err = Config::parse(
            r#"
[pipelines.p]
from = "main"
query = "groupBy(host)"
start = "middle"
[[pipelines.p.sinks]]
repository = "main"
webhook = "ftp://x"
on = "a"
buffer_time = "soon"
[pipelines.q]
from = "main"
query = "status>=500"
window = "1m"
sinks = []
"#,
        )
        .unwrap_err()
        .to_string();
        for expected in [
            "pipeline \"p\": the query aggregates: give it a rollup window",
            "start = \"middle\"",
            "sink 1: give exactly one of repository, topic, webhook, websocket",
            "is not an http(s) URL",
            "the repository it reads",
            "on = … needs the pipeline's split",
            "buffer_time = \"soon\" is not a duration",
            "pipeline \"q\": window is for aggregating queries",
            "pipeline \"q\": no sinks",
        ] {
            assert!(err.contains(expected), "{expected:?} not in {err}");
        }
        let ok = Config::parse(
            "[repositories.main]\n[repositories.errors]\n[pipelines.p]\nfrom = \"main\"\nquery = \"groupBy(host)\"\nwindow = \"1m\"\n[[pipelines.p.sinks]]\nrepository = \"errors\"\n",
        );
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn unknown_keys_and_bad_types_name_the_place() {
        let err = Config::parse("[http]\nlisen = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("lisen"), "{err}");
        let err = Config::parse("[http]\nlisten = \"not an address\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2"), "{err}");
    }
}
