//! The `[[amqp]]` settings: one collector per queue.

use std::collections::BTreeMap;
use std::time::Duration;

use eddy_event::Parser;
use serde::Deserialize;

use crate::config::{duration, main_repository};

/// One AMQP 0-9-1 collector: a queue on a broker, consumed into a repository.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpConfig {
    /// Its name in `/metrics` and the logs (default: the queue's name).
    #[serde(default)]
    pub name: Option<String>,
    /// The broker: `amqp://user:password@host:port/vhost` (vhost `/` is `%2f`). Plain AMQP
    /// only; the password is never logged.
    pub url: String,
    /// The queue to consume from.
    pub queue: String,
    /// Declare the queue (durable, no arguments) if it does not exist. Set to false for a
    /// queue declared elsewhere with arguments (a dead-letter exchange, a type): declaring it
    /// again without them would fail.
    #[serde(default = "yes")]
    pub declare: bool,
    /// The repository its events go to.
    #[serde(default = "main_repository")]
    pub repository: String,
    /// How a message body is read: `json` (one JSON document, an array of them, or NDJSON),
    /// or a line parser (`kv`, `accesslog`, `syslog`, `statsd`, `none`) for each line. A
    /// message whose content type is binary Avro is read by the repository's schema.
    #[serde(default = "json_parser")]
    pub parser: Parser,
    /// Tags added to every event (they join the data source).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Messages the broker hands out before eddy acknowledges them (AMQP QoS prefetch):
    /// the most eddy holds in memory. A message is acknowledged only once its events are
    /// durable, so under back-pressure the broker stops delivering.
    #[serde(default = "prefetch")]
    pub prefetch: u16,
    /// A header whose value is the event id (for de-duplication) instead of the message's
    /// `message-id` property.
    #[serde(default)]
    pub id_header: Option<String>,
    /// The first wait before reconnecting to a broker that is down or refused; it doubles
    /// on each failure, up to `reconnect_max_delay`.
    #[serde(default = "reconnect_delay", deserialize_with = "duration")]
    pub reconnect_delay: Duration,
    /// The longest wait between reconnection attempts.
    #[serde(default = "reconnect_max_delay", deserialize_with = "duration")]
    pub reconnect_max_delay: Duration,
}

fn yes() -> bool {
    true
}

fn json_parser() -> Parser {
    Parser::Json
}

fn prefetch() -> u16 {
    1000
}

fn reconnect_delay() -> Duration {
    Duration::from_millis(500)
}

fn reconnect_max_delay() -> Duration {
    Duration::from_secs(30)
}

impl AmqpConfig {
    /// Its name in metrics and logs.
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.queue)
    }

    /// The broker's address without credentials, for logs.
    pub fn broker(&self) -> String {
        let (scheme, rest) = self.url.split_once("://").unwrap_or(("", &self.url));
        format!("{scheme}://{}", without_userinfo(rest))
    }

    /// The broker's URI as lapin takes it. Err: what is wrong with the URL (never the URL
    /// itself, which may hold a password).
    pub fn uri(&self) -> Result<lapin::uri::AMQPUri, String> {
        let mut uri: lapin::uri::AMQPUri = self
            .url
            .parse()
            .map_err(|e: String| e.replace(&self.url, "…"))?;
        // The URI parser takes only a domain as the host and reads an IP address as
        // `localhost`, which may resolve elsewhere (::1): keep the host as written.
        let (_, rest) = self.url.split_once("://").unwrap_or(("", &self.url));
        let authority = without_userinfo(rest).split('/').next().unwrap_or("");
        let host = match authority.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None => authority.split(':').next().unwrap_or(""),
        };
        if !host.is_empty() {
            uri.authority.host = host.to_string();
        }
        Ok(uri)
    }

    /// Problems with these settings, each prefixed with `at`.
    pub fn check(&self, at: &str) -> Vec<String> {
        let mut problems = Vec::new();
        match self.uri() {
            Err(e) => problems.push(format!(
                "{at}.url is not an amqp://user:password@host:port/vhost URL: {e}"
            )),
            Ok(uri) if uri.scheme != lapin::uri::AMQPScheme::AMQP => problems.push(format!(
                "{at}.url: only plain amqp:// is supported (no TLS)"
            )),
            Ok(_) => {}
        }
        if self.queue.is_empty() {
            problems.push(format!("{at}.queue must not be empty"));
        }
        if self.prefetch == 0 {
            problems.push(format!(
                "{at}.prefetch must be at least 1 (0 would mean no limit)"
            ));
        }
        if self.reconnect_delay.is_zero() || self.reconnect_max_delay < self.reconnect_delay {
            problems.push(format!(
                "{at}.reconnect_delay must be longer than 0s and at most reconnect_max_delay"
            ));
        }
        if self.id_header.as_deref().is_some_and(str::is_empty) {
            problems.push(format!("{at}.id_header must not be empty"));
        }
        problems
    }
}

/// `user:password@host:port/vhost` without `user:password@`.
fn without_userinfo(rest: &str) -> &str {
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => &rest[at + 1..],
        None => rest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> AmqpConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn a_collector_needs_only_a_url_and_a_queue() {
        let c = parse("url = \"amqp://guest:guest@127.0.0.1:5672/%2f\"\nqueue = \"events\"\n");
        assert_eq!(c.name(), "events");
        assert_eq!(c.repository, "main");
        assert_eq!(c.prefetch, 1000);
        assert!(c.declare);
        assert!(c.check("amqp[0]").is_empty());
        assert_eq!(c.broker(), "amqp://127.0.0.1:5672/%2f");
        assert_eq!(c.uri().unwrap().authority.host, "127.0.0.1");
        assert_eq!(c.uri().unwrap().vhost, "/");
    }

    #[test]
    fn bad_collector_settings_are_each_named_and_the_password_is_not_printed() {
        let c = parse(
            "url = \"amqps://u:secret-password@h/%2f\"\nqueue = \"\"\nprefetch = 0\nreconnect_delay = \"10s\"\nreconnect_max_delay = \"1s\"\n",
        );
        let problems = c.check("amqp[0]").join("\n");
        for expected in [
            "amqp[0].url: only plain amqp://",
            "amqp[0].queue must not be empty",
            "amqp[0].prefetch must be at least 1",
            "amqp[0].reconnect_delay",
        ] {
            assert!(
                problems.contains(expected),
                "{expected:?} not in {problems}"
            );
        }
        assert!(!problems.contains("secret-password"), "{problems}");
        let c = parse("url = \"http://u:secret-password@h\"\nqueue = \"q\"\n");
        let problems = c.check("amqp[0]").join("\n");
        assert!(
            problems.contains("amqp[0].url is not an amqp://"),
            "{problems}"
        );
        assert!(!problems.contains("secret-password"), "{problems}");
    }
}
