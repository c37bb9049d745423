//! `eddy serve`: the one process a user starts, and its HTTP and websocket surface. It opens the
//! bus and the repositories (each a topic `repo.<name>`), wires the doors (`eddy_ingest`) and
//! the stream runtime (`eddy_stream`) to them, and serves until SIGINT or SIGTERM. On shutdown
//! it stops accepting, lets batches in flight be stored and acknowledged for up to
//! `shutdown_timeout`, cuts the connections still open then (nothing they sent is acknowledged
//! unless stored), stops the pipelines, live queries and digests, and closes the bus.
//!
//! Routes ([`router`]):
//! - `POST /api/v1/ingest/{repository}`: the HTTP door ([`http`]);
//! - `GET|POST /api/v1/repositories`, `GET /api/v1/repositories/{name}` ([`api`]);
//! - `GET /api/v1/repositories/{name}/events` (a time range of events) and
//!   `POST /api/v1/repositories/{name}/query` (a query, with NDJSON partials) ([`query`]);
//! - `POST /api/v1/repositories/{name}/query/partial` (this node's unfinished answer, for a
//!   query node that fans a query out to its `[cluster] peers`) ([`cluster`]);
//! - `GET /api/v1/repositories/{name}/fields` (the fields its events have) ([`fields_api`]);
//! - `GET /api/v1/repositories/{name}/live` and `GET /api/v1/channels/{name}`: websockets of
//!   live queries and of pipelines' channels ([`live_api`]);
//! - `GET|POST /api/v1/pipelines`, `GET|DELETE /api/v1/pipelines/{name}` ([`pipelines_api`]);
//! - `GET|POST /api/v1/alerts`, `GET|DELETE /api/v1/alerts/{name}`, the silences and
//!   `GET /api/v1/notification-groups` ([`alerts_api`]);
//! - the schema registry under `/api/v1/registry` ([`registry_api`], Confluent's API);
//! - `POST /api/v1/query/check` (a query's syntax, [`syntax_api`]); the web UI's dashboards
//!   and saved searches under `/api/v1/dashboards` and `/api/v1/searches`
//!   ([`dashboards_api`]); the web UI itself at `/` and `/assets/…` ([`ui_assets`]);
//! - the protocol doors enabled under `[doors]`: OTLP `/v1/logs` and `/v1/metrics`
//!   ([`otlp_door`]), Elasticsearch `/_bulk`, `/{index}/_bulk` and `/elastic/…`
//!   ([`elastic_door`]), Loki `/loki/api/v1/push` ([`loki_door`]), Influx `/api/v2/write` and
//!   `/write` ([`influx_door`]), Splunk HEC `/services/collector/…` ([`hec_door`]); what they share with the native door is [`protocol_doors`];
//! - `GET /metrics` (Prometheus), `GET /health` (the process is up), `GET /ready` (the bus is
//!   open and the doors accept events).
//!
//! With `[tls]`, every route above and the TCP listeners are served over TLS
//! ([`eddy_ingest::tls`], certificate files reloaded when they change), and [`exposure`] is
//! the rule that refuses to start with tokens on a public door without it.

#![deny(missing_docs)]

pub mod access;
pub mod alerts_api;
pub mod api;
pub mod audit;
pub mod auth;
pub mod cluster;
pub mod cluster_state;
pub mod config;
pub mod created;
pub mod dashboards_api;
pub mod directory;
pub mod elastic_door;
pub mod exposure;
pub mod fields_api;
mod follow;
pub mod hec_door;
pub mod http;
pub mod http_door;
pub mod influx_door;
mod lag;
pub mod limits;
pub mod live_api;
pub mod loki_door;
pub mod metrics;
pub mod node;
pub mod otlp_door;
mod periodic;
pub mod pipelines_api;
pub(crate) mod protocol_doors;
pub mod query;
pub mod registry_api;
pub mod routes;
pub mod syntax_api;
pub mod tokens_api;
pub mod ui_assets;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use axum::http::header;
use axum::response::IntoResponse;
use axum::Router;
pub use config::{Config, ConfigError};
use eddy_base::sync::{read, write};
use eddy_ingest::amqp::AmqpCollector;
use eddy_ingest::tcp::TcpDoor;
use eddy_ingest::udp::UdpDoor;
use eddy_ingest::{Ingest, IngestError, Repository};
use eddy_log::Log;
use eddy_schema::Registry;
use eddy_stream::alerts::{Alerts, ALERTS_REPOSITORY};
use eddy_stream::live::Hub;
use eddy_stream::pipelines::{self, Pipelines};
use follow::Followed;
use metrics::Metrics;
use routes::Routes;

/// Why the server could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The bus could not be opened or a repository's topic created.
    #[error("the bus: {0}")]
    Log(#[from] eddy_log::Error),
    /// A listener could not be bound or served, or a file not read.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A repository's store could not be opened.
    #[error("the store: {0}")]
    Store(#[from] eddy_store::SegmentError),
    /// A repository could not be opened or a listener bound.
    #[error(transparent)]
    Ingest(#[from] IngestError),
    /// The schema registry could not be read from the bus.
    #[error("the schema registry: {0}")]
    Registry(#[from] eddy_schema::RegistryError),
    /// The configuration is wrong (each problem names its key).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The TLS certificate, key or client CA files are not usable.
    #[error("TLS: {0}")]
    Tls(#[from] eddy_ingest::tls::TlsError),
    /// The cluster's shared state (its node directory among it) could not be read, or this
    /// node not announced.
    #[error(transparent)]
    ClusterState(#[from] cluster_state::StateError),
}

impl ServerError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServerError {
        let context = context.into();
        move |source| ServerError::Io { context, source }
    }
}

/// What every door shares.
#[derive(Debug)]
pub struct AppState {
    /// The configuration in force.
    pub config: Config,
    /// The doors' shared state: back-pressure, de-duplication, the store path.
    pub ingest: Arc<Ingest>,
    /// Self-metrics of every part.
    pub metrics: Metrics,
    /// The embedded log (kept open for the life of the server): the schema registry's journal,
    /// pipelines' topics, and the repositories' topics when it is their bus.
    pub log: Arc<Log>,
    /// The repositories' bus: `log` itself, or Kafka.
    pub bus: Arc<dyn eddy_log::Bus>,
    /// The schema registry (kept in the bus).
    pub registry: Arc<Registry>,
    /// The cluster's nodes, on a shared bus (see [`directory`]).
    pub directory: Option<Arc<directory::Directory>>,
    /// What the cluster's nodes share, on a shared bus (see [`cluster_state`]).
    pub cluster_state: Option<Arc<cluster_state::ClusterState>>,
    /// The shared state's generation this node last brought itself in line with.
    followed: Mutex<Followed>,
    /// Live queries and websocket channels.
    pub live: Arc<Hub>,
    /// Running pipelines.
    pub pipelines: Pipelines,
    /// What pipelines run against.
    pipeline_context: Arc<pipelines::Context>,
    /// Pipelines created through the API.
    created_pipelines: created::Created<config::PipelineConfig>,
    /// Running alert rules.
    pub alerts: Alerts,
    /// Alert rules created through the API.
    created_alerts: created::Created<config::AlertConfig>,
    repositories: Arc<Repositories>,
    /// Repositories created through the API.
    created: created::Created<config::RepositoryConfig>,
    /// The web UI's dashboards and saved searches.
    pub documents: dashboards_api::UiDocuments,
    /// The tokens eddy knows and what they may do.
    pub auth: auth::Auth,
    /// Admin actions and refused authentications, into `_audit`.
    pub audit: audit::Audit,
}

/// The open repositories, by name.
#[derive(Debug, Default)]
pub struct Repositories(RwLock<BTreeMap<String, Arc<Repository>>>);

impl Repositories {
    fn get(&self, name: &str) -> Option<Arc<Repository>> {
        read(&self.0).get(name).cloned()
    }

    fn all(&self) -> Vec<Arc<Repository>> {
        read(&self.0).values().cloned().collect()
    }

    fn insert(&self, repo: Arc<Repository>) {
        write(&self.0).insert(repo.name.clone(), repo);
    }
}

impl pipelines::Repositories for Repositories {
    fn repository(&self, name: &str) -> Option<Arc<Repository>> {
        self.get(name)
    }
}

impl AppState {
    /// A repository by name.
    pub fn repository(&self, name: &str) -> Option<Arc<Repository>> {
        self.repositories.get(name)
    }

    /// A repository by name, or the `404` that says it does not exist.
    pub(crate) fn existing_repository(&self, name: &str) -> Result<Arc<Repository>, http::Reject> {
        self.repository(name).ok_or_else(|| {
            http::error(
                axum::http::StatusCode::NOT_FOUND,
                format!("repository {name:?} does not exist"),
            )
        })
    }

    /// The repository a TCP or UDP listener writes to.
    pub fn listener_repository(
        &self,
        listener: &config::ListenerConfig,
    ) -> Result<Arc<Repository>, ServerError> {
        self.repository(&listener.repository).ok_or_else(|| {
            ServerError::io(format!("listener {}", listener.listen))(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("repository {:?} does not exist", listener.repository),
            ))
        })
    }

    /// Every repository, by name.
    pub fn repositories(&self) -> Vec<Arc<Repository>> {
        self.repositories.all()
    }

    /// The pipelines created through the API.
    pub(crate) fn created_pipelines(&self) -> &created::Created<config::PipelineConfig> {
        &self.created_pipelines
    }

    /// Starts every pipeline: the configuration's and those created through the API.
    pub fn start_pipelines(&self) {
        let created = self.created_pipelines.all();
        let all = created
            .iter()
            .filter(|(name, _)| !self.config.pipelines.contains_key(*name))
            .chain(&self.config.pipelines);
        for (name, p) in all {
            self.start_pipeline(name, p.clone());
        }
    }

    /// Starts pipeline `name` (the caller checks it is new).
    pub fn start_pipeline(&self, name: &str, config: config::PipelineConfig) {
        self.pipelines.start(&self.pipeline_context, name, config);
    }

    /// The alert rules created through the API.
    pub(crate) fn created_alerts(&self) -> &created::Created<config::AlertConfig> {
        &self.created_alerts
    }

    /// The repositories created through the API.
    pub(crate) fn created_repositories(&self) -> &created::Created<config::RepositoryConfig> {
        &self.created
    }

    /// Starts every alert rule: the configuration's and those created through the API.
    pub fn start_alerts(&self) {
        let created = self.created_alerts.all();
        let all = created
            .iter()
            .filter(|(name, _)| !self.config.alerts.contains_key(*name))
            .chain(&self.config.alerts);
        for (name, a) in all {
            self.start_alert(name, a.clone());
        }
    }

    /// Starts alert rule `name` (the caller checks it is new).
    pub fn start_alert(&self, name: &str, config: config::AlertConfig) {
        self.alerts.start(&self.pipeline_context, name, config);
    }

    /// The metrics text, with the gauges read now.
    pub fn metrics_text(&self) -> String {
        let ingest = &self.metrics.ingest;
        let (inflight, limit) = self.ingest.budget.usage();
        ingest.set_state(inflight, limit);
        ingest.lag.begin_scrape();
        for repo in self.repositories() {
            ingest.set_repository(&repo.name, &repo.gauges());
            ingest.set_footprint(&repo.name, &api::footprint(&repo));
            ingest.lag.set(&repo);
        }
        self.metrics.render()
    }
}

/// Where the repositories' segments live.
pub fn store_root(config: &Config) -> std::path::PathBuf {
    config.data_dir.join("store")
}

/// The things of `kind` created through the API before: `file`'s, or the cluster's.
fn open_created<T: serde::Serialize + serde::de::DeserializeOwned + Clone>(
    kind: cluster_state::Kind,
    file: std::path::PathBuf,
    shared: &Option<Arc<cluster_state::ClusterState>>,
) -> Result<created::Created<T>, ServerError> {
    let context = format!("reading {}", file.display());
    created::Created::open(kind, file, shared.clone()).map_err(ServerError::io(context))
}

/// Opens the bus and the repositories: those of the configuration and those created through
/// the API before.
pub fn open(config: Config) -> Result<AppState, ServerError> {
    // The doors write the store's blocks to the bus; every reader here reads them back.
    eddy_store::bus_block::register();
    let log = Arc::new(Log::open(&config.data_dir)?);
    let bus = node::open_bus(&config.bus, &log)?;
    let registry = Arc::new(Registry::open(bus.clone())?);
    if bus.shared() {
        registry.follow();
    }
    let cluster_state = match bus.shared() {
        true => Some(cluster_state::ClusterState::open(bus.clone())?),
        false => None,
    };
    let directory = cluster_state
        .clone()
        .map(|state| Arc::new(directory::Directory::new(state)));
    let created_repositories = open_created(
        cluster_state::Kind::Repository,
        api::created_file(&config.data_dir),
        &cluster_state,
    )?;
    let created_alerts = open_created(
        cluster_state::Kind::AlertRule,
        alerts_api::created_file(&config.data_dir),
        &cluster_state,
    )?;
    let created_pipelines = open_created(
        cluster_state::Kind::Pipeline,
        pipelines_api::created_file(&config.data_dir),
        &cluster_state,
    )?;
    let created = created_repositories.all();
    let repositories = Arc::new(Repositories::default());
    // Rules store their notices in `_alerts`, unless it is configured or was created already.
    let has_rules = !(config.alerts.is_empty() && created_alerts.all().is_empty());
    let has_repository = config.repositories.contains_key(ALERTS_REPOSITORY)
        || created.contains_key(ALERTS_REPOSITORY);
    let system = (has_rules && !has_repository).then(|| {
        (
            ALERTS_REPOSITORY.to_string(),
            config::RepositoryConfig::default(),
        )
    });
    let all = created
        .iter()
        .filter(|(name, _)| !config.repositories.contains_key(*name))
        .chain(&config.repositories)
        .chain(system.iter().map(|(n, c)| (n, c)));
    for (name, repo) in all {
        let repo = Repository::open(
            &log,
            &bus,
            &registry,
            name,
            node::on_this_node(&config.cluster, repo.clone()),
            &config.ingest,
            &store_root(&config),
        )?;
        repositories.insert(Arc::new(repo));
    }
    let auth = auth::Auth::open(&config, &created, cluster_state.clone()).map_err(|e| {
        ServerError::Io {
            context: "reading the tokens".into(),
            source: std::io::Error::other(e.to_string()),
        }
    })?;
    let documents =
        dashboards_api::UiDocuments::open(&config.data_dir).map_err(ServerError::io(format!(
            "reading the UI's documents in {}",
            config.data_dir.display()
        )))?;
    let metrics = Metrics::new();
    let ingest = Arc::new(Ingest::new(
        config.ingest.clone(),
        config.http.max_event_bytes,
        metrics.ingest.clone(),
    ));
    let live = Hub::start(
        metrics.stream.clone(),
        config
            .live
            .max_query_bytes()
            .map_err(|problem| ConfigError {
                source_name: None,
                problems: vec![problem],
            })?,
    );
    let silences = eddy_stream::alerts::silence::Silences::open(&config.data_dir)
        .map_err(|e| ServerError::io(e.context)(e.source))?;
    let alerts = Alerts::new(silences, config.channels.clone());
    let pipeline_context = Arc::new(pipelines::Context {
        bus: bus.clone(),
        alert_duty: eddy_stream::alerts::duty::AlertDuty::for_bus(&bus),
        ingest: ingest.clone(),
        repositories: repositories.clone(),
        live: live.clone(),
        metrics: metrics.stream.clone(),
        data_dir: config.data_dir.clone(),
    });
    Ok(AppState {
        ingest,
        metrics,
        live,
        pipelines: Pipelines::default(),
        pipeline_context,
        created_pipelines,
        alerts,
        created_alerts,
        config,
        log,
        bus,
        registry,
        directory,
        followed: Mutex::new(Followed::default()),
        cluster_state,
        repositories,
        created: created_repositories,
        documents,
        auth,
        audit: audit::Audit::default(),
    })
}

/// Every HTTP route: the protocol doors' only when enabled under `[doors]`.
pub fn routes(doors: &config::DoorsConfig) -> Routes {
    let routes = Routes::default()
        .post("/api/v1/ingest/{repository}", http::ingest)
        .get("/api/v1/repositories", api::list)
        .post("/api/v1/repositories", api::create)
        .get("/api/v1/repositories/{name}", api::get)
        .get("/api/v1/repositories/{name}/events", api::events)
        .post("/api/v1/repositories/{name}/query", query::query)
        .post(
            "/api/v1/repositories/{name}/query/partial",
            cluster::partial,
        )
        .get("/api/v1/repositories/{name}/fields", fields_api::fields)
        .get("/api/v1/cluster/nodes", directory::list)
        .delete("/api/v1/cluster/nodes/{name}", directory::forget)
        .get("/api/v1/repositories/{name}/live", live_api::live)
        .get("/api/v1/tokens", tokens_api::list)
        .post("/api/v1/tokens", tokens_api::create)
        .delete("/api/v1/tokens/{id}", tokens_api::revoke)
        .get("/api/v1/channels/{name}", live_api::channel)
        .get("/api/v1/pipelines", pipelines_api::list)
        .post("/api/v1/pipelines", pipelines_api::create)
        .get("/api/v1/pipelines/{name}", pipelines_api::get)
        .delete("/api/v1/pipelines/{name}", pipelines_api::delete)
        .get("/api/v1/alerts", alerts_api::list)
        .post("/api/v1/alerts", alerts_api::create)
        .get("/api/v1/alerts/{name}", alerts_api::get)
        .delete("/api/v1/alerts/{name}", alerts_api::delete)
        .post("/api/v1/alerts/{name}/test", alerts_api::test)
        .get("/api/v1/silences", alerts_api::silences)
        .get(
            "/api/v1/notification-groups",
            alerts_api::notification_groups,
        )
        .post("/api/v1/silences", alerts_api::silence)
        .delete("/api/v1/silences/{id}", alerts_api::unsilence)
        .post("/api/v1/query/check", syntax_api::check)
        .get("/", ui_assets::index)
        .get("/assets/{*path}", ui_assets::asset)
        .get("/metrics", metrics_page)
        .get("/health", || async { "ok\n" })
        .get("/ready", ready);
    let routes = registry_api::routes(routes, "/api/v1/registry");
    let routes = dashboards_api::routes::<dashboards_api::Dashboard>(routes, "/api/v1/dashboards");
    dashboards_api::routes::<dashboards_api::SavedSearch>(routes, "/api/v1/searches")
        .when(doors.otlp.enabled, otlp_door::routes)
        .when(doors.elastic.enabled, elastic_door::routes)
        .when(doors.loki.enabled, loki_door::routes)
        .when(doors.influx.enabled, influx_door::routes)
        .when(doors.hec.enabled, hec_door::routes)
}

/// The HTTP router: [`routes`] behind the access guard.
pub fn router(state: Arc<AppState>) -> Router {
    let (router, unruled) = routes(&state.config.doors).into_router();
    for route in unruled {
        tracing::error!(
            route,
            "a route without an access rule: the guard refuses it"
        );
    }
    router
        // Every route's access rule, before its handler (routes only: a 404 needs no token).
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access::guard,
        ))
        // The ingest handler bounds its body itself, charging the budget as bytes arrive.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(axum::middleware::map_request_with_state(
            state.clone(),
            http_door::time_bodies,
        ))
        .with_state(state)
}

/// `GET /metrics`: the OpenMetrics text.
async fn metrics_page(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
) -> axum::response::Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics_text(),
    )
        .into_response()
}

/// `GET /ready`: 200 while every repository's partitions take appends; 503 naming those that
/// do not (a failed write or fsync stops a partition until restart).
async fn ready(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
) -> axum::response::Response {
    let failures: Vec<String> = state
        .repositories()
        .iter()
        .flat_map(|repo| {
            repo.topic.partitions().iter().filter_map(move |p| {
                p.failure()
                    .map(|why| format!("{} partition {}: {why}", repo.name, p.id()))
            })
        })
        .collect();
    if failures.is_empty() {
        "ready\n".into_response()
    } else {
        (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready:\n{}\n", failures.join("\n")),
        )
            .into_response()
    }
}

/// Where the doors listen, once bound (port 0 resolved).
#[derive(Debug, Clone)]
pub struct Bound {
    /// The HTTP door.
    pub http: std::net::SocketAddr,
    /// Whether the HTTP door serves HTTPS.
    pub tls: bool,
    /// TCP listeners, in configuration order.
    pub tcp: Vec<std::net::SocketAddr>,
    /// Whether each TCP listener serves TLS, in the same order.
    pub tcp_tls: Vec<bool>,
    /// UDP listeners, in configuration order.
    pub udp: Vec<std::net::SocketAddr>,
}

/// Serves until `shutdown` resolves; then stops accepting, finishes batches in flight (for up
/// to `shutdown_timeout`, then cuts what is still open) and closes the bus. `on_listen` is
/// told the bound addresses (useful with port 0).
pub async fn serve(
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    on_listen: impl FnOnce(&Bound),
) -> Result<(), ServerError> {
    let state = Arc::new(tokio::task::block_in_place(|| open(config))?);
    exposure::check(&state.config, &exposure::token_holders(&state))?;
    let tls =
        tokio::task::block_in_place(|| eddy_ingest::tls::Certificates::load(&state.config.tls))?;
    state.audit.start(Arc::downgrade(&state));
    let http_door = http_door::HttpDoor::bind(state.clone(), tls.clone()).await?;
    if let Some(directory) = &state.directory {
        let (config, at) = (&state.config, http_door.local_addr());
        tokio::task::block_in_place(|| node::announce(config, directory, at, tls.is_some()))?;
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut doors = tokio::task::JoinSet::new();
    let mut bound = Bound {
        http: http_door.local_addr(),
        tls: tls.is_some(),
        tcp: Vec::new(),
        tcp_tls: Vec::new(),
        udp: Vec::new(),
    };
    if let Some(tls) = &tls {
        doors.spawn(
            tls.clone()
                .watch(state.ingest.metrics.clone(), stop_rx.clone()),
        );
    }
    for l in &state.config.tcp {
        let repo = state.listener_repository(l)?;
        let door_tls = tls.clone().filter(|_| l.serves_tls(true));
        bound.tcp_tls.push(door_tls.is_some());
        let door = TcpDoor::bind(state.ingest.clone(), repo, l.clone(), door_tls)
            .await?
            .with_token_check(Arc::new(auth::ListenerTokens(Arc::downgrade(&state))));
        bound.tcp.push(door.local_addr());
        doors.spawn(door.run(stop_rx.clone()));
    }
    for l in &state.config.udp {
        let repo = state.listener_repository(l)?;
        let door = UdpDoor::bind(state.ingest.clone(), repo, l.clone()).await?;
        bound.udp.push(door.local_addr());
        doors.spawn(door.run(stop_rx.clone()));
    }
    for c in &state.config.amqp {
        let repo = state.repository(&c.repository).ok_or_else(|| {
            ServerError::io(format!("AMQP collector {}", c.name()))(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("repository {:?} does not exist", c.repository),
            ))
        })?;
        let collector = AmqpCollector::new(state.ingest.clone(), repo, c.clone());
        doors.spawn(collector.run(stop_rx.clone()));
    }
    let maintenance = start_maintenance(state.clone());
    let lag_watch = lag::start(state.clone());
    state.start_pipelines();
    state.start_alerts();
    let follower = follow::start(&state);
    tracing::info!(http = %bound.http, tls = bound.tls, tcp = ?bound.tcp, udp = ?bound.udp, amqp = state.config.amqp.len(), repositories = state.repositories().len(), "eddy serve: doors open");
    on_listen(&bound);
    doors.spawn(http_door.run(stop_rx.clone()));
    shutdown.await;
    tracing::info!("eddy serve: stopping the doors");
    let _ = stop_tx.send(true);
    close_doors(doors, state.config.shutdown_timeout).await;
    tracing::info!("eddy serve: doors closed; stopping the digests and closing the bus");
    maintenance.stop();
    lag_watch.stop();
    if let Some(follower) = follower {
        follower.stop();
    }
    tokio::task::block_in_place(|| {
        state.audit.stop();
        state.pipelines.stop_all();
        state.alerts.stop_all();
        state.live.stop();
        for repo in state.repositories() {
            repo.stop_digest();
        }
    });
    drop(state);
    Ok(())
}

/// Waits for the doors to finish what they have read, up to `deadline`; then cuts the
/// connections still open. A request cut is never acknowledged: its answer is not sent,
/// though a store already under way completes (the bus closes only when it is done).
async fn close_doors(mut doors: tokio::task::JoinSet<()>, deadline: std::time::Duration) {
    let finished = tokio::time::timeout(deadline, async {
        while doors.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        tracing::warn!(
            doors = doors.len(),
            shutdown_timeout = %eddy_event::units::format_duration(deadline),
            "eddy serve: cutting the connections still open at the shutdown deadline"
        );
        // Dropping a door's task drops its connections' tasks with it.
        doors.shutdown().await;
    }
}

/// The store's background care (retention, merging) of every repository, every 30 s.
fn start_maintenance(state: Arc<AppState>) -> periodic::Periodic {
    let every = std::time::Duration::from_secs(30);
    periodic::Periodic::start("store-maintenance", every, false, move || {
        for repo in state.repositories() {
            match eddy_store::maintenance::run_once(&repo.store, eddy_log::now_ns()) {
                Ok(o) if o.deleted + o.merged > 0 => {
                    tracing::info!(repository = %repo.name, deleted = o.deleted, deleted_bytes = o.deleted_bytes, merged = o.merged, "store maintenance")
                }
                Ok(_) => {}
                Err(e) => tracing::error!(repository = %repo.name, "store maintenance failed: {e}"),
            }
        }
    })
}

/// A future that resolves on SIGINT or SIGTERM. The handlers are installed when this is
/// called (inside a Tokio runtime), not when the future is first polled, so a signal sent as
/// soon as the server announces its address is not lost to the default action.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    #[cfg(unix)]
    let int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok();
    async move {
        #[cfg(unix)]
        {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(term) => {},
                () = wait(int) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("eddy serve: shutdown signal received");
    }
}
