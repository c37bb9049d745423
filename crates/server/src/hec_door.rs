//! The Splunk HTTP Event Collector door: `POST /services/collector/event` (also
//! `/services/collector` and `…/1.0`), `POST /services/collector/raw`, and
//! `GET /services/collector/health`, with `Authorization: Splunk <token>` (the repository's
//! ingest token). Events go to the repository named by their `index` if there is one, else
//! that of `[doors.hec]`. How bodies become events: [`eddy_ingest::protocols::hec`].
//!
//! Answers as HEC does, `{"text": …, "code": …}`: 200 `Success` (0) once durable; 401 `Token
//! is required` (2), 403 `Invalid token` (4), 400 `No data` (5), `Invalid data format` (6,
//! with `invalid-event-number`), `Event field is required` (12), `Event field cannot be blank`
//! (13), 413, and 503 `Server is busy` (9) with `Retry-After` under back-pressure.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use eddy_event::Event;
use eddy_ingest::protocols::hec::{self, HecError};
use eddy_ingest::{Door, Repository};
use serde_json::json;

use crate::auth::Caller;
use crate::http::{self, error, Reject};
use crate::protocol_doors::{self as doors, DoorCaller, Gatekeeping};
use crate::routes::Routes;
use crate::AppState;

/// The door's routes.
pub fn routes(routes: Routes) -> Routes {
    routes
        .post("/services/collector", event)
        .post("/services/collector/event", event)
        .post("/services/collector/event/1.0", event)
        .post("/services/collector/raw", raw)
        .post("/services/collector/raw/1.0", raw)
        .get("/services/collector/health", || async {
            Json(json!({"text": "HEC is healthy", "code": 17}))
        })
}

/// A refusal: a `Reject` (the shared path) or a HEC body error.
enum Refused {
    Reject(Reject),
    Body(HecError),
}

impl From<Reject> for Refused {
    fn from(r: Reject) -> Refused {
        Refused::Reject(r)
    }
}

async fn event(
    State(state): State<Arc<AppState>>,
    DoorCaller(caller): DoorCaller,
    headers: HeaderMap,
    body: Body,
) -> Response {
    accept(state, &caller, headers, body, None).await
}

async fn raw(
    State(state): State<Arc<AppState>>,
    Query(query): Query<BTreeMap<String, String>>,
    DoorCaller(caller): DoorCaller,
    headers: HeaderMap,
    body: Body,
) -> Response {
    accept(state, &caller, headers, body, Some(query)).await
}

async fn accept(
    state: Arc<AppState>,
    caller: &Caller,
    headers: HeaderMap,
    body: Body,
    raw: Option<BTreeMap<String, String>>,
) -> Response {
    let received = Instant::now();
    let default = state.config.doors.hec.repository.clone();
    // Admission against the door's repository (or the raw request's index) before reading.
    let named = raw.as_ref().and_then(|q| q.get("index").cloned());
    let admitted = doors::repository(&state, &state.config.doors.hec, named.as_deref())
        .and_then(|repo| doors::authorize(&state, &repo, caller, "Authorization: Splunk <token>"));
    if let Err(r) = admitted {
        let r = doors::refuse_unread(body, r).await;
        return answer(&state, &default, Err(Refused::Reject(r)));
    }
    let result = async {
        let (bytes, charged) = http::read_decoded(&state, &headers, body).await?;
        let size = bytes.len();
        let parsed = http::blocking(move || {
            let now = eddy_log::now_ns();
            match &raw {
                Some(query) => hec::raw(&bytes, query, now).map(|events| {
                    let index = query.get("index").cloned();
                    vec![(index, events)]
                }),
                None => hec::events(&bytes, now).map(group_by_index),
            }
        })
        .await?
        .map_err(Refused::Body)?;
        // Every repository written to must take the token: all or nothing.
        let mut batches: Vec<(Arc<Repository>, Vec<Event>)> = Vec::new();
        for (index, events) in parsed {
            let repo = doors::repository(&state, &state.config.doors.hec, index.as_deref())?;
            doors::authorize(&state, &repo, caller, "Authorization: Splunk <token>")?;
            match batches.iter_mut().find(|(r, _)| r.name == repo.name) {
                Some((_, batch)) => batch.extend(events),
                None => batches.push((repo, events)),
            }
        }
        let total: usize = batches.iter().map(|(_, b)| b.len()).sum();
        for (repo, events) in batches {
            let share = size * events.len() / total.max(1);
            doors::store(
                &state,
                Door::Hec,
                repo,
                events,
                share,
                received,
                Gatekeeping::Whole,
            )
            .await?;
        }
        drop(charged);
        Ok::<_, Refused>(())
    }
    .await;
    answer(&state, &default, result)
}

fn group_by_index(events: Vec<hec::HecEvent>) -> Vec<(Option<String>, Vec<Event>)> {
    let mut groups: Vec<(Option<String>, Vec<Event>)> = Vec::new();
    for e in events {
        match groups.iter_mut().find(|(i, _)| *i == e.index) {
            Some((_, batch)) => batch.push(e.event),
            None => groups.push((e.index, vec![e.event])),
        }
    }
    groups
}

/// The answer in HEC's form, counted in the door's metrics.
fn answer(state: &AppState, repository: &str, result: Result<(), Refused>) -> Response {
    let r = match result {
        Ok(()) => {
            doors::count(state, Door::Hec, repository, Ok(200));
            return Json(json!({"text": "Success", "code": 0})).into_response();
        }
        Err(Refused::Body(e)) => {
            let mut body = json!({"text": e.to_string(), "code": e.code()});
            if let Some(n) = e.event_number() {
                body["invalid-event-number"] = json!(n);
            }
            let r = error(StatusCode::BAD_REQUEST, e.to_string());
            doors::count(state, Door::Hec, repository, Err(&r));
            return (StatusCode::BAD_REQUEST, Json(body)).into_response();
        }
        Err(Refused::Reject(r)) => r,
    };
    doors::count(state, Door::Hec, repository, Err(&r));
    let (status, text, code) = match r.status() {
        StatusCode::UNAUTHORIZED => (r.status(), "Token is required".to_string(), 2),
        StatusCode::FORBIDDEN => (r.status(), "Invalid token".to_string(), 4),
        // HEC clients retry 503 "Server is busy"; eddy's 429 is that.
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => (
            StatusCode::SERVICE_UNAVAILABLE,
            "Server is busy".to_string(),
            9,
        ),
        StatusCode::NOT_FOUND => (r.status(), r.message(), 7),
        s if s.is_server_error() => (s, r.message(), 8),
        s => (s, r.message(), 6),
    };
    let mut response = (status, Json(json!({"text": text, "code": code}))).into_response();
    if let Some(after) = doors::retry_after(&r) {
        response.headers_mut().insert(header::RETRY_AFTER, after);
    }
    response
}
