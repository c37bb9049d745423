//! `/api/v1/alerts`: list, create, describe (each group's state) and delete alert rules.
//! Rules created here are kept in `alerts.json` in the data directory and start again with
//! the server; those of the configuration file cannot be deleted here. The first rule
//! creates the system repository `_alerts` that notices are stored in.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use eddy_stream::alerts;
pub use eddy_stream::alerts::ALERTS_REPOSITORY;

use crate::config::{AlertConfig, RepositoryConfig};
use crate::http::{authorize, error, Reject};
use crate::AppState;

/// Where rules created through the API are kept.
pub fn created_file(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("alerts.json")
}

/// `GET /api/v1/alerts`.
pub async fn list(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&headers, &state.config.http.admin_tokens) {
        return r.into_response();
    }
    Json(serde_json::json!({ "alerts": state.alerts.describe(None) })).into_response()
}

/// `GET /api/v1/alerts/{name}`.
pub async fn get(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorize(&headers, &state.config.http.admin_tokens) {
        return r.into_response();
    }
    match state.alerts.describe(Some(&name)).pop() {
        Some(a) => Json(a).into_response(),
        None => not_found(&name).into_response(),
    }
}

fn not_found(name: &str) -> Reject {
    error(
        StatusCode::NOT_FOUND,
        format!("alert {name:?} does not exist"),
    )
}

/// `POST /api/v1/alerts`: `{"name": …, "from": …, "query": …, "window": …, "above": …}`.
/// Every problem of the rule is in the `400`'s message at once.
pub async fn create(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let made = tokio::task::spawn_blocking(move || create_alert(&state, &headers, &body)).await;
    match made {
        Ok(Ok(v)) => (StatusCode::CREATED, Json(v)).into_response(),
        Ok(Err(r)) => r.into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn create_alert(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<serde_json::Value, Reject> {
    authorize(headers, &state.config.http.admin_tokens)?;
    let invalid = |e: String| error(StatusCode::BAD_REQUEST, format!("invalid alert: {e}"));
    let (name, config): (String, AlertConfig) = crate::api::named(body).map_err(invalid)?;
    crate::api::refuse_problems(state, "alert", &name, config.problems(&name), &config.from)?;
    let mut created = state.created_alerts();
    if state.alerts.contains(&name) {
        return Err(error(
            StatusCode::CONFLICT,
            format!("alert {name:?} already exists"),
        ));
    }
    if state.repository(ALERTS_REPOSITORY).is_none() {
        state.create_repository(ALERTS_REPOSITORY, RepositoryConfig::default())?;
    }
    created.insert(name.clone(), config.clone());
    crate::api::save_created_or_500(
        &created_file(&state.config.data_dir),
        &created,
        "keep the alert",
    )?;
    state.start_alert(&name, config);
    Ok(state.alerts.describe(Some(&name)).pop().unwrap_or_default())
}

/// `DELETE /api/v1/alerts/{name}`: stops it and forgets it with its memory (what it stored
/// in `_alerts` stays).
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorize(&headers, &state.config.http.admin_tokens) {
        return r.into_response();
    }
    if state.config.alerts.contains_key(&name) {
        return error(
            StatusCode::CONFLICT,
            format!("alert {name:?} is in the configuration file: remove it there"),
        )
        .into_response();
    }
    let done = tokio::task::spawn_blocking(move || forget(&state, &name)).await;
    match done {
        Ok(Ok(())) => StatusCode::NO_CONTENT.into_response(),
        Ok(Err(r)) => r.into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn forget(state: &AppState, name: &str) -> Result<(), Reject> {
    let mut created = state.created_alerts();
    if created.remove(name).is_none() {
        return Err(not_found(name));
    }
    crate::api::save_created_or_500(
        &created_file(&state.config.data_dir),
        &created,
        "forget the alert",
    )?;
    state.alerts.stop(name);
    let memory = alerts::state_file(&state.config.data_dir, name);
    match std::fs::remove_file(&memory) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "the alert is stopped, but {} could not be removed: {e}",
                memory.display()
            ),
        )),
        _ => Ok(()),
    }
}
