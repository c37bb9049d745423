//! The Loki door: `POST /loki/api/v1/push`, JSON (`application/json`, `gzip` or not) or
//! protobuf compressed with snappy (`application/x-protobuf`, what Promtail and Alloy send),
//! into the repository of `[doors.loki]`, or the one named by `X-Scope-OrgID` (the tenant) if
//! there is one. Tokens: `Authorization: Bearer <token>` or basic auth's password.
//!
//! Answers as Loki does: 204 once durable; 400 with the reason (what and where) as text; 401,
//! 403, 413; 429 or 503 with `Retry-After` under back-pressure (clients retry those).
//! How entries become events: [`eddy_ingest::protocols::loki`].

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use eddy_ingest::protocols::loki;
use eddy_ingest::Door;

use crate::http::Reject;
use crate::protocol_doors::{self as doors, DoorCaller};
use crate::routes::Routes;
use crate::AppState;

/// The door's routes.
pub fn routes(routes: Routes) -> Routes {
    routes.post("/loki/api/v1/push", push)
}

async fn push(
    State(state): State<Arc<AppState>>,
    DoorCaller(caller): DoorCaller,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let received = Instant::now();
    let tenant = headers
        .get("x-scope-orgid")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let repo = match doors::repository(&state, &state.config.doors.loki, tenant.as_deref())
        .and_then(|repo| {
            doors::authorize(&state, &repo, &caller, "Authorization: Bearer <token>")?;
            Ok(repo)
        }) {
        Ok(repo) => repo,
        Err(r) => {
            let r = doors::refuse_unread(body, r).await;
            return answer_refusal(&state, &state.config.doors.loki.repository, r);
        }
    };
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.to_ascii_lowercase().starts_with("application/json"));
    let max_body = state.config.http.max_body_bytes;
    let result = doors::take_whole(
        &state,
        Door::Loki,
        &repo,
        &headers,
        body,
        received,
        move |bytes| {
            let now = eddy_log::now_ns();
            if json {
                loki::json(&bytes, now)
            } else {
                loki::protobuf(&bytes, max_body, now)
            }
        },
    )
    .await;
    match result {
        Ok(()) => {
            doors::count(&state, Door::Loki, &repo.name, Ok(204));
            StatusCode::NO_CONTENT.into_response()
        }
        Err(r) => answer_refusal(&state, &repo.name, r),
    }
}

/// A refusal as Loki words it: the reason as text.
fn answer_refusal(state: &AppState, repository: &str, r: Reject) -> Response {
    doors::count(state, Door::Loki, repository, Err(&r));
    let mut response = (r.status(), format!("{}\n", r.message())).into_response();
    if let Some(after) = doors::retry_after(&r) {
        response.headers_mut().insert(header::RETRY_AFTER, after);
    }
    response
}
