//! An alert rule as written (`[alerts.<name>]`, `POST /api/v1/alerts`) and as checked: a live
//! query answered per group over a sliding window, and the condition each group's value is
//! held against.

use std::time::Duration;

use eddy_query::engine::{Collect, Grouping};
use eddy_query::{Prepared, Window};
use serde::{Deserialize, Serialize};

use super::channel::{DEFAULT_GROUP_INTERVAL, DEFAULT_GROUP_WAIT};
use super::grouping::NoticeGrouping;
use crate::sink::DEFAULT_MAX_BACKOFF;

/// A rule: `[alerts.errors]` with `from`, `query`, `window` and a condition.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlertConfig {
    /// The repository whose events it watches.
    pub from: String,
    /// An aggregating query with one row per group, e.g. `status>=500 | groupBy(host)`; each
    /// group is its own alert.
    pub query: String,
    /// The sliding window the query is answered over (`1m`, whole seconds); for `absence` the
    /// interval within which every group is expected to report.
    pub window: String,
    /// `threshold` (the value is above or below a bound) or `absence` (a group seen before
    /// has no events in the window).
    #[serde(default = "threshold")]
    pub condition: String,
    /// The answer's column compared (default: the first column that is not grouped by).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// `threshold`: the condition holds while the value is above this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub above: Option<f64>,
    /// `threshold`: the condition holds while the value is below this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub below: Option<f64>,
    /// How long the condition must hold before the alert fires (pending meanwhile).
    #[serde(rename = "for", default = "zero")]
    pub pending_for: String,
    /// How long a firing alert keeps firing after its condition stops holding (damps
    /// flapping).
    #[serde(default = "zero")]
    pub keep_firing_for: String,
    /// How often the rule is evaluated.
    #[serde(default = "every")]
    pub every: String,
    /// `change`: the span the value's change is measured over (`5m`): it holds while the value
    /// rose by more than `above` (or fell by more than `below`) since then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub over: Option<String>,
    /// `anomaly`: the season of the baseline (`1d`): the value is held against the values at
    /// the same time of the previous seasons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub season: Option<String>,
    /// `anomaly`: how many previous seasons make the baseline (3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seasons: Option<usize>,
    /// `anomaly`: how far from the baseline's mean, in standard deviations (at least a tenth
    /// of the mean), a value is an anomaly (3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deviations: Option<f64>,
    /// Correlation: a second column of the answer that must agree (e.g. `_avg` of latency).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub and_value: Option<String>,
    /// Correlation: the second column holds while above this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub and_above: Option<f64>,
    /// Correlation: the second column holds while below this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub and_below: Option<f64>,
    /// POST a JSON notice to this URL when a group fires or resolves, retried with back-off
    /// (a webhook channel without a name or secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    /// The channels (`[channels.<name>]`) notices go to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<String>,
    /// The text of a notice for Slack, email and IRC, with `{placeholders}`
    /// (docs/alerting.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// A group still firing is notified again after this long (none: once per firing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_interval: Option<String>,
    /// At most this many notices per period go to the channels, `"10/1h"`; the rest are only
    /// stored in `_alerts`, marked throttled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle: Option<String>,
    /// Rules whose firing groups mute this rule's notices (inhibition).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inhibited_by: Vec<String>,
    /// The labels an inhibiting group must share with a group of this rule to mute it (none:
    /// any firing group of those rules mutes every group).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inhibit_equal: Vec<String>,
    /// The longest wait between two attempts of a failing notification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_backoff: Option<String>,
    /// Notification groups: the alerts that share these labels (fields of the query's
    /// `groupBy`; `[]`: all of the rule's) go to the channels as one message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_by: Option<Vec<String>>,
    /// With `group_by`: how long a new group's first notice waits for the others (`30s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_wait: Option<String>,
    /// With `group_by`: the least time between two messages of one group (`5m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_interval: Option<String>,
}

fn threshold() -> String {
    "threshold".into()
}

fn zero() -> String {
    "0s".into()
}

fn every() -> String {
    "1s".into()
}

/// The channel name of a rule's own `webhook` key.
pub const WEBHOOK_CHANNEL: &str = "webhook";

/// What makes a group's alert hold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Condition {
    /// The value is above this.
    Above(f64),
    /// The value is below this.
    Below(f64),
    /// The group, seen before, has no row in the window.
    Absent,
    /// The value changed by more than the bound over `over` ns.
    Change {
        /// The span, ns.
        over: i64,
        /// `Above(d)`: rose by more than d; `Below(d)`: fell by more than d.
        bound: Bound,
    },
    /// The value is outside its seasonal baseline's band.
    Anomaly(Seasonal),
}

/// A bound on a value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    /// Holds above this.
    Above(f64),
    /// Holds below this.
    Below(f64),
}

impl Bound {
    /// Whether `v` is past the bound.
    pub fn holds(&self, v: f64) -> bool {
        match self {
            Bound::Above(b) => v > *b,
            Bound::Below(b) => v < *b,
        }
    }
}

impl From<Bound> for Condition {
    fn from(b: Bound) -> Condition {
        match b {
            Bound::Above(v) => Condition::Above(v),
            Bound::Below(v) => Condition::Below(v),
        }
    }
}

/// An anomaly's baseline: the same time of the previous seasons.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seasonal {
    /// The season, ns (a day: the same hour of previous days).
    pub season: i64,
    /// The previous seasons averaged.
    pub seasons: usize,
    /// The band's half width in standard deviations.
    pub deviations: f64,
}

impl Condition {
    /// Whether a threshold or absence holds for a group with `value` (`None`: no row in the
    /// window). `change` and `anomaly` need the group's history: see [`super::series`].
    pub fn holds(&self, value: Option<f64>) -> bool {
        match (self, value) {
            (Condition::Above(bound), Some(v)) => v > *bound,
            (Condition::Below(bound), Some(v)) => v < *bound,
            (Condition::Absent, v) => v.is_none(),
            _ => false,
        }
    }

    /// The condition in words, for notices.
    pub fn describe(&self, column: &str) -> String {
        match self {
            Condition::Above(b) => format!("{column} > {b}"),
            Condition::Below(b) => format!("{column} < {b}"),
            Condition::Absent => "no events in the window".into(),
            Condition::Change { over, bound } => {
                let over = humantime::format_duration(std::time::Duration::from_nanos(
                    u64::try_from(*over).unwrap_or(0),
                ));
                match bound {
                    Bound::Above(d) => format!("{column} rose by more than {d} in {over}"),
                    Bound::Below(d) => format!("{column} fell by more than {d} in {over}"),
                }
            }
            Condition::Anomaly(s) => format!(
                "{column} outside {} deviations of the same time in the last {} seasons",
                s.deviations, s.seasons
            ),
        }
    }
}

/// A rule, checked and typed.
#[derive(Debug, Clone)]
pub struct RulePlan {
    /// The compiled query.
    pub prepared: Prepared,
    /// Its window.
    pub window: Window,
    /// The fields grouped by (each group's labels).
    pub group_by: Vec<String>,
    /// The column compared.
    pub column: String,
    /// The condition.
    pub condition: Condition,
    /// Correlation: a second column and the bound it must be past too.
    pub also: Option<(String, Bound)>,
    /// The channels notices go to, by name (the legacy `webhook` as channel `webhook`).
    pub channels: Vec<String>,
    /// A still-firing group is notified again after this long, ns.
    pub repeat_interval: Option<i64>,
    /// At most this many notices per this period go to the channels.
    pub throttle: Option<(usize, Duration)>,
    /// The pending period, ns.
    pub pending_for: i64,
    /// The flap damping, ns.
    pub keep_firing_for: i64,
    /// The evaluation interval.
    pub every: Duration,
    /// The longest pause between notification attempts.
    pub max_backoff: Duration,
    /// How notices are gathered into messages, if they are.
    pub grouping: Option<NoticeGrouping>,
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

impl AlertConfig {
    /// Every problem with the rule `name` (empty: none).
    pub fn problems(&self, name: &str) -> Vec<String> {
        self.plan(name).err().unwrap_or_default()
    }

    /// The checked rule `name`, or every problem with it, each naming the rule (a query error
    /// with its line and column).
    pub fn plan(&self, name: &str) -> Result<RulePlan, Vec<String>> {
        let mut problems = Vec::new();
        let mut say = |p: String| problems.push(format!("alert {name:?}: {p}"));
        let prepared = match eddy_query::prepare(&self.query, eddy_query::engine::DEFAULT_LIMIT) {
            Ok(p) => Some(p),
            Err(e) => {
                say(format!("query: {}", e.render(&self.query)));
                None
            }
        };
        let mut group_by = Vec::new();
        let mut column = None;
        let mut also_column = None;
        if let Some(p) = &prepared {
            let program = &p.program;
            match (&program.collect, program.explicit, &program.then) {
                (Collect::Aggregate { grouping, .. }, true, None) => {
                    group_by = match grouping {
                        Grouping::Fields(fields) => fields.clone(),
                        Grouping::All => Vec::new(),
                        Grouping::Time { .. } => {
                            say("query: group by fields (groupBy), not by time: the window is the rule's".into());
                            Vec::new()
                        }
                    };
                    let empty = eddy_query::run::answer_of(program, program.collect.state());
                    let values: Vec<&String> = empty
                        .columns
                        .iter()
                        .filter(|c| !group_by.contains(c))
                        .collect();
                    // A named column must be one of the answer's values.
                    let mut named = |key: &str, v: &String| match values.contains(&v) {
                        true => Some(v.clone()),
                        false => {
                            let known: Vec<&str> = values.iter().map(|c| c.as_str()).collect();
                            say(format!(
                                "{key} = {v:?} is not a column of the query's answer ({})",
                                known.join(", ")
                            ));
                            None
                        }
                    };
                    column = match &self.value {
                        Some(v) => named("value", v),
                        None => values.first().map(|c| c.to_string()),
                    };
                    also_column = self.and_value.as_ref().and_then(|v| named("and_value", v));
                }
                _ => say("query: end it with one aggregate per group, e.g. `| groupBy(host)` or `| count()`".into()),
            }
        }
        let window = match humantime::parse_duration(&self.window) {
            Ok(d) => Window::new(d)
                .map_err(|e| say(format!("window = {:?}: {e}", self.window)))
                .ok(),
            Err(_) => {
                say(format!("window = {:?} is not a duration", self.window));
                None
            }
        };
        let bound = match (self.above, self.below) {
            (Some(a), None) => Some(Bound::Above(a)),
            (None, Some(b)) => Some(Bound::Below(b)),
            _ => None,
        };
        let condition = match (self.condition.as_str(), self.above, self.below) {
            ("threshold" | "correlation", Some(a), None) => Some(Condition::Above(a)),
            ("threshold" | "correlation", None, Some(b)) => Some(Condition::Below(b)),
            (c @ ("threshold" | "correlation"), _, _) => {
                say(format!(
                    "condition = {c:?} needs exactly one of above = N or below = N"
                ));
                None
            }
            ("change", _, _) => {
                match (bound, self.over.as_deref().map(humantime::parse_duration)) {
                    (Some(bound), Some(Ok(over))) if !over.is_zero() => Some(Condition::Change {
                        over: nanos(over),
                        bound,
                    }),
                    (bound, over) => {
                        if bound.is_none() {
                            say("condition = \"change\" needs exactly one of above = N (a rise) or below = -N (a fall)".into());
                        }
                        if !matches!(over, Some(Ok(d)) if !d.is_zero()) {
                            say(format!("condition = \"change\" needs over = a duration (such as \"5m\"), not {:?}", self.over.as_deref().unwrap_or("nothing")));
                        }
                        None
                    }
                }
            }
            ("anomaly", None, None) => {
                let season = self.season.as_deref().unwrap_or("1d");
                let seasons = self.seasons.unwrap_or(3);
                let deviations = self.deviations.unwrap_or(3.0);
                if seasons == 0 {
                    say("seasons must be at least 1".into());
                }
                if deviations.is_nan() || deviations <= 0.0 {
                    say(format!("deviations = {deviations} must be above 0"));
                }
                match humantime::parse_duration(season) {
                    Ok(d) if !d.is_zero() => Some(Condition::Anomaly(Seasonal {
                        season: nanos(d),
                        seasons: seasons.max(1),
                        deviations,
                    })),
                    _ => {
                        say(format!("season = {season:?} is not a duration"));
                        None
                    }
                }
            }
            ("anomaly", _, _) => {
                say(
                    "condition = \"anomaly\" takes no above or below: its band is deviations"
                        .into(),
                );
                None
            }
            ("absence", None, None) => Some(Condition::Absent),
            ("absence", _, _) => {
                say("condition = \"absence\" takes no above or below".into());
                None
            }
            (other, _, _) => {
                say(format!(
                    "condition = {other:?}: expected \"threshold\", \"absence\", \"change\", \"anomaly\" or \"correlation\""
                ));
                None
            }
        };
        let mut duration = |what: &str, text: &str| match humantime::parse_duration(text) {
            Ok(d) => d,
            Err(_) => {
                say(format!("{what} = {text:?} is not a duration"));
                Duration::ZERO
            }
        };
        let pending_for = duration("for", &self.pending_for);
        let keep_firing_for = duration("keep_firing_for", &self.keep_firing_for);
        let every = duration("every", &self.every);
        let max_backoff = self
            .max_backoff
            .as_deref()
            .map_or(DEFAULT_MAX_BACKOFF, |t| duration("max_backoff", t));
        let repeat_interval = self
            .repeat_interval
            .as_deref()
            .map(|t| nanos(duration("repeat_interval", t)));
        if every < Duration::from_millis(100) {
            say(format!("every = {:?} must be at least 100ms", self.every));
        }
        if let Some(url) = &self.webhook {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                say(format!("webhook {url:?} is not an http(s) URL"));
            }
        }
        let also_bound = match (self.and_above, self.and_below) {
            (Some(a), None) => Some(Bound::Above(a)),
            (None, Some(b)) => Some(Bound::Below(b)),
            (None, None) => None,
            _ => {
                say("give one of and_above or and_below, not both".into());
                None
            }
        };
        let also = match (also_column, also_bound) {
            (Some(c), Some(b)) => Some((c, b)),
            (None, None) if self.and_value.is_none() => None,
            // and_value that is not a column was said above.
            (None, Some(_)) if self.and_value.is_some() => None,
            _ => {
                say("a correlation needs and_value with one of and_above or and_below".into());
                None
            }
        };
        if self.condition == "correlation"
            && also.is_none()
            && self.and_value.is_none()
            && self.and_above.is_none()
            && self.and_below.is_none()
        {
            say(
                "condition = \"correlation\" needs and_value with one of and_above or and_below"
                    .into(),
            );
        }
        let throttle = self.throttle.as_deref().and_then(|t| {
            let parsed = t.split_once('/').and_then(|(n, per)| {
                let n: usize = n.trim().parse().ok()?;
                let per = humantime::parse_duration(per.trim()).ok()?;
                (n > 0 && !per.is_zero()).then_some((n, per))
            });
            if parsed.is_none() {
                say(format!(
                    "throttle = {t:?}: expected notices/period, such as \"10/1h\""
                ));
            }
            parsed
        });
        let mut channels = self.channels.clone();
        if self.webhook.is_some() {
            channels.insert(0, WEBHOOK_CHANNEL.to_string());
        }
        let grouping = match &self.group_by {
            Some(by) => {
                for label in by.iter().filter(|l| !group_by.contains(l)) {
                    say(format!(
                        "group_by = {label:?} is not a field the query groups by ({})",
                        group_by.join(", ")
                    ));
                }
                let wait = self.group_wait.as_deref().unwrap_or(DEFAULT_GROUP_WAIT);
                let interval = self
                    .group_interval
                    .as_deref()
                    .unwrap_or(DEFAULT_GROUP_INTERVAL);
                let mut period = |what: &str, text: &str| match humantime::parse_duration(text) {
                    Ok(d) => nanos(d),
                    Err(_) => {
                        say(format!("{what} = {text:?} is not a duration"));
                        0
                    }
                };
                Some(NoticeGrouping {
                    by: by.clone(),
                    wait: period("group_wait", wait),
                    interval: period("group_interval", interval),
                })
            }
            None => {
                if self.group_wait.is_some() || self.group_interval.is_some() {
                    say("group_wait and group_interval need group_by".into());
                }
                None
            }
        };
        if !self.inhibit_equal.is_empty() && self.inhibited_by.is_empty() {
            say("inhibit_equal needs inhibited_by".into());
        }
        if self.inhibited_by.iter().any(|r| r == name) {
            say("a rule cannot inhibit itself".into());
        }
        match (prepared, window, column, condition) {
            (Some(prepared), Some(window), Some(column), Some(condition))
                if problems.is_empty() =>
            {
                Ok(RulePlan {
                    prepared,
                    window,
                    group_by,
                    column,
                    condition,
                    also,
                    channels,
                    repeat_interval,
                    throttle,
                    pending_for: nanos(pending_for),
                    keep_firing_for: nanos(keep_firing_for),
                    every,
                    max_backoff,
                    grouping,
                })
            }
            _ => {
                if problems.is_empty() {
                    problems.push(format!("alert {name:?}: the query has no value column"));
                }
                Err(problems)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(toml: &str) -> AlertConfig {
        toml::from_str(toml).unwrap()
    }

    #[test]
    fn a_threshold_rule_is_typed_with_its_groups_and_value_column() {
        let plan = rule(
            "from = \"web\"\nquery = \"status>=500 | groupBy(host)\"\nwindow = \"1m\"\nabove = 10\nfor = \"30s\"\nkeep_firing_for = \"1m\"\n",
        )
        .plan("errors")
        .unwrap();
        assert_eq!(plan.group_by, vec!["host".to_string()]);
        assert_eq!(plan.column, "_count");
        assert_eq!(plan.condition, Condition::Above(10.0));
        assert_eq!(plan.pending_for, 30_000_000_000);
        assert_eq!(plan.keep_firing_for, 60_000_000_000);
    }

    #[test]
    fn every_problem_of_a_rule_is_reported_at_once_with_the_query_position() {
        let problems = rule(
            "from = \"web\"\nquery = \"status>=500 | groupBy(host, function=cuont())\"\nwindow = \"soon\"\ncondition = \"threshold\"\nfor = \"later\"\n",
        )
        .problems("errors");
        assert_eq!(problems.len(), 4, "{problems:#?}");
        assert!(
            problems[0].starts_with("alert \"errors\": query: "),
            "{}",
            problems[0]
        );
        assert!(problems[0].contains("cuont"), "{}", problems[0]);
        assert!(
            problems[0].contains("column"),
            "a position: {}",
            problems[0]
        );
        assert!(problems[1].contains("window = \"soon\""));
        assert!(problems[2].contains("exactly one of above"));
        assert!(problems[3].contains("for = \"later\""));
    }

    #[test]
    fn a_query_that_does_not_aggregate_or_a_missing_value_column_is_refused() {
        let events = rule("from = \"web\"\nquery = \"status>=500\"\nwindow = \"1m\"\nabove = 1\n")
            .problems("a");
        assert!(events[0].contains("one aggregate per group"), "{events:?}");
        let missing = rule(
            "from = \"web\"\nquery = \"groupBy(host)\"\nwindow = \"1m\"\nabove = 1\nvalue = \"latency\"\n",
        )
        .problems("a");
        assert!(
            missing[0]
                .contains("value = \"latency\" is not a column of the query's answer (_count)"),
            "{missing:?}"
        );
    }

    #[test]
    fn absence_holds_only_for_a_group_without_a_row() {
        assert!(Condition::Absent.holds(None));
        assert!(!Condition::Absent.holds(Some(0.0)));
        assert!(Condition::Above(1.0).holds(Some(2.0)));
        assert!(!Condition::Above(1.0).holds(None));
        assert!(Condition::Below(1.0).holds(Some(0.5)));
    }
}
