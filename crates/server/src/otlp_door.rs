//! The OTLP/HTTP door: `POST /v1/logs` and `POST /v1/metrics`, protobuf
//! (`application/x-protobuf`) or JSON (`application/json`) bodies, `gzip` or not, into the
//! repository of `[doors.otlp]` with its ingest tokens as `Authorization: Bearer <token>`.
//! How records and data points become events: [`eddy_ingest::protocols::otlp`].
//!
//! Answers as OTLP/HTTP specifies, in the request's encoding: 200 with an export response,
//! whose `partial_success` counts the records or points the gatekeeper refused and says why;
//! otherwise a `google.rpc.Status`: 400 for a body that cannot be read (not retried), 401/403,
//! 413, 415, and 429 or 503 with `Retry-After` under back-pressure (retried by exporters).

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use eddy_ingest::protocols::otlp::{self, Encoding};
use eddy_ingest::Door;

use crate::auth::Caller;
use crate::http::{self, error, Reject};
use crate::protocol_doors::{self as doors, DoorCaller, Gatekeeping};
use crate::routes::Routes;
use crate::AppState;

/// The door's routes.
pub fn routes(routes: Routes) -> Routes {
    routes.post("/v1/logs", logs).post("/v1/metrics", metrics)
}

#[derive(Debug, Clone, Copy)]
enum Signal {
    Logs,
    Metrics,
}

async fn logs(
    State(state): State<Arc<AppState>>,
    DoorCaller(caller): DoorCaller,
    headers: HeaderMap,
    body: Body,
) -> Response {
    export(state, &caller, headers, body, Signal::Logs).await
}

async fn metrics(
    State(state): State<Arc<AppState>>,
    DoorCaller(caller): DoorCaller,
    headers: HeaderMap,
    body: Body,
) -> Response {
    export(state, &caller, headers, body, Signal::Metrics).await
}

async fn export(
    state: Arc<AppState>,
    caller: &Caller,
    headers: HeaderMap,
    body: Body,
    signal: Signal,
) -> Response {
    let received = Instant::now();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/x-protobuf")
        .to_ascii_lowercase();
    let Some(encoding) = Encoding::of_content_type(&content_type) else {
        let r = doors::refuse_unread(
            body,
            error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("Content-Type {content_type:?} is not OTLP's: use application/x-protobuf or application/json"),
            ),
        )
        .await;
        let repository = state.config.doors.otlp.repository.clone();
        return answer_refusal(&state, &repository, r, Encoding::Json);
    };
    let repository = state.config.doors.otlp.repository.clone();
    match accept(&state, caller, &headers, body, signal, encoding, received).await {
        Ok((status, bytes)) => {
            doors::count(&state, Door::Otlp, &repository, Ok(status.as_u16()));
            (
                status,
                [(header::CONTENT_TYPE, encoding.content_type())],
                bytes,
            )
                .into_response()
        }
        Err(r) => answer_refusal(&state, &repository, r, encoding),
    }
}

async fn accept(
    state: &Arc<AppState>,
    caller: &Caller,
    headers: &HeaderMap,
    body: Body,
    signal: Signal,
    encoding: Encoding,
    received: Instant,
) -> Result<(StatusCode, Vec<u8>), Reject> {
    let repo = match doors::repository(state, &state.config.doors.otlp, None).and_then(|repo| {
        doors::authorize(state, &repo, caller, "Authorization: Bearer <token>")?;
        Ok(repo)
    }) {
        Ok(repo) => repo,
        Err(r) => return Err(doors::refuse_unread(body, r).await),
    };
    let (bytes, charged) = http::read_decoded(state, headers, body).await?;
    let size = bytes.len();
    let events = http::blocking(move || {
        let now = eddy_log::now_ns();
        match signal {
            Signal::Logs => otlp::logs(&bytes, encoding, now),
            Signal::Metrics => otlp::metrics(&bytes, encoding, now),
        }
    })
    .await?
    .map_err(|e| error(StatusCode::BAD_REQUEST, e.to_string()))?;
    let outcome = doors::store(
        state,
        Door::Otlp,
        repo.clone(),
        events,
        size,
        received,
        Gatekeeping::PerItem,
    )
    .await?;
    drop(charged);
    let message = match outcome.refused.first() {
        Some((i, why)) => format!(
            "{} of the {} were refused; the first ({}) {why}",
            outcome.refused.len(),
            match signal {
                Signal::Logs => "log records",
                Signal::Metrics => "data points",
            },
            i + 1
        ),
        None => String::new(),
    };
    if !outcome.refused.is_empty() {
        state.ingest.metrics.rejected(
            Door::Otlp,
            &repo.name,
            eddy_ingest::metrics::RejectReason::Schema,
            outcome.refused.len(),
        );
    }
    let body = otlp::export_response(
        matches!(signal, Signal::Metrics),
        outcome.refused.len(),
        &message,
        encoding,
    );
    Ok((StatusCode::OK, body))
}

/// A refusal as a `google.rpc.Status`, with `Retry-After` where the exporter should retry.
fn answer_refusal(state: &AppState, repository: &str, r: Reject, encoding: Encoding) -> Response {
    doors::count(state, Door::Otlp, repository, Err(&r));
    let code = match r.status() {
        StatusCode::UNAUTHORIZED => 16,
        StatusCode::FORBIDDEN => 7,
        StatusCode::NOT_FOUND => 5,
        StatusCode::TOO_MANY_REQUESTS | StatusCode::PAYLOAD_TOO_LARGE => 8,
        StatusCode::SERVICE_UNAVAILABLE => 14,
        StatusCode::REQUEST_TIMEOUT => 4,
        s if s.is_server_error() => 13,
        _ => 3,
    };
    let body = otlp::status_response(code, &r.message(), encoding);
    let mut response = (
        r.status(),
        [(header::CONTENT_TYPE, encoding.content_type())],
        body,
    )
        .into_response();
    if let Some(after) = doors::retry_after(&r) {
        response.headers_mut().insert(header::RETRY_AFTER, after);
    }
    response
}
