//! `eddy schema …`: the registry of a running server, through its REST API: register, list,
//! show, check compatibility (printing every field-level reason) and diff two versions.
//!
//! Exit codes: 0 done (or compatible), 1 refused or incompatible, 2 could not ask.

use std::collections::BTreeSet;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use eddy_schema::{Compatibility, Schema, SchemaType};
use serde_json::{json, Value};

use crate::output::{json_line, table};

#[derive(Debug, Subcommand)]
pub enum SchemaCommand {
    /// Register a schema under a subject (prints its id and version; every reason if refused).
    Register {
        /// The subject, e.g. `orders-value`.
        subject: String,
        /// The schema's file, or `-` for stdin.
        file: String,
        #[command(flatten)]
        kind: Kind,
        #[command(flatten)]
        server: Server,
    },
    /// List subjects with their latest version.
    List {
        #[command(flatten)]
        server: Server,
    },
    /// Print a version of a subject's schema.
    Show {
        /// The subject.
        subject: String,
        /// A version number or `latest`.
        #[arg(long, value_name = "VERSION", default_value = "latest")]
        at: String,
        #[command(flatten)]
        server: Server,
    },
    /// Check whether a schema could be registered under a subject now; prints every reason it
    /// could not, with the field's path.
    Check {
        /// The subject.
        subject: String,
        /// The schema's file, or `-` for stdin.
        file: String,
        /// Check against this version only (a number or `latest`) rather than by the subject's
        /// mode against every version it covers.
        #[arg(long, value_name = "VERSION")]
        at: Option<String>,
        #[command(flatten)]
        kind: Kind,
        #[command(flatten)]
        server: Server,
    },
    /// Show what changed between two versions of a subject, and whether each reads the other's
    /// data.
    Diff {
        /// The subject.
        subject: String,
        /// The older version.
        from: String,
        /// The newer version (default: latest).
        #[arg(default_value = "latest")]
        to: String,
        #[command(flatten)]
        server: Server,
    },
}

#[derive(Debug, Args)]
pub struct Kind {
    /// The schema's kind.
    #[arg(long = "type", default_value = "avro", value_parser = ["avro", "json"])]
    kind: String,
}

#[derive(Debug, Args)]
pub struct Server {
    /// The server's base URL.
    #[arg(long, env = "EDDY_URL", default_value = "http://127.0.0.1:7280")]
    url: String,
    /// An admin token (sent as `Authorization: Bearer`).
    #[arg(long, env = "EDDY_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

impl Server {
    /// Sends a registry request; the answer's status and JSON body.
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<(u16, Value)> {
        let url = format!("{}/api/v1/registry{path}", self.url.trim_end_matches('/'));
        let body = body.map(Value::to_string);
        // A registry request is a GET, or a POST with its body.
        let method = match (method, &body) {
            ("POST", Some(_)) => "POST",
            _ => "GET",
        };
        let (status, text) = crate::client::call(
            method,
            &url,
            self.token.as_deref(),
            body.as_deref()
                .map(|b| (eddy_server::registry_api::CONTENT_TYPE, b.as_bytes())),
        )?;
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, value))
    }

    /// A request that must succeed.
    fn ok(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let (status, answer) = self.call(method, path, body)?;
        if status != 200 {
            bail!("{}", refusal(status, &answer));
        }
        Ok(answer)
    }
}

fn refusal(status: u16, answer: &Value) -> String {
    match (answer["error_code"].as_u64(), answer["message"].as_str()) {
        (Some(code), Some(m)) => format!("the registry refused ({status}, error {code}): {m}"),
        _ => format!("the registry answered {status}: {answer}"),
    }
}

fn read_schema(file: &str) -> anyhow::Result<String> {
    if file == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).context("reading stdin")?;
        return Ok(text);
    }
    std::fs::read_to_string(file).with_context(|| format!("reading {file}"))
}

fn request(file: &str, kind: &Kind) -> anyhow::Result<Value> {
    let schema = read_schema(file)?;
    Ok(json!({ "schema": schema, "schemaType": kind.kind.to_ascii_uppercase() }))
}

/// Runs a `schema` command.
pub fn run(cmd: &SchemaCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        SchemaCommand::Register {
            subject,
            file,
            kind,
            server,
        } => {
            let body = request(file, kind)?;
            let (status, answer) = server.call(
                "POST",
                &format!("/subjects/{subject}/versions"),
                Some(&body),
            )?;
            if status == 409 {
                // Ask for the reasons one per line rather than in one message.
                let check = server.ok(
                    "POST",
                    &format!("/compatibility/subjects/{subject}/versions"),
                    Some(&body),
                )?;
                return print_verdict(server.json, &check, "registered");
            }
            if status != 200 {
                bail!("{}", refusal(status, &answer));
            }
            let id = answer["id"].clone();
            let found = server.ok("POST", &format!("/subjects/{subject}"), Some(&body))?;
            if server.json {
                json_line(&json!({"subject": subject, "id": id, "version": found["version"]}))?;
            } else {
                println!("{subject}: version {} (schema id {id})", found["version"]);
            }
            Ok(ExitCode::SUCCESS)
        }
        SchemaCommand::List { server } => {
            let subjects: Vec<String> =
                serde_json::from_value(server.ok("GET", "/subjects", None)?)?;
            let mut rows = Vec::new();
            for s in &subjects {
                let v = server.ok("GET", &format!("/subjects/{s}/versions/latest"), None)?;
                let mode = server.ok("GET", &format!("/config/{s}"), None)?;
                rows.push(json!({
                    "subject": s,
                    "version": v["version"],
                    "id": v["id"],
                    "type": v["schemaType"].as_str().unwrap_or("AVRO"),
                    "compatibility": mode["compatibilityLevel"],
                }));
            }
            if server.json {
                rows.iter().try_for_each(json_line)?;
            } else {
                let cells = |r: &Value| {
                    ["subject", "version", "id", "type", "compatibility"]
                        .iter()
                        .map(|k| r[*k].as_str().map_or(r[*k].to_string(), str::to_string))
                        .collect()
                };
                table(
                    &["SUBJECT", "LATEST", "ID", "TYPE", "COMPATIBILITY"],
                    &rows.iter().map(cells).collect::<Vec<_>>(),
                )?;
            }
            Ok(ExitCode::SUCCESS)
        }
        SchemaCommand::Show {
            subject,
            at,
            server,
        } => {
            let v = server.ok("GET", &format!("/subjects/{subject}/versions/{at}"), None)?;
            if server.json {
                json_line(&v)?;
                return Ok(ExitCode::SUCCESS);
            }
            let text = v["schema"].as_str().unwrap_or_default();
            let pretty = serde_json::from_str::<Value>(text)
                .and_then(|s| serde_json::to_string_pretty(&s))
                .unwrap_or_else(|_| text.to_string());
            println!(
                "# {subject} version {} (schema id {}, {})\n{pretty}",
                v["version"],
                v["id"],
                v["schemaType"].as_str().unwrap_or("AVRO")
            );
            Ok(ExitCode::SUCCESS)
        }
        SchemaCommand::Check {
            subject,
            file,
            at,
            kind,
            server,
        } => {
            let body = request(file, kind)?;
            let path = match at {
                Some(v) => format!("/compatibility/subjects/{subject}/versions/{v}"),
                None => format!("/compatibility/subjects/{subject}/versions"),
            };
            let (status, answer) = server.call("POST", &path, Some(&body))?;
            if status != 200 {
                eprintln!("error: {}", refusal(status, &answer));
                return Ok(ExitCode::from(2));
            }
            print_verdict(server.json, &answer, "compatible")
        }
        SchemaCommand::Diff {
            subject,
            from,
            to,
            server,
        } => diff(server, subject, from, to),
    }
}

/// Prints a compatibility answer; exit 1 when incompatible.
fn print_verdict(json: bool, answer: &Value, ok_word: &str) -> anyhow::Result<ExitCode> {
    let compatible = answer["is_compatible"].as_bool().unwrap_or(false);
    let messages: Vec<&str> = answer["messages"]
        .as_array()
        .map(|m| m.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if json {
        json_line(&json!({"compatible": compatible, "incompatibilities": messages}))?;
    } else if compatible {
        println!("{ok_word}: compatible");
    } else {
        eprintln!("incompatible ({} reasons):", messages.len());
        for m in &messages {
            eprintln!("  {m}");
        }
    }
    Ok(if compatible {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn diff(server: &Server, subject: &str, from: &str, to: &str) -> anyhow::Result<ExitCode> {
    let fetch = |v: &str| -> anyhow::Result<(Value, Schema, Value)> {
        let answer = server.ok("GET", &format!("/subjects/{subject}/versions/{v}"), None)?;
        let kind: SchemaType = answer["schemaType"]
            .as_str()
            .unwrap_or("AVRO")
            .parse()
            .map_err(anyhow::Error::msg)?;
        let text = answer["schema"].as_str().unwrap_or_default();
        let schema = Schema::parse(kind, text)?;
        let json: Value = serde_json::from_str(text)?;
        Ok((answer, schema, json))
    };
    let (old_v, old, old_json) = fetch(from)?;
    let (new_v, new, new_json) = fetch(to)?;
    let mut changes = Vec::new();
    structural_diff(&old_json, &new_json, "", &mut changes);
    let earlier = [(old_v["version"].as_u64().unwrap_or(0) as u32, &old)];
    let reasons = |mode: Compatibility| -> Vec<String> {
        mode.check(&new, &earlier)
            .iter()
            .map(ToString::to_string)
            .collect()
    };
    let (backward, forward) = (
        reasons(Compatibility::Backward),
        reasons(Compatibility::Forward),
    );
    if server.json {
        json_line(&json!({
            "from": old_v["version"], "to": new_v["version"], "changes": changes,
            "backward": backward, "forward": forward,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{subject}: version {} → {}",
        old_v["version"], new_v["version"]
    );
    if changes.is_empty() {
        println!("  no changes");
    }
    for c in &changes {
        println!("  {c}");
    }
    for (name, found) in [
        ("the new version reads old data (backward)", &backward),
        ("old readers read new data (forward)", &forward),
    ] {
        match found.is_empty() {
            true => println!("{name}: yes"),
            false => {
                println!("{name}: no");
                for r in found {
                    println!("  {r}");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Lines `+ path: value`, `- path: value`, `~ path: old → new`. Arrays of objects with a
/// `name` (Avro fields, symbols) are compared by name, not position.
fn structural_diff(old: &Value, new: &Value, path: &str, out: &mut Vec<String>) {
    let at = |k: &str| match path {
        "" => k.to_string(),
        p => format!("{p}.{k}"),
    };
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => structural_diff(x, y, &at(k), out),
                    (Some(x), None) => out.push(format!("- {}: {x}", at(k))),
                    (None, Some(y)) => out.push(format!("+ {}: {y}", at(k))),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if named(a) && named(b) => {
            let by_name = |v: &Vec<Value>| -> Vec<(String, Value)> {
                v.iter()
                    .map(|x| {
                        (
                            x["name"].as_str().unwrap_or_default().to_string(),
                            x.clone(),
                        )
                    })
                    .collect()
            };
            let (a, b) = (by_name(a), by_name(b));
            for (name, x) in &a {
                match b.iter().find(|(n, _)| n == name) {
                    Some((_, y)) => structural_diff(x, y, &at(name), out),
                    None => out.push(format!("- {}: {x}", at(name))),
                }
            }
            for (name, y) in b.iter().filter(|(n, _)| !a.iter().any(|(m, _)| m == n)) {
                out.push(format!("+ {}: {y}", at(name)));
            }
        }
        (x, y) if x != y => out.push(format!(
            "~ {}: {x} → {y}",
            if path.is_empty() { "(root)" } else { path }
        )),
        _ => {}
    }
}

fn named(items: &[Value]) -> bool {
    !items.is_empty() && items.iter().all(|x| x["name"].is_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_diff_compares_fields_by_name() {
        let old = json!({"type": "record", "name": "Order", "fields": [
            {"name": "id", "type": "long"}, {"name": "total", "type": "long"}, {"name": "gone", "type": "int"}]});
        let new = json!({"type": "record", "name": "Order", "fields": [
            {"name": "total", "type": "double"}, {"name": "id", "type": "long"}, {"name": "currency", "type": "string"}]});
        let mut out = Vec::new();
        structural_diff(&old, &new, "", &mut out);
        assert_eq!(
            out,
            [
                "~ fields.total.type: \"long\" → \"double\"",
                "- fields.gone: {\"name\":\"gone\",\"type\":\"int\"}",
                "+ fields.currency: {\"name\":\"currency\",\"type\":\"string\"}",
            ]
        );
    }
}
