//! Queries across nodes. Every node answers `POST /api/v1/repositories/{name}/query/partial`
//! ([`partial`]): it runs the query over its own store up to the collecting stage and returns
//! the state unfinished ([`eddy_query::Partial`], binary, `application/vnd.eddy.partial`), with
//! its name in the `eddy-node` header. A node with `[cluster] peers` answers
//! `POST /api/v1/repositories/{name}/query` by sending the query to every peer's partial
//! endpoint at once while it runs it over its own store ([`fan_out`]), merges the partial
//! answers (the merge its reading threads use) and finishes the query once.
//!
//! A peer that fails, refuses or is slower than `peer_timeout` is left out, never silently:
//! the answer's `nodes` says which nodes answered and why one did not, `complete` is `false`
//! and a warning names the missing node. The partial endpoint never fans out itself, so no
//! configuration of peers can make a query go round in circles.
//!
//! The request to a peer carries absolute times (ns), resolved once on the query node, so
//! that every node reads the same range whatever its clock says "now" is.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, LazyLock};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use eddy_query::{Answer, Options, Partial, Prepared};

use crate::http::error;
use crate::query::{check_limit, check_query_size, query_error_body, read_request};
use crate::AppState;

/// The content type of an encoded partial answer.
pub const PARTIAL_CONTENT_TYPE: &str = "application/vnd.eddy.partial";
/// The response header that names the node that answered.
pub const NODE_HEADER: &str = "eddy-node";
/// The largest partial answer read from a peer (1 GiB): a million groups with sketches fit.
const MAX_PARTIAL_BYTES: u64 = 1 << 30;

/// The body of `POST /api/v1/repositories/{name}/query/partial`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartialRequest {
    /// The query text.
    pub query: String,
    /// Earliest `@timestamp`, ns, inclusive.
    pub start: i64,
    /// Latest `@timestamp`, ns, exclusive.
    pub end: i64,
    /// Events or rows returned when the query does not say.
    pub limit: usize,
}

/// One node's part in a fanned-out answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeReport {
    /// Its name (its own, or its URL when it did not answer).
    pub name: String,
    /// Its URL (`None` for the node that ran the query).
    pub url: Option<String>,
    /// Whether its partial answer is in the answer.
    pub ok: bool,
    /// Events it read.
    pub events_scanned: u64,
    /// Why it is not, when not.
    pub error: Option<String>,
}

/// A query's answer over every node, with who answered.
#[derive(Debug)]
pub struct FannedOut {
    /// The merged, finished answer.
    pub answer: Answer,
    /// Each node, this one first, then the peers in configuration order.
    pub nodes: Vec<NodeReport>,
    /// Whether every node answered (else the answer leaves some events out).
    pub complete: bool,
}

impl FannedOut {
    /// The answer as JSON, with `nodes` and `complete` beside its usual keys.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(&self.answer).unwrap_or_default();
        if let Some(map) = v.as_object_mut() {
            map.insert("nodes".into(), serde_json::json!(self.nodes));
            map.insert("complete".into(), self.complete.into());
        }
        v
    }
}

/// `POST /api/v1/repositories/{name}/query/partial`: this node's partial answer.
pub async fn partial(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: Body,
) -> Response {
    let repo = match state.existing_repository(&name) {
        Ok(repo) => repo,
        Err(r) => return r.into_response(),
    };
    let request: PartialRequest = match read_request(
        body,
        "a partial query request",
        r#"{"query": "...", "start": <ns>, "end": <ns>, "limit": 200}"#,
    )
    .await
    {
        Ok(r) => r,
        Err(r) => return r,
    };
    if let Err(r) = check_query_size(&request.query).and_then(|()| check_limit(request.limit)) {
        return r.into_response();
    }
    if request.start > request.end {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "start ({}) is after end ({}): the time range is empty",
                request.start, request.end
            ),
        )
        .into_response();
    }
    let prepared = match eddy_query::prepare(&request.query, request.limit) {
        Ok(p) => p,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(query_error_body(&request.query, &e)),
            )
                .into_response()
        }
    };
    let options = Options {
        start: request.start,
        end: request.end,
        limit: request.limit,
        ..Options::default()
    };
    let ran = tokio::task::spawn_blocking(move || {
        let partial = eddy_query::run_partial(
            &repo.store,
            &prepared,
            &options,
            &AtomicBool::new(false),
            &|_| {},
        );
        partial.encode()
    })
    .await;
    match ran {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, PARTIAL_CONTENT_TYPE.to_string()),
                (
                    header::HeaderName::from_static(NODE_HEADER),
                    state.config.cluster.node_name(&state.config.http),
                ),
            ],
            bytes,
        )
            .into_response(),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the query failed: {e}"),
        )
        .into_response(),
    }
}

/// One HTTP client for every peer (connections are pooled); each request sets its timeout.
static PEERS: LazyLock<ureq::Agent> = LazyLock::new(|| {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
});

/// Runs `prepared` over this node's store of `repository` and each of `peers`' at once, and
/// merges the partial answers.
pub async fn fan_out(
    state: &AppState,
    peers: &[String],
    repository: &str,
    repo: Arc<crate::Repository>,
    request: PartialRequest,
    prepared: Prepared,
    options: Options,
) -> FannedOut {
    let cluster = &state.config.cluster;
    let prepared = Arc::new(prepared);
    let local = {
        let prepared = prepared.clone();
        tokio::task::spawn_blocking(move || {
            eddy_query::run_partial(
                &repo.store,
                &prepared,
                &options,
                &AtomicBool::new(false),
                &|_| {},
            )
        })
    };
    let body = serde_json::to_vec(&request).unwrap_or_default();
    let asks: Vec<_> = peers
        .iter()
        .map(|peer| {
            let url = format!(
                "{}/api/v1/repositories/{}/query/partial",
                peer.trim_end_matches('/'),
                repository
            );
            let (body, token, prepared) = (body.clone(), cluster.token.clone(), prepared.clone());
            let timeout = cluster.peer_timeout;
            let peer = peer.clone();
            let ask = tokio::task::spawn_blocking(move || {
                ask_peer(&url, &body, token.as_deref(), timeout, &prepared)
            });
            (peer, ask)
        })
        .collect();
    let program = &prepared.program;
    let me = cluster.node_name(&state.config.http);
    let mut merged = Partial::empty(program);
    let mut nodes = Vec::with_capacity(1 + asks.len());
    let local = local.await.map_err(|e| format!("the query failed: {e}"));
    add(&mut merged, &mut nodes, program, me, None, local);
    for (url, ask) in asks {
        let answered = ask
            .await
            .map_err(|e| format!("the request failed: {e}"))
            .and_then(|r| r);
        let (name, partial) = match answered {
            Ok((name, partial)) => (name.unwrap_or_else(|| url.clone()), Ok(partial)),
            Err(e) => (url.clone(), Err(e)),
        };
        add(&mut merged, &mut nodes, program, name, Some(url), partial);
    }
    let complete = nodes.iter().all(|n| n.ok);
    if !complete {
        let missing: Vec<&str> = nodes
            .iter()
            .filter(|n| !n.ok)
            .map(|n| n.name.as_str())
            .collect();
        merged.warnings.insert(
            0,
            format!(
                "incomplete answer: {} of {} nodes did not answer ({}); their events are left out",
                missing.len(),
                nodes.len(),
                missing.join(", ")
            ),
        );
    }
    FannedOut {
        answer: merged.into_answer(program),
        nodes,
        complete,
    }
}

/// Adds one node's partial answer (or its failure) to the merged answer and the report.
fn add(
    merged: &mut Partial,
    nodes: &mut Vec<NodeReport>,
    program: &eddy_query::engine::Program,
    name: String,
    url: Option<String>,
    partial: Result<Partial, String>,
) {
    match partial {
        Ok(mut partial) => {
            nodes.push(NodeReport {
                name: name.clone(),
                url,
                ok: true,
                events_scanned: partial.progress.events_scanned,
                error: None,
            });
            for w in &mut partial.warnings {
                *w = format!("node {name}: {w}");
            }
            merged.merge(program, partial);
        }
        Err(e) => nodes.push(NodeReport {
            name,
            url,
            ok: false,
            events_scanned: 0,
            error: Some(e),
        }),
    }
}

/// Asks one peer for its partial answer: its name (from [`NODE_HEADER`]) and the decoded
/// state, or why not, in words that name the peer's own message where it sent one.
fn ask_peer(
    url: &str,
    body: &[u8],
    token: Option<&str>,
    timeout: std::time::Duration,
    prepared: &Prepared,
) -> Result<(Option<String>, Partial), String> {
    let mut request = PEERS
        .post(url)
        .config()
        .timeout_global(Some(timeout))
        .build()
        .header("Content-Type", "application/json")
        .header("Accept", PARTIAL_CONTENT_TYPE);
    if let Some(token) = token {
        request = request.header("Authorization", &format!("Bearer {token}"));
    }
    let mut response = request.send(body).map_err(|e| match e {
        ureq::Error::Timeout(_) => format!("no answer within the peer timeout of {timeout:?}"),
        other => format!("no answer: {other}"),
    })?;
    let status = response.status().as_u16();
    let name = response
        .headers()
        .get(NODE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = response
        .body_mut()
        .with_config()
        .limit(MAX_PARTIAL_BYTES)
        .read_to_vec()
        .map_err(|e| format!("the answer broke off: {e}"))?;
    if status != 200 {
        let message = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(200).collect());
        return Err(format!("it answered {status}: {message}"));
    }
    let partial = Partial::decode(&bytes, &prepared.program).map_err(|e| e.to_string())?;
    Ok((name, partial))
}
