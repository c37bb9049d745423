//! `eddy token …`: the tokens of a running server, through `/api/v1/tokens` (scope `admin`):
//! create (the secret is printed once), list, revoke. The server keeps only each secret's
//! SHA-256; talking to it, rather than editing its data directory, means a token works or
//! stops working the moment the command returns, and the audit names who did it.
//!
//! On a server without any token yet, no token is needed: the first one is made with
//! `eddy token create --scope admin` and, from then on, every route needs a token.
//!
//! Exit codes: 0 done, 1 refused (a bad scope, no such token, not allowed), 2 could not ask.

use std::process::ExitCode;

use clap::Subcommand;
use serde_json::{json, Value as Json};

use crate::client::{refused, AdminServer as Server};
use crate::output::{json_line, table};

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a token and print its secret (shown this once):
    /// `eddy token create --scope ingest:web --scope read:web --expires 30d --name ci`.
    Create {
        /// A scope: ingest:<repo>, read:<repo> (`*` for every repository), admin, metrics or
        /// `*`; repeat for several.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// A name for people.
        #[arg(long, default_value = "")]
        name: String,
        /// When it stops working: a duration from now (30d, 12h) or an RFC 3339 time.
        #[arg(long)]
        expires: Option<String>,
        /// Requests per second at most (default: the server's `[limits]`).
        #[arg(long)]
        requests_per_second: Option<f64>,
        /// Request body bytes per second at most.
        #[arg(long)]
        bytes_per_second: Option<f64>,
        /// Seconds of query run time per second at most.
        #[arg(long)]
        query_seconds_per_second: Option<f64>,
        /// Live queries open at once at most.
        #[arg(long)]
        live_queries: Option<usize>,
        #[command(flatten)]
        server: Server,
    },
    /// List the tokens (never their secrets): those made by `create` and those of the
    /// configuration file.
    List {
        #[command(flatten)]
        server: Server,
    },
    /// Revoke a token by its id (`tok_…`): it stops working at once.
    Revoke {
        /// The token's id.
        id: String,
        #[command(flatten)]
        server: Server,
    },
}

fn text(v: &Json) -> String {
    match v {
        Json::Null => "-".into(),
        Json::String(s) => s.clone(),
        Json::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

pub fn run(cmd: &TokenCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        TokenCommand::Create {
            scopes,
            name,
            expires,
            requests_per_second,
            bytes_per_second,
            query_seconds_per_second,
            live_queries,
            server,
        } => {
            let mut limits = serde_json::Map::new();
            for (key, value) in [
                ("requests_per_second", requests_per_second.map(Json::from)),
                ("bytes_per_second", bytes_per_second.map(Json::from)),
                (
                    "query_seconds_per_second",
                    query_seconds_per_second.map(Json::from),
                ),
                ("live_queries", live_queries.map(Json::from)),
            ] {
                if let Some(v) = value {
                    limits.insert(key.into(), v);
                }
            }
            let body =
                json!({"scopes": scopes, "name": name, "expires": expires, "limits": limits});
            let (status, answer) = server.call("POST", "/api/v1/tokens", Some(&body))?;
            if status != 201 {
                return Ok(refused(status, &answer));
            }
            if server.json {
                json_line(&answer)?;
            } else {
                println!(
                    "created token {} ({}), expires {}",
                    text(&answer["id"]),
                    text(&answer["scopes"]),
                    text(&answer["expires"])
                );
                println!("secret (shown this once; eddy keeps only its SHA-256):");
                println!("{}", text(&answer["secret"]));
            }
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::List { server } => {
            let (status, answer) = server.call("GET", "/api/v1/tokens", None)?;
            if status != 200 {
                return Ok(refused(status, &answer));
            }
            if server.json {
                json_line(&answer)?;
                return Ok(ExitCode::SUCCESS);
            }
            let rows: Vec<Vec<String>> = answer["tokens"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|t| {
                    ["id", "name", "scopes", "created", "expires", "source"]
                        .iter()
                        .map(|k| text(&t[*k]))
                        .collect()
                })
                .collect();
            table(
                &["ID", "NAME", "SCOPES", "CREATED", "EXPIRES", "SOURCE"],
                &rows,
            )?;
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::Revoke { id, server } => {
            let (status, answer) = server.call("DELETE", &format!("/api/v1/tokens/{id}"), None)?;
            if status != 204 {
                return Ok(refused(status, &answer));
            }
            if server.json {
                json_line(&json!({"revoked": id}))?;
            } else {
                println!("revoked token {id}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
