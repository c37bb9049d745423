//! Notification groups, with Alertmanager's semantics: a rule with `group_by` gathers the
//! notices of its alerts that share those labels into one message per group.
//!
//! - The first notice of a group waits `group_wait`, so that the alerts that start together
//!   (a whole data centre failing) arrive as one message carrying all of them.
//! - Once a group has sent, its further notices (new alerts, resolutions, repeats) wait
//!   until `group_interval` after the last message, and go together.
//! - A group forgets itself once nothing waits, `group_interval` has passed and none of its
//!   alerts fires: the next notice waits `group_wait` again.
//!
//! Every notice is still stored in `_alerts` on its own, at once; only what goes to the
//! channels is grouped. Silenced and inhibited notices never join a group. The throttle counts
//! group messages.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::channel::Channel;
use super::rule::RulePlan;
use super::{Kept, Notice, Outgoing};

/// A rule's notification grouping, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct NoticeGrouping {
    /// The labels (of the query's `groupBy` fields) a group shares; none: one group.
    pub by: Vec<String>,
    /// How long a new group's first notice waits for others, ns.
    pub wait: i64,
    /// The least time between two messages of a group, ns.
    pub interval: i64,
}

/// One notification group.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// The labels it shares.
    labels: Map<String, Value>,
    /// The notices waiting, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    notices: Vec<Notice>,
    /// When the waiting notices go, ns.
    due: i64,
    /// When its last message went, ns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sent_at: Option<i64>,
}

/// The labels of notice group `group` (an alert's labels) that `grouping` shares.
fn labels_of(grouping: &NoticeGrouping, group: &Map<String, Value>) -> Map<String, Value> {
    grouping
        .by
        .iter()
        .map(|l| (l.clone(), group.get(l).cloned().unwrap_or(Value::Null)))
        .collect()
}

/// Puts notice `n` into its group's waiting notices.
pub(super) fn join(grouping: &NoticeGrouping, n: &Notice, kept: &mut Kept) {
    let labels = labels_of(grouping, &n.group);
    let key = Value::Object(labels.clone()).to_string();
    let batch = kept.batches.entry(key).or_insert_with(|| Batch {
        labels,
        ..Batch::default()
    });
    if batch.notices.is_empty() {
        batch.due = match batch.sent_at {
            None => n.at.saturating_add(grouping.wait),
            Some(sent) => sent.saturating_add(grouping.interval).max(n.at),
        };
    }
    let mut member = n.clone();
    member.alerts.clear();
    batch.notices.push(member);
}

/// Queues the message of each group that is due at `now` (to every channel, unless the
/// throttle holds it back) and forgets idle groups; whether anything changed.
pub(super) fn flush(
    name: &str,
    plan: &RulePlan,
    channels: &std::collections::BTreeMap<String, Channel>,
    kept: &mut Kept,
    now: i64,
) -> bool {
    let Some(grouping) = &plan.grouping else {
        return false;
    };
    let mut messages = Vec::new();
    for (key, batch) in &mut kept.batches {
        if batch.notices.is_empty() || now < batch.due {
            continue;
        }
        let members = std::mem::take(&mut batch.notices);
        batch.sent_at = Some(now);
        messages.push(message(name, key, &batch.labels, members, now));
    }
    let before = kept.batches.len();
    let groups = &kept.groups;
    kept.batches.retain(|_, b| {
        !b.notices.is_empty()
            || b.sent_at
                .is_some_and(|t| now.saturating_sub(t) < grouping.interval)
            || groups.values().any(|g| {
                g.state.firing() && b.labels.iter().all(|(k, v)| g.labels.get(k) == Some(v))
            })
    });
    let changed = !messages.is_empty() || before != kept.batches.len();
    for n in messages {
        // Its members are stored on their own.
        let out = Outgoing::to_channels(n, channels, plan.throttle, &mut kept.throttle, true);
        kept.outbox.push(out);
    }
    changed
}

/// The message of group `key` (labels `labels`) carrying `members` at `now`.
fn message(
    name: &str,
    key: &str,
    labels: &Map<String, Value>,
    members: Vec<Notice>,
    now: i64,
) -> Notice {
    let firing = members.iter().any(|m| m.status == "firing");
    let id = xxhash_rust::xxh3::xxh3_128(format!("{name}\0{key}\0group\0{now}").as_bytes());
    Notice {
        id: uuid::Uuid::from_u128(id),
        alert: name.to_string(),
        status: if firing { "firing" } else { "resolved" }.into(),
        group: labels.clone(),
        value: None,
        condition: members
            .first()
            .map(|m| m.condition.clone())
            .unwrap_or_default(),
        at: now,
        since: members.iter().map(|m| m.since).min().unwrap_or(now),
        fired_before: 0,
        previous_ended: None,
        muted: None,
        note: Some(format!(
            "{} notice{} of the group",
            members.len(),
            if members.len() == 1 { "" } else { "s" }
        )),
        events: Vec::new(),
        alerts: members,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    fn grouping() -> NoticeGrouping {
        NoticeGrouping {
            by: vec!["dc".into()],
            wait: 10 * S,
            interval: 60 * S,
        }
    }

    fn firing(dc: &str, host: &str, at: i64) -> Notice {
        let mut group = Map::new();
        group.insert("dc".into(), Value::from(dc));
        group.insert("host".into(), Value::from(host));
        Notice {
            id: uuid::Uuid::from_u128(at as u128),
            alert: "errors".into(),
            status: "firing".into(),
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

    #[test]
    fn the_first_notice_of_a_group_waits_group_wait_and_later_ones_group_interval() {
        let g = grouping();
        let mut kept = Kept::default();
        join(&g, &firing("eu", "e1", 0), &mut kept);
        join(&g, &firing("eu", "e2", 3 * S), &mut kept);
        join(&g, &firing("us", "u1", 4 * S), &mut kept);
        let due: Vec<i64> = kept.batches.values().map(|b| b.due).collect();
        // eu waits from its first notice, us from its own.
        assert_eq!(due, vec![10 * S, 14 * S]);
        join(&g, &firing("eu", "e3", 20 * S), &mut kept);
        let eu = &kept.batches[r#"{"dc":"eu"}"#];
        assert_eq!(eu.notices.len(), 3);
        assert_eq!(eu.due, 10 * S, "a group waiting already keeps its time");
    }
}
