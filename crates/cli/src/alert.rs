//! `eddy alert …`: the alert rules of a running server, through `/api/v1/alerts`: list, show,
//! create (every problem of the rule printed at once), delete, test over a past range, the
//! history of a rule's notices from the system repository `_alerts`, silences
//! (`/api/v1/silences`) and the channels' notification groups (`/api/v1/notification-groups`).
//!
//! Exit codes: 0 done, 1 refused (an invalid rule, no such rule), 2 could not ask.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use eddy_event::Value;
use serde_json::{json, Value as Json};

use crate::client::{refused, AdminServer as Server};
use crate::output::{json_line, table};

#[derive(Debug, Subcommand)]
pub enum AlertCommand {
    /// List the rules with how many of their groups are firing.
    List {
        #[command(flatten)]
        server: Server,
    },
    /// Show a rule: its settings and each group's state.
    Show {
        /// The rule.
        name: String,
        #[command(flatten)]
        server: Server,
    },
    /// Create a rule: `eddy alert create errors --from web --query 'status>=500 |
    /// groupBy(host)' --window 1m --above 10 --for 30s --webhook http://…`.
    Create {
        /// The rule's name.
        name: String,
        #[command(flatten)]
        rule: Box<RuleArgs>,
        #[command(flatten)]
        server: Server,
    },
    /// Delete a rule and its memory (what it stored in `_alerts` stays).
    Delete {
        /// The rule.
        name: String,
        #[command(flatten)]
        server: Server,
    },
    /// When a rule would have fired and resolved over a past range (evaluated every `every`
    /// through the live rule's own evaluation; without silences, inhibition or throttling).
    Test {
        /// The rule.
        name: String,
        /// Start: a relative time (15m, 24h, 7d) or RFC 3339.
        #[arg(long, default_value = "24h")]
        start: String,
        /// End: a relative time, RFC 3339 or `now`.
        #[arg(long, default_value = "now")]
        end: String,
        #[command(flatten)]
        server: Server,
    },
    /// Mute the notices of the alerts that all MATCHERS match (`alert=errors`, `host=web-1`,
    /// `host!=web-1`, `host=~web-.*`) for a while; prints the silence's id.
    Silence {
        /// Label matchers; `alert` is the rule's name.
        #[arg(required = true)]
        matchers: Vec<String>,
        /// How long it lasts.
        #[arg(long = "for", default_value = "1h")]
        duration: String,
        /// Why, by whom.
        #[arg(long, default_value = "")]
        comment: String,
        #[command(flatten)]
        server: Server,
    },
    /// End a silence now (its rules tell the alerts it muted: `silence_expired`).
    Unsilence {
        /// The silence's id.
        id: String,
        #[command(flatten)]
        server: Server,
    },
    /// List the silences, those in force and those that ended.
    Silences {
        #[command(flatten)]
        server: Server,
    },
    /// The channels that group notices across rules (`group_by` on a channel): their
    /// settings and the groups they hold, what waits and when it goes.
    Groups {
        #[command(flatten)]
        server: Server,
    },
    /// A rule's firing and resolved notices, newest first, from the repository `_alerts`.
    History {
        /// The rule.
        name: String,
        /// Start: a relative time (15m, 24h, 7d) or RFC 3339.
        #[arg(long, default_value = "7d")]
        start: String,
        /// Notices printed at most.
        #[arg(long, default_value_t = 200)]
        limit: usize,
        #[command(flatten)]
        server: Server,
    },
}

/// A rule's settings (see docs/alerting.md).
#[derive(Debug, Args)]
pub struct RuleArgs {
    /// The repository it watches.
    #[arg(long)]
    from: String,
    /// An aggregating query with one row per group, e.g. `status>=500 | groupBy(host)`.
    #[arg(long)]
    query: String,
    /// The sliding window the query is answered over.
    #[arg(long)]
    window: String,
    /// Fire while the value is above this.
    #[arg(long, conflicts_with_all = ["below", "absence"])]
    above: Option<f64>,
    /// Fire while the value is below this.
    #[arg(long, conflicts_with = "absence")]
    below: Option<f64>,
    /// Fire for a group, seen before, that has no events in the window.
    #[arg(long, conflicts_with_all = ["change", "anomaly"])]
    absence: bool,
    /// Fire when the value rose by more than --above (or fell by more than --below) over
    /// --over.
    #[arg(long, requires = "over", conflicts_with = "anomaly")]
    change: bool,
    /// `--change`: the span the change is measured over.
    #[arg(long)]
    over: Option<String>,
    /// Fire when the value leaves its seasonal baseline (the same time of previous seasons).
    #[arg(long, conflicts_with_all = ["above", "below"])]
    anomaly: bool,
    /// `--anomaly`: the season (default 1d).
    #[arg(long)]
    season: Option<String>,
    /// `--anomaly`: the previous seasons averaged (default 3).
    #[arg(long)]
    seasons: Option<usize>,
    /// `--anomaly`: the band's half width in standard deviations (default 3).
    #[arg(long)]
    deviations: Option<f64>,
    /// Correlation: a second column that must agree.
    #[arg(long)]
    and_value: Option<String>,
    /// Correlation: the second column must be above this.
    #[arg(long)]
    and_above: Option<f64>,
    /// Correlation: the second column must be below this.
    #[arg(long)]
    and_below: Option<f64>,
    /// A configured channel to notify (repeat for more).
    #[arg(long = "channel")]
    channels: Vec<String>,
    /// The message's text for Slack, email and IRC, with {placeholders}.
    #[arg(long)]
    template: Option<String>,
    /// Notify a still-firing group again after this long.
    #[arg(long)]
    repeat_interval: Option<String>,
    /// At most this many notices per period, `10/1h`.
    #[arg(long)]
    throttle: Option<String>,
    /// A rule whose firing groups mute this one (repeat for more).
    #[arg(long = "inhibited-by")]
    inhibited_by: Vec<String>,
    /// Labels the inhibiting group must share (repeat for more).
    #[arg(long = "inhibit-equal")]
    inhibit_equal: Vec<String>,
    /// The answer's column compared (default: the first not grouped by).
    #[arg(long)]
    value: Option<String>,
    /// How long the condition must hold before the alert fires.
    #[arg(long = "for")]
    pending_for: Option<String>,
    /// How long a firing alert outlives its condition.
    #[arg(long)]
    keep_firing_for: Option<String>,
    /// How often it is evaluated.
    #[arg(long)]
    every: Option<String>,
    /// POST firing and resolved notices to this URL.
    #[arg(long)]
    webhook: Option<String>,
}

impl RuleArgs {
    fn body(&self, name: &str) -> Json {
        let mut body = json!({
            "name": name,
            "from": self.from,
            "query": self.query,
            "window": self.window,
            "condition": if self.absence {
                "absence"
            } else if self.change {
                "change"
            } else if self.anomaly {
                "anomaly"
            } else if self.and_value.is_some() {
                "correlation"
            } else {
                "threshold"
            },
        });
        let optional = [
            ("above", self.above.map(|v| json!(v))),
            ("below", self.below.map(|v| json!(v))),
            ("value", self.value.as_ref().map(|v| json!(v))),
            ("for", self.pending_for.as_ref().map(|v| json!(v))),
            (
                "keep_firing_for",
                self.keep_firing_for.as_ref().map(|v| json!(v)),
            ),
            ("every", self.every.as_ref().map(|v| json!(v))),
            ("webhook", self.webhook.as_ref().map(|v| json!(v))),
            ("over", self.over.as_ref().map(|v| json!(v))),
            ("season", self.season.as_ref().map(|v| json!(v))),
            ("seasons", self.seasons.map(|v| json!(v))),
            ("deviations", self.deviations.map(|v| json!(v))),
            ("and_value", self.and_value.as_ref().map(|v| json!(v))),
            ("and_above", self.and_above.map(|v| json!(v))),
            ("and_below", self.and_below.map(|v| json!(v))),
            ("template", self.template.as_ref().map(|v| json!(v))),
            (
                "repeat_interval",
                self.repeat_interval.as_ref().map(|v| json!(v)),
            ),
            ("throttle", self.throttle.as_ref().map(|v| json!(v))),
            (
                "channels",
                (!self.channels.is_empty()).then(|| json!(self.channels)),
            ),
            (
                "inhibited_by",
                (!self.inhibited_by.is_empty()).then(|| json!(self.inhibited_by)),
            ),
            (
                "inhibit_equal",
                (!self.inhibit_equal.is_empty()).then(|| json!(self.inhibit_equal)),
            ),
        ];
        for (key, v) in optional {
            if let Some(v) = v {
                body[key] = v;
            }
        }
        body
    }
}

pub fn run(cmd: &AlertCommand) -> anyhow::Result<ExitCode> {
    let result = match cmd {
        AlertCommand::List { server } => list(server),
        AlertCommand::Show { name, server } => show(name, server),
        AlertCommand::Create { name, rule, server } => {
            let (status, answer) = server.call("POST", "/api/v1/alerts", Some(&rule.body(name)))?;
            if status != 201 {
                return Ok(refused(status, &answer));
            }
            if server.json {
                json_line(&answer)?;
            } else {
                println!("created alert {name}");
            }
            Ok(ExitCode::SUCCESS)
        }
        AlertCommand::Delete { name, server } => {
            let (status, answer) =
                server.call("DELETE", &format!("/api/v1/alerts/{name}"), None)?;
            if status != 204 {
                return Ok(refused(status, &answer));
            }
            if !server.json {
                println!("deleted alert {name}");
            }
            Ok(ExitCode::SUCCESS)
        }
        AlertCommand::History {
            name,
            start,
            limit,
            server,
        } => history(name, start, *limit, server),
        AlertCommand::Test {
            name,
            start,
            end,
            server,
        } => test(name, start, end, server),
        AlertCommand::Silence {
            matchers,
            duration,
            comment,
            server,
        } => {
            let body = json!({ "matchers": matchers, "duration": duration, "comment": comment });
            let (status, answer) = server.call("POST", "/api/v1/silences", Some(&body))?;
            if status != 201 {
                return Ok(refused(status, &answer));
            }
            if server.json {
                json_line(&answer)?;
            } else {
                println!("{}", answer["id"].as_str().unwrap_or_default());
            }
            Ok(ExitCode::SUCCESS)
        }
        AlertCommand::Unsilence { id, server } => {
            let (status, answer) =
                server.call("DELETE", &format!("/api/v1/silences/{id}"), None)?;
            if status != 204 {
                return Ok(refused(status, &answer));
            }
            if !server.json {
                println!("ended silence {id}");
            }
            Ok(ExitCode::SUCCESS)
        }
        AlertCommand::Silences { server } => silences(server),
        AlertCommand::Groups { server } => groups(server),
    };
    // A server that cannot be asked is exit code 2, a refusal 1.
    result.or_else(|e| {
        eprintln!("error: {}", crate::error_chain(&e));
        Ok(ExitCode::from(2))
    })
}

fn list(server: &Server) -> anyhow::Result<ExitCode> {
    let (status, answer) = server.call("GET", "/api/v1/alerts", None)?;
    if status != 200 {
        return Ok(refused(status, &answer));
    }
    if server.json {
        json_line(&answer)?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = answer["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            let s = &a["status"];
            vec![
                a["name"].as_str().unwrap_or_default().to_string(),
                a["config"]["from"].as_str().unwrap_or_default().to_string(),
                a["config"]["query"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                s["firing"].to_string(),
                s["groups"].as_array().map_or(0, Vec::len).to_string(),
                s["error"].as_str().unwrap_or("").to_string(),
            ]
        })
        .collect();
    table(
        &["NAME", "FROM", "QUERY", "FIRING", "GROUPS", "ERROR"],
        &rows,
    )?;
    Ok(ExitCode::SUCCESS)
}

fn show(name: &str, server: &Server) -> anyhow::Result<ExitCode> {
    let (status, answer) = server.call("GET", &format!("/api/v1/alerts/{name}"), None)?;
    if status != 200 {
        return Ok(refused(status, &answer));
    }
    if server.json {
        json_line(&answer)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("{}", serde_json::to_string_pretty(&answer["config"])?);
    let rows: Vec<Vec<String>> = answer["status"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| {
            vec![
                g["group"].to_string(),
                g["state"].as_str().unwrap_or_default().to_string(),
                g["value"].to_string(),
                g["fired"].to_string(),
            ]
        })
        .collect();
    table(&["GROUP", "STATE", "VALUE", "FIRED"], &rows)?;
    Ok(ExitCode::SUCCESS)
}

fn history(name: &str, start: &str, limit: usize, server: &Server) -> anyhow::Result<ExitCode> {
    // Without an aggregate, the answer is the newest events first.
    let query = format!("#alert={}", quoted(name));
    let body = json!({ "query": query, "start": start, "limit": limit });
    let path = format!(
        "/api/v1/repositories/{}/query",
        eddy_server::alerts_api::ALERTS_REPOSITORY
    );
    let (status, answer) = server.call("POST", &path, Some(&body))?;
    if status != 200 {
        return Ok(refused(status, &answer));
    }
    if server.json {
        json_line(&answer["rows"])?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<BTreeMap<String, Value>> =
        serde_json::from_value(answer["rows"].clone()).context("the answer's rows")?;
    let mut columns = vec!["@timestamp", "status", "value", "fired_before"];
    let labels: std::collections::BTreeSet<&str> = rows
        .iter()
        .flat_map(|r| r.keys())
        .filter(|k| k.starts_with("group."))
        .map(String::as_str)
        .collect();
    columns.extend(labels);
    let owned: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
    crate::search::print_table(&owned, &rows)?;
    Ok(ExitCode::SUCCESS)
}

/// `name` as a string literal of the query language.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
}

fn test(name: &str, start: &str, end: &str, server: &Server) -> anyhow::Result<ExitCode> {
    let body = json!({ "start": start, "end": end });
    let (status, answer) =
        server.call("POST", &format!("/api/v1/alerts/{name}/test"), Some(&body))?;
    if status != 200 {
        return Ok(refused(status, &answer));
    }
    if server.json {
        json_line(&answer)?;
        return Ok(ExitCode::SUCCESS);
    }
    for w in answer["warnings"].as_array().into_iter().flatten() {
        eprintln!("warning: {}", w.as_str().unwrap_or_default());
    }
    let rows: Vec<Vec<String>> = answer["notices"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            vec![
                time_text(n["at"].as_i64().unwrap_or_default()),
                n["status"].as_str().unwrap_or_default().to_string(),
                n["group"].to_string(),
                n["value"].to_string(),
                n["condition"].as_str().unwrap_or_default().to_string(),
            ]
        })
        .collect();
    table(&["AT", "STATUS", "GROUP", "VALUE", "CONDITION"], &rows)?;
    eprintln!(
        "{} evaluations over {} events: {} notices",
        answer["evaluations"],
        answer["events"],
        rows.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn groups(server: &Server) -> anyhow::Result<ExitCode> {
    let (status, answer) = server.call("GET", "/api/v1/notification-groups", None)?;
    if status != 200 {
        return Ok(refused(status, &answer));
    }
    if server.json {
        json_line(&answer)?;
        return Ok(ExitCode::SUCCESS);
    }
    let text = |v: &Json| match v {
        Json::String(s) => s.clone(),
        Json::Null => "-".into(),
        other => other.to_string(),
    };
    let mut rows = Vec::new();
    for c in answer["channels"].as_array().into_iter().flatten() {
        let by: Vec<String> = c["group_by"]
            .as_array()
            .into_iter()
            .flatten()
            .map(text)
            .collect();
        let settings = format!(
            "by [{}] wait {} interval {} repeat {}",
            by.join(", "),
            text(&c["group_wait"]),
            text(&c["group_interval"]),
            text(&c["repeat_interval"])
        );
        let groups = c["groups"].as_array().cloned().unwrap_or_default();
        if groups.is_empty() {
            rows.push(vec![
                text(&c["channel"]),
                settings.clone(),
                "-".into(),
                "0".into(),
                "0".into(),
                "-".into(),
            ]);
        }
        for g in groups {
            let labels: Vec<String> = g["labels"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("{k}={}", text(v)))
                .collect();
            let waiting: Vec<String> = g["waiting_alerts"]
                .as_array()
                .into_iter()
                .flatten()
                .map(text)
                .collect();
            rows.push(vec![
                text(&c["channel"]),
                settings.clone(),
                labels.join(" "),
                text(&g["waiting"]),
                text(&g["firing"]),
                g["due"].as_i64().map_or("-".into(), |d| {
                    format!("{} ({})", time_text(d), waiting.join(", "))
                }),
            ]);
        }
    }
    table(
        &["CHANNEL", "GROUPING", "GROUP", "WAITING", "FIRING", "DUE"],
        &rows,
    )?;
    Ok(ExitCode::SUCCESS)
}

fn silences(server: &Server) -> anyhow::Result<ExitCode> {
    let (status, answer) = server.call("GET", "/api/v1/silences", None)?;
    if status != 200 {
        return Ok(refused(status, &answer));
    }
    if server.json {
        json_line(&answer)?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = answer["silences"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let matchers: Vec<String> = s["matchers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|m| {
                    format!(
                        "{}{}{}",
                        m["label"].as_str().unwrap_or_default(),
                        m["op"].as_str().unwrap_or_default(),
                        m["value"].as_str().unwrap_or_default()
                    )
                })
                .collect();
            vec![
                s["id"].as_str().unwrap_or_default().to_string(),
                matchers.join(" "),
                time_text(s["ends_at"].as_i64().unwrap_or_default()),
                if s["active"] == true { "yes" } else { "no" }.to_string(),
                s["comment"].as_str().unwrap_or_default().to_string(),
            ]
        })
        .collect();
    table(&["ID", "MATCHERS", "ENDS", "ACTIVE", "COMMENT"], &rows)?;
    Ok(ExitCode::SUCCESS)
}

/// A time in ns as RFC 3339 (seconds).
fn time_text(ns: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(u64::try_from(ns).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}
