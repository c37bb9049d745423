//! Notification groups across rules, as Alertmanager's routes group them: a channel with
//! `group_by` gathers the notices of *every* rule routed to it that share those labels
//! (`alertname` is the rule's name) into one message per group.
//!
//! - A new group's first notice waits `group_wait`, so that alerts of different rules that
//!   start together (a host failing trips its CPU, error and latency rules) go as one message.
//! - Once a group has sent, its further notices wait until `group_interval` after the last
//!   message. A notice of an alert already waiting replaces it (the latest state goes).
//! - With `repeat_interval`, a group whose alerts still fire is sent again after that long.
//! - A group forgets itself once nothing waits, none of its alerts fires and `group_interval`
//!   has passed.
//!
//! A rule hands a notice over from its outbox like a delivery to the channel: the group's
//! memory (`alerts/channels/<channel>.json`, replaced atomically with fsync) takes it before
//! the rule lets the notice go. The channel's own thread turns due groups into messages, writes
//! them to that memory's outbox, and only then sends them, with back-off. So a restart neither
//! loses a waiting group nor sends it twice: a notice handed over again after a crash is
//! recognised by its id, and a message sent just before a crash goes again with the same
//! `Idempotency-Key`.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use eddy_base::io::{IoContext, IoError};
use eddy_base::sync::lock;
use eddy_log::now_ns;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::channel::{Channel, ChannelConfig, ChannelGrouping};
use super::{template, Notice};

/// How many handed-over notice ids a channel remembers, to recognise one handed over again.
const SEEN: usize = 4096;
/// The longest wait between two attempts of a failing message.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The label that names a notice's rule.
pub const ALERTNAME: &str = "alertname";

/// One notification group of a channel.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// The labels it shares.
    labels: Map<String, Value>,
    /// The notices waiting, oldest first; one per alert (rule and labels).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    waiting: Vec<Notice>,
    /// The last firing notice of each alert of the group still firing, by alert
    /// (`repeat_interval`, and whether the group may be forgotten).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    firing: BTreeMap<String, Notice>,
    /// When the waiting notices go, ns.
    due: i64,
    /// When its last message went, ns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sent_at: Option<i64>,
}

/// A grouped channel's memory on disk.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    /// The groups by their labels as JSON text.
    #[serde(default)]
    batches: BTreeMap<String, Batch>,
    /// Messages made and not yet taken by the channel, oldest first.
    #[serde(default)]
    outbox: Vec<Notice>,
    /// The ids of the last notices handed over, oldest first.
    #[serde(default)]
    seen: VecDeque<uuid::Uuid>,
    /// Changed since it was written.
    #[serde(skip)]
    dirty: bool,
}

/// The key of the alert `n` tells about: its rule and labels.
fn alert_key(n: &Notice) -> String {
    format!("{}\0{}", n.alert, Value::Object(n.group.clone()))
}

/// The labels of notice `n` that `grouping` shares.
fn labels_of(grouping: &ChannelGrouping, n: &Notice) -> Map<String, Value> {
    grouping
        .by
        .iter()
        .map(|l| {
            let v = match (l.as_str(), n.group.get(l)) {
                (_, Some(v)) => v.clone(),
                (ALERTNAME, None) => Value::from(n.alert.clone()),
                _ => Value::Null,
            };
            (l.clone(), v)
        })
        .collect()
}

impl Memory {
    /// Puts notice `n` (a group's message: each notice it carries) into its group; `false` if
    /// it was handed over before.
    pub fn join(&mut self, grouping: &ChannelGrouping, n: &Notice) -> bool {
        if self.seen.contains(&n.id) {
            return false;
        }
        if self.seen.len() == SEEN {
            self.seen.pop_front();
        }
        self.seen.push_back(n.id);
        if n.alerts.is_empty() {
            self.add(grouping, n.clone());
        } else {
            for member in &n.alerts {
                self.add(grouping, member.clone());
            }
        }
        self.dirty = true;
        true
    }

    fn add(&mut self, grouping: &ChannelGrouping, mut n: Notice) {
        n.alerts.clear();
        let labels = labels_of(grouping, &n);
        let key = Value::Object(labels.clone()).to_string();
        let batch = self.batches.entry(key).or_insert_with(|| Batch {
            labels,
            ..Batch::default()
        });
        let alert = alert_key(&n);
        match n.status.as_str() {
            "firing" => {
                batch.firing.insert(alert.clone(), n.clone());
            }
            "resolved" => {
                batch.firing.remove(&alert);
            }
            _ => {}
        }
        if batch.waiting.is_empty() {
            batch.due = match batch.sent_at {
                None => n.at.saturating_add(grouping.wait),
                Some(sent) => sent.saturating_add(grouping.interval).max(n.at),
            };
        }
        match batch.waiting.iter_mut().find(|w| alert_key(w) == alert) {
            Some(w) => *w = n,
            None => batch.waiting.push(n),
        }
    }

    /// Moves the message of each group due at `now` (or due a repeat) to the outbox, and
    /// forgets idle groups; whether anything changed.
    pub fn flush(&mut self, channel: &str, grouping: &ChannelGrouping, now: i64) -> bool {
        let mut messages = Vec::new();
        for (key, batch) in &mut self.batches {
            let members = if !batch.waiting.is_empty() {
                if now < batch.due {
                    continue;
                }
                std::mem::take(&mut batch.waiting)
            } else if grouping.repeat.is_some_and(|r| {
                !batch.firing.is_empty()
                    && batch.sent_at.is_some_and(|t| now.saturating_sub(t) >= r)
            }) {
                batch
                    .firing
                    .values()
                    .map(|n| {
                        let mut n = n.clone();
                        n.note = Some("still firing".into());
                        n
                    })
                    .collect()
            } else {
                continue;
            };
            batch.sent_at = Some(now);
            messages.push(message(channel, key, &batch.labels, members, now));
        }
        let before = self.batches.len();
        self.batches.retain(|_, b| {
            !b.waiting.is_empty()
                || !b.firing.is_empty()
                || b.sent_at
                    .is_some_and(|t| now.saturating_sub(t) < grouping.interval)
        });
        let changed = !messages.is_empty() || before != self.batches.len();
        self.outbox.extend(messages);
        self.dirty |= changed;
        changed
    }

    /// When something is next due (a waiting group, a repeat), ns.
    pub fn next_due(&self, grouping: &ChannelGrouping) -> Option<i64> {
        self.batches
            .values()
            .filter_map(|b| {
                if !b.waiting.is_empty() {
                    Some(b.due)
                } else {
                    let r = grouping.repeat.filter(|_| !b.firing.is_empty())?;
                    b.sent_at.map(|t| t.saturating_add(r))
                }
            })
            .min()
    }
}

/// The message of group `key` (labels `labels`) of `channel` carrying `members` at `now`.
fn message(
    channel: &str,
    key: &str,
    labels: &Map<String, Value>,
    members: Vec<Notice>,
    now: i64,
) -> Notice {
    let firing = members.iter().any(|m| m.status == "firing");
    let mut rules: Vec<&str> = members.iter().map(|m| m.alert.as_str()).collect();
    rules.sort_unstable();
    rules.dedup();
    let mut conditions: Vec<&str> = members.iter().map(|m| m.condition.as_str()).collect();
    conditions.dedup();
    let id = xxhash_rust::xxh3::xxh3_128(format!("{channel}\0{key}\0channel\0{now}").as_bytes());
    Notice {
        id: uuid::Uuid::from_u128(id),
        alert: rules.join(", "),
        status: if firing { "firing" } else { "resolved" }.into(),
        group: labels.clone(),
        value: None,
        condition: conditions.join("; "),
        at: now,
        since: members.iter().map(|m| m.since).min().unwrap_or(now),
        fired_before: 0,
        previous_ended: None,
        muted: None,
        note: Some(format!(
            "{} notice{} of the group of channel {channel}",
            members.len(),
            if members.len() == 1 { "" } else { "s" }
        )),
        events: Vec::new(),
        alerts: members,
    }
}

/// A channel with `group_by` at run time: its memory and the thread that sends its groups.
pub(crate) struct GroupedChannel {
    name: String,
    channel: Channel,
    grouping: ChannelGrouping,
    http: ureq::Agent,
    /// Its state file, set when the server's first rule starts.
    path: OnceLock<PathBuf>,
    /// Where its failures are counted, set with `path`.
    metrics: OnceLock<Arc<crate::metrics::StreamMetrics>>,
    memory: Mutex<Memory>,
    /// The thread waits here for a notice or a stop.
    wake: Condvar,
    stopped: Mutex<bool>,
    /// The last failure while it is failing, and how many attempts failed.
    failing: Mutex<(u64, Option<String>)>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for GroupedChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GroupedChannel({})", self.name)
    }
}

/// Where channel `name` keeps its groups.
pub fn state_file(data_dir: &Path, name: &str) -> PathBuf {
    data_dir
        .join("alerts")
        .join("channels")
        .join(format!("{name}.json"))
}

/// The channels of `configured` that group across rules (those that check; the others are
/// refused by the configuration's check).
pub(crate) fn grouped(
    configured: &BTreeMap<String, ChannelConfig>,
    http: &ureq::Agent,
) -> BTreeMap<String, Arc<GroupedChannel>> {
    configured
        .iter()
        .filter_map(|(name, c)| {
            let grouping = c.grouping(name).ok()??;
            let channel = c.plan(name).ok()?;
            Some((
                name.clone(),
                Arc::new(GroupedChannel {
                    name: name.clone(),
                    channel,
                    grouping,
                    http: http.clone(),
                    path: OnceLock::new(),
                    metrics: OnceLock::new(),
                    memory: Mutex::new(Memory::default()),
                    wake: Condvar::new(),
                    stopped: Mutex::new(false),
                    failing: Mutex::new((0, None)),
                    thread: Mutex::new(None),
                }),
            ))
        })
        .collect()
}

impl GroupedChannel {
    /// Reads its memory from `data_dir` and starts its thread, once.
    pub(crate) fn open(
        self: &Arc<Self>,
        data_dir: &Path,
        metrics: &Arc<crate::metrics::StreamMetrics>,
    ) -> Result<(), IoError> {
        let mut memory = lock(&self.memory);
        if self.path.get().is_some() {
            return Ok(());
        }
        let path = state_file(data_dir, &self.name);
        // Until its memory is read, notices handed over are refused (the rules keep them and
        // try again), so that a file that cannot be read is never written over.
        *memory = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(std::io::Error::other)
                .context(|| format!("reading {}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Memory::default(),
            Err(e) => return Err(e).context(|| format!("reading {}", path.display())),
        };
        let _ = self.metrics.set(metrics.clone());
        let _ = self.path.set(path);
        drop(memory);
        let me = self.clone();
        match std::thread::Builder::new()
            .name(format!("alert-group-{}", self.name))
            .spawn(move || me.run())
        {
            Ok(t) => *lock(&self.thread) = Some(t),
            Err(e) => tracing::error!(channel = %self.name, "cannot start its thread: {e}"),
        }
        Ok(())
    }

    /// Takes notice `n` into its group, kept on disk before this returns.
    pub(crate) fn hand_over(&self, n: &Notice) -> Result<(), IoError> {
        let mut memory = lock(&self.memory);
        if self.path.get().is_none() {
            return Err(std::io::Error::other("its state file could not be read"))
                .context(|| format!("the notification groups of channel {}", self.name));
        }
        memory.join(&self.grouping, n);
        // Also when it was taken before but could not be written then.
        self.write(&mut memory)?;
        self.wake.notify_all();
        Ok(())
    }

    /// Writes `memory` if it changed (kept changed if it could not be written).
    fn write(&self, memory: &mut Memory) -> Result<(), IoError> {
        if !memory.dirty {
            return Ok(());
        }
        let Some(path) = self.path.get() else {
            return Ok(());
        };
        let bytes = serde_json::to_vec(&*memory)
            .map_err(std::io::Error::other)
            .context(|| format!("encoding {}", path.display()))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
        }
        eddy_base::fs::replace_file(path, &bytes)?;
        memory.dirty = false;
        Ok(())
    }

    /// Makes the due groups' messages and sends them, until stopped.
    fn run(self: Arc<Self>) {
        let mut backoff = Duration::ZERO;
        let mut retry_at: Option<std::time::Instant> = None;
        let mut memory = lock(&self.memory);
        loop {
            if *lock(&self.stopped) {
                return;
            }
            let now = now_ns();
            memory.flush(&self.name, &self.grouping, now);
            // A message is on disk before it goes, so that a restart neither loses nor
            // remakes it.
            if let Err(e) = self.write(&mut memory) {
                self.failed(format!("its state: {e}"));
            }
            let ready = retry_at.is_none_or(|t| std::time::Instant::now() >= t);
            if let Some(next) = memory
                .outbox
                .first()
                .cloned()
                .filter(|_| ready && !memory.dirty)
            {
                drop(memory);
                let text = template::render_notice(template::DEFAULT, &next);
                let sent = self.channel.send(&self.http, &next, &text);
                memory = lock(&self.memory);
                match sent {
                    Ok(()) => {
                        backoff = Duration::ZERO;
                        retry_at = None;
                        lock(&self.failing).1 = None;
                        if memory.outbox.first().is_some_and(|m| m.id == next.id) {
                            memory.outbox.remove(0);
                            memory.dirty = true;
                        }
                    }
                    Err(e) => {
                        backoff = (backoff * 2)
                            .max(Duration::from_millis(100))
                            .min(MAX_BACKOFF);
                        retry_at = Some(std::time::Instant::now() + backoff);
                        self.failed(e.to_string());
                    }
                }
                continue;
            }
            let mut wait = Duration::from_secs(60);
            if let Some(due) = memory.next_due(&self.grouping) {
                let ns = u64::try_from(due.saturating_sub(now).max(0)).unwrap_or(0);
                wait = wait.min(Duration::from_nanos(ns));
            }
            if !memory.outbox.is_empty() || memory.dirty {
                let until = retry_at.map_or(Duration::from_millis(100), |t| {
                    t.saturating_duration_since(std::time::Instant::now())
                });
                wait = wait.min(until.max(Duration::from_millis(10)));
            }
            if wait.is_zero() {
                continue;
            }
            memory = self
                .wake
                .wait_timeout(memory, wait)
                .map(|(m, _)| m)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    fn failed(&self, why: String) {
        let mut failing = lock(&self.failing);
        failing.0 += 1;
        if failing.1.as_deref() != Some(why.as_str()) {
            tracing::warn!(channel = %self.name, "notification group: {why}");
        }
        failing.1 = Some(why);
        if let Some(m) = self.metrics.get() {
            // Not a rule's: the label `alert` is empty.
            m.alert_channel_failures
                .get_or_create(&crate::metrics::ChannelLabel {
                    alert: String::new(),
                    channel: self.name.clone(),
                })
                .inc();
        }
    }

    /// Stops its thread, waiting for a message under way (each attempt is bounded).
    pub(crate) fn stop(&self) {
        {
            // Under the memory's lock, so that the thread is either busy or waiting: told.
            let _memory = lock(&self.memory);
            *lock(&self.stopped) = true;
            self.wake.notify_all();
        }
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
        let mut memory = lock(&self.memory);
        if let Err(e) = self.write(&mut memory) {
            tracing::warn!(channel = %self.name, "its last state was not kept: {e}");
        }
    }

    /// Its settings and groups as JSON.
    pub(crate) fn describe(&self) -> Value {
        let memory = lock(&self.memory);
        let groups: Vec<Value> = memory
            .batches
            .values()
            .map(|b| {
                let mut alerts: Vec<&str> = b.waiting.iter().map(|n| n.alert.as_str()).collect();
                alerts.sort_unstable();
                alerts.dedup();
                json!({
                    "labels": b.labels,
                    "waiting": b.waiting.len(),
                    "waiting_alerts": alerts,
                    "due": (!b.waiting.is_empty()).then_some(b.due),
                    "firing": b.firing.len(),
                    "sent_at": b.sent_at,
                })
            })
            .collect();
        let failing = lock(&self.failing);
        let seconds = |ns: i64| {
            humantime::format_duration(Duration::from_nanos(ns.max(0) as u64)).to_string()
        };
        json!({
            "channel": self.name,
            "group_by": self.grouping.by,
            "group_wait": seconds(self.grouping.wait),
            "group_interval": seconds(self.grouping.interval),
            "repeat_interval": self.grouping.repeat.map(seconds),
            "groups": groups,
            "outbox": memory.outbox.len(),
            "failures": failing.0,
            "error": failing.1,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    fn grouping(by: &[&str]) -> ChannelGrouping {
        ChannelGrouping {
            by: by.iter().map(|s| s.to_string()).collect(),
            wait: 10 * S,
            interval: 60 * S,
            repeat: Some(3600 * S),
        }
    }

    fn notice(rule: &str, host: &str, status: &str, at: i64) -> Notice {
        let mut group = Map::new();
        group.insert("host".into(), Value::from(host));
        let id = xxhash_rust::xxh3::xxh3_128(format!("{rule}{host}{status}{at}").as_bytes());
        Notice {
            id: uuid::Uuid::from_u128(id),
            alert: rule.into(),
            status: status.into(),
            group,
            value: Some(1.0),
            condition: "_count > 0".into(),
            at,
            since: at,
            fired_before: 0,
            previous_ended: None,
            muted: None,
            note: None,
            events: Vec::new(),
            alerts: Vec::new(),
        }
    }

    fn rules_of(message: &Notice) -> Vec<&str> {
        message.alerts.iter().map(|m| m.alert.as_str()).collect()
    }

    #[test]
    fn alerts_of_different_rules_sharing_the_labels_go_as_one_message() {
        let g = grouping(&["host"]);
        let mut m = Memory::default();
        assert!(m.join(&g, &notice("cpu", "web-1", "firing", 0)));
        assert!(m.join(&g, &notice("errors", "web-1", "firing", 3 * S)));
        assert!(m.join(&g, &notice("errors", "web-2", "firing", 4 * S)));
        assert!(
            !m.flush("ops", &g, 9 * S),
            "nothing is due before group_wait"
        );
        assert!(m.flush("ops", &g, 10 * S));
        assert_eq!(m.outbox.len(), 1, "web-2 waits from its own first notice");
        assert_eq!(rules_of(&m.outbox[0]), vec!["cpu", "errors"]);
        assert_eq!(m.outbox[0].alert, "cpu, errors");
        assert_eq!(m.outbox[0].group["host"], "web-1");
        m.flush("ops", &g, 14 * S);
        assert_eq!(m.outbox.len(), 2);
        assert_eq!(m.outbox[1].group["host"], "web-2");
    }

    #[test]
    fn later_notices_wait_group_interval_and_a_repeat_carries_what_still_fires() {
        let g = grouping(&["host"]);
        let mut m = Memory::default();
        m.join(&g, &notice("cpu", "web-1", "firing", 0));
        m.flush("ops", &g, 10 * S);
        m.join(&g, &notice("errors", "web-1", "firing", 20 * S));
        assert_eq!(
            m.next_due(&g),
            Some(70 * S),
            "the last message went at 10 s"
        );
        m.join(&g, &notice("cpu", "web-1", "resolved", 30 * S));
        m.flush("ops", &g, 70 * S);
        assert_eq!(m.outbox.len(), 2);
        let second = &m.outbox[1];
        assert_eq!(rules_of(second), vec!["errors", "cpu"]);
        assert_eq!(second.alerts[1].status, "resolved");
        // Only errors still fires: the repeat, an hour after the last message, carries it.
        assert_eq!(m.next_due(&g), Some(3670 * S));
        m.flush("ops", &g, 3670 * S);
        assert_eq!(m.outbox.len(), 3);
        assert_eq!(rules_of(&m.outbox[2]), vec!["errors"]);
        assert_eq!(m.outbox[2].alerts[0].note.as_deref(), Some("still firing"));
    }

    #[test]
    fn a_notice_handed_over_again_after_a_restart_is_not_joined_twice() {
        let g = grouping(&["alertname"]);
        let mut m = Memory::default();
        let n = notice("cpu", "web-1", "firing", 0);
        assert!(m.join(&g, &n));
        let mut back: Memory = serde_json::from_slice(&serde_json::to_vec(&m).unwrap()).unwrap();
        assert!(!back.join(&g, &n));
        back.flush("ops", &g, 10 * S);
        assert_eq!(back.outbox.len(), 1);
        assert_eq!(back.outbox[0].alerts.len(), 1);
        assert_eq!(back.outbox[0].group["alertname"], "cpu");
    }

    #[test]
    fn a_rule_group_message_joins_as_its_members() {
        let g = grouping(&[]);
        let mut m = Memory::default();
        let mut rule_message = notice("errors", "", "firing", 0);
        rule_message.alerts = vec![
            notice("errors", "web-1", "firing", 0),
            notice("errors", "web-2", "firing", 0),
        ];
        m.join(&g, &rule_message);
        m.join(&g, &notice("cpu", "db-1", "firing", S));
        m.flush("ops", &g, 10 * S);
        assert_eq!(rules_of(&m.outbox[0]), vec!["errors", "errors", "cpu"]);
    }
}
