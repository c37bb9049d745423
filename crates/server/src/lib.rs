//! `eddy serve`: the one process a user starts. It opens the bus, creates the configured
//! repositories (each a topic `repo.<name>`), and serves the HTTP door ([`ingest`]) until
//! SIGINT or SIGTERM, then stops accepting, lets requests in flight finish, and closes the bus.
//!
//! Routes: `POST /api/v1/ingest/{repository}`, `GET /health` (the process is up), `GET /ready`
//! (the bus is open and the doors accept events).

#![deny(missing_docs)]

pub mod config;
pub mod ingest;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
pub use config::{Config, ConfigError};
use eddy_log::{Log, Topic, TopicConfig};

/// Why the server could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The bus could not be opened or a repository's topic created.
    #[error("the bus: {0}")]
    Log(#[from] eddy_log::Error),
    /// A listener could not be bound or served.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// A repository as the doors see it.
#[derive(Debug)]
pub struct Repository {
    /// Its bus topic.
    pub topic: Arc<Topic>,
    /// Accepted ingest tokens (empty: none needed).
    pub tokens: Vec<String>,
}

/// What every request handler shares.
#[derive(Debug)]
pub struct AppState {
    /// The configuration in force.
    pub config: Config,
    /// Repositories by name.
    pub repositories: BTreeMap<String, Repository>,
    /// The bus (kept open for the life of the server).
    pub log: Log,
}

/// Opens the bus and the configured repositories.
pub fn open(config: Config) -> Result<AppState, ServerError> {
    let log = Log::open(&config.data_dir)?;
    let mut repositories = BTreeMap::new();
    for (name, repo) in &config.repositories {
        let topic = log.topic_or_create(
            &config::topic_of(name),
            TopicConfig {
                partitions: repo.partitions,
                ..TopicConfig::default()
            },
        )?;
        if topic.partition_count() != repo.partitions {
            tracing::warn!(
                repository = %name,
                configured = repo.partitions,
                actual = topic.partition_count(),
                "the partition count of an existing repository cannot change; keeping the existing one"
            );
        }
        repositories.insert(
            name.clone(),
            Repository {
                topic,
                tokens: repo.tokens.clone(),
            },
        );
    }
    Ok(AppState {
        config,
        repositories,
        log,
    })
}

/// The HTTP routes.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/api/v1/ingest/{repository}", post(ingest::ingest))
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(|| async { "ready\n" }))
        // Bodies are limited (after decompression) by the handler; this bounds the raw bytes.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state)
}

/// Serves until `shutdown` resolves; then stops accepting, finishes requests in flight and
/// closes the bus. `on_listen` is told the bound address (useful with port 0).
pub async fn serve(
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    on_listen: impl FnOnce(std::net::SocketAddr),
) -> Result<(), ServerError> {
    let listen = config.http.listen;
    let state = Arc::new(tokio::task::block_in_place(|| open(config))?);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| ServerError::Io {
            context: format!("binding the HTTP door to {listen}"),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServerError::Io {
        context: "reading the bound address".into(),
        source,
    })?;
    tracing::info!(%addr, repositories = state.repositories.len(), "eddy serve: HTTP door listening");
    on_listen(addr);
    axum::serve(listener, router(state.clone()))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| ServerError::Io {
            context: "serving HTTP".into(),
            source,
        })?;
    tracing::info!("eddy serve: stopped accepting; closing the bus");
    drop(state);
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("eddy serve: shutdown signal received");
}
