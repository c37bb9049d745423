//! `eddy fields`: which fields a repository's events have in a time range, as a table (FIELD,
//! TYPES, EVENTS, TOP VALUES) or JSON, from the server's field discovery.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use eddy_query::discover::{Discovery, FieldSummary};
use serde_json::json;

use crate::output;
use crate::search::Repository;

#[derive(Debug, Args)]
pub struct FieldsArgs {
    #[command(flatten)]
    from: Repository,
    /// Start: a relative time (15m, 24h, 7d) or RFC 3339.
    #[arg(long, default_value = "24h")]
    start: String,
    /// End: a relative time, RFC 3339 or `now` (default: no end).
    #[arg(long)]
    end: Option<String>,
    /// Print the answer as one JSON object (fields, events looked at, sampled, warnings).
    #[arg(long)]
    json: bool,
    /// Give up after this long.
    #[arg(long, default_value = "1m", value_parser = crate::units::parse_duration)]
    timeout: Duration,
}

pub fn run(args: &FieldsArgs) -> anyhow::Result<ExitCode> {
    let agent = crate::client::agent(Some(args.timeout));
    let url = format!(
        "{}/api/v1/repositories/{}/fields",
        args.from.url.trim_end_matches('/'),
        args.from.repository
    );
    let mut req = agent.get(&url).query("start", &args.start);
    if let Some(end) = &args.end {
        req = req.query("end", end);
    }
    if let Some(token) = &args.from.token {
        req = req.header("Authorization", &format!("Bearer {token}"));
    }
    let mut resp = req.call().map_err(|e| crate::client::no_answer(&url, e))?;
    let status = resp.status().as_u16();
    let text = resp
        .body_mut()
        .read_to_string()
        .context("the answer broke off")?;
    if status != 200 {
        let answer: serde_json::Value =
            serde_json::from_str(&text).unwrap_or(json!({ "error": text }));
        bail!(
            "the server answered {status}: {}",
            answer["error"].as_str().unwrap_or("(no message)")
        );
    }
    let found: Discovery = serde_json::from_str(&text)
        .with_context(|| format!("the server's answer is not a field listing: {text}"))?;
    if args.json {
        output::json_line(&found)?;
    } else {
        let rows: Vec<Vec<String>> = found.fields.iter().map(row).collect();
        output::table(&["FIELD", "TYPES", "EVENTS", "TOP VALUES"], &rows)?;
        eprintln!("{}", looked_at(&found));
    }
    for w in &found.warnings {
        eprintln!("warning: {w}");
    }
    Ok(ExitCode::SUCCESS)
}

/// A field's line of the table.
fn row(f: &FieldSummary) -> Vec<String> {
    let types = match f.types.len() {
        1 => f.types.keys().cloned().collect(),
        _ => f
            .types
            .iter()
            .map(|(t, n)| format!("{t} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
    };
    let mut top: Vec<String> = f
        .top
        .iter()
        .map(|t| format!("{} ({})", short(&t.value.to_text()), t.count))
        .collect();
    match f.distinct {
        None => top.push("many distinct values".into()),
        Some(n) if n > f.top.len() as u64 => top.push(format!("… {n} distinct")),
        Some(_) => {}
    }
    vec![f.name.clone(), types, f.events.to_string(), top.join(", ")]
}

/// A value cut to fit a table cell.
fn short(text: &str) -> String {
    const MAX: usize = 24;
    match text.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// What the listing describes: how many events, from when to when, and whether only the newest.
fn looked_at(d: &Discovery) -> String {
    let time = eddy_event::units::format_time;
    match (d.oldest, d.newest) {
        (Some(oldest), Some(newest)) => format!(
            "{} fields of {} events from {} to {}{}",
            d.fields.len(),
            d.events,
            time(oldest),
            time(newest),
            match d.sampled {
                true => " (the newest of the range only: it holds more; narrow --start/--end to see older ones)",
                false => "",
            }
        ),
        _ => "no events in the range".to_string(),
    }
}
