//! `POST /api/v1/repositories/{name}/query` with `{"query": "...", "start": "24h", "end":
//! "now", "limit": 200}`: runs a query of the language over the repository's store.
//!
//! The answer's form follows `Accept`: `application/json` (the default) is one object with
//! `columns`, `rows`, `events`, `warnings`, `progress` and `cancelled`; `application/x-ndjson`
//! streams one object per line, `{"progress": ...}` while blocks are read and a `{"partial":
//! {...}}` with the whole answer so far (as the JSON form) every `partial_every` (default 1 s,
//! `"off"` for none), then `{"columns": [...]}`, one `{"row": {...}}` per row and a last
//! `{"done": {...}}` with warnings and totals; `text/csv` is a header line and the rows. A client
//! that goes away cancels the query.
//!
//! With `[cluster] peers`, the query also runs on every peer and the answer merges theirs
//! ([`crate::cluster`]): it then carries `nodes` (who answered) and `complete` (whether all
//! did); NDJSON has no progress or partial lines then.
//!
//! Reading needs the scope `read:<repository>` (or `admin`), checked by the router's guard
//! ([`crate::access`]); ingest scopes never grant reading.
//!
//! Bounds, each refused with a `400` that says which (a `413` for the body): the body at most
//! [`MAX_QUERY_BODY_BYTES`], the query text at most [`eddy_query::syntax::MAX_QUERY_BYTES`],
//! `limit` at most [`eddy_query::engine::MAX_ROWS`], `start` before `end`; the rows of an
//! answer are cut, with a warning, at [`eddy_query::engine::MAX_ANSWER_BYTES`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{to_bytes, Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use eddy_event::Value;
use eddy_query::engine::MAX_ROWS;
use eddy_query::syntax::MAX_QUERY_BYTES;
use eddy_query::{Options, QueryError};

use crate::http::error;
use crate::AppState;

/// The largest request body of a query, in bytes (1 MiB): room for the longest query text
/// however its JSON escapes it; the server's router sets no body limit of its own.
pub const MAX_QUERY_BODY_BYTES: usize = 1 << 20;

/// The request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    /// The query text.
    pub query: String,
    /// Start: RFC 3339 or a relative time such as `15m` (default `24h`).
    pub start: Option<String>,
    /// End: RFC 3339, a relative time, or `now` (default: no end).
    pub end: Option<String>,
    /// Events or rows returned when the query does not say (default 200).
    pub limit: Option<usize>,
    /// NDJSON only: the time between two partial answers, such as `500ms` (default `1s`), or
    /// `off`.
    pub partial_every: Option<String>,
}

/// The interval between partial answers a request asks for (`None`: none).
fn partial_interval(request: &QueryRequest) -> Result<Option<Duration>, String> {
    match request.partial_every.as_deref() {
        None => Ok(Some(Duration::from_secs(1))),
        Some("off") => Ok(None),
        Some(text) => match eddy_event::units::parse_duration(text) {
            Ok(d) if d >= Duration::from_millis(10) => Ok(Some(d)),
            Ok(_) => Err(format!("partial_every: {text} is below the 10ms minimum")),
            Err(e) => Err(format!("partial_every: {e}")),
        },
    }
}

/// A point in time of a request: RFC 3339, a relative time, or `now`.
pub fn parse_time(text: &str) -> Result<i64, String> {
    if text == "now" {
        return Ok(eddy_event::time::now_ns());
    }
    eddy_event::units::parse_time(text).map_err(|e| e.to_string())
}

/// A `400` for a query text over [`MAX_QUERY_BYTES`], said before it is parsed (and without
/// echoing it).
pub fn check_query_size(query: &str) -> Result<(), crate::http::Reject> {
    if query.len() > MAX_QUERY_BYTES {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!(
                "query: the text is {} bytes long; at most {MAX_QUERY_BYTES} bytes are accepted",
                query.len()
            ),
        ));
    }
    Ok(())
}

/// A `400` unless `limit` is within 1 and [`MAX_ROWS`].
pub fn check_limit(limit: usize) -> Result<(), crate::http::Reject> {
    if !(1..=MAX_ROWS).contains(&limit) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("limit: {limit} is not between 1 and {MAX_ROWS}"),
        ));
    }
    Ok(())
}

/// The error body of a query that does not parse: message, line, column and the rendering
/// with the offending text underlined.
pub fn query_error_body(query: &str, e: &QueryError) -> serde_json::Value {
    let (line, column) = e.line_column(query);
    json!({
        "error": e.message,
        "line": line,
        "column": column,
        "hint": e.hint,
        "rendered": e.render(query),
    })
}

fn reject(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

enum Format {
    Json,
    Ndjson,
    Csv,
}

fn format_of(headers: &HeaderMap) -> Format {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.contains("application/x-ndjson") {
        Format::Ndjson
    } else if accept.contains("text/csv") {
        Format::Csv
    } else {
        Format::Json
    }
}

/// Reads a query endpoint's JSON body: 413 past [`MAX_QUERY_BODY_BYTES`], 400 naming `what`
/// was expected and its shape when it does not parse.
pub(crate) async fn read_request<T: serde::de::DeserializeOwned>(
    body: Body,
    what: &str,
    shape: &str,
) -> Result<T, Response> {
    let Ok(body) = to_bytes(body, MAX_QUERY_BODY_BYTES).await else {
        return Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body could not be read within its limit of {MAX_QUERY_BODY_BYTES} bytes; a query text may have at most {MAX_QUERY_BYTES} bytes"),
        )
        .into_response());
    };
    serde_json::from_slice(&body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            format!("the body is not {what} ({e}); expected {shape}"),
        )
        .into_response()
    })
}

/// The handler.
pub async fn query(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let repo = match state.existing_repository(&name) {
        Ok(repo) => repo,
        Err(r) => return r.into_response(),
    };
    let request: QueryRequest = match read_request(
        body,
        "a query request",
        r#"{"query": "...", "start": "24h"}"#,
    )
    .await
    {
        Ok(r) => r,
        Err(r) => return r,
    };
    if let Err(r) = check_query_size(&request.query) {
        return r.into_response();
    }
    let mut options = Options {
        limit: request.limit.unwrap_or(eddy_query::engine::DEFAULT_LIMIT),
        ..Options::default()
    };
    if let Err(r) = check_limit(options.limit) {
        return r.into_response();
    }
    match parse_time(request.start.as_deref().unwrap_or("24h")) {
        Ok(t) => options.start = t,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("start: {e}")).into_response(),
    }
    if let Some(end) = &request.end {
        match parse_time(end) {
            Ok(t) => options.end = t,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("end: {e}")).into_response(),
        }
    }
    if options.start > options.end {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "start ({}) is after end ({}): the time range is empty",
                eddy_event::units::format_time(options.start),
                eddy_event::units::format_time(options.end)
            ),
        )
        .into_response();
    }
    let prepared = match eddy_query::prepare(&request.query, options.limit) {
        Ok(p) => p,
        Err(e) => {
            return reject(
                StatusCode::BAD_REQUEST,
                query_error_body(&request.query, &e),
            )
        }
    };
    let format = format_of(&headers);
    let peers = crate::directory::peers(&state);
    if !peers.is_empty() {
        if let Format::Ndjson = format {
            if let Err(e) = partial_interval(&request) {
                return error(StatusCode::BAD_REQUEST, e).into_response();
            }
        }
        let request = crate::cluster::PartialRequest {
            query: request.query,
            start: options.start,
            end: options.end,
            limit: options.limit,
        };
        let out =
            crate::cluster::fan_out(&state, &peers, &name, repo, request, prepared, options).await;
        return fanned_out_response(out, format);
    }
    if let Format::Ndjson = format {
        return match partial_interval(&request) {
            Ok(every) => stream_ndjson(repo, prepared, options, every),
            Err(e) => error(StatusCode::BAD_REQUEST, e).into_response(),
        };
    }
    let answer = tokio::task::spawn_blocking(move || {
        let mut answer = eddy_query::run(
            &repo.store,
            &prepared,
            &options,
            &AtomicBool::new(false),
            &|_| {},
        );
        // Only an answer that read nothing can have missed every event.
        if answer.progress.events_scanned == 0 {
            answer
                .warnings
                .extend(empty_range_hint(&repo.store, &options));
        }
        answer
    })
    .await;
    match (answer, format) {
        (Err(e), _) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the query failed: {e}"),
        )
        .into_response(),
        (Ok(answer), Format::Csv) => (
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            to_csv(&answer.columns, &answer.rows),
        )
            .into_response(),
        (Ok(answer), _) => axum::Json(answer).into_response(),
    }
}

/// A fanned-out answer in the form asked for: JSON with `nodes` and `complete`; NDJSON as a
/// single node streams it, without progress or partial lines, `nodes` and `complete` in its
/// `done`; CSV with `complete` in the `eddy-complete` header.
fn fanned_out_response(out: crate::cluster::FannedOut, format: Format) -> Response {
    match format {
        Format::Json => axum::Json(out.to_json()).into_response(),
        Format::Csv => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::HeaderName::from_static("eddy-complete"),
                    if out.complete { "true" } else { "false" },
                ),
            ],
            to_csv(&out.answer.columns, &out.answer.rows),
        )
            .into_response(),
        Format::Ndjson => {
            let answer = &out.answer;
            let mut body = Vec::new();
            body.extend(line(
                &json!({ "columns": answer.columns, "events": answer.events }),
            ));
            for row in &answer.rows {
                body.extend(line(&json!({ "row": row })));
            }
            body.extend(line(&json!({ "done": {
                "warnings": answer.warnings,
                "progress": answer.progress,
                "cancelled": answer.cancelled,
                "nodes": out.nodes,
                "complete": out.complete,
            }})));
            ([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response()
        }
    }
}

/// When the range `options` asks for misses every event the repository holds, a warning that
/// says so and where its events are (the first hour's usual surprise: data stamped elsewhere
/// in time than the default last 24 h).
pub(crate) fn empty_range_hint(store: &eddy_store::RepoStore, options: &Options) -> Option<String> {
    let (first, last) = store.time_bounds()?;
    if first < options.end && last >= options.start {
        return None;
    }
    let time = eddy_event::units::format_time;
    Some(format!(
        "the time range {} to {} holds no events; this repository holds events from {} to {}: \
         widen the range (start, end) to see them",
        time(options.start),
        time(options.end.min(eddy_event::time::now_ns())),
        time(first),
        time(last)
    ))
}

/// Runs the query on a blocking thread, streaming progress, partial answers `every` so often,
/// the columns, the rows and the totals as NDJSON; a client that goes away cancels it.
fn stream_ndjson(
    repo: Arc<crate::Repository>,
    prepared: eddy_query::Prepared,
    options: Options,
    every: Option<Duration>,
) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    tokio::task::spawn_blocking(move || {
        let cancel = AtomicBool::new(false);
        let last = Mutex::new(Instant::now());
        let on_progress = |p: &eddy_query::Progress| {
            let Ok(mut last) = last.lock() else { return };
            if last.elapsed() < Duration::from_millis(200) {
                return;
            }
            *last = Instant::now();
            if tx.is_closed() {
                cancel.store(true, Ordering::Relaxed);
                return;
            }
            // A full channel skips a progress line; the rows are never skipped.
            let _ = tx.try_send(line(&json!({ "progress": p })));
        };
        // Partial answers wait for room in the channel: a slow client slows only its query.
        let send_partial = |answer: eddy_query::Answer| {
            if tx
                .blocking_send(line(&json!({ "partial": answer })))
                .is_err()
            {
                cancel.store(true, Ordering::Relaxed);
            }
        };
        let partials = every.map(|every| eddy_query::Partials {
            every,
            send: &send_partial,
        });
        let mut answer = eddy_query::run_with_partials(
            &repo.store,
            &prepared,
            &options,
            &cancel,
            &on_progress,
            partials,
        );
        // Only an answer that read nothing can have missed every event.
        if answer.progress.events_scanned == 0 {
            answer
                .warnings
                .extend(empty_range_hint(&repo.store, &options));
        }
        let send = |v: serde_json::Value| tx.blocking_send(line(&v)).is_ok();
        if !send(json!({ "columns": answer.columns, "events": answer.events })) {
            return;
        }
        for row in &answer.rows {
            if !send(json!({ "row": row })) {
                return;
            }
        }
        send(json!({ "done": {
            "warnings": answer.warnings,
            "progress": answer.progress,
            "cancelled": answer.cancelled,
        }}));
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::new(ChannelBody(rx)),
    )
        .into_response()
}

fn line(v: &serde_json::Value) -> Bytes {
    let mut out = serde_json::to_vec(v).unwrap_or_default();
    out.push(b'\n');
    Bytes::from(out)
}

/// A response body fed by a channel (the NDJSON stream).
struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|b| b.map(|b| Ok(http_body::Frame::data(b))))
    }
}

/// The answer as CSV (RFC 4180): a header, then the rows; `@timestamp` and `_bucket` as RFC 3339.
pub fn to_csv(columns: &[String], rows: &[BTreeMap<String, Value>]) -> String {
    let mut out = String::new();
    let escape = |s: &str| {
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    };
    out.push_str(
        &columns
            .iter()
            .map(|c| escape(c))
            .collect::<Vec<_>>()
            .join(","),
    );
    out.push_str("\r\n");
    for row in rows {
        let cells: Vec<String> = columns
            .iter()
            .map(|c| escape(&cell_text(c, row.get(c))))
            .collect();
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    }
    out
}

/// How a cell reads in a table: times as RFC 3339, missing as empty.
pub fn cell_text(column: &str, v: Option<&Value>) -> String {
    match (column, v) {
        (_, None | Some(Value::Null)) => String::new(),
        ("@timestamp" | "@ingesttimestamp" | "_bucket", Some(Value::Int(ns))) => {
            eddy_event::units::format_time(*ns)
        }
        (_, Some(v)) => v.to_text(),
    }
}
