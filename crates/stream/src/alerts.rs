//! Alerting: rules on live queries, evaluated per group, with a memory that survives restarts.
//!
//! - [`rule`]: a rule as written ([`AlertConfig`]) and checked ([`rule::RulePlan`]);
//! - [`state`]: one group's alert (inactive, pending, firing) moved by evaluations;
//! - this module: the rules at run time. Each keeps a live window of its query (seeded from
//!   the store, then fed from the bus by its repository's evaluator, [`evaluator`]), is
//!   evaluated every `every`, and turns transitions into notices.
//!
//! A notice is first written, with the groups' states, to `alerts/<name>.json` in the data
//! directory (replaced atomically, with fsync), then sent to the rule's channels and stored
//! as an event in the system repository [`ALERTS_REPOSITORY`] through the doors' own path,
//! each with back-off (a busy `_alerts` does not hold the channels back). The writing and
//! delivering run on a small pool of threads shared by all rules ([`deliveries`]). A notice
//! leaves that outbox only once both are done, so a crash in between delivers it again after
//! the restart, with the same `@id` and `Idempotency-Key` (the repository drops the repeat;
//! a receiver can too). A group that was firing is firing
//! again after a restart and does not notify a second time.
//!
//! On a shared bus one node of the cluster holds a rule's duty ([`duty`]); it also publishes
//! the rule's memory to the bus whenever it changes, and the node that takes the duty over
//! continues from it ([`memory`]), so a failover neither notifies a firing group again nor
//! loses its `resolved`.

pub mod channel;
pub mod channel_groups;
mod deliveries;
pub mod duty;
mod evaluator;
pub mod grouping;
pub mod memory;
pub mod replay;
pub mod rule;
pub mod series;
pub mod silence;
pub mod state;
pub mod template;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use eddy_base::io::{IoContext, IoError};
use eddy_base::sync::{lock, write};
use eddy_event::{Event, Value};
use eddy_ingest::{Door, StoreError};
use eddy_log::now_ns;
use eddy_query::{Answer, Live};
use serde::{Deserialize, Serialize};
use serde_json::json;

use channel::Channel;
pub use channel::ChannelConfig;
pub use rule::AlertConfig;
use rule::{RulePlan, WEBHOOK_CHANNEL};
use series::Series;
use silence::Silences;
use state::{GroupState, Timing, Transition};

use deliveries::Pool;
use evaluator::Evaluator;

use crate::metrics::{AlertLabel, ChannelLabel};
use crate::pipelines::Context;

/// The system repository that firing and resolved notices are stored in.
pub const ALERTS_REPOSITORY: &str = "_alerts";

/// Why a rule's evaluation stopped (it starts again after a pause).
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Its configuration does not check.
    #[error("{}", .0.join("; "))]
    Invalid(Vec<String>),
    /// A channel it names is not configured, or is invalid.
    #[error("{0}")]
    Channel(String),
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
    /// A channel did not take it.
    #[error("channel {name:?}: {error}")]
    Channel {
        /// The channel's name.
        name: String,
        /// Why.
        error: channel::ChannelError,
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
    /// How the previous firing ended (`resolved`, or `silenced` when its end was muted), if
    /// there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_ended: Option<String>,
    /// Why this notice went to no channel: `silenced by <id>`, `inhibited by <rule>`,
    /// `throttled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub muted: Option<String>,
    /// More about it: `still firing` for a repeat or an expired silence, a failing channel's
    /// error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The group's last few events that the query kept (as its steps left them), newest
    /// last: what caused a firing. Only in the webhook's notice, not in `_alerts`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<serde_json::Value>,
    /// A notification group's message (`group_by`): the notices it carries, in order; its
    /// `group` is then the labels grouped by. Only sent to channels, never stored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<Notice>,
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
        for (key, text) in [
            ("previous_ended", &self.previous_ended),
            ("muted", &self.muted),
            ("note", &self.note),
        ] {
            if let Some(t) = text {
                f.insert(key.into(), Value::Str(t.clone()));
            }
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

/// A notice on its way: stored in `_alerts` yet, and the channels still to take it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Outgoing {
    notice: Notice,
    stored: bool,
    /// Written by the first version, which had only the rule's webhook.
    #[serde(default, skip_serializing)]
    sent: bool,
    /// The channels that have not taken it yet (`None`: written by the first version, all of
    /// the rule's channels unless `sent`).
    #[serde(default)]
    to: Option<Vec<String>>,
}

impl Outgoing {
    /// `notice` for every one of `channels`, unless the throttle (`most` per period, counted
    /// in `throttle`) mutes it, or it is muted already (then for none). `stored`: it is not
    /// to be written to `_alerts` (a group's message, whose members are written on their own).
    fn to_channels(
        mut notice: Notice,
        channels: &BTreeMap<String, Channel>,
        limit: Option<(usize, Duration)>,
        throttle: &mut Throttle,
        stored: bool,
    ) -> Outgoing {
        if let Some((most, per)) = limit.filter(|_| notice.muted.is_none()) {
            if !throttle.admit(most, per, notice.at) {
                notice.muted = Some("throttled".into());
            }
        }
        let to = match notice.muted {
            Some(_) => Vec::new(),
            None => channels.keys().cloned().collect(),
        };
        Outgoing {
            notice,
            stored,
            sent: false,
            to: Some(to),
        }
    }

    /// A notice stored in `_alerts` and sent to no channel.
    fn stored_only(notice: Notice) -> Outgoing {
        Outgoing {
            notice,
            stored: false,
            sent: false,
            to: Some(Vec::new()),
        }
    }

    fn done(&self) -> bool {
        self.stored && self.to.as_ref().is_some_and(Vec::is_empty)
    }
}

/// One group as kept on disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct KeptGroup {
    labels: serde_json::Map<String, serde_json::Value>,
    state: GroupState,
    /// How its last firing ended: `resolved`, or `silenced` when a silence muted its end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ended: Option<String>,
    /// When it was last notified as firing, ns (for `repeat_interval`).
    #[serde(default)]
    notified_at: i64,
    /// Its recent values (`change`, `anomaly`).
    #[serde(default)]
    series: Series,
    /// Its phase changed at this evaluation (to be kept).
    #[serde(skip)]
    changed: bool,
}

impl KeptGroup {
    fn new(labels: serde_json::Map<String, serde_json::Value>) -> KeptGroup {
        KeptGroup {
            labels,
            state: GroupState::default(),
            ended: None,
            notified_at: 0,
            series: Series::default(),
            changed: false,
        }
    }
}

/// A rule's memory on disk (`alerts/<name>.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Kept {
    /// By the labels as JSON text.
    groups: BTreeMap<String, KeptGroup>,
    /// Notices not yet delivered everywhere, oldest first.
    outbox: Vec<Outgoing>,
    /// The silences that muted notices of this rule, with the groups they muted: each gets a
    /// `silence_expired` notice when the silence ends.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    muted_by: BTreeMap<String, BTreeSet<String>>,
    /// When notices last went to the channels (`throttle`), so that a restart does not
    /// open the throttle again.
    #[serde(default, skip_serializing_if = "Throttle::is_empty")]
    throttle: Throttle,
    /// The notification groups (`group_by`) by their labels as JSON text: what waits, and
    /// when each last sent.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    batches: BTreeMap<String, grouping::Batch>,
    /// Changed since it was last kept.
    #[serde(skip)]
    dirty: bool,
}

/// When the last notices went to the channels, ns, oldest first: at most as many as the
/// throttle lets through per period.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
struct Throttle(VecDeque<i64>);

impl Throttle {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether one more notice at `now` fits `most` per `per`; counted if it does.
    fn admit(&mut self, most: usize, per: Duration, now: i64) -> bool {
        let per = i64::try_from(per.as_nanos()).unwrap_or(i64::MAX);
        while self
            .0
            .front()
            .is_some_and(|t| now.saturating_sub(*t) >= per)
        {
            self.0.pop_front();
        }
        if self.0.len() >= most {
            return false;
        }
        self.0.push_back(now);
        true
    }
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
    /// Events that reached the rule after their time had left its window: never counted in
    /// it (a slow disk, a shipper's backlog, a client's clock behind).
    pub late: AtomicU64,
    /// The last failure, if it is failing now.
    pub error: Mutex<Option<String>>,
    /// Each group's labels and state at the last evaluation.
    pub groups: Mutex<Vec<serde_json::Value>>,
    /// Per channel: failed attempts and the last error while it is failing.
    pub channels: Mutex<BTreeMap<String, (u64, Option<String>)>>,
}

impl Status {
    /// The status as JSON.
    pub fn json(&self) -> serde_json::Value {
        let groups = lock(&self.groups).clone();
        let channels: serde_json::Map<String, serde_json::Value> = lock(&self.channels)
            .iter()
            .map(|(name, (failures, error))| {
                (
                    name.clone(),
                    json!({ "failures": failures, "error": error }),
                )
            })
            .collect();
        json!({
            "evaluations": self.evaluations.load(Ordering::Relaxed),
            "notified": self.notified.load(Ordering::Relaxed),
            "failures": self.failures.load(Ordering::Relaxed),
            "outbox": self.outbox.load(Ordering::Relaxed),
            "late_events": self.late.load(Ordering::Relaxed),
            "firing": groups.iter().filter(|g| g["state"] == "firing").count(),
            "error": *lock(&self.error),
            "groups": groups,
            "channels": channels,
        })
    }
}

/// What rules share: the silences, the channels, and which groups fire (for inhibition).
#[derive(Debug)]
pub struct Shared {
    /// Every silence.
    pub silences: Silences,
    /// The configured channels by name.
    pub channels: BTreeMap<String, ChannelConfig>,
    /// Per rule, the labels of its firing groups.
    firing: RwLock<BTreeMap<String, Vec<serde_json::Map<String, serde_json::Value>>>>,
    /// The threads that write the rules' memories and deliver their notices.
    deliveries: Pool<Rule>,
    /// The HTTP client of every rule's webhook and Slack channels: one connection pool and
    /// TLS configuration for the server, not one per rule (a thousand rules each holding
    /// their own cost tens of kilobytes apiece).
    http: ureq::Agent,
    /// The channels that group notices across rules (`group_by` on the channel), by name.
    grouped: BTreeMap<String, Arc<channel_groups::GroupedChannel>>,
}

impl Shared {
    /// The rule that inhibits a group of rule `config` with `labels`, if one does.
    fn inhibitor(
        &self,
        config: &AlertConfig,
        labels: &serde_json::Map<String, serde_json::Value>,
    ) -> Option<String> {
        let firing = self.firing.read().unwrap_or_else(|p| p.into_inner());
        config.inhibited_by.iter().find_map(|rule| {
            let groups = firing.get(rule)?;
            groups
                .iter()
                .any(|g| {
                    config
                        .inhibit_equal
                        .iter()
                        .all(|l| g.get(l).is_some() && g.get(l) == labels.get(l))
                })
                .then(|| rule.clone())
        })
    }
}

/// Every alert rule of a server.
pub struct Alerts {
    rules: Mutex<BTreeMap<String, Arc<Rule>>>,
    shared: Arc<Shared>,
    evaluator: Evaluator,
}

impl Default for Alerts {
    fn default() -> Alerts {
        Alerts::new(Silences::in_memory(), BTreeMap::new())
    }
}

impl std::fmt::Debug for Alerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Alerts({})", lock(&self.rules).len())
    }
}

impl Alerts {
    /// Rules that will share `silences` and `channels`.
    pub fn new(silences: Silences, channels: BTreeMap<String, ChannelConfig>) -> Alerts {
        let http = crate::sink::webhook_agent();
        Alerts {
            rules: Mutex::new(BTreeMap::new()),
            shared: Arc::new(Shared {
                silences,
                grouped: channel_groups::grouped(&channels, &http),
                channels,
                firing: RwLock::default(),
                deliveries: Pool::new("alert-delivery"),
                http,
            }),
            evaluator: Evaluator::default(),
        }
    }

    /// The silences.
    pub fn silences(&self) -> &Silences {
        &self.shared.silences
    }

    /// Every problem with the channels `config` names that are not configured.
    pub fn channel_problems(&self, name: &str, config: &AlertConfig) -> Vec<String> {
        unknown_channels(name, config, &self.shared.channels)
    }

    /// Starts rule `name` (the caller checks it is new): its window is seeded off the
    /// evaluation threads, then its repository's evaluator runs it with the others.
    pub fn start(&self, context: &Arc<Context>, name: &str, config: AlertConfig) {
        // The grouped channels keep their groups beside the rules' memories: they wake with
        // the first rule, and send what waited before a restart.
        for (channel, grouped) in &self.shared.grouped {
            if let Err(e) = grouped.open(&context.data_dir, &context.metrics) {
                tracing::error!(channel = %channel, "its notification groups: {e}");
            }
        }
        let rule = Arc::new_cyclic(|me: &std::sync::Weak<Rule>| Rule {
            name: name.to_string(),
            plan: config.plan(name),
            channels: channels_of(name, &config, &self.shared.channels),
            config,
            context: context.clone(),
            shared: self.shared.clone(),
            status: Arc::new(Status::default()),
            memory: Mutex::new(Memory::default()),
            io: Mutex::new(()),
            delivery: Mutex::new(Delivery::default()),
            stopped: AtomicBool::new(false),
            working: AtomicBool::new(false),
            duty: context
                .alert_duty
                .take_part(name, me.clone() as std::sync::Weak<dyn duty::DutyHolder>),
        });
        lock(&self.rules).insert(name.to_string(), rule.clone());
        self.evaluator.add(rule);
    }

    /// Stops rule `name` (its memory stays on disk, and nothing writes it any more once this
    /// returns); `false` if it was not running.
    pub fn stop(&self, name: &str) -> bool {
        let Some(rule) = lock(&self.rules).remove(name) else {
            return false;
        };
        rule.stop();
        true
    }

    /// Stops them all, and the evaluation threads.
    pub fn stop_all(&self) {
        let rules: Vec<Arc<Rule>> = std::mem::take(&mut *lock(&self.rules))
            .into_values()
            .collect();
        for rule in rules {
            rule.stop();
        }
        self.evaluator.stop();
        self.shared.deliveries.stop();
        for grouped in self.shared.grouped.values() {
            grouped.stop();
        }
    }

    /// Each channel that groups notices across rules: its settings and its groups.
    pub fn notification_groups(&self) -> Vec<serde_json::Value> {
        self.shared.grouped.values().map(|g| g.describe()).collect()
    }

    /// Whether `name` runs.
    pub fn contains(&self, name: &str) -> bool {
        lock(&self.rules).contains_key(name)
    }

    /// Rule `name`'s configuration, if it runs.
    pub fn config(&self, name: &str) -> Option<AlertConfig> {
        lock(&self.rules).get(name).map(|r| r.config.clone())
    }

    /// Each rule's configuration and status (only `only`, if given).
    pub fn describe(&self, only: Option<&str>) -> Vec<serde_json::Value> {
        lock(&self.rules)
            .iter()
            .filter(|(name, _)| only.is_none_or(|o| o == name.as_str()))
            .map(|(name, r)| {
                let mut status = r.status.json();
                status["on_duty"] = json!(r.duty.held());
                json!({ "name": name, "config": r.config, "status": status })
            })
            .collect()
    }
}

/// The problems of rule `name` naming channels that are not in `configured`.
pub fn unknown_channels(
    name: &str,
    config: &AlertConfig,
    configured: &BTreeMap<String, ChannelConfig>,
) -> Vec<String> {
    config
        .channels
        .iter()
        .filter(|c| !configured.contains_key(*c))
        .map(|c| {
            format!(
                "alert {name:?}: channel {c:?} is not configured (add [channels.{c}]; configured: {})",
                if configured.is_empty() {
                    "none".to_string()
                } else {
                    configured.keys().cloned().collect::<Vec<_>>().join(", ")
                }
            )
        })
        .collect()
}

/// The rule's channels by name, checked (its own `webhook` as [`WEBHOOK_CHANNEL`]).
fn channels_of(
    name: &str,
    config: &AlertConfig,
    configured: &BTreeMap<String, ChannelConfig>,
) -> Result<BTreeMap<String, Channel>, String> {
    let mut problems = unknown_channels(name, config, configured);
    let mut out = BTreeMap::new();
    if let Some(url) = &config.webhook {
        out.insert(
            WEBHOOK_CHANNEL.to_string(),
            Channel::Webhook {
                url: url.clone(),
                secret: None,
            },
        );
    }
    for c in &config.channels {
        if let Some(channel) = configured.get(c) {
            match channel.plan(c) {
                Ok(ch) => {
                    out.insert(c.clone(), ch);
                }
                Err(p) => problems.extend(p),
            }
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems.join("; "))
    }
}

/// When the next attempt of a failing delivery may be made.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    next: Instant,
    wait: Duration,
}

impl Backoff {
    fn ready(&self) -> bool {
        Instant::now() >= self.next
    }

    fn failed(&mut self, max: Duration) {
        self.wait = (self.wait * 2).max(Duration::from_millis(100)).min(max);
        self.next = Instant::now() + self.wait;
    }
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            next: Instant::now(),
            wait: Duration::ZERO,
        }
    }
}

/// A rule at run time: what it is, what it remembers and what it reports. Its live window is
/// its repository's evaluator's ([`evaluator`]), which evaluates it in memory only; writing
/// its memory and delivering its notices happen on the server's delivery pool
/// ([`deliveries`]), which takes the rule while it has something to write or deliver
/// ([`Rule::wake`]).
pub(crate) struct Rule {
    name: String,
    config: AlertConfig,
    plan: Result<RulePlan, Vec<String>>,
    channels: Result<BTreeMap<String, Channel>, String>,
    context: Arc<Context>,
    shared: Arc<Shared>,
    status: Arc<Status>,
    /// What it remembers, changed by evaluations and deliveries.
    memory: Mutex<Memory>,
    /// Held while its state file is written, so that a stopped rule writes it no more.
    io: Mutex<()>,
    /// Its back-offs, used by its delivery passes only.
    delivery: Mutex<Delivery>,
    /// Set once it is stopped.
    stopped: AtomicBool,
    /// Whether it is queued on the delivery pool or being worked on there.
    working: AtomicBool,
    /// Whether this node evaluates it (one node of a cluster does: [`duty`]).
    duty: duty::Duty,
}

/// A rule's memory and whether it was read yet (from disk, or on a shared bus from the bus
/// when the duty came).
#[derive(Default)]
struct Memory {
    kept: Kept,
    loaded: bool,
    /// On a shared bus: changed since it was last published ([`memory`]).
    unpublished: bool,
}

/// A rule's delivery state that is not kept across restarts.
#[derive(Default)]
struct Delivery {
    /// `_alerts`'s back-off.
    store: Backoff,
    /// Publishing the memory's (on a shared bus).
    publish: Backoff,
    /// Each channel's.
    channels: BTreeMap<String, Backoff>,
}

/// Between two delivery passes of a rule that still has something to do (a channel backing
/// off, a state that could not be written).
const PASS_PAUSE: Duration = Duration::from_millis(50);

impl deliveries::Task for Rule {
    /// Writes the memory when it changed, then delivers the outbox; again after a pause while
    /// something is left (back-offs are waited out in the pool's queue, not on a thread).
    fn run(self: &Arc<Self>) -> Option<Duration> {
        if self.stopped() {
            self.working.store(false, Ordering::Release);
            return None;
        }
        if self.write_and_deliver() {
            return Some(PASS_PAUSE);
        }
        self.working.store(false, Ordering::Release);
        // Work may have come in after the last look; if so and no one queued it, carry on.
        let more = {
            let m = lock(&self.memory);
            m.kept.dirty || m.unpublished || !m.kept.outbox.is_empty()
        };
        if more && !self.working.swap(true, Ordering::AcqRel) {
            return Some(Duration::ZERO);
        }
        None
    }
}

impl duty::DutyHolder for Rule {
    /// Takes the rule's memory over from the bus: its latest record there, or the state file
    /// when the bus holds none yet (a cluster that ran before memories were published).
    fn gained(self: Arc<Self>) -> Result<(), String> {
        if self.stopped() {
            return Err("the rule is stopping".into());
        }
        let Some(topic) = self.duty.memory() else {
            return Ok(());
        };
        let (kept, from) = match topic.latest::<Kept>(&self.name) {
            Ok(Some((offset, kept))) => {
                (kept, format!("{} at offset {offset}", memory::MEMORY_TOPIC))
            }
            Ok(None) => {
                let path = state_file(&self.context.data_dir, &self.name);
                let kept = load(&path).map_err(|e| Failure::State(e).to_string())?;
                (kept, format!("{} (the bus holds none)", path.display()))
            }
            Err(e) => return Err(e.to_string()),
        };
        tracing::info!(
            alert = %self.name,
            groups = kept.groups.len(),
            firing = kept.groups.values().filter(|g| g.state.firing()).count(),
            undelivered = kept.outbox.len(),
            "took over the rule's memory from {from}"
        );
        self.install(kept);
        Ok(())
    }

    /// Publishes what changed since the last publication (the bus hands the duty on only
    /// after this), then forgets the memory: the next holder continues from the bus, and so
    /// does this node if the duty comes back.
    fn lost(&self) {
        let last = std::mem::take(&mut *lock(&self.memory));
        if let Some(topic) = self.duty.memory() {
            if last.loaded && (last.kept.dirty || last.unpublished) {
                let published = memory::encode(&self.name, &last.kept)
                    .and_then(|r| topic.publish(&self.name, r));
                if let Err(e) = published {
                    tracing::warn!(alert = %self.name, "its last memory before the duty moved was not published: {e}");
                }
            }
        }
        self.status.outbox.store(0, Ordering::Relaxed);
        lock(&self.status.groups).clear();
        self.unmark_firing();
    }
}

impl Rule {
    /// Counts an event that came after its time had left the window.
    pub(crate) fn count_late(&self) {
        self.status.late.fetch_add(1, Ordering::Relaxed);
        self.context
            .metrics
            .alert_late_events
            .get_or_create(&self.label())
            .inc();
    }

    fn label(&self) -> AlertLabel {
        AlertLabel {
            alert: self.name.clone(),
        }
    }

    fn stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }

    fn fail(&self, why: String) {
        // Logged when it changes: a rule retrying every second must not flood the log.
        if lock(&self.status.error).as_deref() != Some(why.as_str()) {
            tracing::warn!(alert = %self.name, "{why}");
        }
        *lock(&self.status.error) = Some(why);
    }

    /// Stops it: evaluations end at once; a delivery under way is waited for (each attempt
    /// is bounded) and what it changed is written (and published, on a shared bus, before
    /// the duty is left for another node to take). Once this returns, its state file is not
    /// written again and it marks no group firing for inhibition.
    fn stop(&self) {
        {
            let _memory = lock(&self.memory);
            self.stopped.store(true, Ordering::Relaxed);
        }
        let deadline = Instant::now() + channel::TIMEOUT + Duration::from_secs(5);
        while self.working.load(Ordering::Acquire) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let last = {
            let mut m = lock(&self.memory);
            let dirty = std::mem::take(&mut m.kept.dirty);
            let unpublished = std::mem::take(&mut m.unpublished);
            let kept = &m.kept;
            let file = (dirty && m.loaded).then(|| serde_json::to_vec(kept));
            let record = (self.duty.memory().is_some() && (dirty || unpublished) && m.loaded)
                .then(|| memory::encode(&self.name, kept));
            (file, record)
        };
        {
            let _io = lock(&self.io);
            if let (Some(Ok(bytes)), true) = (last.0, self.duty.held()) {
                if let Err(e) = self.write_file(&bytes) {
                    tracing::warn!(alert = %self.name, "its last state was not kept: {e}");
                }
            }
            if let (Some(topic), Some(record)) = (self.duty.memory(), last.1) {
                let published = record.and_then(|r| {
                    self.duty
                        .while_held(|| topic.publish(&self.name, r))
                        .transpose()
                });
                if let Err(e) = published {
                    tracing::warn!(alert = %self.name, "its last memory was not published: {e}");
                }
            }
        }
        self.duty.leave();
        self.unmark_firing();
    }

    /// Marks none of its groups firing for inhibition any more.
    fn unmark_firing(&self) {
        write(&self.shared.firing).remove(&self.name);
    }

    /// Reads its memory from disk, once. On a shared bus it is read when the duty comes
    /// instead ([`duty::DutyHolder::gained`]).
    fn load_memory(self: &Arc<Self>) -> Result<(), Failure> {
        if lock(&self.memory).loaded || self.duty.memory().is_some() {
            return Ok(());
        }
        let kept = load(&state_file(&self.context.data_dir, &self.name)).map_err(Failure::State)?;
        self.install(kept);
        Ok(())
    }

    /// Continues from memory `kept` (read from disk or the bus). When its condition last held
    /// is not kept (it changes at every evaluation): a firing alert gets its whole
    /// `keep_firing_for` again from the start, so time spent down does not resolve it by
    /// itself.
    fn install(self: &Arc<Self>, mut kept: Kept) {
        let started = now_ns();
        for g in kept.groups.values_mut() {
            if let state::Phase::Firing { since, .. } = g.state.phase {
                g.state.phase = state::Phase::Firing {
                    since,
                    last_true: started,
                };
            }
        }
        // A notice written by the first version goes to the channels it had not reached.
        if let Ok(channels) = self.channels.as_ref() {
            for o in &mut kept.outbox {
                if o.to.is_none() {
                    o.to = Some(if o.sent {
                        Vec::new()
                    } else {
                        channels.keys().cloned().collect()
                    });
                }
            }
        }
        let pending = !kept.outbox.is_empty();
        self.status
            .outbox
            .store(kept.outbox.len() as u64, Ordering::Relaxed);
        *lock(&self.memory) = Memory {
            kept,
            loaded: true,
            unpublished: false,
        };
        if pending {
            self.wake();
        }
    }

    /// One evaluation at `now` over its window `live`, in memory: the groups move, notices are
    /// routed into the outbox, and it is queued for delivery if there is something to write or send.
    fn evaluate(self: &Arc<Self>, live: &mut Live, samples: &mut Samples) -> Result<(), Failure> {
        let (Ok(plan), Ok(channels)) = (self.plan.as_ref(), self.channels.as_ref()) else {
            return Ok(());
        };
        let now = now_ns();
        live.advance(now)?;
        let answer = live.answer(now);
        let mut memory = lock(&self.memory);
        // Not loaded: the duty left this node since the driver looked.
        if self.stopped() || !memory.loaded {
            return Ok(());
        }
        let kept = &mut memory.kept;
        let notices = evaluate(&self.name, plan, &answer, now, kept, samples);
        let mut changed = !notices.is_empty();
        changed |= self.expire_silences(plan, now, kept);
        for n in notices {
            self.route(n, channels, kept);
        }
        changed |= grouping::flush(&self.name, plan, channels, kept, now);
        kept.dirty |= changed;
        samples.retain(kept);
        self.publish(kept);
        let wake = kept.dirty || !kept.outbox.is_empty();
        self.status
            .outbox
            .store(kept.outbox.len() as u64, Ordering::Relaxed);
        drop(memory);
        if wake {
            self.wake();
        }
        self.status.evaluations.fetch_add(1, Ordering::Relaxed);
        self.context
            .metrics
            .alert_evaluations
            .get_or_create(&self.label())
            .inc();
        Ok(())
    }

    /// Makes sure its memory is written and its outbox delivered: queues it on the delivery
    /// pool unless it is queued or being worked on already.
    fn wake(self: &Arc<Self>) {
        if self.working.swap(true, Ordering::AcqRel) {
            return;
        }
        self.shared.deliveries.submit(self.clone());
    }
    /// Writes the memory if it changed and makes one delivery pass over the outbox; whether
    /// anything is left to do.
    fn write_and_deliver(&self) -> bool {
        let topic = self.duty.memory();
        let publish_ready = lock(&self.delivery).publish.ready();
        let (bytes, record, mut outbox) = {
            let mut m = lock(&self.memory);
            if !m.loaded {
                return false;
            }
            let dirty = std::mem::take(&mut m.kept.dirty);
            m.unpublished |= dirty && topic.is_some();
            let kept = &m.kept;
            let bytes = dirty.then(|| serde_json::to_vec(kept));
            let record = (m.unpublished && publish_ready).then(|| memory::encode(&self.name, kept));
            (bytes, record, m.kept.outbox.clone())
        };
        if let Some(bytes) = bytes {
            let written = bytes
                .map_err(std::io::Error::other)
                .context(|| format!("encoding the state of alert {}", self.name))
                .and_then(|b| self.write(&b));
            if let Err(e) = written {
                self.fail(Failure::State(e).to_string());
                lock(&self.memory).kept.dirty = true;
                return true;
            }
        }
        // Published before its notices go out, so that a node taking the duty over after a
        // crash delivers them again rather than never.
        if let (Some(topic), Some(record)) = (topic, record) {
            if !self.publish_memory(topic, record) {
                return false;
            }
        }
        // Off duty, the node on duty delivers (what this one had queued is in the memory it
        // took over).
        if !self.duty.held() {
            return false;
        }
        if outbox.is_empty() {
            return lock(&self.memory).unpublished;
        }
        let (Ok(plan), Ok(channels)) = (self.plan.as_ref(), self.channels.as_ref()) else {
            return false;
        };
        let taken = outbox.len();
        let failing = self.deliver(plan, channels, &mut outbox);
        let mut m = lock(&self.memory);
        let kept = &mut m.kept;
        // Meanwhile evaluations only appended: the first `taken` are those delivered here.
        if kept.outbox.len() >= taken
            && kept.outbox[..taken]
                .iter()
                .zip(&outbox)
                .all(|(a, b)| a.notice.id == b.notice.id)
        {
            let changed = kept.outbox[..taken] != outbox[..] || !failing.is_empty();
            kept.outbox.splice(..taken, outbox);
            kept.outbox.extend(failing);
            let before = kept.outbox.len();
            kept.outbox.retain(|o| !o.done());
            let done = (before - kept.outbox.len()) as u64;
            kept.dirty |= changed || done > 0;
            self.status.notified.fetch_add(done, Ordering::Relaxed);
            self.context
                .metrics
                .alert_notifications
                .get_or_create(&self.label())
                .inc_by(done);
        }
        self.status
            .outbox
            .store(kept.outbox.len() as u64, Ordering::Relaxed);
        let more = kept.dirty || !kept.outbox.is_empty();
        more || m.unpublished
    }

    /// Publishes memory record `record` to the bus while this node holds the duty; `false` if
    /// it does not. A failure is counted and the publication tried again after a back-off,
    /// without holding the notices back: an alert gets out even while the bus cannot keep
    /// its memory (then a node taking the duty over may notify it again).
    fn publish_memory(
        &self,
        topic: &memory::MemoryTopic,
        record: Result<Vec<u8>, memory::MemoryError>,
    ) -> bool {
        let _io = lock(&self.io);
        if self.stopped() {
            // Left unpublished: `stop` publishes the last memory.
            return true;
        }
        let published = match record {
            Ok(r) => self.duty.while_held(|| topic.publish(&self.name, r)),
            Err(e) => Some(Err(e)),
        };
        match published {
            None => false,
            Some(Ok(_)) => {
                lock(&self.memory).unpublished = false;
                lock(&self.delivery).publish.wait = Duration::ZERO;
                true
            }
            Some(Err(e)) => {
                self.count_failure(format!("its memory was not published: {e}"), None);
                let max = self
                    .plan
                    .as_ref()
                    .map_or(Duration::from_secs(30), |p| p.max_backoff);
                lock(&self.delivery).publish.failed(max);
                true
            }
        }
    }

    /// Replaces the state file with `bytes` (not once the rule is stopped).
    fn write(&self, bytes: &[u8]) -> Result<(), IoError> {
        let _io = lock(&self.io);
        if self.stopped() {
            // Kept dirty: `stop` writes the last state.
            lock(&self.memory).kept.dirty = true;
            return Ok(());
        }
        self.write_file(bytes)
    }

    fn write_file(&self, bytes: &[u8]) -> Result<(), IoError> {
        let path = state_file(&self.context.data_dir, &self.name);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
        }
        eddy_base::fs::replace_file(&path, bytes)
    }

    /// Decides where notice `n` goes (muted by a silence, an inhibiting rule or the throttle,
    /// into its notification group, or to every channel) and queues it.
    fn route(&self, mut n: Notice, channels: &BTreeMap<String, Channel>, kept: &mut Kept) {
        let key = serde_json::Value::Object(n.group.clone()).to_string();
        let silence = self.shared.silences.muting(&self.name, &n.group, n.at);
        n.muted = if let Some(s) = &silence {
            kept.muted_by
                .entry(s.id.clone())
                .or_default()
                .insert(key.clone());
            Some(format!("silenced by {}", s.id))
        } else {
            self.shared
                .inhibitor(&self.config, &n.group)
                .map(|rule| format!("inhibited by {rule}"))
        };
        if let Some(g) = kept.groups.get_mut(&key) {
            match n.status.as_str() {
                "resolved" => {
                    g.ended = Some(
                        if silence.is_some() {
                            "silenced"
                        } else {
                            "resolved"
                        }
                        .into(),
                    );
                }
                "firing" => g.notified_at = n.at,
                _ => {}
            }
        }
        let plan = self.plan.as_ref().ok();
        // A notification group's members are stored one by one; the channels get the group's
        // message when it is due (`grouping::flush`), throttled there.
        if n.muted.is_none() && !channels.is_empty() {
            if let Some(grouping) = plan.and_then(|p| p.grouping.as_ref()) {
                grouping::join(grouping, &n, kept);
                kept.outbox.push(Outgoing::stored_only(n));
                return;
            }
        }
        // The end of a silence is told whatever the throttle says.
        let limit = plan
            .and_then(|p| p.throttle)
            .filter(|_| n.status != "silence_expired" && !channels.is_empty());
        let out = Outgoing::to_channels(n, channels, limit, &mut kept.throttle, false);
        kept.outbox.push(out);
    }

    /// Queues a `silence_expired` notice per group muted by a silence that has ended;
    /// whether any was.
    fn expire_silences(&self, plan: &RulePlan, now: i64, kept: &mut Kept) -> bool {
        let ended: Vec<String> = kept
            .muted_by
            .keys()
            .filter(|id| !self.shared.silences.active(id, now))
            .cloned()
            .collect();
        let mut notices = Vec::new();
        for id in &ended {
            for key in kept.muted_by.remove(id).unwrap_or_default() {
                let Some(g) = kept.groups.get(&key) else {
                    continue;
                };
                let mut n = notice(
                    &self.name,
                    plan,
                    &key,
                    g,
                    "silence_expired",
                    g.state.since().unwrap_or(now),
                    now,
                );
                n.note = Some(format!(
                    "silence {id} ended; the alert is {}",
                    if g.state.firing() {
                        "still firing"
                    } else {
                        "not firing"
                    }
                ));
                notices.push(n);
            }
        }
        let any = !ended.is_empty();
        if let Ok(channels) = self.channels.as_ref() {
            for n in notices {
                self.route(n, channels, kept);
            }
        }
        any
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
        let firing: Vec<_> = kept
            .groups
            .values()
            .filter(|g| g.state.firing())
            .map(|g| g.labels.clone())
            .collect();
        let mut board = self
            .shared
            .firing
            .write()
            .unwrap_or_else(|p| p.into_inner());
        if firing.is_empty() {
            board.remove(&self.name);
        } else {
            board.insert(self.name.clone(), firing);
        }
    }

    /// Delivers `outbox` in order: each notice to `_alerts` and to each channel that is not
    /// backing off. A failing channel holds back only itself (its later notices wait, in
    /// order); `_alerts` refusing notices (an overloaded server answers busy) holds back only
    /// the later stores, never the channels: an alert gets out when it matters most. Returns
    /// the `channel_failing` notices to add.
    fn deliver(
        &self,
        plan: &RulePlan,
        channels: &BTreeMap<String, Channel>,
        outbox: &mut [Outgoing],
    ) -> Vec<Outgoing> {
        let mut delivery = lock(&self.delivery);
        let mut failing = Vec::new();
        let mut ok = true;
        let template = self.config.template.as_deref().unwrap_or(template::DEFAULT);
        // `_alerts` gets the notices in order: once one is not stored, the later ones wait.
        let mut storing = true;
        for o in outbox.iter_mut() {
            // The channels first: the alert gets out before it is filed.
            if let Some(to) = o.to.as_mut() {
                let text = template::render_notice(template, &o.notice);
                let mut left = Vec::new();
                for name in to.drain(..) {
                    let backoff = delivery.channels.entry(name.clone()).or_default();
                    let Some(channel) = channels.get(&name) else {
                        // A channel no longer in the rule: nothing to deliver to.
                        continue;
                    };
                    if !backoff.ready() || self.stopped() {
                        left.push(name);
                        continue;
                    }
                    let sent = match self.shared.grouped.get(&name) {
                        // A channel grouping across rules takes the notice into its group.
                        Some(grouped) => grouped.hand_over(&o.notice).map_err(|e| {
                            channel::ChannelError::Unreachable {
                                target: format!("the notification groups of channel {name}"),
                                error: e.to_string(),
                            }
                        }),
                        None => channel.send(&self.shared.http, &o.notice, &text),
                    };
                    match sent {
                        Ok(()) => {
                            backoff.wait = Duration::ZERO;
                            if let Some(c) = lock(&self.status.channels).get_mut(&name) {
                                c.1 = None;
                            }
                        }
                        Err(error) => {
                            ok = false;
                            let first = backoff.wait.is_zero();
                            backoff.failed(plan.max_backoff);
                            let e = DeliveryError::Channel {
                                name: name.clone(),
                                error,
                            };
                            // The alert's history records a channel starting to fail, once.
                            if first {
                                failing.push((name.clone(), e.to_string(), o.notice.clone()));
                            }
                            self.count_failure(e.to_string(), Some(&name));
                            left.push(name);
                        }
                    }
                }
                *to = left;
            }
            if !o.stored && storing {
                if !delivery.store.ready() {
                    storing = false;
                } else {
                    match self.store(&o.notice) {
                        Ok(()) => {
                            o.stored = true;
                            delivery.store.wait = Duration::ZERO;
                        }
                        Err(e) => {
                            ok = false;
                            self.count_failure(e.to_string(), None);
                            delivery.store.failed(plan.max_backoff);
                            storing = false;
                        }
                    }
                }
            }
        }
        if ok {
            *lock(&self.status.error) = None;
        }
        failing
            .into_iter()
            .map(|(channel, error, about)| {
                let mut n = about;
                n.status = "channel_failing".into();
                n.id = uuid::Uuid::from_u128(xxhash_rust::xxh3::xxh3_128(
                    format!("{}\0{}\0{channel}\0{}", self.name, n.id, now_ns()).as_bytes(),
                ));
                n.at = now_ns();
                n.muted = None;
                n.note = Some(error);
                n.events.clear();
                n.alerts.clear();
                Outgoing::stored_only(n)
            })
            .collect()
    }

    fn count_failure(&self, why: String, channel: Option<&str>) {
        self.fail(why.clone());
        self.status.failures.fetch_add(1, Ordering::Relaxed);
        self.context
            .metrics
            .alert_failures
            .get_or_create(&self.label())
            .inc();
        if let Some(name) = channel {
            let mut channels = lock(&self.status.channels);
            let c = channels.entry(name.to_string()).or_default();
            c.0 += 1;
            c.1 = Some(why);
            self.context
                .metrics
                .alert_channel_failures
                .get_or_create(&ChannelLabel {
                    alert: self.name.clone(),
                    channel: name.to_string(),
                })
                .inc();
        }
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
}

/// Moves every group's state to `now` over `answer`; the notices of its transitions (and of
/// groups due a repeat), in order. The live rule and `eddy alert test` both go through here.
fn evaluate(
    name: &str,
    plan: &RulePlan,
    answer: &Answer,
    now: i64,
    kept: &mut Kept,
    samples: &Samples,
) -> Vec<Notice> {
    let timing = Timing {
        pending_for: plan.pending_for,
        keep_firing_for: plan.keep_firing_for,
    };
    let step = i64::try_from(plan.every.as_nanos()).unwrap_or(i64::MAX);
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let mut observe = |key: &String, g: &mut KeptGroup, values: (Option<f64>, Option<f64>)| {
        let (value, also) = values;
        g.state.value = value;
        let before = g.state.phase;
        let mut holds = g.series.holds(&plan.condition, value, now, step);
        if let Some((_, bound)) = &plan.also {
            holds &= also.is_some_and(|v| bound.holds(v));
        }
        let transition = g.state.observe(holds, now, timing);
        g.changed |= g.state.phase.moved_from(&before);
        match transition {
            Some(Transition::Fired) => {
                let mut n = notice(name, plan, key, g, "firing", now, now);
                n.events = samples.of(key);
                out.push(n);
            }
            Some(Transition::Resolved { since }) => {
                out.push(notice(name, plan, key, g, "resolved", since, now));
            }
            None => {
                if let (Some(every), Some(since)) = (plan.repeat_interval, g.state.since()) {
                    if g.state.firing() && now.saturating_sub(g.notified_at.max(since)) >= every {
                        let mut n = notice(name, plan, key, g, "firing", since, now);
                        n.note = Some("still firing".into());
                        n.events = samples.of(key);
                        out.push(n);
                    }
                }
            }
        }
    };
    for row in &answer.rows {
        let labels: serde_json::Map<String, serde_json::Value> = plan
            .group_by
            .iter()
            .map(|f| (f.clone(), json!(row.get(f))))
            .collect();
        let key = serde_json::Value::Object(labels.clone()).to_string();
        let value = row.get(&plan.column).and_then(Value::as_f64);
        let also = plan
            .also
            .as_ref()
            .and_then(|(c, _)| row.get(c).and_then(Value::as_f64));
        seen.insert(key.clone());
        let g = kept
            .groups
            .entry(key.clone())
            .or_insert_with(|| KeptGroup::new(labels));
        observe(&key, g, (value, also));
    }
    for (key, g) in kept.groups.iter_mut().filter(|(k, _)| !seen.contains(*k)) {
        observe(key, g, (None, None));
    }
    // A group gone quiet that never fired is not worth remembering (except for absence,
    // which is about the groups gone quiet).
    if plan.condition != rule::Condition::Absent {
        let before = kept.groups.len();
        kept.groups.retain(|k, g| {
            seen.contains(k) || g.state.fired > 0 || g.state.phase != state::Phase::Inactive
        });
        kept.dirty |= before != kept.groups.len();
    }
    kept.dirty |= kept.groups.values().any(|g| g.changed);
    for g in kept.groups.values_mut() {
        g.changed = false;
    }
    out
}

/// The notice of group `key` (state `g`) with `status` at `now`.
fn notice(
    name: &str,
    plan: &RulePlan,
    key: &str,
    g: &KeptGroup,
    status: &str,
    since: i64,
    now: i64,
) -> Notice {
    // The firing being told is counted in `fired` already.
    let fired_before = g.state.fired.saturating_sub(1);
    let id = xxhash_rust::xxh3::xxh3_128(format!("{name}\0{key}\0{status}\0{now}").as_bytes());
    let mut condition = plan.condition.describe(&plan.column);
    if let Some((c, b)) = &plan.also {
        condition = format!("{condition} and {}", rule::Condition::from(*b).describe(c));
    }
    Notice {
        id: uuid::Uuid::from_u128(id),
        alert: name.to_string(),
        status: status.into(),
        group: g.labels.clone(),
        value: g.state.value,
        condition,
        at: now,
        since,
        fired_before,
        previous_ended: (fired_before > 0)
            .then(|| g.ended.clone().unwrap_or_else(|| "resolved".into())),
        muted: None,
        note: None,
        events: Vec::new(),
        alerts: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn the_throttle_survives_a_restart_with_the_rule_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = state_file(dir.path(), "errors");
        let per = Duration::from_secs(3600);
        let mut kept = Kept::default();
        assert!(kept.throttle.admit(2, per, 0));
        assert!(kept.throttle.admit(2, per, 10 * S));
        assert!(!kept.throttle.admit(2, per, 20 * S));
        // Written as a rule's delivery pass writes it, read back as a restarted rule does.
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        eddy_base::fs::replace_file(&path, &serde_json::to_vec(&kept).unwrap()).unwrap();
        let mut back = load(&path).unwrap();
        assert!(
            !back.throttle.admit(2, per, 30 * S),
            "the throttle is still closed after the restart"
        );
        assert!(
            back.throttle.admit(2, per, 3600 * S),
            "and opens once the first notice is a period old"
        );
    }
}
