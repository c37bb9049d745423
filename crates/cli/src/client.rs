//! What the HTTP clients (`send`, `search`, `fields`, `alert`, `schema`) share: an agent that
//! hands every status back, so the server's own error message can be shown, and one request
//! with an optional bearer token.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde_json::{json, Value as Json};

/// An agent that returns error statuses as answers, giving up after `timeout` if one is set.
pub fn agent(timeout: Option<Duration>) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(timeout)
        .build()
        .into()
}

/// Sends `method` (`GET`, `POST`, `DELETE`) to `url`, with `token` as `Authorization: Bearer`
/// and, for a `POST`, `body` as `content_type`; the answer's status and text.
pub fn call(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<(&str, &[u8])>,
) -> anyhow::Result<(u16, String)> {
    let agent = agent(None);
    let auth = token.map(|t| format!("Bearer {t}"));
    let sent = match method {
        "POST" => {
            let (content_type, bytes) = body.unwrap_or(("application/json", &[]));
            let mut req = agent.post(url).header("Content-Type", content_type);
            if let Some(a) = &auth {
                req = req.header("Authorization", a);
            }
            req.send(bytes)
        }
        "DELETE" => {
            let mut req = agent.delete(url);
            if let Some(a) = &auth {
                req = req.header("Authorization", a);
            }
            req.call()
        }
        _ => {
            let mut req = agent.get(url);
            if let Some(a) = &auth {
                req = req.header("Authorization", a);
            }
            req.call()
        }
    };
    let mut resp = sent.with_context(|| format!("cannot reach {url}"))?;
    let status = resp.status().as_u16();
    Ok((status, resp.body_mut().read_to_string().unwrap_or_default()))
}

/// Where the server is and how to ask it, for the commands that manage it (`alert`, `token`).
#[derive(Debug, Args)]
pub struct AdminServer {
    /// The server's base URL.
    #[arg(long, env = "EDDY_URL", default_value = "http://127.0.0.1:7280")]
    url: String,
    /// A token with the scope admin (sent as `Authorization: Bearer`); `eddy alert history`
    /// sends it to read `_alerts`.
    #[arg(long, env = "EDDY_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

impl AdminServer {
    /// Sends a request; the answer's status and JSON body (`null` if it has none).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Json>,
    ) -> anyhow::Result<(u16, Json)> {
        let url = format!("{}{path}", self.url.trim_end_matches('/'));
        let body = body.map(Json::to_string).unwrap_or_default();
        let (status, text) = call(
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
pub fn refused(status: u16, answer: &Json) -> ExitCode {
    eprintln!(
        "error: the server answered {status}: {}",
        answer["error"].as_str().unwrap_or("(no message)")
    );
    ExitCode::FAILURE
}
