//! `/api/v1/pipelines`: list, create, describe (with a rollup's last windows) and delete
//! pipelines. Those created here are kept in `pipelines.json` in the data directory (on a shared
//! bus, in the cluster's shared state, and every node runs them) and start again with the
//! server; those of the configuration file cannot be deleted here.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::config::PipelineConfig;
use crate::http::{error, Reject};
use crate::AppState;

/// Where pipelines created through the API are kept.
pub fn created_file(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("pipelines.json")
}

/// `GET /api/v1/pipelines`.
pub async fn list(State(state): State<Arc<AppState>>) -> Response {
    // On Kafka each lag is a few requests to the brokers: off the async workers.
    let described = tokio::task::spawn_blocking(move || {
        let mut pipelines = state.pipelines.describe(None);
        for p in &mut pipelines {
            if let (Some(name), Some(from)) = (p["name"].as_str(), p["config"]["from"].as_str()) {
                p["lag"] = json!(lag(&state, name, from));
            }
        }
        pipelines
    })
    .await;
    match described {
        Ok(pipelines) => Json(json!({ "pipelines": pipelines })).into_response(),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("listing the pipelines: {e}"),
        )
        .into_response(),
    }
}

/// Events of the source repository that pipeline `name` (consumer group `pipeline.NAME`) has
/// not committed yet, over every partition of its bus (the UI's repositories page); none if
/// the bus cannot tell.
fn lag(state: &AppState, name: &str, from: &str) -> Option<u64> {
    let repo = state.repository(from)?;
    let (bus, topic, group) = (&repo.bus, repo.topic.name(), format!("pipeline.{name}"));
    let mut lag = 0;
    for p in 0..bus.partition_count(topic).ok()? {
        let (first, next) = bus.offsets(topic, p).ok()?;
        let done = bus.committed(&group, topic, p).ok()?.unwrap_or(first);
        lag += next.saturating_sub(done);
    }
    Some(lag)
}

/// `GET /api/v1/pipelines/{name}`.
pub async fn get(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    match state.pipelines.describe(Some(&name)).pop() {
        Some(p) => Json(p).into_response(),
        None => not_found(&name).into_response(),
    }
}

fn not_found(name: &str) -> Reject {
    error(
        StatusCode::NOT_FOUND,
        format!("pipeline {name:?} does not exist"),
    )
}

/// `POST /api/v1/pipelines`: `{"name": …, "from": …, "query": …, "sinks": [...]}`.
pub async fn create(State(state): State<Arc<AppState>>, body: axum::body::Bytes) -> Response {
    // Keeping it may write to the bus: off the async threads.
    let made = tokio::task::spawn_blocking(move || create_pipeline(&state, &body)).await;
    match made {
        Ok(Ok(v)) => crate::access::created(v),
        Ok(Err(r)) => r.into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn create_pipeline(state: &Arc<AppState>, body: &[u8]) -> Result<serde_json::Value, Reject> {
    let invalid = |e: String| error(StatusCode::BAD_REQUEST, format!("invalid pipeline: {e}"));
    let (name, config): (String, PipelineConfig) = crate::api::named(body).map_err(invalid)?;
    crate::api::refuse_problems(
        state,
        "pipeline",
        &name,
        config.problems(&name),
        &config.from,
    )?;
    let created = state.created_pipelines();
    let mut held = created.changing();
    let exists = || {
        error(
            StatusCode::CONFLICT,
            format!("pipeline {name:?} already exists"),
        )
    };
    if state.pipelines.contains(&name) || created.contains(&held, &name) {
        return Err(exists());
    }
    match created.add(&mut held, &name, config.clone()) {
        Ok(true) => {}
        Ok(false) => return Err(exists()),
        Err(e) => return Err(crate::api::unkept("keep the pipeline", e)),
    }
    state.start_pipeline(&name, config);
    Ok(state
        .pipelines
        .describe(Some(&name))
        .pop()
        .unwrap_or_default())
}

/// Removes `name` from the pipelines kept in the data directory.
fn forget(state: &AppState, name: &str) -> Result<(), Reject> {
    let created = state.created_pipelines();
    match created.remove(&mut created.changing(), name) {
        Ok(true) => Ok(()),
        Ok(false) => Err(not_found(name)),
        Err(e) => Err(crate::api::unkept("forget the pipeline", e)),
    }
}

/// `DELETE /api/v1/pipelines/{name}`: stops it and forgets it (its consumer group stays).
pub async fn delete(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    if state.config.pipelines.contains_key(&name) {
        return error(
            StatusCode::CONFLICT,
            format!("pipeline {name:?} is in the configuration file: remove it there"),
        )
        .into_response();
    }
    // Forgetting it may write to the bus: off the async threads.
    let done = tokio::task::spawn_blocking(move || {
        forget(&state, &name)?;
        state.pipelines.stop(&name);
        Ok::<(), Reject>(())
    })
    .await;
    match done {
        Ok(Ok(())) => StatusCode::NO_CONTENT.into_response(),
        Ok(Err(r)) => r.into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
