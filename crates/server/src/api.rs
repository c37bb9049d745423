//! The repository API: `GET /api/v1/repositories`, `GET /api/v1/repositories/{name}` and
//! `POST /api/v1/repositories` (`{"name": "web", "partitions": 4, "tokens": [...]}`; every key
//! but `name` optional). Needs one of `http.admin_tokens` when any is configured.
//!
//! Repositories created here are kept in `<data_dir>/repositories.json` (replaced atomically),
//! so they come back after a restart, or on a shared bus in the cluster's shared state, so that
//! every node has them ([`crate::created`]); repositories in the configuration file win over
//! them.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use eddy_ingest::Repository;
use serde_json::json;

use crate::config::RepositoryConfig;
use crate::http::{error, Reject};
use crate::AppState;

/// The file of API-created repositories in a data directory.
pub fn created_file(data_dir: &FsPath) -> PathBuf {
    data_dir.join("repositories.json")
}

/// Every problem of a new `kind` (a pipeline, an alert rule) named `name` that reads repository
/// `from`, its settings' own `problems` among them, in one `400`.
pub(crate) fn refuse_problems(
    state: &AppState,
    kind: &'static str,
    name: &str,
    mut problems: Vec<String>,
    from: &str,
) -> Result<(), Reject> {
    if let Err(e) = eddy_log::validate_name(kind, name) {
        problems.insert(0, e.to_string());
    }
    if state.repository(from).is_none() {
        problems.push(format!("repository {from:?} does not exist"));
    }
    match problems.is_empty() {
        true => Ok(()),
        false => Err(error(
            StatusCode::BAD_REQUEST,
            format!("invalid {kind}: {}", problems.join("; ")),
        )),
    }
}

/// A `500` or `503` saying what could not be done (`keep the pipeline`) when a creation or
/// removal could not be kept.
pub(crate) fn unkept(what: &str, e: crate::created::KeepError) -> Reject {
    let status = match e {
        crate::created::KeepError::File(_) => StatusCode::INTERNAL_SERVER_ERROR,
        crate::created::KeepError::Shared(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    error(status, format!("cannot {what}: {e}"))
}

/// A creation request: `name`, then the settings of the configuration file (unknown keys
/// refused).
pub(crate) fn named<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<(String, T), String> {
    let mut request: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let name = match request.remove("name") {
        Some(serde_json::Value::String(name)) => name,
        _ => return Err("\"name\" (a string) is required".into()),
    };
    let settings =
        serde_json::from_value(serde_json::Value::Object(request)).map_err(|e| e.to_string())?;
    Ok((name, settings))
}

/// A repository's settings, what its bus holds and what its store holds on this node. On a
/// shared bus the partitions and events are the brokers' (asked now); `bus_bytes` is what this
/// node's disk holds of the bus, none on Kafka.
fn describe(repo: &Repository) -> serde_json::Value {
    let info = repo.topic.info();
    let (partitions, events) = match repo.bus.shared() {
        true => {
            let count = repo.bus.partition_count(&info.name).unwrap_or(0);
            let events: u64 = (0..count)
                .filter_map(|p| repo.bus.offsets(&info.name, p).ok())
                .map(|(first, end)| end - first)
                .sum();
            (count as usize, events)
        }
        false => (
            info.partitions.len(),
            info.partitions
                .iter()
                .map(|p| p.end_offset - p.start_offset)
                .sum(),
        ),
    };
    json!({
        "name": repo.name,
        "topic": info.name,
        "bus": repo.bus.kind(),
        "partitions": partitions,
        "events": events,
        "tokens": repo.config.tokens.len(),
        "max_tag_values": repo.config.max_tag_values,
        "tag_buckets": repo.config.tag_buckets,
        "retention": repo.config.retention,
        "retention_size": repo.config.retention_size,
        "bus_bytes": info.partitions.iter().map(|p| p.size_bytes).sum::<u64>(),
        "store": store_stats(&repo.store.catalogue()),
        "footprint": footprint(repo),
    })
}

/// What a repository takes on disk, by part, and its raw bytes over all of it.
pub(crate) fn footprint(repo: &Repository) -> eddy_ingest::metrics::Footprint {
    let bus_bytes = repo
        .topic
        .info()
        .partitions
        .iter()
        .map(|p| p.size_bytes)
        .sum();
    let catalogue = repo.store.catalogue();
    let wip = repo.store.work_in_progress();
    let segment_bytes: u64 = catalogue.segments.values().map(|e| e.file_bytes).sum();
    let raw_bytes = catalogue
        .segments
        .values()
        .map(|e| e.info.raw_bytes)
        .sum::<u64>()
        + wip.raw_bytes;
    let total = bus_bytes + segment_bytes + wip.file_bytes + catalogue.encoded_len() as u64;
    eddy_ingest::metrics::Footprint {
        bus_bytes,
        segment_bytes,
        work_in_progress_bytes: wip.file_bytes,
        catalogue_bytes: catalogue.encoded_len() as u64,
        raw_bytes,
        unsealed_events: wip.events,
        ratio: if total == 0 {
            0.0
        } else {
            raw_bytes as f64 / total as f64
        },
    }
}

/// What the sealed segments hold and take on disk (the UI's repositories page).
fn store_stats(catalogue: &eddy_store::catalogue::Catalogue) -> serde_json::Value {
    let entries = catalogue.segments.values();
    let raw: u64 = entries.clone().map(|e| e.info.raw_bytes).sum();
    let on_disk: u64 = entries.clone().map(|e| e.file_bytes).sum();
    json!({
        "segments": catalogue.segments.len(),
        "events": entries.map(|e| e.info.count).sum::<u64>(),
        "raw_bytes": raw,
        "bytes_on_disk": on_disk,
        "ratio": if on_disk == 0 { 0.0 } else { raw as f64 / on_disk as f64 },
    })
}

/// `GET /api/v1/repositories`.
pub async fn list(State(state): State<Arc<AppState>>) -> Response {
    // Describing may ask the brokers: off the async threads.
    let repos = tokio::task::spawn_blocking(move || {
        state
            .repositories()
            .iter()
            .map(|r| describe(r))
            .collect::<Vec<_>>()
    })
    .await;
    match repos {
        Ok(repos) => Json(json!({ "repositories": repos })).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// `GET /api/v1/repositories/{name}`.
pub async fn get(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    let repo = match state.existing_repository(&name) {
        Ok(repo) => repo,
        Err(r) => return r.into_response(),
    };
    match tokio::task::spawn_blocking(move || describe(&repo)).await {
        Ok(description) => Json(description).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// `POST /api/v1/repositories`.
pub async fn create(State(state): State<Arc<AppState>>, body: axum::body::Bytes) -> Response {
    match create_repository(state, body).await {
        Ok(v) => crate::access::created(v),
        Err(r) => r.into_response(),
    }
}

async fn create_repository(
    state: Arc<AppState>,
    body: axum::body::Bytes,
) -> Result<serde_json::Value, Reject> {
    let invalid = |e: String| error(StatusCode::BAD_REQUEST, format!("invalid repository: {e}"));
    let (name, config): (String, RepositoryConfig) = named(&body).map_err(invalid)?;
    let mut problems = Vec::new();
    if let Err(e) = eddy_log::validate_name("repository", &name) {
        problems.push(e.to_string());
    }
    problems.extend(config.check(&name));
    if !problems.is_empty() {
        return Err(invalid(problems.join("; ")));
    }
    if !config.tokens.is_empty() || !config.read_tokens.is_empty() {
        crate::exposure::refuse_new_tokens(
            &state.config,
            &format!("repositories.{name}.tokens of this request"),
        )?;
    }
    tokio::task::spawn_blocking(move || state.create_repository(&name, config))
        .await
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

impl AppState {
    /// Creates a repository, keeps it (in the data directory, or in the cluster's shared state
    /// for every node) and returns its description.
    pub(crate) fn create_repository(
        &self,
        name: &str,
        config: RepositoryConfig,
    ) -> Result<serde_json::Value, Reject> {
        let created = self.created_repositories();
        let mut held = created.changing();
        let exists = || {
            error(
                StatusCode::CONFLICT,
                format!("repository {name:?} already exists"),
            )
        };
        if self.repository(name).is_some() || created.contains(&held, name) {
            return Err(exists());
        }
        let unavailable = |e: String| error(StatusCode::SERVICE_UNAVAILABLE, e);
        if self.cluster_state.is_some() {
            // Record first: the journal decides which of two nodes' creations stands before
            // either makes the topic, so the topic has the winner's settings.
            match created.add(&mut held, name, config) {
                Ok(true) => {}
                Ok(false) => return Err(exists()),
                Err(e) => return Err(unavailable(format!("could not record the repository: {e}"))),
            }
            drop(held);
            self.follow_shared_state();
            let repo = self.repository(name).ok_or_else(|| {
                unavailable(format!(
                    "repository {name:?} is recorded for the cluster but could not be opened on \
                     this node (its log says why; it is tried again as the cluster's state changes)"
                ))
            })?;
            tracing::info!(repository = name, "repository created through the API");
            return Ok(describe(&repo));
        }
        // Open first: a topic that cannot be made must not leave a repository on record.
        let repo = self
            .open_repository(name, &config)
            .map_err(|e| unavailable(format!("could not create the topic: {e}")))?;
        match created.add(&mut held, name, config.clone()) {
            Ok(true) => {}
            Ok(false) => return Err(exists()),
            Err(e) => return Err(unavailable(format!("could not record the repository: {e}"))),
        }
        let description = describe(&repo);
        self.auth.add_repository_tokens(name, &config);
        self.repositories.insert(repo);
        tracing::info!(repository = name, "repository created through the API");
        Ok(description)
    }

    /// Opens repository `name` on this node (its topic made if needed).
    pub(crate) fn open_repository(
        &self,
        name: &str,
        config: &RepositoryConfig,
    ) -> Result<Arc<Repository>, eddy_ingest::IngestError> {
        let repo = Repository::open(
            &self.log,
            &self.bus,
            &self.registry,
            name,
            crate::node::on_this_node(&self.config.cluster, config.clone()),
            &self.config.ingest,
            &crate::store_root(&self.config),
        )?;
        Ok(Arc::new(repo))
    }
}

/// `GET /api/v1/repositories/{name}/events?start=…&end=…&tag=k=v&token=…&limit=…`: the stored
/// events (segments and work in progress) in a time range with the given tags and holding the
/// given tokens (whole words), as JSON with what the scan skipped and any damaged block it met. The query
/// language (a later issue) builds on the same scan.
pub async fn events(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let repo = match state.existing_repository(&name) {
        Ok(repo) => repo,
        Err(r) => return r.into_response(),
    };
    let (scan, limit) = match scan_of(query.as_deref().unwrap_or("")) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, e).into_response(),
    };
    let read = tokio::task::spawn_blocking(move || {
        let (mut events, stats, truncated) =
            repo.store
                .read_matching(&scan, |e| has_tokens(e, &scan.tokens), limit);
        events.sort_by_key(|e| (e.timestamp, e.id));
        events.truncate(limit);
        json!({ "count": events.len(), "truncated": truncated, "events": events, "stats": stats })
    })
    .await;
    match read {
        Ok(body) => Json(body).into_response(),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the scan failed: {e}"),
        )
        .into_response(),
    }
}

/// Whether `event` holds every one of `tokens`.
fn has_tokens(event: &eddy_event::Event, tokens: &[String]) -> bool {
    if tokens.is_empty() {
        return true;
    }
    let mut found = vec![false; tokens.len()];
    eddy_store::event_tokens(event, |t| {
        if let Some(i) = tokens.iter().position(|x| x == t) {
            found[i] = true;
        }
    });
    found.iter().all(|&f| f)
}

/// Reads the scan parameters of [`events`].
fn scan_of(query: &str) -> Result<(eddy_store::Scan, usize), String> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query).map_err(|e| format!("bad query string: {e}"))?;
    let mut scan = eddy_store::Scan::all();
    let mut limit = 10_000;
    for (k, v) in pairs {
        match k.as_str() {
            "start" => {
                scan.start = eddy_event::units::parse_time(&v).map_err(|e| format!("start: {e}"))?
            }
            "end" => {
                scan.end = eddy_event::units::parse_time(&v).map_err(|e| format!("end: {e}"))?
            }
            "tag" => match v.split_once('=') {
                Some((name, value)) => scan
                    .tags
                    .push((name.trim_start_matches('#').to_string(), value.to_string())),
                None => return Err(format!("tag {v:?}: expected name=value")),
            },
            "token" => eddy_store::text_tokens(&v, |t| scan.tokens.push(t.to_string())),
            "limit" => {
                limit = v
                    .parse()
                    .map_err(|_| format!("limit {v:?} is not a number"))?
            }
            other => {
                return Err(format!(
                    "unknown parameter {other:?}; expected start, end, tag, token or limit"
                ))
            }
        }
    }
    Ok((scan, limit))
}
