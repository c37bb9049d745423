//! What every protocol door (OTLP, Elasticsearch, Loki, Influx, HEC) shares with the native
//! HTTP door, so that each has the same guarantees: admission by the repository's ingest
//! tokens (in whatever header the protocol uses), the body limits, the in-flight budget
//! charged as bytes arrive (back-pressure: 429 with `Retry-After`, which each door words in
//! its protocol's form), `gzip`/`zstd` bodies, the gatekeeper, de-duplication by client `@id`
//! and an answer only once the events are durable in the bus.
//!
//! A door reads the body with [`http::read_decoded`], decodes it with its parser from
//! [`eddy_ingest::protocols`] off the async workers, and stores with [`store`]; a refusal is
//! a [`Reject`] that the door turns into its protocol's error body.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use eddy_event::Event;
use eddy_ingest::body::{self, Refusal};
use eddy_ingest::{Door, Repository};

use crate::auth::{Caller, Need};
use crate::config::DoorConfig;
use crate::http::{self, error, Reject};
use crate::AppState;

/// The repository a request goes to: the one `named` by the request if it is a repository's
/// name, else the door's `repository`.
pub(crate) fn repository(
    state: &AppState,
    door: &DoorConfig,
    named: Option<&str>,
) -> Result<Arc<Repository>, Reject> {
    if let Some(repo) = named.and_then(|n| state.repository(n)) {
        return Ok(repo);
    }
    state.existing_repository(&door.repository)
}

/// Who sent a door's request, as the router's guard found out (from whichever header or
/// query parameter its protocol uses); without the guard, an anonymous caller.
pub(crate) struct DoorCaller(pub Caller);

impl FromRequestParts<Arc<AppState>> for DoorCaller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let caller = parts.extensions.get::<Caller>().cloned();
        Ok(DoorCaller(
            caller.unwrap_or_else(|| Caller(state.auth.identify(None))),
        ))
    }
}

/// Whether `caller` holds `ingest:<repo>` ([`AppState::check`], the one check of every
/// route): 401 without a token where one is needed, 403 with a wrong one. `scheme` is how the
/// protocol sends it, for the message.
pub(crate) fn authorize(
    state: &AppState,
    repo: &Repository,
    caller: &Caller,
    scheme: &str,
) -> Result<(), Reject> {
    let route = format!("POST door into {}", repo.name);
    match state.check(caller, Need::Ingest(&repo.name), &route) {
        Ok(_) => Ok(()),
        Err(r) if r.status() == StatusCode::UNAUTHORIZED && caller.is_anonymous() => Err(error(
            StatusCode::UNAUTHORIZED,
            format!("a token is needed: {scheme}"),
        )),
        Err(r) => Err(r),
    }
}

/// Drains a body that will not be read (a refused admission), so the client reads the answer.
pub(crate) async fn refuse_unread(body: Body, reject: Reject) -> Reject {
    http::drain(body).await;
    reject
}

/// How a door takes events that do not fit the repository's schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gatekeeping {
    /// All or nothing: any misfit refuses the request (400), nothing is stored.
    Whole,
    /// The protocol reports items one by one: misfits are left out and listed.
    PerItem,
}

/// What [`store`] left out (the rest is durable).
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// Events left out by the gatekeeper ([`Gatekeeping::PerItem`]): index and reason.
    pub refused: Vec<(usize, String)>,
}

/// The gatekeeper then the durable store, off the async workers. Returns once the events are
/// in the bus.
pub(crate) async fn store(
    state: &Arc<AppState>,
    door: Door,
    repo: Arc<Repository>,
    mut events: Vec<Event>,
    bytes: usize,
    received: Instant,
    gatekeeping: Gatekeeping,
) -> Result<Outcome, Reject> {
    let ingest = state.ingest.clone();
    let retry_after = state.ingest.config.retry_after;
    http::blocking(move || {
        let mut refused = Vec::new();
        match gatekeeping {
            Gatekeeping::Whole => body::gatekeep(&repo, &mut events)?,
            Gatekeeping::PerItem => {
                let misfits = repo
                    .refused(&mut events)
                    .map_err(|error| Refusal::NoContract {
                        error,
                        events: events.len(),
                    })?;
                if !misfits.is_empty() {
                    let mut out = misfits.iter().map(|(i, _)| *i).peekable();
                    let mut index = 0;
                    events.retain(|_| {
                        let drop = out.next_if_eq(&index).is_some();
                        index += 1;
                        !drop
                    });
                    refused = misfits
                        .into_iter()
                        .map(|(i, why)| {
                            let reason = why
                                .iter()
                                .map(|r| format!("{}: {}", r.path, r.reason))
                                .collect::<Vec<_>>()
                                .join("; ");
                            (i, format!("does not fit the repository's schema: {reason}"))
                        })
                        .collect();
                }
            }
        }
        let n = events.len();
        ingest
            .store(door, &repo, events, bytes, received)
            .map_err(|error| Refusal::NotStored { error, events: n })?;
        Ok(Outcome { refused })
    })
    .await?
    .map_err(|r: Refusal| http::refused(r, retry_after))
}

/// Reads a request's body, decodes it off the async workers with `decode` (its error is the
/// client's: 400) and stores the events whole: the path of the doors whose protocol answers a
/// request as one.
pub(crate) async fn take_whole<E: std::fmt::Display + Send + 'static>(
    state: &Arc<AppState>,
    door: Door,
    repo: &Arc<Repository>,
    headers: &HeaderMap,
    body: Body,
    received: Instant,
    decode: impl FnOnce(Vec<u8>) -> Result<Vec<Event>, E> + Send + 'static,
) -> Result<(), Reject> {
    let (bytes, charged) = http::read_decoded(state, headers, body).await?;
    let size = bytes.len();
    let events = http::blocking(move || decode(bytes))
        .await?
        .map_err(|e| error(StatusCode::BAD_REQUEST, e.to_string()))?;
    store(
        state,
        door,
        repo.clone(),
        events,
        size,
        received,
        Gatekeeping::Whole,
    )
    .await?;
    drop(charged);
    Ok(())
}

/// Counts an answered request (and, if refused, its events) in the door's metrics.
pub(crate) fn count(state: &AppState, door: Door, repository: &str, result: Result<u16, &Reject>) {
    let metrics = &state.ingest.metrics;
    match result {
        Ok(status) => metrics.request(door, status),
        Err(r) => {
            metrics.request(door, r.status().as_u16());
            metrics.rejected(door, repository, r.reason, r.events);
        }
    }
}

/// The `Retry-After` header value of a refusal, in whole seconds.
pub(crate) fn retry_after(r: &Reject) -> Option<axum::http::HeaderValue> {
    r.retry_after
        .map(|d| axum::http::HeaderValue::from(d.as_secs_f64().ceil() as u64))
}
