//! The HTTP ingest door: `POST /api/v1/ingest/{repository}`.
//!
//! - Body: a JSON array of objects or a single object (`Content-Type: application/json`),
//!   NDJSON (`application/x-ndjson`), or raw lines (`text/plain`, or any type with
//!   `?parser=json|kv|accesslog|syslog|statsd|none`). `Content-Encoding: gzip` and `zstd`.
//! - All or nothing: if any line is bad the answer is 400 listing each bad line's number, column,
//!   field and reason, and nothing of the request is stored. Otherwise 200, sent only after
//!   every event is durable in the bus.
//! - 413 for a body or an event over the configured limits; 401 without a token where the
//!   repository needs one, 403 with a wrong one, 404 for an unknown repository. Tokens are
//!   never logged.

use std::io::Read;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use eddy_event::{codec, Event, ParseError, Parser};
use eddy_log::{PartitionChoice, Record};
use serde::Deserialize;
use serde_json::json;

use crate::AppState;

/// Most bad lines listed in a 400 answer (the count covers all of them).
const MAX_LISTED_ERRORS: usize = 100;

/// Query parameters of the ingest endpoint.
#[derive(Debug, Deserialize)]
pub struct IngestParams {
    /// Parser for raw lines.
    parser: Option<String>,
}

/// A refused request: its status and JSON body.
#[derive(Debug)]
pub struct Reject {
    status: StatusCode,
    body: serde_json::Value,
    /// Send `WWW-Authenticate: Bearer` (401).
    challenge: bool,
}

impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(self.body)).into_response();
        if self.challenge {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        r
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Reject {
    Reject {
        status,
        body: json!({ "error": message.into() }),
        challenge: false,
    }
}

/// Checks the bearer token against the repository's tokens, in constant time per token.
fn authorize(headers: &HeaderMap, tokens: &[String]) -> Result<(), Reject> {
    if tokens.is_empty() {
        return Ok(());
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(given) = given else {
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            "this repository needs an ingest token: Authorization: Bearer <token>",
        );
        r.challenge = true;
        return Err(r);
    };
    let matches = |t: &String| {
        t.len() == given.len()
            && t.bytes()
                .zip(given.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    };
    if tokens.iter().any(matches) {
        Ok(())
    } else {
        Err(error(
            StatusCode::FORBIDDEN,
            "the token is not valid for this repository",
        ))
    }
}

/// Decompresses per `Content-Encoding`, refusing to produce more than `limit` bytes.
fn decode_body(headers: &HeaderMap, body: Bytes, limit: usize) -> Result<Vec<u8>, Reject> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is over the limit of {limit} bytes (http.max_body_bytes)"),
        )
    };
    let read_limited = |r: &mut dyn Read| -> Result<Vec<u8>, Reject> {
        let mut out = Vec::new();
        r.take(limit as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| {
                error(
                    StatusCode::BAD_REQUEST,
                    format!("the {encoding} body does not decompress: {e}"),
                )
            })?;
        if out.len() > limit {
            return Err(too_large());
        }
        Ok(out)
    };
    match encoding.as_str() {
        "identity" | "" => {
            if body.len() > limit {
                return Err(too_large());
            }
            Ok(body.to_vec())
        }
        "gzip" | "x-gzip" => read_limited(&mut flate2::read::GzDecoder::new(&body[..])),
        "zstd" => {
            let mut d = zstd::stream::read::Decoder::new(&body[..]).map_err(|e| {
                error(
                    StatusCode::BAD_REQUEST,
                    format!("the zstd body does not decompress: {e}"),
                )
            })?;
            read_limited(&mut d)
        }
        other => Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Encoding {other:?} is not supported; use gzip, zstd or none"),
        )),
    }
}

struct BadLine {
    line: usize,
    error: ParseError,
}

/// Turns a body into events, or lists every bad line (or array element).
fn parse_body(
    body: &[u8],
    content_type: &str,
    parser: Option<Parser>,
    max_event: usize,
    now: i64,
) -> Result<Vec<Event>, Reject> {
    let text = std::str::from_utf8(body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            format!("the body is not UTF-8 (byte {})", e.valid_up_to()),
        )
    })?;
    let mut events = Vec::new();
    let mut bad = Vec::new();
    if parser.is_none() && content_type.starts_with("application/json") {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                format!(
                    "the JSON body is invalid at line {}, column {}: {e}",
                    e.line(),
                    e.column()
                ),
            )
        })?;
        let values = match value {
            serde_json::Value::Array(items) => items,
            single => vec![single],
        };
        for (i, v) in values.into_iter().enumerate() {
            let raw = v.to_string();
            if raw.len() > max_event {
                return Err(event_too_large(i + 1, raw.len(), max_event));
            }
            match eddy_event::parse::from_json_value(v, raw, now) {
                Ok(e) => events.push(e),
                Err(error) => bad.push(BadLine { line: i + 1, error }),
            }
        }
    } else {
        let parser = parser.unwrap_or(if content_type.starts_with("text/plain") {
            Parser::None
        } else {
            Parser::Json
        });
        for (i, line) in text.lines().enumerate() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.trim().is_empty() {
                continue;
            }
            if line.len() > max_event {
                return Err(event_too_large(i + 1, line.len(), max_event));
            }
            match parser.parse(line, now) {
                Ok(e) => events.push(e),
                Err(error) => bad.push(BadLine { line: i + 1, error }),
            }
        }
    }
    if !bad.is_empty() {
        let listed: Vec<_> = bad
            .iter()
            .take(MAX_LISTED_ERRORS)
            .map(|b| json!({"line": b.line, "column": b.error.column, "field": b.error.field, "reason": b.error.reason}))
            .collect();
        let body = json!({
            "error": format!("{} of {} events are invalid; nothing was stored", bad.len(), bad.len() + events.len()),
            "invalid": bad.len(),
            "lines": listed,
        });
        return Err(Reject {
            status: StatusCode::BAD_REQUEST,
            body,
            challenge: false,
        });
    }
    Ok(events)
}

fn event_too_large(line: usize, size: usize, limit: usize) -> Reject {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("event {line} is {size} bytes, over the limit of {limit} bytes (http.max_event_bytes); nothing was stored"),
    )
}

/// `POST /api/v1/ingest/{repository}`.
pub async fn ingest(
    State(state): State<Arc<AppState>>,
    Path(repository): Path<String>,
    Query(params): Query<IngestParams>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(repo) = state.repositories.get(&repository) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("repository {repository:?} does not exist"),
        )
        .into_response();
    };
    if let Err(r) = authorize(&headers, &repo.tokens) {
        return r.into_response();
    }
    let parser = match params
        .parser
        .as_deref()
        .map(str::parse::<Parser>)
        .transpose()
    {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, e).into_response(),
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_ascii_lowercase();
    let limits = state.config.http.clone();
    let topic = repo.topic.clone();
    // Decompression, parsing, encoding and the durable append all block: keep them off the
    // async workers.
    let result = tokio::task::spawn_blocking(move || -> Result<usize, Reject> {
        let body = decode_body(&headers, body, limits.max_body_bytes)?;
        let events = parse_body(
            &body,
            &content_type,
            parser,
            limits.max_event_bytes,
            eddy_log::now_ns(),
        )?;
        if events.is_empty() {
            return Ok(0);
        }
        let records: Vec<Record> = events
            .iter()
            .map(|e| {
                let mut r = Record::new(codec::encode(e)).with_timestamp(e.timestamp);
                if !e.tags.is_empty() {
                    r = r.with_key(e.data_source());
                }
                r
            })
            .collect();
        topic
            .produce(records, PartitionChoice::ByKey)
            .map_err(|e| {
                tracing::error!(error = %e, "append failed");
                error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("the bus could not store the events: {e}"),
                )
            })?;
        Ok(events.len())
    })
    .await;
    match result {
        Ok(Ok(n)) => (StatusCode::OK, Json(json!({ "events": n }))).into_response(),
        Ok(Err(r)) => r.into_response(),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("ingest task failed: {e}"),
        )
        .into_response(),
    }
}
