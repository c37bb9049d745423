//! What the HTTP clients (`send`, `search`, `fields`, `alert`, `schema`) share: an agent that
//! hands every status back, so the server's own error message can be shown, and one request
//! with an optional bearer token.

use std::path::Path;
use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde_json::{json, Value as Json};

/// The certificates of `--cacert`: when set, the clients trust them instead of the public
/// roots (as curl does), for a server whose certificate a private CA signed.
static CA: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();

/// Reads the PEM certificates at `path` for every client of this process to trust.
pub fn trust_ca(path: &Path) -> anyhow::Result<()> {
    let pem = std::fs::read(path)
        .with_context(|| format!("--cacert {}: cannot read the file", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("--cacert {}: not PEM certificates", path.display()))?;
    if certs.is_empty() {
        bail!(
            "--cacert {}: no certificate in the file (expected PEM, \"-----BEGIN CERTIFICATE-----\")",
            path.display()
        );
    }
    // Set once, from `main`, before any client runs.
    let _ = CA.set(certs);
    Ok(())
}

/// The roots a websocket client trusts when `--cacert` was given.
pub fn ca_roots() -> anyhow::Result<Option<rustls::RootCertStore>> {
    let Some(certs) = CA.get() else {
        return Ok(None);
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert.clone())
            .context("--cacert: a certificate rustls does not accept")?;
    }
    Ok(Some(roots))
}

/// Whether `e` is TLS refusing the connection (a certificate not trusted, a handshake
/// refused): no retry mends that.
pub fn is_tls_failure(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::Rustls(_) | ureq::Error::Tls(_) | ureq::Error::Pem(_) => true,
        ureq::Error::Io(io) => io
            .get_ref()
            .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some()),
        _ => false,
    }
}

/// What to tell about a TLS failure, with the way out when the certificate is not trusted.
pub fn tls_failure(e: &ureq::Error) -> String {
    let text = e.to_string();
    if text.contains("certificate") && CA.get().is_none() {
        format!("{text} (a private CA signed the server's certificate? give it with --cacert FILE)")
    } else {
        text
    }
}

/// The error of a request to `url` that got no answer, with the way out when TLS refused it.
pub fn no_answer(url: &str, e: ureq::Error) -> anyhow::Error {
    if is_tls_failure(&e) {
        anyhow::anyhow!("cannot reach {url}: {}", tls_failure(&e))
    } else {
        anyhow::Error::new(e).context(format!("cannot reach {url}"))
    }
}

/// An agent that returns error statuses as answers, giving up after `timeout` if one is set.
pub fn agent(timeout: Option<Duration>) -> ureq::Agent {
    let mut config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(timeout);
    if let Some(certs) = CA.get() {
        let certs: Vec<_> = certs
            .iter()
            .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
            .collect();
        config = config.tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
                .build(),
        );
    }
    config.build().into()
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
    let mut resp = sent.map_err(|e| no_answer(url, e))?;
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
