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
//! # The gatekeeper: every event must fit this registry subject (latest | any | a version).
//! schema = { subject = "web-value", versions = "latest" }
//!
//! [[tcp]]                          # newline-delimited lines (syslog also octet-counted)
//! listen = "127.0.0.1:5514"
//! repository = "web"
//! parser = "syslog"                # json | kv | accesslog | syslog | statsd | none
//! tags = { type = "syslog" }       # added to every event of this listener
//!
//! [[udp]]                          # one event per datagram (statsd: one per line)
//! listen = "127.0.0.1:8125"
//! repository = "web"
//! parser = "statsd"
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use eddy_event::units;
use eddy_event::Parser;
use eddy_store::StoreConfig;
use serde::{Deserialize, Deserializer};

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
    /// Live queries.
    pub live: LiveConfig,
    /// Pipelines by name: a repository's events, through a query, to sinks. More can be
    /// created with `POST /api/v1/pipelines`.
    pub pipelines: BTreeMap<String, PipelineConfig>,
}

/// A pipeline: `[pipelines.errors]` with `from`, `query` and `[[pipelines.errors.sinks]]`.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// The repository whose events it reads.
    pub from: String,
    /// The query each event goes through (filters, `eval`, … or an aggregate).
    pub query: String,
    /// Where a new pipeline starts reading: `end` (events from now on) or `beginning`.
    #[serde(default = "pipeline_start")]
    pub start: String,
    /// For an aggregating query: the rollup window (`1m`); each window's rows go to the sinks
    /// when it closes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// How long a window stays open after its end for late events.
    #[serde(default = "pipeline_lateness")]
    pub lateness: String,
    /// Closed windows kept for `GET /api/v1/pipelines/{name}` (a ring buffer).
    #[serde(default = "pipeline_keep")]
    pub keep: usize,
    /// A field whose value picks the sinks: a sink with `on = "<value>"` takes the events with
    /// that value; sinks without `on` take every event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<String>,
    /// Where the results go.
    pub sinks: Vec<SinkConfig>,
}

fn pipeline_start() -> String {
    "end".into()
}

fn pipeline_lateness() -> String {
    "5s".into()
}

fn pipeline_keep() -> usize {
    10
}

/// One of a pipeline's outputs: exactly one of `repository`, `topic`, `webhook`, `websocket`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SinkConfig {
    /// Store into this repository (de-duplicated by the events' ids).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// Append to this bus topic (rebroadcast), created if needed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// POST JSON arrays to this URL, retried with back-off until it answers 2xx.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    /// Push to the websocket channel of this name (`GET /api/v1/channels/{name}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub websocket: Option<String>,
    /// With the pipeline's `split`: only events whose split field has this value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on: Option<String>,
    /// Deliver once this many events are waiting (1: each at once; 500 by default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buffer_events: Option<usize>,
    /// … or once the oldest waiting event has waited this long.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buffer_time: Option<String>,
    /// The longest wait between two attempts of a failing delivery.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_backoff: Option<String>,
}

impl PipelineConfig {
    /// Every problem with the pipeline `name` (empty: none).
    pub fn problems(&self, name: &str) -> Vec<String> {
        let mut problems = Vec::new();
        let mut say = |p: String| problems.push(format!("pipeline {name:?}: {p}"));
        let aggregates = match eddy_query::prepare(&self.query, 1) {
            Ok(p) => p.program.explicit,
            Err(e) => {
                say(format!("query: {}", e.render(&self.query)));
                false
            }
        };
        match (&self.window, aggregates) {
            (None, true) => {
                say("the query aggregates: give it a rollup window, e.g. window = \"1m\"".into())
            }
            (Some(_), false) => {
                say("window is for aggregating queries; this one passes events on".into())
            }
            (Some(w), true) => {
                if !humantime::parse_duration(w).is_ok_and(|d| d >= Duration::from_secs(1)) {
                    say(format!("window = {w:?} is not a duration of at least 1s"));
                }
            }
            (None, false) => {}
        }
        if humantime::parse_duration(&self.lateness).is_err() {
            say(format!("lateness = {:?} is not a duration", self.lateness));
        }
        if !matches!(self.start.as_str(), "end" | "beginning") {
            say(format!(
                "start = {:?}: expected \"end\" or \"beginning\"",
                self.start
            ));
        }
        if self.keep == 0 || self.keep > 10_000 {
            say(format!("keep = {} must be between 1 and 10000", self.keep));
        }
        if self.sinks.is_empty() {
            say("no sinks: add [[pipelines.NAME.sinks]] with repository, topic, webhook or websocket".into());
        }
        for (i, sink) in self.sinks.iter().enumerate() {
            let kinds = [
                &sink.repository,
                &sink.topic,
                &sink.webhook,
                &sink.websocket,
            ]
            .iter()
            .filter(|k| k.is_some())
            .count();
            if kinds != 1 {
                say(format!(
                    "sink {}: give exactly one of repository, topic, webhook, websocket",
                    i + 1
                ));
            }
            if let Some(url) = &sink.webhook {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    say(format!(
                        "sink {}: webhook {url:?} is not an http(s) URL",
                        i + 1
                    ));
                }
            }
            if sink.repository.as_ref() == Some(&self.from) {
                say(format!("sink {}: writing into {:?}, the repository it reads, would feed it its own output forever", i + 1, self.from));
            }
            if sink.on.is_some() && self.split.is_none() {
                say(format!(
                    "sink {}: on = … needs the pipeline's split = \"field\"",
                    i + 1
                ));
            }
            if sink.buffer_events == Some(0) {
                say(format!("sink {}: buffer_events must be at least 1", i + 1));
            }
            for (what, d) in [
                ("buffer_time", &sink.buffer_time),
                ("max_backoff", &sink.max_backoff),
            ] {
                if let Some(d) = d.as_ref().filter(|d| humantime::parse_duration(d).is_err()) {
                    say(format!("sink {}: {what} = {d:?} is not a duration", i + 1));
                }
            }
        }
        problems
    }
}

/// Live queries.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LiveConfig {
    /// A live query's state is bounded to this (`64MiB`); past it the query stops and its
    /// subscribers are told why.
    pub max_query_memory: String,
}

impl Default for LiveConfig {
    fn default() -> LiveConfig {
        LiveConfig {
            max_query_memory: "64MiB".into(),
        }
    }
}

impl LiveConfig {
    /// `max_query_memory` in bytes.
    pub fn max_query_bytes(&self) -> Result<usize, String> {
        units::parse_size(&self.max_query_memory)
            .map(|n| n as usize)
            .map_err(|e| format!("live.max_query_memory: {e}"))
    }
}

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
}

fn main_repository() -> String {
    "main".to_string()
}

fn json_parser() -> Parser {
    Parser::Json
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!(
            "{text:?} is not a duration like \"500ms\" or \"10m\": {e}"
        ))
    })
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
            live: LiveConfig::default(),
            pipelines: BTreeMap::new(),
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

/// Shortest ingest token accepted: shorter ones are guessable.
pub const MIN_TOKEN_LEN: usize = 16;

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
        ] {
            if d.is_zero() {
                problems.push(format!("{what} must be longer than 0s"));
            }
        }
        check_tokens("http.admin_tokens", &self.http.admin_tokens, &mut problems);
        if let Err(e) = self.live.max_query_bytes() {
            problems.push(e);
        }
        for (name, p) in &self.pipelines {
            problems.extend(p.problems(name));
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
        problems
    }

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

fn check_tokens(at: &str, tokens: &[String], problems: &mut Vec<String>) {
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
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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
