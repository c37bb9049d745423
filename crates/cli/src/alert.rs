//! `eddy alert …`: the alert rules of a running server, through `/api/v1/alerts`: list, show,
//! create (every problem of the rule printed at once), delete, and the history of a rule's
//! notices from the system repository `_alerts`.
//!
//! Exit codes: 0 done, 1 refused (an invalid rule, no such rule), 2 could not ask.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use eddy_event::Value;
use serde_json::{json, Value as Json};

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
        rule: RuleArgs,
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
    #[arg(long)]
    absence: bool,
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
            "condition": if self.absence { "absence" } else { "threshold" },
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
        ];
        for (key, v) in optional {
            if let Some(v) = v {
                body[key] = v;
            }
        }
        body
    }
}

#[derive(Debug, Args)]
pub struct Server {
    /// The server's base URL.
    #[arg(long, env = "EDDY_URL", default_value = "http://127.0.0.1:7280")]
    url: String,
    /// An admin token (sent as `Authorization: Bearer`); `history` sends it as the read token
    /// of `_alerts`.
    #[arg(long, env = "EDDY_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

impl Server {
    /// Sends a request; the answer's status and JSON body (`null` if it has none).
    fn call(&self, method: &str, path: &str, body: Option<&Json>) -> anyhow::Result<(u16, Json)> {
        let url = format!("{}{path}", self.url.trim_end_matches('/'));
        let body = body.map(Json::to_string).unwrap_or_default();
        let (status, text) = crate::client::call(
            method,
            &url,
            self.token.as_deref(),
            Some(("application/json", body.as_bytes())),
        )?;
        let answer = if text.trim().is_empty() {
            Json::Null
        } else {
            serde_json::from_str(&text).unwrap_or(json!({ "error": text }))
        };
        Ok((status, answer))
    }
}

/// Prints a refusal's message; exit code 1.
fn refused(status: u16, answer: &Json) -> ExitCode {
    eprintln!(
        "error: the server answered {status}: {}",
        answer["error"].as_str().unwrap_or("(no message)")
    );
    ExitCode::FAILURE
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
