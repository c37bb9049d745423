//! eddy's doors: everything between a request body or a socket and the bus.
//!
//! Every door parses what it receives into events and hands them to [`Ingest::store`], which
//! de-duplicates client `@id`s, computes the data source key (auto-grouping high-cardinality
//! tags) and appends durably to the repository's topic. Back-pressure is one budget of bytes in
//! flight shared by all doors ([`budget`]).
//!
//! - [`body`]: an HTTP request body to events: decoding, parsing, binary Avro, the gatekeeper;
//!   a refused body is a typed [`body::Refusal`] that the HTTP layer turns into a status code.
//! - [`tcp`], [`udp`]: the listeners, with [`framing`] (lines, syslog octet counting) and
//!   [`connlimit`] (a door's limit on open connections, also used by the HTTP door).
//! - [`tls`]: TLS for the HTTP door and the TCP listeners, its certificate files reloaded when
//!   they change, optional client certificates (mTLS).
//! - [`amqp`]: the AMQP 0-9-1 collector, which consumes a broker's queue and acknowledges
//!   each message once its events are durable.
//! - [`json_body`]: when a JSON text is one document and when it is lines.
//! - [`protocols`]: the bodies of OTLP, Elasticsearch `_bulk`, Loki push, Influx line protocol
//!   and Splunk HEC, as events (the HTTP layer answers in each protocol's form).
//! - [`repository`]: a repository as the doors see it, with its [`dedup`] window and tag
//!   [`grouping`].
//! - [`config`]: the `[ingest]`, `[[tcp]]`, `[[udp]]` and `[repositories.<name>]` settings.
//! - [`metrics`]: the doors' self-metrics.
//! - [`spread`]: Humio's lag rule, which spreads a data source whose partition lags over more
//!   partitions; [`lag`]: the consumer lag it reads (and `/metrics` shows), on the embedded log
//!   from this process's digest, on Kafka from the progress digest nodes publish.

#![deny(missing_docs)]

pub mod amqp;
pub mod body;
pub mod budget;
mod bus_blocks;
pub mod config;
pub mod connlimit;
pub mod dedup;
pub mod framing;
pub mod grouping;
mod ingest;
pub mod json_body;
pub mod lag;
pub mod metrics;
pub mod protocols;
pub mod repository;
pub mod spread;
pub mod tcp;
pub mod tls;
pub mod udp;

pub use budget::{Budget, Charge};
pub use ingest::{add_tags, Ingest, StoreError, Stored};
pub use metrics::Door;
pub use repository::Repository;

/// Why a repository or a listener could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The repository's topic could not be opened or created.
    #[error("the bus: {0}")]
    Log(#[from] eddy_log::Error),
    /// The repository's store could not be opened.
    #[error("the store: {0}")]
    Store(#[from] eddy_store::SegmentError),
    /// The repository's settings are wrong (each problem on its own line).
    #[error("{}", problems.join("\n"))]
    InvalidRepository {
        /// The problems, each naming its key.
        problems: Vec<String>,
    },
    /// A listener could not be bound.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl IngestError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> IngestError {
        let context = context.into();
        move |source| IngestError::Io { context, source }
    }
}
