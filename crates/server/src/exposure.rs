//! The rule that keeps tokens off the network in clear: `eddy serve` refuses to start when any
//! token is configured and a door that carries tokens (the HTTP door, a `[[tcp]]` listener)
//! listens on a non-loopback address without TLS, unless `tls.allow_insecure = true`.
//!
//! Loopback addresses are exempt: nothing leaves the machine. UDP listeners are not doors that
//! carry tokens (no request has an `Authorization`), and TLS does not exist for them here.
//! The rule is checked at start, over the tokens known then: the configuration file's, those
//! of repositories created through the API before, and those made with `eddy token create`.
//! Later, the API refuses (`409`) to make a token or a repository with tokens while the rule
//! would refuse them ([`refuse_new_tokens`]).

use std::net::SocketAddr;

use crate::{AppState, Config, ConfigError};

/// Where tokens are kept, by setting name or file (never the secrets): the configuration
/// file's, the repositories', and the tokens eddy made (`eddy token create`).
pub fn token_holders(state: &AppState) -> Vec<String> {
    let mut holders = Vec::new();
    if !state.config.http.admin_tokens.is_empty() {
        holders.push("http.admin_tokens".to_string());
    }
    for repo in state.repositories() {
        for (key, tokens) in [
            ("tokens", &repo.config.tokens),
            ("read_tokens", &repo.config.read_tokens),
        ] {
            if !tokens.is_empty() {
                holders.push(format!("repositories.{}.{key}", repo.name));
            }
        }
    }
    if state.auth.has_created_tokens() {
        let file = crate::auth::tokens_file(&state.config.data_dir);
        holders.push(file.display().to_string());
    }
    holders
}

/// The doors that would carry tokens in clear beyond this machine: `(setting, address)`.
pub fn plaintext_doors(config: &Config) -> Vec<(String, SocketAddr)> {
    let tls = config.tls.enabled();
    let http = (!tls).then(|| ("http.listen".to_string(), config.http.listen));
    let tcp = config
        .tcp
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.serves_tls(tls))
        .map(|(i, l)| (format!("tcp[{i}].listen"), l.listen));
    http.into_iter()
        .chain(tcp)
        .filter(|(_, addr)| !addr.ip().is_loopback())
        .collect()
}

/// The refusal, if tokens would cross the network in clear and `tls.allow_insecure` is off.
pub fn check(config: &Config, token_holders: &[String]) -> Result<(), ConfigError> {
    if config.tls.allow_insecure || token_holders.is_empty() {
        return Ok(());
    }
    let doors = plaintext_doors(config);
    if doors.is_empty() {
        return Ok(());
    }
    let doors: Vec<String> = doors.iter().map(|(k, a)| format!("{k} = {a}")).collect();
    Err(ConfigError {
        source_name: None,
        problems: vec![format!(
            "tokens are configured ({}) but {} without TLS on a non-loopback address: the tokens \
             would cross the network in clear. Set [tls] cert and key, listen on a loopback \
             address, or set tls.allow_insecure = true to accept the risk",
            token_holders.join(", "),
            doors.join(", ")
        )],
    })
}

/// The refusal of an API call that would add tokens (`what`, e.g. "a token made now") while a
/// door carries them in clear: the rule at start holds for what comes later too.
pub fn refuse_new_tokens(config: &Config, what: &str) -> Result<(), crate::http::Reject> {
    check(config, &[what.to_string()])
        .map_err(|e| crate::http::error(axum::http::StatusCode::CONFLICT, e.problems.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::parse(text).unwrap()
    }

    const TOKENS: [&str; 1] = ["repositories.main.tokens"];

    #[test]
    fn tokens_on_a_public_plaintext_door_are_refused_naming_allow_insecure() {
        let c = config("[http]\nlisten = \"0.0.0.0:7280\"\n");
        let err = check(&c, &TOKENS.map(String::from))
            .unwrap_err()
            .to_string();
        assert!(err.contains("repositories.main.tokens"), "{err}");
        assert!(err.contains("http.listen = 0.0.0.0:7280"), "{err}");
        assert!(err.contains("tls.allow_insecure = true"), "{err}");
        // No tokens: nothing to protect.
        assert!(check(&c, &[]).is_ok());
        let c = config("[http]\nlisten = \"0.0.0.0:7280\"\n[tls]\nallow_insecure = true\n");
        assert!(check(&c, &TOKENS.map(String::from)).is_ok());
    }

    #[test]
    fn a_token_made_through_the_api_on_a_public_plaintext_door_is_refused_with_409() {
        let public = config("[http]\nlisten = \"0.0.0.0:7280\"\n");
        let refused = refuse_new_tokens(&public, "a token made now").unwrap_err();
        let response = axum::response::IntoResponse::into_response(refused);
        assert_eq!(response.status(), axum::http::StatusCode::CONFLICT);
        assert!(refuse_new_tokens(&config("[http]\nlisten = \"127.0.0.1:7280\"\n"), "t").is_ok());
        let insecure = config("[http]\nlisten = \"0.0.0.0:7280\"\n[tls]\nallow_insecure = true\n");
        assert!(refuse_new_tokens(&insecure, "t").is_ok());
    }

    #[test]
    fn loopback_and_tls_doors_are_not_exposed_but_a_plain_tcp_listener_is() {
        let c = config(
            "[http]\nlisten = \"[::1]:7280\"\n[[tcp]]\nlisten = \"127.0.0.1:5514\"\n\
             [[tcp]]\nlisten = \"0.0.0.0:5515\"\n",
        );
        assert_eq!(
            plaintext_doors(&c),
            vec![("tcp[1].listen".to_string(), "0.0.0.0:5515".parse().unwrap())]
        );
        let c = config(
            "[http]\nlisten = \"0.0.0.0:7280\"\n[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n\
             [[tcp]]\nlisten = \"0.0.0.0:5514\"\n[[tcp]]\nlisten = \"0.0.0.0:5515\"\ntls = false\n",
        );
        assert_eq!(
            plaintext_doors(&c),
            vec![("tcp[1].listen".to_string(), "0.0.0.0:5515".parse().unwrap())]
        );
    }
}
