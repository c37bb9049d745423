//! The websocket endpoints: `GET /api/v1/repositories/{name}/live?query=…&window=15m&interval=1s`
//! subscribes to a live query (a snapshot, then updates), `GET /api/v1/channels/{name}` to a
//! pipeline's websocket sink. Every message is a JSON text:
//!
//! - `{"type": "snapshot" | "update", "window": {"start", "end"}, "columns", "rows", "events",
//!   "warnings"}`: the whole answer over the window: a `snapshot` first, for every query, then
//!   for aggregates an `update` each time it changed, at most once per interval;
//! - `{"type": "events", "columns", "rows"}`: events as they match (queries without an
//!   aggregate);
//! - `{"type": "skipped", "frames": n}`: the client fell behind; a fresh snapshot follows;
//! - `{"type": "stopped", "reason"}`: the query stopped (its memory bound); the socket closes.
//!
//! A client whose socket does not take a message within 5 s is dropped.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use eddy_log::now_ns;
use eddy_query::Window;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use crate::http::error;
use crate::query::query_error_body;
use crate::AppState;
use eddy_stream::live::{Frame, Subscription, ViewKey};
use eddy_stream::metrics::StreamMetrics;
use eddy_stream::ReadHandle;

/// How long a client's socket may take to accept one message.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// The live query asked for.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveParams {
    /// The query.
    pub query: String,
    /// The sliding window (`15m` by default).
    pub window: Option<String>,
    /// Time between aggregate updates (`1s` by default; at least `50ms`).
    pub interval: Option<String>,
    /// Rows kept at most.
    pub limit: Option<usize>,
    /// A read token, for clients that cannot set headers (browsers).
    pub token: Option<String>,
}

fn duration(what: &str, text: &str) -> Result<Duration, crate::http::Reject> {
    humantime::parse_duration(text).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            format!("{what}: {text:?} is not a duration like \"15m\" ({e})"),
        )
    })
}

/// `GET /api/v1/repositories/{name}/live`.
pub async fn live(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(params): Query<LiveParams>,
    caller: Option<axum::Extension<crate::auth::Caller>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let repo = match state.existing_repository(&name) {
        Ok(repo) => repo,
        Err(r) => return r.into_response(),
    };
    // The token's place among its live queries, held while the socket is open.
    let slot = match caller.as_ref().map(|c| &c.0 .0) {
        Some(Ok(p)) => match p.limits.live_slot() {
            Ok(slot) => Some(slot),
            Err(l) => {
                return crate::limits::refusal(&state.metrics.limits, &p.id, l).into_response()
            }
        },
        _ => None,
    };
    let window = match duration("window", params.window.as_deref().unwrap_or("15m")) {
        Ok(w) => w,
        Err(r) => return r.into_response(),
    };
    let window = match Window::new(window) {
        Ok(w) => w,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let interval = match duration("interval", params.interval.as_deref().unwrap_or("1s")) {
        Ok(i) if (Duration::from_millis(50)..=Duration::from_secs(3600)).contains(&i) => i,
        Ok(i) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("interval: {i:?} must be between 50ms and 1h"),
            )
            .into_response()
        }
        Err(r) => return r.into_response(),
    };
    let limit = params
        .limit
        .unwrap_or(eddy_query::engine::DEFAULT_LIMIT)
        .clamp(1, 100_000);
    if let Err(r) = crate::query::check_query_size(&params.query) {
        return r.into_response();
    }
    let query = params.query.trim().to_string();
    let prepared = match eddy_query::prepare(&query, limit) {
        Ok(p) => p,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(query_error_body(&query, &e)),
            )
                .into_response()
        }
    };
    let key = ViewKey {
        repository: repo.name.clone(),
        query,
        window: (window.span() / 1_000_000_000) as u64,
        interval: interval.as_millis() as u64,
        limit,
    };
    let view = state
        .live
        .view(&Arc::new(ReadHandle::from(&*repo)), key, prepared, window);
    let subscription = view.subscribe(state.live.metrics());
    let metrics = state.live.metrics().clone();
    upgrade.on_upgrade(move |socket| async move {
        serve_view(socket, subscription, metrics).await;
        drop(slot);
    })
}

/// `GET /api/v1/channels/{name}`: a pipeline's websocket sink.
pub async fn channel(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let pushed = state.live.channel(&name).subscribe();
    let metrics = state.live.metrics().clone();
    upgrade.on_upgrade(move |socket| serve_channel(socket, pushed, metrics))
}

/// Sends one frame; `false` when the client is gone or too slow (then dropped).
async fn send(socket: &mut WebSocket, frame: &Frame, metrics: &StreamMetrics) -> bool {
    let message = Message::Text(frame.text.as_ref().into());
    match tokio::time::timeout(SEND_TIMEOUT, socket.send(message)).await {
        Ok(Ok(())) => {
            if let Some(ingest) = frame.oldest_ingest {
                metrics
                    .live_freshness
                    .observe((now_ns() - ingest).max(0) as f64 / 1e9);
            }
            true
        }
        Ok(Err(_)) => false,
        Err(_) => {
            metrics.live_dropped_clients.inc();
            let _ = socket
                .send(Message::Close(Some(CloseFrame {
                    code: axum::extract::ws::close_code::POLICY,
                    reason: "too slow: a message waited more than 5 s".into(),
                })))
                .await;
            false
        }
    }
}

fn skipped(frames: u64) -> Frame {
    Frame::of(
        serde_json::json!({"type": "skipped", "frames": frames}),
        None,
    )
}

/// The view's latest answer as a newcomer's first message: every subscription opens with a
/// `snapshot`, though the view published it as an `update` to those already watching.
fn as_snapshot(frame: Frame) -> Frame {
    let Ok(mut value) = serde_json::from_str::<serde_json::Value>(&frame.text) else {
        return frame;
    };
    if value["type"] != "update" {
        return frame;
    }
    value["type"] = "snapshot".into();
    Frame {
        text: value.to_string().into(),
        ..frame
    }
}

/// Whether the client closed its side (other messages from it are ignored).
fn closed(message: Option<Result<Message, axum::Error>>) -> bool {
    matches!(message, None | Some(Err(_)) | Some(Ok(Message::Close(_))))
}

async fn serve_view(mut socket: WebSocket, mut sub: Subscription, metrics: Arc<StreamMetrics>) {
    let first = match sub.first.take() {
        Some(f) => f,
        None => {
            let Ok(latest) = sub.latest.wait_for(Option::is_some).await else {
                return;
            };
            let Some(first) = latest.clone() else { return };
            as_snapshot(first)
        }
    };
    sub.latest.borrow_and_update();
    if !send(&mut socket, &first, &metrics).await || first.last {
        return;
    }
    let events = sub.view.is_events();
    loop {
        tokio::select! {
            changed = sub.latest.changed(), if !events => {
                if changed.is_err() { return; }
                let frame = sub.latest.borrow_and_update().clone();
                if let Some(frame) = frame {
                    if !send(&mut socket, &frame, &metrics).await || frame.last { return; }
                }
            }
            pushed = sub.pushed.recv(), if events => match pushed {
                Ok(frame) => {
                    if !send(&mut socket, &frame, &metrics).await || frame.last { return; }
                }
                Err(RecvError::Lagged(n)) => {
                    // Fell behind: skip to a fresh snapshot.
                    let mut fresh = sub.view.subscribe(&metrics);
                    if !send(&mut socket, &skipped(n), &metrics).await { return; }
                    if let Some(snapshot) = fresh.first.take() {
                        if !send(&mut socket, &snapshot, &metrics).await { return; }
                    }
                    sub = fresh;
                }
                Err(RecvError::Closed) => return,
            },
            message = socket.recv() => if closed(message) { return; },
        }
    }
}

async fn serve_channel(
    mut socket: WebSocket,
    mut pushed: tokio::sync::broadcast::Receiver<Frame>,
    metrics: Arc<StreamMetrics>,
) {
    metrics.live_subscribers.inc();
    loop {
        tokio::select! {
            frame = pushed.recv() => match frame {
                Ok(frame) => if !send(&mut socket, &frame, &metrics).await { break },
                Err(RecvError::Lagged(n)) => {
                    if !send(&mut socket, &skipped(n), &metrics).await { break }
                }
                Err(RecvError::Closed) => break,
            },
            message = socket.recv() => if closed(message) { break },
        }
    }
    metrics.live_subscribers.dec();
}
