//! `eddy search '<query>'`: runs a query on a server and prints the answer as a table, JSON or
//! CSV, with a progress line on a terminal while blocks are read.
//!
//! A server with `[cluster] peers` runs the query on every node: when a node did not answer,
//! the answer leaves its events out, a warning names it, and the exit code is
//! [`INCOMPLETE`] (after the answer is printed), so that a script cannot take it for whole.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use eddy_event::Value;
use eddy_server::query::{cell_text, to_csv};
use serde_json::json;

use crate::output;

/// The repository a query reads, on which server.
#[derive(Debug, Args)]
pub struct Repository {
    /// The server's base URL.
    #[arg(long, env = "EDDY_URL", default_value = "http://127.0.0.1:7280")]
    pub url: String,
    /// The repository.
    #[arg(short, long, default_value = "main")]
    pub repository: String,
    /// Read token of the repository (sent as `Authorization: Bearer`).
    #[arg(long, env = "EDDY_READ_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// The query, e.g. `status>=500 | groupBy(host, function=count())` (see
    /// docs/query-language.md).
    query: String,
    #[command(flatten)]
    from: Repository,
    /// Start: a relative time (15m, 24h, 7d) or RFC 3339.
    #[arg(long, default_value = "24h")]
    start: String,
    /// End: a relative time, RFC 3339 or `now` (default: no end).
    #[arg(long)]
    end: Option<String>,
    /// Events (or rows, where the query does not say) returned at most.
    #[arg(long, default_value_t = 200)]
    limit: usize,
    /// Print the answer as one JSON object (columns, rows, warnings, progress; with a server
    /// that fans out, nodes and complete). Exit code 3: a node did not answer, so the answer
    /// leaves its events out.
    #[arg(long, conflicts_with = "csv")]
    json: bool,
    /// Print the answer as CSV.
    #[arg(long)]
    csv: bool,
    /// Give up after this long.
    #[arg(long, default_value = "10m", value_parser = crate::units::parse_duration)]
    timeout: Duration,
}

/// The exit code of an answer that leaves out a node that did not answer.
pub const INCOMPLETE: u8 = 3;

pub fn run(args: &SearchArgs) -> anyhow::Result<ExitCode> {
    let agent = crate::client::agent(Some(args.timeout));
    let url = format!(
        "{}/api/v1/repositories/{}/query",
        args.from.url.trim_end_matches('/'),
        args.from.repository
    );
    let mut req = agent
        .post(&url)
        .header("Content-Type", "application/json")
        .header("Accept", "application/x-ndjson");
    if let Some(token) = &args.from.token {
        req = req.header("Authorization", &format!("Bearer {token}"));
    }
    let body = json!({
        "query": args.query,
        "start": args.start,
        "end": args.end,
        "limit": args.limit,
    });
    let mut resp = req
        .send(serde_json::to_vec(&body)?.as_slice())
        .map_err(|e| crate::client::no_answer(&url, e))?;
    let status = resp.status().as_u16();
    if status != 200 {
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        let answer: serde_json::Value =
            serde_json::from_str(&text).unwrap_or(json!({ "error": text }));
        if status == 400 {
            if let Some(rendered) = answer["rendered"].as_str() {
                eprintln!("{rendered}");
                return Ok(ExitCode::from(2));
            }
        }
        bail!(
            "the server answered {status}: {}",
            answer["error"].as_str().unwrap_or("(no message)")
        );
    }
    let bar = (std::io::stderr().is_terminal() && !args.json && !args.csv).then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    });
    let mut columns: Vec<String> = Vec::new();
    let mut rows: Vec<BTreeMap<String, Value>> = Vec::new();
    let mut done = serde_json::Value::Null;
    let reader = std::io::BufReader::new(resp.body_mut().as_reader());
    for line in reader.lines() {
        let line = line.context("the answer broke off")?;
        let v: serde_json::Value =
            serde_json::from_str(&line).with_context(|| format!("not a JSON line: {line}"))?;
        if let Some(p) = v.get("progress") {
            if let Some(bar) = &bar {
                bar.set_message(progress_text(p));
            }
        } else if let Some(c) = v.get("columns") {
            columns = serde_json::from_value(c.clone())?;
        } else if let Some(r) = v.get("row") {
            rows.push(serde_json::from_value(r.clone())?);
        } else if let Some(d) = v.get("done") {
            done = d.clone();
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if done.is_null() {
        bail!("the answer broke off before its end");
    }
    if args.json {
        let mut answer = json!({
            "columns": columns,
            "rows": rows,
            "warnings": done["warnings"],
            "progress": done["progress"],
            "cancelled": done["cancelled"],
        });
        // Only a server that fans out says which nodes answered.
        for key in ["nodes", "complete"] {
            if let Some(v) = done.get(key) {
                answer[key] = v.clone();
            }
        }
        output::json_line(&answer)?;
    } else if args.csv {
        std::io::stdout()
            .lock()
            .write_all(to_csv(&columns, &rows).as_bytes())?;
    } else {
        print_table(&columns, &rows)?;
        if std::io::stderr().is_terminal() {
            eprintln!("{} rows; {}", rows.len(), progress_text(&done["progress"]));
        }
    }
    for w in done["warnings"].as_array().into_iter().flatten() {
        eprintln!("warning: {}", w.as_str().unwrap_or_default());
    }
    if done["complete"] == json!(false) {
        return Ok(ExitCode::from(INCOMPLETE));
    }
    Ok(ExitCode::SUCCESS)
}

/// Rows of an answer as an aligned table, their cells as the server's CSV writes them.
pub fn print_table(columns: &[String], rows: &[BTreeMap<String, Value>]) -> anyhow::Result<()> {
    let header: Vec<&str> = columns.iter().map(String::as_str).collect();
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| columns.iter().map(|c| cell_text(c, r.get(c))).collect())
        .collect();
    output::table(&header, &table)
}

fn progress_text(p: &serde_json::Value) -> String {
    let n = |k: &str| p[k].as_u64().unwrap_or(0);
    let plan = &p["plan"];
    let m = |k: &str| plan[k].as_u64().unwrap_or(0);
    format!(
        "blocks {}/{} read, {} skipped of {}, {} ruled out by field ranges; segments {} skipped of {}; {} events scanned",
        n("blocks_done"),
        n("blocks_total"),
        m("blocks_skipped"),
        m("blocks"),
        n("blocks_ruled_out"),
        m("segments_skipped"),
        m("segments"),
        n("events_scanned"),
    )
}
