//! The Influx door: `POST /api/v2/write?bucket=…&precision=…` and the 1.x
//! `POST /write?db=…&precision=…`, line protocol (`gzip` or not), into the repository named by
//! the bucket or database if there is one, else that of `[doors.influx]`. Tokens:
//! `Authorization: Token <token>` (or `Bearer`, or basic auth's password), or 1.x's `p=`.
//!
//! Answers as InfluxDB does: 204 once durable; errors as `{"code": …, "message": …}` (and
//! `"error"` for 1.x clients): 400 `invalid` naming the line and column, 401 `unauthorized`,
//! 413 `request too large`, 429/503 with `Retry-After` under back-pressure.
//! How points become events: [`eddy_ingest::protocols::influx`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use eddy_ingest::protocols::influx::{self, Precision};
use eddy_ingest::Door;
use serde_json::json;

use crate::http::{error, Reject};
use crate::protocol_doors::{self as doors, DoorCaller};
use crate::routes::Routes;
use crate::AppState;

/// The door's routes.
pub fn routes(routes: Routes) -> Routes {
    routes.post("/api/v2/write", write).post("/write", write)
}

async fn write(
    State(state): State<Arc<AppState>>,
    Query(query): Query<BTreeMap<String, String>>,
    DoorCaller(caller): DoorCaller,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let received = Instant::now();
    let named = query.get("bucket").or_else(|| query.get("db")).cloned();
    let precision = match Precision::parse(query.get("precision").map_or("ns", String::as_str)) {
        Ok(p) => p,
        Err(e) => {
            let r = doors::refuse_unread(body, error(StatusCode::BAD_REQUEST, e)).await;
            return answer_refusal(&state, &state.config.doors.influx.repository, r);
        }
    };
    let repo = match doors::repository(&state, &state.config.doors.influx, named.as_deref())
        .and_then(|repo| {
            doors::authorize(&state, &repo, &caller, "Authorization: Token <token>")?;
            Ok(repo)
        }) {
        Ok(repo) => repo,
        Err(r) => {
            let r = doors::refuse_unread(body, r).await;
            return answer_refusal(&state, &state.config.doors.influx.repository, r);
        }
    };
    let result = doors::take_whole(
        &state,
        Door::Influx,
        &repo,
        &headers,
        body,
        received,
        move |bytes| influx::points(&bytes, precision, eddy_log::now_ns()),
    )
    .await;
    match result {
        Ok(()) => {
            doors::count(&state, Door::Influx, &repo.name, Ok(204));
            StatusCode::NO_CONTENT.into_response()
        }
        Err(r) => answer_refusal(&state, &repo.name, r),
    }
}

/// A refusal as InfluxDB words it.
fn answer_refusal(state: &AppState, repository: &str, r: Reject) -> Response {
    doors::count(state, Door::Influx, repository, Err(&r));
    let code = match r.status() {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => "unauthorized",
        StatusCode::NOT_FOUND => "not found",
        StatusCode::PAYLOAD_TOO_LARGE => "request too large",
        StatusCode::TOO_MANY_REQUESTS => "too many requests",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        s if s.is_server_error() => "internal error",
        _ => "invalid",
    };
    let message = r.message();
    let mut response = (
        r.status(),
        Json(json!({"code": code, "message": message, "error": message})),
    )
        .into_response();
    if let Some(after) = doors::retry_after(&r) {
        response.headers_mut().insert(header::RETRY_AFTER, after);
    }
    response
}
