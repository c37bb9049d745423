//! `/api/v1/tokens` (scope `admin`): make, list and revoke tokens.
//!
//! - `POST /api/v1/tokens` with `{"scopes": ["ingest:web", "read:web"], "name": "ci",
//!   "expires": "30d", "limits": {"requests_per_second": 50}}` (every key but `scopes`
//!   optional; `expires` is a duration from now or an RFC 3339 time): `201` with the token's
//!   id, name, scopes, created, expires and its `secret`, shown this once (only its SHA-256 is
//!   kept).
//! - `GET /api/v1/tokens`: `{"tokens": [...]}` without secrets: those made here
//!   (`"source": "api"`) and those of the configuration file (`"source": "config"`).
//! - `DELETE /api/v1/tokens/{id}`: `204`; the token stops working at once.
//!
//! Each is recorded in the audit (`token.create`, `token.revoke`) with the new or revoked
//! token's id.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use crate::access::AuditTarget;
use crate::auth::CreateError;
use crate::http::{error, Reject};
use crate::limits::TokenLimits;
use crate::AppState;

/// The body of `POST /api/v1/tokens`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    /// Its scopes.
    pub scopes: Vec<String>,
    /// A name for people (default: empty).
    #[serde(default)]
    pub name: String,
    /// When it stops working: a duration from now (`30d`) or an RFC 3339 time.
    pub expires: Option<String>,
    /// Its own limits.
    #[serde(default)]
    pub limits: TokenLimits,
}

/// The longest token name, in characters.
pub const MAX_NAME_CHARS: usize = 200;

fn expiry(text: &str) -> Result<i64, String> {
    let now = eddy_log::now_ns();
    let at = match eddy_event::units::parse_duration(text) {
        Ok(d) => now.saturating_add(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
        Err(_) => eddy_event::units::parse_time(text).map_err(|e| {
            format!("expires: {text:?} is neither a duration such as 30d nor a time ({e})")
        })?,
    };
    if at <= now {
        return Err(format!("expires: {text:?} is not in the future"));
    }
    Ok(at / 1_000_000_000)
}

fn rejected(e: CreateError) -> Reject {
    let status = match &e {
        CreateError::Invalid(_) => StatusCode::BAD_REQUEST,
        CreateError::NotFound(_) => StatusCode::NOT_FOUND,
        CreateError::Io(_) | CreateError::Shared(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    error(status, e.to_string())
}

/// `POST /api/v1/tokens`.
pub async fn create(State(state): State<Arc<AppState>>, body: axum::body::Bytes) -> Response {
    let request: CreateRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("invalid token request: {e}"),
            )
            .into_response()
        }
    };
    let mut problems = request.limits.problems("limits");
    if request.name.chars().count() > MAX_NAME_CHARS || request.name.contains('\0') {
        problems.push(format!(
            "name: at most {MAX_NAME_CHARS} characters, without NUL"
        ));
    }
    let expires = match request.expires.as_deref().map(expiry).transpose() {
        Ok(e) => e,
        Err(e) => {
            problems.push(e);
            None
        }
    };
    if !problems.is_empty() {
        return error(StatusCode::BAD_REQUEST, problems.join("; ")).into_response();
    }
    if let Err(refused) = crate::exposure::refuse_new_tokens(&state.config, "a token made now") {
        return refused.into_response();
    }
    let made = tokio::task::spawn_blocking(move || {
        state
            .auth
            .create(request.name, request.scopes, expires, request.limits)
    })
    .await;
    match made {
        Ok(Ok((record, secret))) => {
            let mut body = record.describe();
            body["secret"] = json!(secret);
            let mut response = (StatusCode::CREATED, Json(body)).into_response();
            response.extensions_mut().insert(AuditTarget(record.id));
            response
        }
        Ok(Err(e)) => rejected(e).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// `GET /api/v1/tokens`.
pub async fn list(State(state): State<Arc<AppState>>) -> Response {
    Json(json!({ "tokens": state.auth.list() })).into_response()
}

/// `DELETE /api/v1/tokens/{id}`.
pub async fn revoke(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    if id.starts_with("config:") {
        return error(
            StatusCode::CONFLICT,
            format!("{id} is set in the configuration: remove it there and restart"),
        )
        .into_response();
    }
    match tokio::task::spawn_blocking(move || state.auth.revoke(&id)).await {
        Ok(Ok(_)) => StatusCode::NO_CONTENT.into_response(),
        Ok(Err(e)) => rejected(e).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
