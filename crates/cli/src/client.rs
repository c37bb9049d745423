//! What the HTTP clients (`send`, `search`, `fields`, `alert`, `schema`) share: an agent that
//! hands every status back, so the server's own error message can be shown, and one request
//! with an optional bearer token.

use std::time::Duration;

use anyhow::Context;

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
