//! Alerting: rules on live queries, evaluated per group, with a memory that survives restarts.
//!
//! - [`rule`]: a rule as written ([`AlertConfig`]) and checked ([`rule::RulePlan`]);
//! - [`state`]: one group's alert (inactive, pending, firing) moved by evaluations;
//! - this module: each rule on its own thread, like a pipeline. It keeps a live window of its
//!   query (seeded from the store, then fed from the bus), evaluates it every `every`, and
//!   turns transitions into notices.
//!
//! A notice is first written, with the groups' states, to `alerts/<name>.json` in the data
//! directory (replaced atomically, with fsync), then stored as an event in the system
//! repository [`ALERTS_REPOSITORY`] through the doors' own path, then POSTed to the rule's
//! webhook with back-off. A notice leaves that outbox only once both are done, so a crash in
//! between delivers it again after the restart, with the same `@id` and `Idempotency-Key`
//! (the repository drops the repeat; a receiver can too). A group that was firing is firing
//! again after a restart and does not notify a second time.

pub mod rule;
pub mod state;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eddy_base::io::{IoContext, IoError};
use eddy_base::sync::lock;
use eddy_event::{codec, Event, Value};
use eddy_ingest::{Door, StoreError};
use eddy_log::now_ns;
use eddy_query::{Answer, Live};
use eddy_store::digest;
use serde::{Deserialize, Serialize};
use serde_json::json;

pub use rule::AlertConfig;
use rule::RulePlan;
use state::{GroupState, Timing, Transition};

use crate::metrics::AlertLabel;
use crate::pipelines::Context;
use crate::workers::Workers;
use crate::ReadHandle;

/// The system repository that firing and resolved notices are stored in.
pub const ALERTS_REPOSITORY: &str = "_alerts";

/// Why a rule's evaluation stopped (it starts again after a pause).
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Its configuration does not check.
    #[error("{}", .0.join("; "))]
    Invalid(Vec<String>),
    /// The repository it watches does not exist.
    #[error("repository {0:?} does not exist")]
    NoRepository(String),
    /// The bus could not be read.
    #[error("{0}")]
    Read(#[from] eddy_log::Error),
    /// The live window grew past its memory bound.
    #[error("{0}")]
    Live(#[from] eddy_query::LiveError),
    /// Its state could not be read or kept.
    #[error("its state: {0}")]
    State(IoError),
}

/// Why a notice could not be delivered (it is tried again with back-off).
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The system repository is missing.
    #[error("repository {ALERTS_REPOSITORY:?} does not exist")]
    NoAlertsRepository,
    /// The system repository refused the event.
    #[error("repository {ALERTS_REPOSITORY:?}: {0}")]
    Store(StoreError),
    /// The webhook could not be reached.
    #[error("webhook {url}: {error}")]
    Unreachable {
        /// The URL.
        url: String,
        /// Why.
        error: Box<ureq::Error>,
    },
    /// The webhook answered other than 2xx.
    #[error("webhook {url} answered {status}")]
    Refused {
        /// The URL.
        url: String,
        /// Its status code.
        status: u16,
    },
}

/// What a group's transition tells: sent to the webhook as JSON and stored in `_alerts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    /// Unique per rule, group, transition and time: the event's `@id` and the webhook's
    /// `Idempotency-Key`.
    pub id: uuid::Uuid,
    /// The rule.
    pub alert: String,
    /// `firing` or `resolved`.
    pub status: String,
    /// The group's labels (the fields grouped by).
    pub group: serde_json::Map<String, serde_json::Value>,
    /// The value compared, if the group had a row.
    pub value: Option<f64>,
    /// The condition in words.
    pub condition: String,
    /// When it happened, ns.
    pub at: i64,
    /// When the alert fired (for `resolved`: how long it lasted).
    pub since: i64,
    /// How often this group's alert fired before this firing (the rule's memory).
    pub fired_before: u64,
    /// How the previous firing ended, if there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_ended: Option<String>,
    /// The group's last few events that the query kept (as its steps left them), newest
    /// last: what caused a firing. Only in the webhook's notice, not in `_alerts`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<serde_json::Value>,
}

impl Notice {
    /// The notice as an event of `_alerts`: its fields, the group's labels under `group.`,
    /// tagged with the rule.
    pub fn event(&self) -> Event {
        let mut e = Event::new(self.at);
        e.id = self.id;
        e.id_from_client = true;
        e.tags.insert("alert".into(), self.alert.clone());
        let f = &mut e.fields;
        f.insert("alert".into(), Value::Str(self.alert.clone()));
        f.insert("status".into(), Value::Str(self.status.clone()));
        f.insert("condition".into(), Value::Str(self.condition.clone()));
        f.insert("since".into(), Value::Int(self.since));
        f.insert(
            "fired_before".into(),
            Value::Int(i64::try_from(self.fired_before).unwrap_or(i64::MAX)),
        );
        if let Some(v) = self.value {
            f.insert("value".into(), Value::Float(v));
        }
        if let Some(p) = &self.previous_ended {
            f.insert("previous_ended".into(), Value::Str(p.clone()));
        }
        for (k, v) in &self.group {
            let v = serde_json::from_value(v.clone()).unwrap_or(Value::Null);
            f.insert(format!("group.{k}"), v);
        }
        e
    }
}

/// Events kept per group for notices.
const SAMPLES: usize = 3;

/// Per group (labels as JSON text), its last [`SAMPLES`] events read from the bus.
#[derive(Debug, Default)]
struct Samples(BTreeMap<String, std::collections::VecDeque<serde_json::Value>>);

impl Samples {
    /// Keeps `event`, which the query kept, under its group.
    fn offer(&mut self, plan: &RulePlan, event: &Event) {
        let Some(kept) = plan.prepared.program.process(event) else {
            return;
        };
        let labels: serde_json::Map<String, serde_json::Value> = plan
            .group_by
            .iter()
            .map(|f| (f.clone(), json!(eddy_query::fields::get(&kept, f))))
            .collect();
        let events = self
            .0
            .entry(serde_json::Value::Object(labels).to_string())
            .or_default();
        if events.len() == SAMPLES {
            events.pop_front();
        }
        // As the query's answer shows an event: `@timestamp`, `@rawstring`, `#tags`, fields.
        let columns = eddy_query::engine::event_columns(std::slice::from_ref(&kept));
        let row = eddy_query::engine::row_values(&kept, &columns);
        events.push_back(serde_json::to_value(row).unwrap_or_default());
    }

    fn of(&self, key: &str) -> Vec<serde_json::Value> {
        self.0
            .get(key)
            .map_or(Vec::new(), |e| e.iter().cloned().collect())
    }

    /// Forgets the groups no longer kept.
    fn retain(&mut self, kept: &Kept) {
        self.0.retain(|k, _| kept.groups.contains_key(k));
    }
}

/// A notice on its way: stored in `_alerts` yet, sent to the webhook yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Outgoing {
    notice: Notice,
    stored: bool,
    sent: bool,
}

/// One group as kept on disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct KeptGroup {
    labels: serde_json::Map<String, serde_json::Value>,
    state: GroupState,
}

/// A rule's memory on disk (`alerts/<name>.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Kept {
    /// By the labels as JSON text.
    groups: BTreeMap<String, KeptGroup>,
    /// Notices not yet delivered everywhere, oldest first.
    outbox: Vec<Outgoing>,
}

/// Where rule `name` keeps its memory.
pub fn state_file(data_dir: &Path, name: &str) -> PathBuf {
    data_dir.join("alerts").join(format!("{name}.json"))
}

fn load(path: &Path) -> Result<Kept, IoError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(std::io::Error::other)
            .context(|| format!("reading {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Kept::default()),
        Err(e) => Err(e).context(|| format!("reading {}", path.display())),
    }
}

fn save(path: &Path, kept: &Kept) -> Result<(), IoError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
    }
    let bytes = serde_json::to_vec(kept)
        .map_err(std::io::Error::other)
        .context(|| format!("encoding {}", path.display()))?;
    eddy_base::fs::replace_file(path, &bytes)
}

/// What a running rule reports.
#[derive(Debug, Default)]
pub struct Status {
    /// Evaluations done since the server started (each followed by a delivery attempt of
    /// what was due).
    pub evaluations: AtomicU64,
    /// Notices delivered everywhere.
    pub notified: AtomicU64,
    /// Failed delivery attempts (each retried).
    pub failures: AtomicU64,
    /// Notices not yet delivered.
    pub outbox: AtomicU64,
    /// The last failure, if it is failing now.
    pub error: Mutex<Option<String>>,
    /// Each group's labels and state at the last evaluation.
    pub groups: Mutex<Vec<serde_json::Value>>,
}

impl Status {
    /// The status as JSON.
    pub fn json(&self) -> serde_json::Value {
        let groups = lock(&self.groups).clone();
        json!({
            "evaluations": self.evaluations.load(Ordering::Relaxed),
            "notified": self.notified.load(Ordering::Relaxed),
            "failures": self.failures.load(Ordering::Relaxed),
            "outbox": self.outbox.load(Ordering::Relaxed),
            "firing": groups.iter().filter(|g| g["state"] == "firing").count(),
            "error": *lock(&self.error),
            "groups": groups,
        })
    }
}

/// Every alert rule of a server.
#[derive(Default)]
pub struct Alerts {
    running: Workers<AlertConfig, Status>,
}

impl std::fmt::Debug for Alerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Alerts({})", self.running.len())
    }
}

impl Alerts {
    /// Starts rule `name` on its own thread (the caller checks it is new).
    pub fn start(&self, context: &Arc<Context>, name: &str, config: AlertConfig) {
        let status = Arc::new(Status::default());
        let stop = Arc::new(AtomicBool::new(false));
        let runner = Runner {
            name: name.to_string(),
            plan: config.plan(name),
            config: config.clone(),
            context: context.clone(),
            status: status.clone(),
            stop: stop.clone(),
            http: crate::sink::webhook_agent(),
        };
        let started = self.running.start(
            name,
            format!("alert-{name}"),
            config,
            status.clone(),
            stop,
            move || runner.run(),
        );
        if let Err(e) = started {
            *lock(&status.error) = Some(format!("cannot start its thread: {e}"));
        }
    }

    /// Stops rule `name` (its memory stays on disk); `false` if it was not running.
    pub fn stop(&self, name: &str) -> bool {
        self.running.stop(name)
    }

    /// Stops them all.
    pub fn stop_all(&self) {
        self.running.stop_all();
    }

    /// Whether `name` runs.
    pub fn contains(&self, name: &str) -> bool {
        self.running.contains(name)
    }

    /// Each rule's configuration and status (only `only`, if given).
    pub fn describe(&self, only: Option<&str>) -> Vec<serde_json::Value> {
        self.running.describe(
            only,
            |name, r| json!({ "name": name, "config": r.config, "status": r.status.json() }),
        )
    }
}

/// When the next attempt of a failing notice may be made.
struct Backoff {
    next: Instant,
    wait: Duration,
}

/// A rule's work, on its thread.
struct Runner {
    name: String,
    config: AlertConfig,
    plan: Result<RulePlan, Vec<String>>,
    context: Arc<Context>,
    status: Arc<Status>,
    stop: Arc<AtomicBool>,
    http: ureq::Agent,
}

impl Runner {
    fn label(&self) -> AlertLabel {
        AlertLabel {
            alert: self.name.clone(),
        }
    }

    fn fail(&self, why: String) {
        // Logged when it changes: a rule retrying every second must not flood the log.
        if lock(&self.status.error).as_deref() != Some(why.as_str()) {
            tracing::warn!(alert = %self.name, "{why}");
        }
        *lock(&self.status.error) = Some(why);
    }

    fn run(self) {
        while !self.stop.load(Ordering::Relaxed) {
            match self.round() {
                Ok(()) => return,
                Err(why) => {
                    self.fail(why.to_string());
                    let until = Instant::now() + Duration::from_secs(1);
                    while Instant::now() < until && !self.stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            }
        }
    }

    fn round(&self) -> Result<(), Failure> {
        let plan = self
            .plan
            .as_ref()
            .map_err(|p| Failure::Invalid(p.clone()))?;
        let repo = self
            .context
            .repositories
            .repository(&self.config.from)
            .map(|r| ReadHandle::from(&*r))
            .ok_or_else(|| Failure::NoRepository(self.config.from.clone()))?;
        let path = state_file(&self.context.data_dir, &self.name);
        let mut kept = load(&path).map_err(Failure::State)?;
        // When its condition last held before the stop is not kept (it changes at every
        // evaluation): a firing alert gets its whole `keep_firing_for` again from the start,
        // so time spent down does not resolve it by itself.
        let started = now_ns();
        for g in kept.groups.values_mut() {
            if let state::Phase::Firing { since, .. } = g.state.phase {
                g.state.phase = state::Phase::Firing {
                    since,
                    last_true: started,
                };
            }
        }
        let mut live = Live::new(
            plan.prepared.clone(),
            plan.window,
            eddy_query::live::DEFAULT_MEMORY_LIMIT,
        );
        let (cut, warnings) = live.seed(&repo.store, now_ns());
        for w in warnings {
            tracing::warn!(alert = %self.name, "seeding the window: {w}");
        }
        let mut readers = Vec::new();
        for p in repo.topic.partitions() {
            let from = cut.from(p.id()).max(p.start_offset());
            readers.push(repo.topic.reader(p.id(), from)?.skipping_damage());
        }
        let mut backoff = Backoff {
            next: Instant::now(),
            wait: Duration::ZERO,
        };
        let mut next_evaluation = Instant::now();
        let mut samples = Samples::default();
        while !self.stop.load(Ordering::Relaxed) {
            let mut read = 0;
            for reader in &mut readers {
                let partition = reader.partition().id();
                let records = reader.poll()?;
                read += records.len();
                let now = now_ns();
                for r in records {
                    if cut.holds(partition, r.offset, digest::source_of(r.key.as_deref())) {
                        continue;
                    }
                    if let Ok(event) = codec::decode(&r.value) {
                        // Only what the query kept is worth showing (and worth the second look).
                        if live.add(&event, now) == eddy_query::Added::Kept {
                            samples.offer(plan, &event);
                        }
                    }
                }
            }
            if Instant::now() >= next_evaluation {
                next_evaluation = Instant::now() + plan.every;
                let now = now_ns();
                live.advance(now)?;
                if self.evaluate(plan, &live.answer(now), now, &mut kept, &samples) {
                    save(&path, &kept).map_err(Failure::State)?;
                }
                samples.retain(&kept);
                self.publish(&kept);
                if self.deliver(plan, &mut kept, &mut backoff) {
                    save(&path, &kept).map_err(Failure::State)?;
                }
                self.status
                    .outbox
                    .store(kept.outbox.len() as u64, Ordering::Relaxed);
                self.status.evaluations.fetch_add(1, Ordering::Relaxed);
                self.context
                    .metrics
                    .alert_evaluations
                    .get_or_create(&self.label())
                    .inc();
            }
            if read == 0 {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Ok(())
    }

    /// Moves every group's state to `now` over `answer`, queueing a notice per transition;
    /// whether a state or the outbox changed (to be kept).
    fn evaluate(
        &self,
        plan: &RulePlan,
        answer: &Answer,
        now: i64,
        kept: &mut Kept,
        samples: &Samples,
    ) -> bool {
        let timing = Timing {
            pending_for: plan.pending_for,
            keep_firing_for: plan.keep_firing_for,
        };
        let mut seen = BTreeSet::new();
        let mut changed = false;
        let mut observe =
            |key: &String, g: &mut KeptGroup, value: Option<f64>, out: &mut Vec<Outgoing>| {
                g.state.value = value;
                let before = g.state.phase;
                let transition = g.state.observe(plan.condition.holds(value), now, timing);
                changed |= before != g.state.phase;
                if let Some(t) = transition {
                    let mut notice = self.notice(plan, key, g, t, now);
                    if t == Transition::Fired {
                        notice.events = samples.of(key);
                    }
                    out.push(Outgoing {
                        notice,
                        stored: false,
                        sent: false,
                    });
                }
            };
        let mut out = Vec::new();
        for row in &answer.rows {
            let labels: serde_json::Map<String, serde_json::Value> = plan
                .group_by
                .iter()
                .map(|f| (f.clone(), json!(row.get(f))))
                .collect();
            let key = serde_json::Value::Object(labels.clone()).to_string();
            let value = row.get(&plan.column).and_then(Value::as_f64);
            seen.insert(key.clone());
            let g = kept.groups.entry(key.clone()).or_insert_with(|| KeptGroup {
                labels,
                state: GroupState::default(),
            });
            observe(&key, g, value, &mut out);
        }
        for (key, g) in kept.groups.iter_mut().filter(|(k, _)| !seen.contains(*k)) {
            observe(key, g, None, &mut out);
        }
        // A threshold group gone quiet, that never fired, is not worth remembering.
        if plan.condition != rule::Condition::Absent {
            let before = kept.groups.len();
            kept.groups.retain(|k, g| {
                seen.contains(k) || g.state.fired > 0 || g.state.phase != state::Phase::Inactive
            });
            changed |= before != kept.groups.len();
        }
        changed |= !out.is_empty();
        kept.outbox.extend(out);
        changed
    }

    fn notice(&self, plan: &RulePlan, key: &str, g: &KeptGroup, t: Transition, now: i64) -> Notice {
        let (status, since, fired_before) = match t {
            Transition::Fired => ("firing", now, g.state.fired.saturating_sub(1)),
            Transition::Resolved { since } => ("resolved", since, g.state.fired.saturating_sub(1)),
        };
        let id = xxhash_rust::xxh3::xxh3_128(
            format!("{}\0{key}\0{status}\0{now}", self.name).as_bytes(),
        );
        Notice {
            id: uuid::Uuid::from_u128(id),
            alert: self.name.clone(),
            status: status.into(),
            group: g.labels.clone(),
            value: g.state.value,
            condition: plan.condition.describe(&plan.column),
            at: now,
            since,
            fired_before,
            // No silences yet: every earlier firing ended resolved.
            previous_ended: (fired_before > 0).then(|| "resolved".to_string()),
            events: Vec::new(),
        }
    }

    fn publish(&self, kept: &Kept) {
        let groups = kept
            .groups
            .values()
            .map(|g| {
                let mut v = serde_json::to_value(&g.state).unwrap_or_default();
                v["group"] = json!(g.labels);
                v
            })
            .collect();
        *lock(&self.status.groups) = groups;
    }

    /// Delivers the outbox in order, unless backing off; whether it changed.
    fn deliver(&self, plan: &RulePlan, kept: &mut Kept, backoff: &mut Backoff) -> bool {
        if kept.outbox.is_empty() || Instant::now() < backoff.next {
            return false;
        }
        let mut changed = false;
        for o in &mut kept.outbox {
            let result = self.deliver_one(o, &mut changed);
            if let Err(e) = result {
                self.fail(e.to_string());
                self.status.failures.fetch_add(1, Ordering::Relaxed);
                self.context
                    .metrics
                    .alert_failures
                    .get_or_create(&self.label())
                    .inc();
                backoff.wait = (backoff.wait * 2)
                    .max(Duration::from_millis(100))
                    .min(plan.max_backoff);
                backoff.next = Instant::now() + backoff.wait;
                break;
            }
            backoff.wait = Duration::ZERO;
            *lock(&self.status.error) = None;
        }
        let before = kept.outbox.len();
        kept.outbox.retain(|o| !(o.stored && o.sent));
        let done = (before - kept.outbox.len()) as u64;
        self.status.notified.fetch_add(done, Ordering::Relaxed);
        self.context
            .metrics
            .alert_notifications
            .get_or_create(&self.label())
            .inc_by(done);
        changed
    }

    fn deliver_one(&self, o: &mut Outgoing, changed: &mut bool) -> Result<(), DeliveryError> {
        if !o.stored {
            self.store(&o.notice)?;
            o.stored = true;
            *changed = true;
        }
        if !o.sent {
            if let Some(url) = &self.config.webhook {
                self.post(url, &o.notice)?;
            }
            o.sent = true;
            *changed = true;
        }
        Ok(())
    }

    fn store(&self, notice: &Notice) -> Result<(), DeliveryError> {
        let repo = self
            .context
            .repositories
            .repository(ALERTS_REPOSITORY)
            .ok_or(DeliveryError::NoAlertsRepository)?;
        let mut event = notice.event();
        event.ingest_timestamp = now_ns();
        let bytes = eddy_query::engine::approx_event_bytes(&event);
        match self
            .context
            .ingest
            .store(Door::Pipeline, &repo, vec![event], bytes, Instant::now())
        {
            Ok(_) => Ok(()),
            Err(e) => Err(DeliveryError::Store(e)),
        }
    }

    fn post(&self, url: &str, notice: &Notice) -> Result<(), DeliveryError> {
        let body = serde_json::to_vec(notice).unwrap_or_default();
        let response = self
            .http
            .post(url)
            .header("Content-Type", "application/json")
            .header("Idempotency-Key", &notice.id.simple().to_string())
            .send(&body[..])
            .map_err(|e| DeliveryError::Unreachable {
                url: url.to_string(),
                error: Box::new(e),
            })?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(DeliveryError::Refused {
                url: url.to_string(),
                status,
            })
        }
    }
}
