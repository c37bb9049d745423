//! The HTTP ingest door: `POST /api/v1/ingest/{repository}`, and the answers every HTTP
//! route shares. The body becomes events in [`eddy_ingest::body`]; this module reads it off
//! the wire and turns each kind of refusal into its status code ([`refused`]).
//!
//! - Body: JSON by [`eddy_ingest::json_body`]'s rule whatever the `Content-Type` (a JSON array
//!   of objects or a single object is one document; more than one top-level value is NDJSON,
//!   one event per line), raw lines with `text/plain`, or lines of any type with
//!   `?parser=json|kv|accesslog|syslog|statsd|none`. `Content-Encoding: gzip` and `zstd`.
//! - All or nothing: if any line is bad the answer is 400 listing each bad line's number, column,
//!   field and reason, and nothing of the request is stored. Otherwise 200, sent only after
//!   every event is durable in the bus.
//! - 413 for a body or an event over the configured limits; 401 without a token where one is
//!   needed, 403 with a wrong one or one without `ingest:<repository>` (the router's guard,
//!   [`crate::access`]), 404 for an unknown repository. Tokens are never logged.
//! - Back-pressure: the in-flight budget is charged as the body's bytes arrive (a slow client
//!   holds only what it has sent); a chunk waits up to `ingest.queue_timeout` for room, then the
//!   request gets 429 with `Retry-After`; 503 with `Retry-After` if the bus fails. A body that
//!   stalls or dawdles past `http.body_idle_timeout` / `http.body_timeout` gets 408.
//! - Schemas: in a repository bound to a subject, every event must fit it (the gatekeeper),
//!   else 400 lists each event's number, field and reason and nothing is stored. Binary Avro
//!   (`Content-Type: application/vnd.apache.avro+binary`) is read there too: datums one after
//!   another, each framed by a schema id (`0x00`), a CRC-64 (`C3 01`) or a SHA-256 (`0x81`).
//! - De-duplication: events whose client `@id` was stored within the window are dropped and
//!   counted in the answer: `{"events": stored, "duplicates": dropped}`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use eddy_event::Parser;
use eddy_ingest::body::{self, Refusal, MAX_LISTED_ERRORS};
use eddy_ingest::metrics::RejectReason;
use eddy_ingest::{Charge, Door, Repository, StoreError, Stored};
use serde::Deserialize;
use serde_json::json;

use crate::http_door::BodyTimeout;
use crate::AppState;

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
    pub(crate) challenge: bool,
    /// Send `Retry-After` (429, 503).
    pub(crate) retry_after: Option<Duration>,
    /// Events refused, for the metrics (1 when the request could not be read).
    pub(crate) events: usize,
    /// Why, for the metrics.
    pub(crate) reason: RejectReason,
}

impl Reject {
    /// Its status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Its message.
    pub fn message(&self) -> String {
        match &self.body["error"] {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }

    fn retry_after(mut self, after: Duration) -> Reject {
        self.retry_after = Some(after);
        self
    }
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
        if let Some(after) = self.retry_after {
            let secs = after.as_secs_f64().ceil() as u64;
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        r
    }
}

/// A refusal with `{"error": message}`.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Reject {
    let reason = match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => RejectReason::Auth,
        StatusCode::PAYLOAD_TOO_LARGE => RejectReason::TooLarge,
        StatusCode::TOO_MANY_REQUESTS => RejectReason::Overload,
        StatusCode::SERVICE_UNAVAILABLE => RejectReason::Bus,
        StatusCode::REQUEST_TIMEOUT => RejectReason::Timeout,
        _ => RejectReason::BadRequest,
    };
    Reject {
        status,
        body: json!({ "error": message.into() }),
        challenge: false,
        retry_after: None,
        events: 1,
        reason,
    }
}

/// The password of basic auth (`user:password` in base64): clients that only speak basic auth
/// (Confluent's registry clients) send the token as the password.
pub(crate) fn basic_password(encoded: &str) -> Option<String> {
    use base64::Engine;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    text.split_once(':')
        .map(|(_, password)| password.to_string())
}

pub(crate) fn content_encoding(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase()
}

/// A refused body as the client sees it: the one place where each kind of refusal gets its
/// status code, its JSON body and its metrics reason.
pub(crate) fn refused(r: Refusal, retry_after: Duration) -> Reject {
    let events = r.events();
    let message = r.to_string();
    let (status, reason) = match &r {
        Refusal::BodyTooLarge { .. } | Refusal::EventTooLarge { .. } => {
            (StatusCode::PAYLOAD_TOO_LARGE, RejectReason::TooLarge)
        }
        Refusal::UnsupportedEncoding { .. } | Refusal::NoSchema { .. } => {
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, RejectReason::BadRequest)
        }
        Refusal::Undecodable { .. } | Refusal::NotUtf8 { .. } | Refusal::InvalidJson { .. } => {
            (StatusCode::BAD_REQUEST, RejectReason::BadRequest)
        }
        Refusal::InvalidEvents { .. } => (StatusCode::BAD_REQUEST, RejectReason::Parse),
        Refusal::NoContract { .. }
        | Refusal::SchemaMismatch { .. }
        | Refusal::UnreadableDatum { .. } => (StatusCode::BAD_REQUEST, RejectReason::Schema),
        Refusal::NotStored {
            error: StoreError::Busy(_),
            ..
        } => (StatusCode::TOO_MANY_REQUESTS, RejectReason::Overload),
        Refusal::NotStored {
            error: StoreError::Bus(_),
            ..
        } => (StatusCode::SERVICE_UNAVAILABLE, RejectReason::Bus),
    };
    let body = match &r {
        Refusal::InvalidEvents { bad, .. } => {
            let listed: Vec<_> = bad
                .iter()
                .take(MAX_LISTED_ERRORS)
                .map(|b| json!({"line": b.line, "column": b.error.column, "field": b.error.field, "reason": b.error.reason}))
                .collect();
            json!({ "error": message, "invalid": bad.len(), "lines": listed })
        }
        Refusal::NoContract { events, .. } => {
            json!({ "error": message, "invalid": events, "lines": [] })
        }
        Refusal::SchemaMismatch { refused, .. } => {
            let listed: Vec<_> = refused
                .iter()
                .flat_map(|(i, why)| {
                    why.iter()
                        .map(move |r| json!({"line": i + 1, "field": r.path, "reason": r.reason}))
                })
                .take(MAX_LISTED_ERRORS)
                .collect();
            json!({ "error": message, "invalid": refused.len(), "lines": listed })
        }
        Refusal::UnreadableDatum {
            datum,
            byte,
            reason,
        } => {
            let line = json!({"line": datum, "byte": byte, "field": "", "reason": reason});
            json!({ "error": message, "invalid": 1, "lines": [line] })
        }
        _ => json!({ "error": message }),
    };
    let retry_after = matches!(r, Refusal::NotStored { .. }).then_some(retry_after);
    Reject {
        status,
        body,
        challenge: false,
        retry_after,
        events,
        reason,
    }
}

/// `POST /api/v1/ingest/{repository}`.
pub async fn ingest(
    State(state): State<Arc<AppState>>,
    Path(repository): Path<String>,
    Query(params): Query<IngestParams>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let received = Instant::now();
    let result = ingest_request(&state, &repository, params, headers, body, received).await;
    match result {
        Ok(stored) => (
            StatusCode::OK,
            Json(json!({ "events": stored.events, "duplicates": stored.duplicates })),
        )
            .into_response(),
        Err(r) => {
            if r.status != StatusCode::NOT_FOUND {
                state
                    .ingest
                    .metrics
                    .rejected(Door::Http, &repository, r.reason, r.events);
            }
            r.into_response()
        }
    }
}

/// What a request was admitted with: its repository, parser and content type.
struct Admitted {
    repo: Arc<Repository>,
    parser: Option<Parser>,
    content_type: String,
}

/// The checks made before reading the body.
async fn admit(
    state: &AppState,
    repository: &str,
    params: IngestParams,
    headers: &HeaderMap,
) -> Result<Admitted, Reject> {
    // The token was checked by the router's guard (`ingest:<repository>`).
    if !state.config.cluster.plays(crate::node::Role::Ingest) {
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "this node does not ingest (its cluster.roles leave out \"ingest\"): send events to an ingest node",
        ));
    }
    let repo = state.existing_repository(repository)?;
    let parser = params
        .parser
        .as_deref()
        .map(str::parse::<Parser>)
        .transpose()
        .map_err(|e| error(StatusCode::BAD_REQUEST, e))?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_ascii_lowercase();
    Ok(Admitted {
        repo,
        parser,
        content_type,
    })
}

/// Adds `bytes` to the request's charge on the in-flight budget, waiting up to
/// `queue_timeout` for room (counted as a waiting request meanwhile); 429 if none came.
pub(crate) async fn charge(
    state: &AppState,
    charged: &mut Charge,
    bytes: usize,
) -> Result<(), Reject> {
    let ingest = &state.ingest;
    if ingest.budget.try_charge(charged, bytes) {
        return Ok(());
    }
    let waiting = ingest.metrics.waiting_gauge();
    waiting.inc();
    let room = ingest
        .budget
        .charge(charged, bytes, ingest.config.queue_timeout)
        .await;
    waiting.dec();
    if room {
        Ok(())
    } else {
        Err(overloaded(state))
    }
}

fn overloaded(state: &AppState) -> Reject {
    error(
        StatusCode::TOO_MANY_REQUESTS,
        "eddy is storing as fast as it can; retry after the Retry-After delay",
    )
    .retry_after(state.ingest.config.retry_after)
}

/// Most bytes read and thrown away from a refused request so that its client, still sending,
/// reads the answer instead of a broken pipe; beyond, the connection is simply closed.
const MAX_DRAIN_BYTES: usize = 64 << 20;

/// Reads the body, up to `limit` bytes kept, charging the in-flight budget for each chunk as
/// it arrives. A longer body is read on (and dropped) up to [`MAX_DRAIN_BYTES`] and answered
/// 413; one that finds no room in the budget is read on likewise and answered 429; one whose
/// client stalls or dawdles is answered 408 (the connection is then closed).
pub(crate) async fn read_body(
    state: &AppState,
    mut body: Body,
    limit: usize,
    declared: Option<usize>,
) -> Result<(Vec<u8>, Charge), Reject> {
    use http_body_util::BodyExt;
    let mut charged = Charge::default();
    // Room for the declared length up front: growing by doubling copied a 4 MiB body about
    // twice over. Only reserved: its pages are touched (and charged) as bytes arrive, so a
    // length that is only a claim costs no memory.
    let mut out = Vec::with_capacity(declared.unwrap_or(0).min(limit));
    let mut seen = 0usize;
    let mut refused = None;
    while let Some(frame) = body.frame().await {
        let data = match frame.map(|f| f.into_data()) {
            Ok(Ok(data)) => data,
            Ok(Err(_)) => continue,
            Err(e) => return Err(refused.unwrap_or_else(|| unreadable(&e, seen))),
        };
        seen += data.len();
        if refused.is_none() && seen > limit {
            refused = Some(body_too_large(limit));
            out = Vec::new();
            charged = Charge::default();
        }
        if refused.is_none() {
            if let Err(r) = charge(state, &mut charged, data.len()).await {
                refused = Some(r);
                out = Vec::new();
                charged = Charge::default();
            } else {
                out.extend_from_slice(&data);
            }
        }
        if refused.is_some() && seen > MAX_DRAIN_BYTES {
            break;
        }
    }
    match refused {
        Some(r) => Err(r),
        None => Ok((out, charged)),
    }
}

/// Why a body could not be read: its client was too slow (408), or the stream broke (400).
fn unreadable(e: &axum::Error, seen: usize) -> Reject {
    match BodyTimeout::find(e) {
        Some(t) => error(
            StatusCode::REQUEST_TIMEOUT,
            format!("{t}, after {seen} bytes; nothing was stored"),
        ),
        None => error(
            StatusCode::BAD_REQUEST,
            format!("could not read the body (after {seen} bytes): {e}"),
        ),
    }
}

/// Reads and drops what a refused request still sends, up to [`MAX_DRAIN_BYTES`], so that
/// its client reads the answer instead of a broken pipe.
pub(crate) async fn drain(mut body: Body) {
    use http_body_util::BodyExt;
    let mut seen = 0usize;
    while let Some(Ok(frame)) = body.frame().await {
        seen += frame.data_ref().map_or(0, |d| d.len());
        if seen > MAX_DRAIN_BYTES {
            break;
        }
    }
}

async fn ingest_request(
    state: &Arc<AppState>,
    repository: &str,
    params: IngestParams,
    headers: HeaderMap,
    body: Body,
    received: Instant,
) -> Result<Stored, Reject> {
    let limits = state.config.http.clone();
    // Admission (repository, token, declared size) comes before the body is kept.
    let Admitted {
        repo,
        parser,
        content_type,
    } = match admit(state, repository, params, &headers).await {
        Ok(a) => a,
        Err(r) => {
            drain(body).await;
            return Err(r);
        }
    };
    let (decoded, charged) = read_decoded(state, &headers, body).await?;
    let state = state.clone();
    let ingest = state.ingest.clone();
    let stored = blocking(move || {
        let now = eddy_log::now_ns();
        let events = body::events(
            &repo,
            &decoded,
            &content_type,
            parser,
            limits.max_event_bytes,
            now,
        )?;
        let n = events.len();
        ingest
            .store(Door::Http, &repo, events, decoded.len(), received)
            .map_err(|error| Refusal::NotStored { error, events: n })
    })
    .await?
    .map_err(|r| refused(r, state.ingest.config.retry_after));
    drop(charged);
    stored
}

/// Reads a request body within `http.max_body_bytes` (a larger declared length is refused
/// before reading), charging the in-flight budget as it arrives, and decompresses it
/// (`Content-Encoding: gzip | zstd`). The charge is held until dropped: keep it until the
/// events are stored. Every HTTP door reads its bodies here.
pub(crate) async fn read_decoded(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Vec<u8>, Charge), Reject> {
    let max_body = state.config.http.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > max_body) {
        drain(body).await;
        return Err(body_too_large(max_body));
    }
    let (raw, mut charged) = read_body(state, body, max_body, declared).await?;
    let encoding = content_encoding(headers);
    // Identity bodies need no blocking hop.
    let decoded = if matches!(encoding.as_str(), "identity" | "") {
        raw
    } else {
        blocking(move || body::decode(&encoding, raw, max_body))
            .await?
            .map_err(|r| refused(r, Duration::ZERO))?
    };
    // A compressed body takes more room once decompressed.
    if decoded.len() > charged.bytes() {
        let more = decoded.len() - charged.bytes();
        charge(state, &mut charged, more).await?;
    }
    Ok((decoded, charged))
}

pub(crate) fn body_too_large(limit: usize) -> Reject {
    refused(Refusal::BodyTooLarge { limit }, Duration::ZERO)
}

/// Runs blocking work (decompression, parsing, the durable append) off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Reject> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("ingest task failed: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PARSERS: [Option<Parser>; 7] = [
        None,
        Some(Parser::Json),
        Some(Parser::Kv),
        Some(Parser::Accesslog),
        Some(Parser::Syslog),
        Some(Parser::Statsd),
        Some(Parser::None),
    ];

    /// A valid body for each parser, for mutation.
    const SAMPLES: [&str; 6] = [
        "{\"host\":\"web-1\",\"status\":500,\"nested\":{\"a\":[1,2]}}\n{\"@timestamp\":\"2026-11-24T10:00:00Z\",\"#env\":\"prod\"}\n",
        "[{\"a\":1},\n {\"b\":\"x\\u00e9\"}]",
        "level=error msg=\"disk full\" host='web-1' took=12ms\nuser=ann action=login\n",
        "127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] \"GET /apache_pb.gif HTTP/1.0\" 200 2326 \"http://x/\" \"Mozilla/4.08\"\n",
        "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 [exampleSDID@32473 iut=\"3\"] BOM'su root' failed\n<13>Oct 11 22:14:15 host app[42]: plain 3164\n",
        "checkout.orders:1|c|#region:eu\nlatency:320|ms|@0.5\nusers:42|s\n",
    ];

    /// Events, or a refusal that says where: a numbered line or element, or a byte, line or
    /// event position in its message. Never a panic.
    fn check(body: &[u8], content_type: &str, parser: Option<Parser>) -> Result<(), String> {
        match body::parse(body, content_type, parser, 200, 0) {
            Ok(_) => Ok(()),
            Err(r) => {
                let r = refused(r, Duration::ZERO);
                let status = r.status();
                if status != StatusCode::BAD_REQUEST && status != StatusCode::PAYLOAD_TOO_LARGE {
                    return Err(format!("unexpected status {status}"));
                }
                let listed = r.body["lines"].as_array().is_some_and(|lines| {
                    !lines.is_empty() && lines.iter().all(|l| l["line"].as_u64() >= Some(1))
                });
                let message = r.message();
                let placed = ["line ", "byte ", "event "]
                    .iter()
                    .any(|w| message.contains(w));
                if listed || placed {
                    Ok(())
                } else {
                    Err(format!("a refusal without a position: {}", r.body))
                }
            }
        }
    }

    /// Mutations of a valid body: (position, byte, kind) with kind 0 replace, 1 insert,
    /// 2 delete.
    fn mutate(sample: &str, edits: &[(usize, u8, u8)]) -> Vec<u8> {
        let mut bytes = sample.as_bytes().to_vec();
        for &(at, byte, kind) in edits {
            let at = at % (bytes.len() + 1);
            match kind % 3 {
                0 if at < bytes.len() => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                _ if at < bytes.len() => {
                    bytes.remove(at);
                }
                _ => {}
            }
        }
        bytes
    }

    fn content_type() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "application/json",
            "application/x-ndjson",
            "text/plain",
            "application/octet-stream",
            "",
        ])
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_give_events_or_a_placed_refusal_for_every_parser(
            body in prop::collection::vec(any::<u8>(), 0..400),
            content_type in content_type(),
        ) {
            for parser in PARSERS {
                prop_assert_eq!(check(&body, content_type, parser), Ok(()), "{:?}", parser);
            }
        }

        #[test]
        fn mutated_valid_bodies_give_events_or_a_placed_refusal(
            sample in 0..SAMPLES.len(),
            edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..8),
            content_type in content_type(),
        ) {
            let body = mutate(SAMPLES[sample], &edits);
            for parser in PARSERS {
                prop_assert_eq!(check(&body, content_type, parser), Ok(()), "{:?}", parser);
            }
        }

        #[test]
        fn compressed_bodies_decode_or_are_refused_never_past_the_limit(
            body in prop::collection::vec(any::<u8>(), 0..300),
            edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 0..4),
            zstd_level in 1i32..4,
        ) {
            let gz = {
                use std::io::Write;
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(&body).unwrap();
                e.finish().unwrap()
            };
            let zst = zstd::encode_all(&body[..], zstd_level).unwrap();
            for (encoding, packed) in [("gzip", gz), ("zstd", zst)] {
                let packed = if edits.is_empty() { packed } else {
                    let mut p = packed.clone();
                    for &(at, byte, _) in &edits {
                        let at = at % p.len().max(1);
                        if let Some(b) = p.get_mut(at) { *b = byte; }
                    }
                    p
                };
                match body::decode(encoding, packed, 200).map_err(|r| refused(r, Duration::ZERO)) {
                    Ok(out) => {
                        prop_assert!(out.len() <= 200);
                        if edits.is_empty() { prop_assert_eq!(&out, &body); }
                    }
                    Err(r) => {
                        let m = r.message();
                        prop_assert!(
                            r.status() == StatusCode::PAYLOAD_TOO_LARGE
                                || (r.status() == StatusCode::BAD_REQUEST && m.contains("bytes of output")),
                            "{}: {}", encoding, m
                        );
                        if edits.is_empty() { prop_assert!(body.len() > 200, "{}", m); }
                    }
                }
            }
        }
    }

    fn parse_ok_or_reject(
        body: &[u8],
        content_type: &str,
        parser: Option<Parser>,
        max_event: usize,
        now: i64,
    ) -> Result<Vec<eddy_event::Event>, Reject> {
        body::parse(body, content_type, parser, max_event, now)
            .map_err(|r| refused(r, Duration::ZERO))
    }

    #[test]
    fn each_kind_of_refusal_gets_its_status_and_retry_signal() {
        let io = || std::io::Error::other("x");
        let cases = [
            (
                Refusal::BodyTooLarge { limit: 1 },
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
            (
                Refusal::EventTooLarge {
                    event: 1,
                    size: 2,
                    limit: 1,
                },
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
            (
                Refusal::UnsupportedEncoding {
                    encoding: "br".into(),
                },
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ),
            (
                Refusal::NoSchema {
                    repository: "main".into(),
                },
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ),
            (
                Refusal::Undecodable {
                    encoding: "gzip".into(),
                    size: 1,
                    output: 0,
                    error: io(),
                },
                StatusCode::BAD_REQUEST,
            ),
            (Refusal::NotUtf8 { byte: 3 }, StatusCode::BAD_REQUEST),
            (
                Refusal::UnreadableDatum {
                    datum: 2,
                    byte: 9,
                    reason: "short".into(),
                },
                StatusCode::BAD_REQUEST,
            ),
            (
                Refusal::NotStored {
                    error: StoreError::Busy(uuid::Uuid::nil()),
                    events: 4,
                },
                StatusCode::TOO_MANY_REQUESTS,
            ),
            (
                Refusal::NotStored {
                    error: StoreError::Bus(eddy_log::Error::Closed),
                    events: 4,
                },
                StatusCode::SERVICE_UNAVAILABLE,
            ),
        ];
        for (refusal, status) in cases {
            let stored = matches!(refusal, Refusal::NotStored { .. });
            let events = refusal.events();
            let r = refused(refusal, Duration::from_secs(2));
            assert_eq!(r.status(), status, "{}", r.message());
            assert_eq!(r.retry_after.is_some(), stored, "{}", r.message());
            assert_eq!(r.events, events);
        }
    }

    #[test]
    fn ndjson_labelled_json_or_unlabelled_is_read_as_lines() {
        let ndjson = b"{\"a\":1}\n{\"a\":2}\n";
        for content_type in ["application/json", "", "application/x-www-form-urlencoded"] {
            let events = parse_ok_or_reject(ndjson, content_type, None, 1000, 0).unwrap();
            assert_eq!(events.len(), 2, "{content_type:?}");
        }
        // A bad line is listed by its number, whatever the label.
        let err = parse_ok_or_reject(
            b"{\"a\":1}\n{\"a\": tru}\n",
            "application/json",
            None,
            1000,
            0,
        )
        .unwrap_err();
        assert_eq!(err.body["lines"][0]["line"], 2, "{}", err.body);
        // text/plain stays raw lines; ?parser= wins over any label.
        let raw = parse_ok_or_reject(ndjson, "text/plain", None, 1000, 0).unwrap();
        assert_eq!(raw[0].parsed_by, Some(Parser::None));
        let kv =
            parse_ok_or_reject(b"a=1\n", "application/json", Some(Parser::Kv), 1000, 0).unwrap();
        assert_eq!(kv.len(), 1);
        // A broken pretty-printed document says where it breaks.
        let err =
            parse_ok_or_reject(b"{\n  \"a\":\n}\n", "application/json", None, 1000, 0).unwrap_err();
        assert!(
            err.message().contains("line 3, column 1"),
            "{}",
            err.message()
        );
    }
}
