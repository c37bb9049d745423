//! The audit: admin actions (a token created or revoked, a repository created, a schema
//! registered or deleted, a pipeline, alert rule or silence changed…) and refused
//! authentications are events of the system repository [`AUDIT_REPOSITORY`], searchable with
//! the query language like any other (`action=token.create | table([actor, target])`).
//!
//! An event names the actor by its token's id (`tok_…`, `config:…` or `anonymous`), never by
//! its secret. Fields: `action`, `actor`, `status` (the answer's code), `method`, `route`,
//! `target` (what was acted on, when known) and `reason` (of a refusal); tagged
//! `#type=audit`.
//!
//! Recording never waits on the bus: events go through a bounded queue to a thread that
//! stores them in batches (creating the repository the first time). A queue full (a flood of
//! refused requests) drops events and counts them in the log.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Mutex, Weak};
use std::time::{Duration, Instant};

use eddy_base::sync::lock;
use eddy_event::{Event, Value};
use eddy_ingest::Door;

use crate::auth::Denied;
use crate::config::RepositoryConfig;
use crate::AppState;

/// The system repository of the audit.
pub const AUDIT_REPOSITORY: &str = "_audit";

/// Events waiting to be stored at most.
const QUEUE: usize = 10_000;

/// The audit's queue; see the module's documentation.
#[derive(Debug)]
pub struct Audit {
    queue: Mutex<Option<SyncSender<Event>>>,
    waiting: Mutex<Option<Receiver<Event>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    dropped: AtomicU64,
}

impl Default for Audit {
    fn default() -> Self {
        let (tx, rx) = sync_channel(QUEUE);
        Audit {
            queue: Mutex::new(Some(tx)),
            waiting: Mutex::new(Some(rx)),
            writer: Mutex::new(None),
            dropped: AtomicU64::new(0),
        }
    }
}

/// One audit event.
#[derive(Debug, Default)]
pub struct Entry<'a> {
    /// What was done: `token.create`, `auth.refused`, …
    pub action: &'a str,
    /// The actor's token id.
    pub actor: &'a str,
    /// The answer's status code.
    pub status: u16,
    /// The request's method.
    pub method: &'a str,
    /// The route (its pattern, such as `/api/v1/tokens/{id}`).
    pub route: &'a str,
    /// What was acted on.
    pub target: Option<&'a str>,
    /// Why it was refused.
    pub reason: Option<&'a str>,
}

impl Audit {
    /// Starts the thread that stores the events into [`AUDIT_REPOSITORY`] of `state`.
    pub fn start(&self, state: Weak<AppState>) {
        let Some(rx) = lock(&self.waiting).take() else {
            return;
        };
        let thread = std::thread::Builder::new()
            .name("audit".into())
            .spawn(move || write_events(rx, state));
        match thread {
            Ok(t) => *lock(&self.writer) = Some(t),
            Err(e) => {
                tracing::error!("the audit cannot start: {e}; admin actions are not recorded")
            }
        }
    }

    /// Stores what is queued and stops.
    pub fn stop(&self) {
        lock(&self.queue).take();
        if let Some(t) = lock(&self.writer).take() {
            let _ = t.join();
        }
    }

    /// Queues an event.
    pub fn record(&self, entry: Entry<'_>) {
        let now = eddy_log::now_ns();
        let mut e = Event::new(now);
        e.tags.insert("type".into(), "audit".into());
        let f = &mut e.fields;
        let mut text = |k: &str, v: &str| {
            f.insert(k.into(), Value::Str(v.into()));
        };
        text("action", entry.action);
        text("actor", entry.actor);
        text("method", entry.method);
        text("route", entry.route);
        if let Some(t) = entry.target {
            text("target", t);
        }
        if let Some(r) = entry.reason {
            text("reason", r);
        }
        f.insert("status".into(), Value::Int(i64::from(entry.status)));
        let sent = match lock(&self.queue).as_ref() {
            Some(q) => q.try_send(e),
            None => return,
        };
        if let Err(TrySendError::Full(_)) = sent {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(dropped = n, "the audit queue is full: events dropped");
            }
        }
    }

    /// Records a refused authentication.
    pub fn refused(&self, denied: &Denied, route: &str) {
        let (actor, reason, status) = match denied {
            Denied::Missing => ("anonymous".to_string(), "no token".to_string(), 401),
            Denied::Unknown => ("unknown".to_string(), "unknown token".to_string(), 403),
            Denied::Expired(id, _) => (id.clone(), "expired token".to_string(), 401),
            Denied::Lacking(id, need) => (id.clone(), format!("lacks the scope {need}"), 403),
        };
        let (method, route) = route.split_once(' ').unwrap_or(("", route));
        self.record(Entry {
            action: "auth.refused",
            actor: &actor,
            status,
            method,
            route,
            target: None,
            reason: Some(&reason),
        });
    }
}

fn write_events(rx: Receiver<Event>, state: Weak<AppState>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        // What arrives within a moment joins the batch: one append, one fsync.
        let until = Instant::now() + Duration::from_millis(20);
        while batch.len() < 1000 {
            match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        let Some(state) = state.upgrade() else {
            return;
        };
        let repo = match state.repository(AUDIT_REPOSITORY) {
            Some(r) => r,
            None => match state.create_repository(AUDIT_REPOSITORY, RepositoryConfig::default()) {
                Ok(_) => match state.repository(AUDIT_REPOSITORY) {
                    Some(r) => r,
                    None => continue,
                },
                Err(r) => {
                    tracing::error!("the audit repository cannot be created: {}", r.message());
                    continue;
                }
            },
        };
        let bytes = batch
            .iter()
            .map(eddy_query::engine::approx_event_bytes)
            .sum();
        let n = batch.len();
        if let Err(e) = state
            .ingest
            .store(Door::Pipeline, &repo, batch, bytes, Instant::now())
        {
            tracing::error!(events = n, "audit events not stored: {e}");
        }
    }
}
