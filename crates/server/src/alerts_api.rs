//! `/api/v1/alerts`: list, create, describe (each group's state), delete and test alert rules;
//! `/api/v1/silences`: list, add and remove silences; `/api/v1/notification-groups`: the
//! channels that group notices across rules, and their groups.
//! Rules created here are kept in `alerts.json` in the data directory (on a shared bus, in the
//! cluster's shared state, and every node runs them) and start again with the server; those of the configuration file cannot be deleted here. The first rule
//! creates the system repository `_alerts` that notices are stored in.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use eddy_stream::alerts;
pub use eddy_stream::alerts::ALERTS_REPOSITORY;

use crate::config::{AlertConfig, RepositoryConfig};
use crate::http::{error, Reject};
use crate::AppState;

/// Where rules created through the API are kept.
pub fn created_file(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("alerts.json")
}

/// `GET /api/v1/alerts`.
pub async fn list(State(state): State<Arc<AppState>>) -> Response {
    Json(serde_json::json!({ "alerts": state.alerts.describe(None) })).into_response()
}

/// `GET /api/v1/alerts/{name}`.
pub async fn get(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
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
pub async fn create(State(state): State<Arc<AppState>>, body: axum::body::Bytes) -> Response {
    let made = tokio::task::spawn_blocking(move || create_alert(&state, &body)).await;
    match made {
        Ok(Ok(v)) => crate::access::created(v),
        Ok(Err(r)) => r.into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn create_alert(state: &Arc<AppState>, body: &[u8]) -> Result<serde_json::Value, Reject> {
    let invalid = |e: String| error(StatusCode::BAD_REQUEST, format!("invalid alert: {e}"));
    let (name, config): (String, AlertConfig) = crate::api::named(body).map_err(invalid)?;
    let mut problems = config.problems(&name);
    problems.extend(state.alerts.channel_problems(&name, &config));
    crate::api::refuse_problems(state, "alert", &name, problems, &config.from)?;
    let created = state.created_alerts();
    let mut held = created.changing();
    let exists = || {
        error(
            StatusCode::CONFLICT,
            format!("alert {name:?} already exists"),
        )
    };
    if state.alerts.contains(&name) || created.contains(&held, &name) {
        return Err(exists());
    }
    if state.repository(ALERTS_REPOSITORY).is_none() {
        state.create_repository(ALERTS_REPOSITORY, RepositoryConfig::default())?;
    }
    match created.add(&mut held, &name, config.clone()) {
        Ok(true) => {}
        Ok(false) => return Err(exists()),
        Err(e) => return Err(crate::api::unkept("keep the alert", e)),
    }
    state.start_alert(&name, config);
    Ok(state.alerts.describe(Some(&name)).pop().unwrap_or_default())
}

/// `DELETE /api/v1/alerts/{name}`: stops it and forgets it with its memory (what it stored
/// in `_alerts` stays).
pub async fn delete(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
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
    let created = state.created_alerts();
    match created.remove(&mut created.changing(), name) {
        Ok(true) => {}
        Ok(false) => return Err(not_found(name)),
        Err(e) => return Err(crate::api::unkept("forget the alert", e)),
    }
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

/// The body of `POST /api/v1/alerts/{name}/test`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestRange {
    /// Start: RFC 3339 or a relative time (`24h`).
    pub start: String,
    /// End: RFC 3339, a relative time or `now` (default).
    #[serde(default)]
    pub end: Option<String>,
}

/// `POST /api/v1/alerts/{name}/test` `{"start": "24h", "end": "now"}`: the notices rule `name`
/// would have made over the range, evaluated every `every` from `start`.
pub async fn test(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let done = tokio::task::spawn_blocking(move || replay(&state, &name, &body)).await;
    match done {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(r)) => r.into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn replay(state: &AppState, name: &str, body: &[u8]) -> Result<serde_json::Value, Reject> {
    let bad = |e: String| error(StatusCode::BAD_REQUEST, e);
    let range: TestRange =
        serde_json::from_slice(body).map_err(|e| bad(format!("invalid range: {e}")))?;
    let start = crate::query::parse_time(&range.start).map_err(|e| bad(format!("start: {e}")))?;
    let end = crate::query::parse_time(range.end.as_deref().unwrap_or("now"))
        .map_err(|e| bad(format!("end: {e}")))?;
    if end <= start {
        return Err(bad(format!(
            "the range is empty: start {:?} is not before end",
            range.start
        )));
    }
    let config = state.alerts.config(name).ok_or_else(|| not_found(name))?;
    let repo = state.repository(&config.from).ok_or_else(|| {
        error(
            StatusCode::NOT_FOUND,
            format!("repository {:?} does not exist", config.from),
        )
    })?;
    let replayed = alerts::replay::replay(name, &config, &repo.store, start, end)
        .map_err(|e| bad(e.to_string()))?;
    Ok(serde_json::json!({
        "alert": name,
        "start": start,
        "end": end,
        "evaluations": replayed.evaluations,
        "events": replayed.events,
        "notices": replayed.notices,
        "warnings": replayed.warnings,
    }))
}

/// The body of `POST /api/v1/silences`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSilence {
    /// `label=value`, `label!=value`, `label=~regex`, `label!~regex`; `alert` is the rule.
    pub matchers: Vec<String>,
    /// How long it lasts (`2h`), or …
    #[serde(default)]
    pub duration: Option<String>,
    /// … when it ends (RFC 3339).
    #[serde(default)]
    pub ends_at: Option<String>,
    /// Why, by whom.
    #[serde(default)]
    pub comment: String,
}

/// `GET /api/v1/notification-groups`: each channel that groups notices across rules, with
/// its settings and the groups it holds (what waits, what still fires).
pub async fn notification_groups(State(state): State<Arc<AppState>>) -> Response {
    Json(serde_json::json!({ "channels": state.alerts.notification_groups() })).into_response()
}

/// `GET /api/v1/silences`: every silence, with whether it is still in force.
pub async fn silences(State(state): State<Arc<AppState>>) -> Response {
    let now = eddy_event::time::now_ns();
    let list: Vec<serde_json::Value> = state
        .alerts
        .silences()
        .list()
        .into_iter()
        .map(|s| {
            let active = now < s.ends_at;
            let mut v = serde_json::to_value(s).unwrap_or_default();
            v["active"] = active.into();
            v
        })
        .collect();
    Json(serde_json::json!({ "silences": list })).into_response()
}

/// `POST /api/v1/silences` `{"matchers": ["alert=errors", "host=web-1"], "duration": "2h"}`:
/// `201` with the silence (its `id`), `400` naming every problem.
pub async fn silence(State(state): State<Arc<AppState>>, body: axum::body::Bytes) -> Response {
    let made = tokio::task::spawn_blocking(move || add_silence(&state, &body)).await;
    match made {
        Ok(Ok(v)) => crate::access::created(v),
        Ok(Err(r)) => r.into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn add_silence(state: &AppState, body: &[u8]) -> Result<serde_json::Value, Reject> {
    let bad = |e: String| error(StatusCode::BAD_REQUEST, format!("invalid silence: {e}"));
    let new: NewSilence = serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
    let now = eddy_event::time::now_ns();
    let mut problems = Vec::new();
    let mut matchers = Vec::new();
    for m in &new.matchers {
        match alerts::silence::Matcher::parse(m) {
            Ok(m) => matchers.push(m),
            Err(e) => problems.push(e),
        }
    }
    if new.matchers.is_empty() {
        problems.push("give at least one matcher (a silence of everything is not one)".into());
    }
    let ends_at = match (&new.duration, &new.ends_at) {
        (Some(d), None) => match humantime::parse_duration(d) {
            Ok(d) if !d.is_zero() => {
                Some(now.saturating_add(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)))
            }
            _ => {
                problems.push(format!("duration {d:?} is not a duration above 0"));
                None
            }
        },
        (None, Some(t)) => match crate::query::parse_time(t) {
            Ok(t) if t > now => Some(t),
            Ok(_) => {
                problems.push(format!("ends_at {t:?} is not in the future"));
                None
            }
            Err(e) => {
                problems.push(format!("ends_at: {e}"));
                None
            }
        },
        _ => {
            problems.push("give exactly one of duration or ends_at".into());
            None
        }
    };
    let (Some(ends_at), true) = (ends_at, problems.is_empty()) else {
        return Err(bad(problems.join("; ")));
    };
    let silence = alerts::silence::Silence {
        id: eddy_event::new_id(now).simple().to_string(),
        matchers,
        starts_at: now,
        ends_at,
        comment: new.comment,
    };
    state.alerts.silences().add(silence.clone()).map_err(|e| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("could not keep the silence: {e}"),
        )
    })?;
    Ok(serde_json::to_value(silence).unwrap_or_default())
}

/// `DELETE /api/v1/silences/{id}`: the silence ends now (its rules send `silence_expired`).
pub async fn unsilence(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    let done =
        tokio::task::spawn_blocking(move || state.alerts.silences().remove(&id).map(|f| (f, id)))
            .await;
    match done {
        Ok(Ok((true, _))) => StatusCode::NO_CONTENT.into_response(),
        Ok(Ok((false, id))) => error(
            StatusCode::NOT_FOUND,
            format!("silence {id:?} does not exist"),
        )
        .into_response(),
        Ok(Err(e)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("could not forget the silence: {e}"),
        )
        .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
