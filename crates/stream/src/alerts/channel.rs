//! Where notices go: named channels (`[channels.<name>]`) that rules reference by name.
//!
//! - `webhook`: a `POST` of the notice as JSON with `Idempotency-Key: <notice id>` and, with a
//!   `secret`, `X-Eddy-Signature: sha256=<hex HMAC-SHA256 of the body under the secret>`;
//! - `slack`: a `POST` in the shape of Slack's incoming webhooks (`text` and one coloured
//!   attachment), which Mattermost, Rocket.Chat and Discord's `/slack` endpoint take too;
//! - `email`: a plain-text mail over SMTP (`lettre`; STARTTLS or TLS through rustls, plain SMTP
//!   only to a loopback address);
//! - `irc`: a short-lived IRC client that registers, joins the channel, says the message one
//!   line per `PRIVMSG` and quits.
//!
//! Each channel is a blocking call with a 10 s bound, made from a delivery thread (webhooks and
//! Slack through the one HTTP client all rules share), so a
//! channel that hangs holds back only the rules that use it.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use hmac::{KeyInit, Mac};
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{SmtpTransport, Transport};
use serde::{Deserialize, Serialize};

use super::Notice;

/// A new notification group's wait for its first message.
pub const DEFAULT_GROUP_WAIT: &str = "30s";
/// The least time between two messages of a notification group.
pub const DEFAULT_GROUP_INTERVAL: &str = "5m";

/// The longest a channel's delivery may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The header carrying a webhook's signature.
pub const SIGNATURE_HEADER: &str = "X-Eddy-Signature";

/// A channel as written: `[channels.ops]` with `kind` and the keys of that kind.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChannelConfig {
    /// `webhook`, `slack`, `email` or `irc`.
    pub kind: String,
    /// `webhook`, `slack`: the URL POSTed to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `webhook`: the key of the body's HMAC-SHA256 signature (`X-Eddy-Signature`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// `email`: the SMTP server, `host:port`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smtp: Option<String>,
    /// `email`: `starttls` (default), `tls` (SMTPS), or `none` (only to a loopback address).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<String>,
    /// `email`: the SMTP login, if the server wants one (with `password`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// `email`: the SMTP password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// `email`: the sender, `Eddy <eddy@example.com>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// `email`: the recipients.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<String>,
    /// `irc`: the server, `host:port` (plain IRC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// `irc`: the nickname (default `eddy`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nick: Option<String>,
    /// `irc`: the channel joined and spoken to, `#ops`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Notification groups across rules: the notices of every rule routed here that share
    /// these labels (`alertname` is the rule) go out as one message (`[]`: all in one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_by: Option<Vec<String>>,
    /// With `group_by`: how long a new group's first notice waits for the others (`30s`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_wait: Option<String>,
    /// With `group_by`: the least time between two messages of one group (`5m`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_interval: Option<String>,
    /// With `group_by`: a group with alerts still firing is sent again after this long
    /// (none: once).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repeat_interval: Option<String>,
}

/// A channel's notification grouping across rules, checked (`group_by` on the channel).
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelGrouping {
    /// The labels a group shares (`alertname`: the rule's name; the others: the alert's
    /// labels, missing ones as null).
    pub by: Vec<String>,
    /// How long a new group's first notice waits for others, ns.
    pub wait: i64,
    /// The least time between two messages of a group, ns.
    pub interval: i64,
    /// After how long a group whose alerts still fire is sent again, ns (none: never).
    pub repeat: Option<i64>,
}

/// A channel, checked.
#[derive(Debug, Clone)]
pub enum Channel {
    /// JSON POST, optionally signed.
    Webhook {
        /// The URL.
        url: String,
        /// The HMAC key.
        secret: Option<String>,
    },
    /// Slack's incoming-webhook JSON.
    Slack {
        /// The URL.
        url: String,
    },
    /// A mail over SMTP.
    Email(Box<Email>),
    /// Lines to an IRC channel.
    Irc {
        /// `host:port`.
        server: String,
        /// The nickname.
        nick: String,
        /// The channel, with its `#`.
        channel: String,
    },
}

/// An email channel's settings.
#[derive(Debug, Clone)]
pub struct Email {
    host: String,
    port: u16,
    tls: Tls,
    credentials: Option<(String, String)>,
    from: Mailbox,
    to: Vec<Mailbox>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tls {
    /// Plain, upgraded with STARTTLS.
    Upgrade,
    /// TLS from the first byte (SMTPS).
    Wrapper,
    /// No TLS (loopback only).
    None,
}

/// Why a channel did not take a notice (it is tried again with back-off).
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The server could not be reached or the exchange broke off.
    #[error("{target}: {error}")]
    Unreachable {
        /// What was called.
        target: String,
        /// Why.
        error: String,
    },
    /// The server answered with a refusal.
    #[error("{target} answered {answer}")]
    Refused {
        /// What was called.
        target: String,
        /// Its answer (an HTTP status, an SMTP or IRC reply).
        answer: String,
    },
}

impl ChannelConfig {
    /// The checked channel `name`, or every problem with it.
    pub fn plan(&self, name: &str) -> Result<Channel, Vec<String>> {
        let mut problems = Vec::new();
        let mut say = |p: String| problems.push(format!("channel {name:?}: {p}"));
        let http_url = |say: &mut dyn FnMut(String)| match &self.url {
            Some(u) if u.starts_with("http://") || u.starts_with("https://") => u.clone(),
            Some(u) => {
                say(format!("url {u:?} is not an http(s) URL"));
                String::new()
            }
            None => {
                say(format!("kind = {:?} needs url", self.kind));
                String::new()
            }
        };
        let channel = match self.kind.as_str() {
            "webhook" => Channel::Webhook {
                url: http_url(&mut say),
                secret: self.secret.clone(),
            },
            "slack" => Channel::Slack {
                url: http_url(&mut say),
            },
            "email" => match self.email(&mut say) {
                Some(email) => Channel::Email(Box::new(email)),
                None => return Err(problems),
            },
            "irc" => {
                let server = self.server.clone().unwrap_or_default();
                if host_port(&server).is_none() {
                    say(format!("server = {server:?}: expected host:port"));
                }
                let channel = self.channel.clone().unwrap_or_default();
                if !channel.starts_with('#') || channel.contains([' ', ',', '\r', '\n']) {
                    say(format!("channel = {channel:?}: expected #name"));
                }
                let nick = self.nick.clone().unwrap_or_else(|| "eddy".into());
                if nick.is_empty() || nick.contains([' ', '\r', '\n', '#']) {
                    say(format!("nick = {nick:?} is not a nickname"));
                }
                Channel::Irc {
                    server,
                    nick,
                    channel,
                }
            }
            other => {
                say(format!(
                    "kind = {other:?}: expected \"webhook\", \"slack\", \"email\" or \"irc\""
                ));
                return Err(problems);
            }
        };
        if let Err(p) = self.grouping(name) {
            problems.extend(p);
        }
        if problems.is_empty() {
            Ok(channel)
        } else {
            Err(problems)
        }
    }

    /// The channel's notification grouping across rules, if it has one, or every problem
    /// with it.
    pub fn grouping(&self, name: &str) -> Result<Option<ChannelGrouping>, Vec<String>> {
        let mut problems = Vec::new();
        let mut say = |p: String| problems.push(format!("channel {name:?}: {p}"));
        let Some(by) = &self.group_by else {
            let stray: Vec<&str> = [
                ("group_wait", &self.group_wait),
                ("group_interval", &self.group_interval),
                ("repeat_interval", &self.repeat_interval),
            ]
            .iter()
            .filter(|(_, v)| v.is_some())
            .map(|(k, _)| *k)
            .collect();
            if !stray.is_empty() {
                say(format!(
                    "{} without group_by: add group_by = [\"label\", …] to group notices here",
                    stray.join(", ")
                ));
                return Err(problems);
            }
            return Ok(None);
        };
        let mut seen = std::collections::BTreeSet::new();
        for label in by {
            if label.trim().is_empty() {
                say("group_by has an empty label".into());
            } else if !seen.insert(label) {
                say(format!("group_by names {label:?} twice"));
            }
        }
        let mut period = |what: &str, text: Option<&str>, default: &str| {
            let text = text.unwrap_or(default);
            match humantime::parse_duration(text) {
                Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
                Err(_) => {
                    say(format!(
                        "{what} = {text:?} is not a duration (such as \"30s\")"
                    ));
                    0
                }
            }
        };
        let wait = period("group_wait", self.group_wait.as_deref(), DEFAULT_GROUP_WAIT);
        let interval = period(
            "group_interval",
            self.group_interval.as_deref(),
            DEFAULT_GROUP_INTERVAL,
        );
        let repeat = self
            .repeat_interval
            .as_deref()
            .map(|r| period("repeat_interval", Some(r), r));
        if repeat.is_some_and(|r| r < interval) {
            say("repeat_interval is shorter than group_interval: a group never sends more often than group_interval".into());
        }
        if problems.is_empty() {
            Ok(Some(ChannelGrouping {
                by: by.clone(),
                wait,
                interval,
                repeat,
            }))
        } else {
            Err(problems)
        }
    }

    /// The email settings, if they check (else every problem is said).
    fn email(&self, say: &mut dyn FnMut(String)) -> Option<Email> {
        let smtp = self.smtp.clone().unwrap_or_default();
        let (host, port) = host_port(&smtp).unwrap_or_else(|| {
            say(format!("smtp = {smtp:?}: expected host:port"));
            (String::new(), 0)
        });
        let tls = match self.tls.as_deref().unwrap_or("starttls") {
            "starttls" => Tls::Upgrade,
            "tls" => Tls::Wrapper,
            "none" => Tls::None,
            other => {
                say(format!(
                    "tls = {other:?}: expected \"starttls\", \"tls\" or \"none\""
                ));
                Tls::Upgrade
            }
        };
        if tls == Tls::None && !is_loopback(&host) {
            say(format!(
                "tls = \"none\" sends the mail in clear text: only to a loopback address, not {host:?}"
            ));
        }
        let mut mailbox = |what: &str, text: &str| match text.parse::<Mailbox>() {
            Ok(m) => Some(m),
            Err(e) => {
                say(format!("{what} {text:?} is not an address: {e}"));
                None
            }
        };
        let from = mailbox("from", self.from.as_deref().unwrap_or_default());
        let to: Vec<Mailbox> = self.to.iter().filter_map(|t| mailbox("to", t)).collect();
        if self.to.is_empty() {
            say("email needs at least one address in to".into());
        }
        let credentials = match (&self.username, &self.password) {
            (Some(u), Some(p)) => Some((u.clone(), p.clone())),
            (None, None) => None,
            _ => {
                say("username and password go together".into());
                None
            }
        };
        Some(Email {
            host,
            port,
            tls,
            credentials,
            from: from?,
            to,
        })
    }
}

fn host_port(text: &str) -> Option<(String, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    let port = port.parse().ok()?;
    (!host.is_empty()).then(|| (host.trim_matches(['[', ']']).to_string(), port))
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The hex HMAC-SHA256 of `body` under `secret`, as sent in [`SIGNATURE_HEADER`]
/// (`sha256=<hex>`).
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

impl Channel {
    /// Delivers `notice`, whose text is `text` (the rule's template applied).
    pub fn send(
        &self,
        http: &ureq::Agent,
        notice: &Notice,
        text: &str,
    ) -> Result<(), ChannelError> {
        match self {
            Channel::Webhook { url, secret } => {
                let body = serde_json::to_vec(notice).unwrap_or_default();
                let mut request = http
                    .post(url)
                    .header("Content-Type", "application/json")
                    .header("Idempotency-Key", &notice.id.simple().to_string());
                if let Some(secret) = secret {
                    request = request.header(SIGNATURE_HEADER, &signature(secret, &body));
                }
                answered(url, request.send(&body[..]))
            }
            Channel::Slack { url } => {
                let color = match notice.status.as_str() {
                    "firing" => "danger",
                    "resolved" => "good",
                    _ => "warning",
                };
                let (title, rest) = text.split_once('\n').unwrap_or((text, ""));
                let body = serde_json::json!({
                    "text": title,
                    "attachments": [{
                        "color": color,
                        "fallback": text,
                        "text": rest,
                        "fields": notice.group.iter().map(|(k, v)| serde_json::json!({
                            "title": k, "value": label_text(v), "short": true,
                        })).collect::<Vec<_>>(),
                        "ts": notice.at / 1_000_000_000,
                    }],
                });
                answered(
                    url,
                    http.post(url)
                        .header("Content-Type", "application/json")
                        .send(body.to_string().as_bytes()),
                )
            }
            Channel::Email(email) => email.send(notice, text),
            Channel::Irc {
                server,
                nick,
                channel,
            } => irc_say(server, nick, channel, text).map_err(|error| ChannelError::Unreachable {
                target: format!("irc://{server}/{channel}"),
                error,
            }),
        }
    }
}

/// A label's value as text (strings without their quotes).
pub fn label_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn answered(
    url: &str,
    result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<(), ChannelError> {
    let response = result.map_err(|e| ChannelError::Unreachable {
        target: url.to_string(),
        error: e.to_string(),
    })?;
    let status = response.status().as_u16();
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(ChannelError::Refused {
            target: url.to_string(),
            answer: status.to_string(),
        })
    }
}

impl Email {
    fn send(&self, notice: &Notice, text: &str) -> Result<(), ChannelError> {
        let target = format!("smtp://{}:{}", self.host, self.port);
        let unreachable = |error: String| ChannelError::Unreachable {
            target: target.clone(),
            error,
        };
        let subject = text.lines().next().unwrap_or(&notice.alert).to_string();
        let mut message = lettre::Message::builder()
            .from(self.from.clone())
            .subject(subject)
            .message_id(Some(format!("<{}@eddy>", notice.id.simple())));
        for to in &self.to {
            message = message.to(to.clone());
        }
        let message = message
            .body(text.to_string())
            .map_err(|e| unreachable(e.to_string()))?;
        let builder = match self.tls {
            Tls::None => Ok(SmtpTransport::builder_dangerous(&self.host)),
            Tls::Upgrade => SmtpTransport::starttls_relay(&self.host),
            Tls::Wrapper => SmtpTransport::relay(&self.host),
        }
        .map_err(|e| unreachable(e.to_string()))?;
        let mut builder = builder.port(self.port).timeout(Some(TIMEOUT));
        if let Some((user, password)) = &self.credentials {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        match builder.build().send(&message) {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(ChannelError::Refused {
                target,
                answer: e.to_string(),
            }),
            Err(e) => Err(unreachable(e.to_string())),
        }
    }
}

/// Registers as `nick` at `server`, joins `channel`, says each line of `text` there and quits.
fn irc_say(server: &str, nick: &str, channel: &str, text: &str) -> Result<(), String> {
    let address = server
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or_else(|| format!("{server} has no address"))?;
    let stream = TcpStream::connect_timeout(&address, TIMEOUT).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
    let mut writer = stream;
    let mut say = |line: &str| -> Result<(), String> {
        writer
            .write_all(format!("{line}\r\n").as_bytes())
            .map_err(|e| e.to_string())
    };
    let mut nick = nick.to_string();
    say(&format!("NICK {nick}"))?;
    say(&format!("USER {nick} 0 * :eddy alerts"))?;
    // Until the welcome (001), then until the join's end of names (366).
    let mut joined = false;
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the server closed the connection".into());
        }
        let message = line.trim_end();
        if let Some(token) = message.strip_prefix("PING ") {
            say(&format!("PONG {token}"))?;
            continue;
        }
        let mut words = message.split(' ');
        let first = words.next().unwrap_or_default();
        let code = if first.starts_with(':') {
            words.next().unwrap_or_default()
        } else {
            first
        };
        match code {
            "001" => say(&format!("JOIN {channel}"))?,
            // Nickname in use: another eddy may be speaking; take a variant.
            "433" if !joined => {
                nick.push('_');
                say(&format!("NICK {nick}"))?;
            }
            "366" => {
                joined = true;
                break;
            }
            "ERROR" => return Err(message.to_string()),
            c if c.len() == 3 && (c.starts_with('4') || c.starts_with('5')) => {
                return Err(format!("the server refused: {message}"))
            }
            _ => {}
        }
    }
    debug_assert!(joined);
    for l in text.lines().filter(|l| !l.trim().is_empty()) {
        // An IRC line is at most 512 bytes with its prefix; long lines are cut.
        let l: String = l.chars().take(400).collect();
        say(&format!("PRIVMSG {channel} :{l}"))?;
    }
    say("QUIT :done")?;
    // Wait for the server to close, so the lines are read before the connection drops.
    while reader.read_line(&mut line).map_or(0, |n| n) > 0 {
        line.clear();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml: &str) -> ChannelConfig {
        toml::from_str(toml).unwrap()
    }

    #[test]
    fn a_signature_is_the_rfc_4231_hmac_sha256_in_hex() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn every_problem_of_a_channel_is_named() {
        let problems = config(
            "kind = \"email\"\nsmtp = \"mail.example.com\"\ntls = \"none\"\nfrom = \"not an address\"\n",
        )
        .plan("mail")
        .unwrap_err();
        assert_eq!(problems.len(), 4, "{problems:#?}");
        assert!(problems[0].contains("smtp = \"mail.example.com\": expected host:port"));
        assert!(problems
            .iter()
            .any(|p| p.contains("from \"not an address\"")));
        assert!(problems.iter().any(|p| p.contains("at least one address")));
        let irc = config("kind = \"irc\"\nserver = \"irc:6667\"\nchannel = \"ops\"\n")
            .plan("irc")
            .unwrap_err();
        assert!(irc[0].contains("expected #name"), "{irc:?}");
        let kind = config("kind = \"pager\"\n").plan("p").unwrap_err();
        assert!(kind[0].contains("expected \"webhook\""), "{kind:?}");
    }

    #[test]
    fn every_problem_of_a_channel_grouping_is_named_with_the_channel() {
        let problems = config(
            "kind = \"webhook\"\nurl = \"http://127.0.0.1:9/h\"\ngroup_by = [\"host\", \"host\"]\n\
             group_wait = \"soon\"\ngroup_interval = \"5m\"\nrepeat_interval = \"1m\"\n",
        )
        .plan("ops")
        .unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:#?}");
        assert!(problems.iter().all(|p| p.starts_with("channel \"ops\": ")));
        assert!(problems[0].contains("\"host\" twice"));
        assert!(problems[1].contains("group_wait = \"soon\" is not a duration"));
        assert!(problems[2].contains("repeat_interval is shorter than group_interval"));
        let stray = config("kind = \"slack\"\nurl = \"http://x/\"\ngroup_wait = \"1s\"\n")
            .plan("chat")
            .unwrap_err();
        assert!(
            stray[0].contains("group_wait without group_by"),
            "{stray:?}"
        );
        let grouped =
            config("kind = \"slack\"\nurl = \"http://x/\"\ngroup_by = [\"alertname\", \"dc\"]\n")
                .grouping("chat")
                .unwrap()
                .unwrap();
        assert_eq!(grouped.by, vec!["alertname", "dc"]);
        assert_eq!(grouped.wait, 30_000_000_000, "group_wait defaults to 30s");
        assert_eq!(grouped.repeat, None);
    }

    #[test]
    fn plain_smtp_is_allowed_only_to_loopback() {
        let ok = config(
            "kind = \"email\"\nsmtp = \"127.0.0.1:2525\"\ntls = \"none\"\nfrom = \"eddy@example.com\"\nto = [\"ops@example.com\"]\n",
        );
        assert!(ok.plan("mail").is_ok());
        let far = ChannelConfig {
            smtp: Some("mail.example.com:25".into()),
            ..ok
        };
        assert!(far.plan("mail").unwrap_err()[0].contains("clear text"));
    }
}
