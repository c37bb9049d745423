//! The Elasticsearch door: `POST|PUT /_bulk` and `/{index}/_bulk`, also under `/elastic`
//! (`http://host:7280/elastic` as a shipper's Elasticsearch URL), where the calls shippers
//! make first are answered so that they proceed: `GET /elastic/` (a cluster of version 8),
//! `_license`, `_xpack`, `_cluster/health`, and index templates, ILM policies and ingest
//! pipelines (accepted and ignored). Every answer carries `X-Elastic-Product: Elasticsearch`.
//!
//! An item goes to the repository named by its index if there is one, else to that of
//! `[doors.elastic]`; tokens are that repository's (`Authorization: Bearer`, `ApiKey`, or
//! basic auth's password). Items answer one by one as Filebeat, Fluent Bit and Vector expect:
//! `201 created`, `400 mapper_parsing_exception` for a broken document or one that does not
//! fit the repository's schema, `403 security_exception` for a repository the token does not
//! open, `429 es_rejected_execution_exception` under back-pressure (the whole request gets
//! 429 with `Retry-After` when no item was stored). `_id` is the event's `@id`: a retried
//! item is stored once. How documents become events: [`eddy_ingest::protocols::elastic`].

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use eddy_ingest::protocols::elastic::{self, BulkItem, ItemError};
use eddy_ingest::Door;
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::http::{self, error, Reject};
use crate::protocol_doors::{self as doors, DoorCaller, Gatekeeping};
use crate::routes::Routes;
use crate::AppState;

/// The door's routes.
pub fn routes(routes: Routes) -> Routes {
    // Setup calls a shipper makes before its first bulk request: accepted and ignored.
    let accepted = |routes: Routes, path: &str| {
        routes
            .get(path, ok_empty)
            .put(path, acknowledged)
            .post(path, acknowledged)
    };
    let routes = routes
        .post("/_bulk", bulk)
        .put("/_bulk", bulk)
        .post("/{index}/_bulk", bulk_into)
        .put("/{index}/_bulk", bulk_into)
        .post("/elastic/_bulk", bulk)
        .put("/elastic/_bulk", bulk)
        .post("/elastic/{index}/_bulk", bulk_into)
        .put("/elastic/{index}/_bulk", bulk_into)
        .get("/elastic", cluster)
        .get("/elastic/", cluster)
        .get("/elastic/_license", license)
        .get("/elastic/_xpack", xpack)
        .get("/elastic/_cluster/health", health);
    [
        "/elastic/_index_template/{name}",
        "/elastic/_template/{name}",
        "/elastic/_ilm/policy/{name}",
        "/elastic/_ingest/pipeline/{name}",
        "/elastic/_data_stream/{name}",
    ]
    .into_iter()
    .fold(routes, accepted)
}

/// The version eddy answers as: shippers of 7.17 and 8 accept it.
const VERSION: &str = "8.17.0";

fn product(mut response: Response) -> Response {
    response.headers_mut().insert(
        "x-elastic-product",
        HeaderValue::from_static("Elasticsearch"),
    );
    response
}

async fn cluster() -> Response {
    product(
        Json(json!({
            "name": "eddy",
            "cluster_name": "eddy",
            "cluster_uuid": "eddy-eddy-eddy-eddy",
            "version": {
                "number": VERSION,
                "build_flavor": "default",
                "build_type": "eddy",
                "lucene_version": "9.12.0",
                "minimum_wire_compatibility_version": "7.17.0",
                "minimum_index_compatibility_version": "7.0.0"
            },
            "tagline": "You Know, for Search"
        }))
        .into_response(),
    )
}

async fn license() -> Response {
    product(
        Json(json!({"license": {"status": "active", "uid": "eddy", "type": "basic", "mode": "basic"}}))
            .into_response(),
    )
}

async fn xpack() -> Response {
    product(
        Json(json!({"build": {}, "license": {"status": "active", "type": "basic", "mode": "basic"}, "features": {}}))
            .into_response(),
    )
}

async fn health() -> Response {
    product(Json(json!({"cluster_name": "eddy", "status": "green"})).into_response())
}

async fn ok_empty() -> Response {
    product(Json(json!({})).into_response())
}

async fn acknowledged() -> Response {
    product(Json(json!({"acknowledged": true})).into_response())
}

async fn bulk(
    State(state): State<Arc<AppState>>,
    DoorCaller(caller): DoorCaller,
    headers: HeaderMap,
    body: Body,
) -> Response {
    product(accept(state, None, &caller, headers, body).await)
}

async fn bulk_into(
    State(state): State<Arc<AppState>>,
    Path(index): Path<String>,
    DoorCaller(caller): DoorCaller,
    headers: HeaderMap,
    body: Body,
) -> Response {
    product(accept(state, Some(index), &caller, headers, body).await)
}

async fn accept(
    state: Arc<AppState>,
    path_index: Option<String>,
    caller: &Caller,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let received = Instant::now();
    let config = &state.config.doors.elastic;
    // Admission before reading: the token must open the path's (or the door's) repository.
    let first = doors::repository(&state, config, path_index.as_deref());
    let first = match first.and_then(|repo| {
        doors::authorize(
            &state,
            &repo,
            caller,
            "Authorization: Bearer <token> or ApiKey",
        )?;
        Ok(repo)
    }) {
        Ok(repo) => repo,
        Err(r) => {
            let r = doors::refuse_unread(body, r).await;
            return answer_refusal(&state, &config.repository, r);
        }
    };
    let result = async {
        let (bytes, charged) = http::read_decoded(&state, &headers, body).await?;
        let size = bytes.len();
        let max_event = state.config.http.max_event_bytes;
        let items = http::blocking(move || {
            elastic::bulk(&bytes, path_index.as_deref(), max_event, eddy_log::now_ns())
        })
        .await?
        .map_err(|e| error(StatusCode::BAD_REQUEST, e.to_string()))?;
        let answers = store_items(&state, items, caller, size, received).await;
        drop(charged);
        Ok::<_, Reject>(answers)
    }
    .await;
    match result {
        Ok(Err(r)) | Err(r) => answer_refusal(&state, &first.name, r),
        Ok(Ok((items, errors))) => {
            doors::count(&state, Door::Elastic, &first.name, Ok(200));
            let body = format!(
                "{{\"took\":{},\"errors\":{errors},\"items\":[{items}]}}",
                received.elapsed().as_millis()
            );
            ([(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
    }
}

/// Stores the items by repository; each item's answer in order (JSON, comma-separated; a
/// thousand-item answer is written, not built as values) and whether any is an error. Err: no item was stored
/// because of back-pressure (the whole request is refused, to be retried).
async fn store_items(
    state: &Arc<AppState>,
    items: Vec<BulkItem>,
    caller: &Caller,
    size: usize,
    received: Instant,
) -> Result<(String, bool), Reject> {
    let config = &state.config.doors.elastic;
    let total = items.len().max(1);
    let mut answers: Vec<Option<Result<(), ItemError>>> = vec![None; items.len()];
    let mut metadata = Vec::with_capacity(items.len());
    // Repository name → (repository, its events with their item numbers).
    let mut batches: Vec<(
        Arc<eddy_ingest::Repository>,
        Vec<usize>,
        Vec<eddy_event::Event>,
    )> = Vec::new();
    for (n, item) in items.into_iter().enumerate() {
        metadata.push((item.action, item.index.clone(), item.id));
        let event = match item.event {
            Ok(e) => e,
            Err(e) => {
                answers[n] = Some(Err(e));
                continue;
            }
        };
        let named = (!item.index.is_empty()).then_some(item.index.as_str());
        let repo = match doors::repository(state, config, named).and_then(|repo| {
            doors::authorize(state, &repo, caller, "Authorization")?;
            Ok(repo)
        }) {
            Ok(repo) => repo,
            Err(r) => {
                answers[n] = Some(Err(ItemError {
                    status: r.status().as_u16(),
                    kind: "security_exception",
                    reason: r.message(),
                }));
                continue;
            }
        };
        match batches.iter_mut().find(|(r, _, _)| r.name == repo.name) {
            Some((_, numbers, events)) => {
                numbers.push(n);
                events.push(event);
            }
            None => batches.push((repo, vec![n], vec![event])),
        }
    }
    let mut stored_any = false;
    let mut overload = None;
    for (repo, numbers, events) in batches {
        let share = size * events.len() / total;
        match doors::store(
            state,
            Door::Elastic,
            repo,
            events,
            share,
            received,
            Gatekeeping::PerItem,
        )
        .await
        {
            Ok(outcome) => {
                stored_any = true;
                for &n in &numbers {
                    answers[n] = Some(Ok(()));
                }
                for (i, why) in outcome.refused {
                    answers[numbers[i]] = Some(Err(ItemError {
                        status: 400,
                        kind: "mapper_parsing_exception",
                        reason: why,
                    }));
                }
            }
            Err(r) => {
                for &n in &numbers {
                    answers[n] = Some(Err(ItemError {
                        status: r.status().as_u16(),
                        kind: "es_rejected_execution_exception",
                        reason: r.message(),
                    }));
                }
                overload = Some(r);
            }
        }
    }
    if let Some(r) = overload.filter(|_| !stored_any) {
        return Err(r);
    }
    let mut out = String::with_capacity(answers.len() * 128);
    let mut errors = false;
    for (answer, (action, index, id)) in answers.into_iter().zip(metadata) {
        if !out.is_empty() {
            out.push(',');
        }
        let quoted = |s: &str| Value::from(s).to_string();
        let head = format!(
            "{{{}:{{\"_index\":{},\"_id\":{}",
            quoted(&action),
            quoted(&index),
            quoted(id.as_deref().unwrap_or_default())
        );
        out.push_str(&head);
        match answer.unwrap_or(Ok(())) {
            Ok(()) => out.push_str(
                ",\"status\":201,\"result\":\"created\",\"_version\":1,\"_shards\":{\"total\":1,\"successful\":1,\"failed\":0}}}",
            ),
            Err(e) => {
                errors = true;
                let error = json!({"type": e.kind, "reason": e.reason});
                out.push_str(&format!(",\"status\":{},\"error\":{error}}}}}", e.status));
            }
        }
    }
    Ok((out, errors))
}

/// A refusal of the whole request, as Elasticsearch words it.
fn answer_refusal(state: &AppState, repository: &str, r: Reject) -> Response {
    doors::count(state, Door::Elastic, repository, Err(&r));
    let kind = match r.status() {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => "security_exception",
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
            "es_rejected_execution_exception"
        }
        StatusCode::PAYLOAD_TOO_LARGE => "content_too_long_exception",
        StatusCode::NOT_FOUND => "index_not_found_exception",
        _ => "illegal_argument_exception",
    };
    let reason = r.message();
    let mut response = (
        r.status(),
        Json(json!({
            "error": {"root_cause": [{"type": kind, "reason": reason}], "type": kind, "reason": reason},
            "status": r.status().as_u16()
        })),
    )
        .into_response();
    if let Some(after) = doors::retry_after(&r) {
        response.headers_mut().insert(header::RETRY_AFTER, after);
    }
    if r.status() == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"eddy\", ApiKey, Bearer"),
        );
    }
    product(response)
}
