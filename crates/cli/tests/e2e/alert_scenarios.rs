//! Alerting scenarios through the real binary: channels against real servers on loopback (an
//! HTTP receiver, aiosmtpd, ngircd), a failing channel beside a healthy rule, silences,
//! inhibition, `for` and `keep_firing_for` on live data, an anomaly in a generated seasonal
//! history, and `eddy alert test` against what the live rule did.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{
    agent, alert_rule as rule, eddy_client as eddy, notices, receiver, wait_for, wait_for_or,
    Request, Server, NDJSON,
};
use hmac::{KeyInit, Mac};
use serde_json::{json, Value};

/// The first group's state of rule `name`, with its value.
fn group(server: &Server, name: &str) -> Option<Value> {
    rule(server, name)["status"]["groups"]
        .as_array()
        .and_then(|g| g.first().cloned())
}

/// Posts `body` (NDJSON) to repository `open` every 100 ms while `on` is set, until `stop`.
struct Sender {
    on: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sender {
    fn start(server: &Server, body: &str) -> Sender {
        let (on, stop) = (
            Arc::new(AtomicBool::new(true)),
            Arc::new(AtomicBool::new(false)),
        );
        let (on2, stop2) = (on.clone(), stop.clone());
        let target = format!("{}/api/v1/ingest/open", server.url);
        let body = body.to_string();
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                if on2.load(Ordering::Relaxed) {
                    let _ = agent()
                        .post(&target)
                        .header(NDJSON.0, NDJSON.1)
                        .send(body.as_bytes());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Sender {
            on,
            stop,
            thread: Some(thread),
        }
    }

    fn pause(&self) {
        self.on.store(false, Ordering::Relaxed);
    }

    fn resume(&self) {
        self.on.store(true, Ordering::Relaxed);
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed when dropped.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A real SMTP server (aiosmtpd, installed by bench/setup.sh) on loopback, delivering into the
/// Maildir `maildir`; its port once it listens.
fn smtp_server(maildir: &std::path::Path) -> (Daemon, u16) {
    let port = free_port();
    let child = Command::new("python3")
        .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
        .args(["-c", "aiosmtpd.handlers.Mailbox", maildir.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 with aiosmtpd (bench/setup.sh installs it)");
    let daemon = Daemon(child);
    wait_for("aiosmtpd to listen", || {
        TcpStream::connect(("127.0.0.1", port)).ok()
    });
    (daemon, port)
}

/// A real IRC server (Debian's ngircd, installed by bench/setup.sh) on loopback; its port.
fn irc_server(dir: &std::path::Path) -> (Daemon, u16) {
    let port = free_port();
    let conf = dir.join("ngircd.conf");
    std::fs::write(
        &conf,
        format!(
            "[Global]\nName = irc.eddy.test\nInfo = eddy test\nListen = 127.0.0.1\nPorts = {port}\n\
             MotdPhrase = hello\n[Limits]\nMaxNickLength = 30\n[Options]\nPAM = no\nIdent = no\nDNS = no\n"
        ),
    )
    .unwrap();
    let bin = ["/usr/sbin/ngircd", "/usr/bin/ngircd"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("ngircd");
    let child = Command::new(bin)
        .args(["-n", "-f", conf.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ngircd (bench/setup.sh installs it)");
    let daemon = Daemon(child);
    wait_for("ngircd to listen", || {
        TcpStream::connect(("127.0.0.1", port)).ok()
    });
    (daemon, port)
}

/// An IRC listener joined to `channel`: the `PRIVMSG` texts it hears.
fn irc_listener(port: u16, channel: &str) -> Arc<Mutex<Vec<String>>> {
    let heard: Arc<Mutex<Vec<String>>> = Arc::default();
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    write!(writer, "NICK listener\r\nUSER listener 0 * :test\r\n").unwrap();
    let mut line = String::new();
    // Joined once the server ends the names list (366).
    loop {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "ngircd closed");
        if let Some(token) = line.strip_prefix("PING ") {
            write!(writer, "PONG {}\r\n", token.trim_end()).unwrap();
        }
        if line.split(' ').nth(1) == Some("001") {
            write!(writer, "JOIN {channel}\r\n").unwrap();
        }
        if line.split(' ').nth(1) == Some("366") {
            break;
        }
    }
    let out = heard.clone();
    std::thread::spawn(move || loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if let Some(token) = line.strip_prefix("PING ") {
            let _ = write!(writer, "PONG {}\r\n", token.trim_end());
        } else if let Some((_, text)) = line.split_once(" PRIVMSG ") {
            let text = text.split_once(" :").map_or("", |t| t.1).trim_end();
            out.lock().unwrap().push(text.to_string());
        }
    });
    heard
}

/// The mails in Maildir `dir` (new and cur), as text.
fn mails(dir: &std::path::Path) -> Vec<String> {
    ["new", "cur"]
        .iter()
        .flat_map(|sub| std::fs::read_dir(dir.join(sub)).into_iter().flatten())
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect()
}

#[test]
fn each_channel_receives_the_right_message_from_a_real_server() {
    let dir = tempfile::tempdir().unwrap();
    let (hook, got) = receiver();
    let maildir = dir.path().join("mail");
    let (_smtp, smtp_port) = smtp_server(&maildir);
    let (_irc, irc_port) = irc_server(dir.path());
    let heard = irc_listener(irc_port, "#alerts");
    let server = Server::start(
        dir.path(),
        &format!(
            "[channels.signed]\nkind = \"webhook\"\nurl = \"{hook}/signed\"\nsecret = \"s3cret\"\n\
             [channels.chat]\nkind = \"slack\"\nurl = \"{hook}/slack\"\n\
             [channels.mail]\nkind = \"email\"\nsmtp = \"127.0.0.1:{smtp_port}\"\ntls = \"none\"\n\
             from = \"eddy@example.com\"\nto = [\"ops@example.com\"]\n\
             [channels.irc]\nkind = \"irc\"\nserver = \"127.0.0.1:{irc_port}\"\nchannel = \"#alerts\"\n\
             [alerts.errors]\nfrom = \"open\"\nquery = \"status>=500 | groupBy(host)\"\nwindow = \"5s\"\n\
             above = 2\nevery = \"100ms\"\nchannels = [\"signed\", \"chat\", \"mail\", \"irc\"]\n"
        ),
    );
    let body = "{\"host\":\"web-1\",\"status\":503,\"@rawstring\":\"GET /pay 503\"}\n".repeat(3);
    let (s, _) = common::post(&server, "/api/v1/ingest/open", &[NDJSON], body.as_bytes());
    assert_eq!(s, 200);

    // The webhook: the notice, its idempotency key, and a signature that checks with the
    // secret.
    let signed = wait_for("the signed webhook", || {
        got.lock()
            .unwrap()
            .iter()
            .find(|r| r.path == "/signed")
            .cloned()
    });
    let notice = signed.json();
    assert_eq!(notice["status"], "firing");
    assert_eq!(notice["group"], json!({"host": "web-1"}));
    assert_eq!(
        signed.headers["idempotency-key"].to_str().unwrap(),
        notice["id"].as_str().unwrap().replace('-', "")
    );
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"s3cret").unwrap();
    mac.update(&signed.body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        signed.headers["x-eddy-signature"].to_str().unwrap(),
        format!("sha256={expected}")
    );

    // Slack's shape: text, and an attachment with the group as fields and the causing line.
    let slack = wait_for("the slack message", || {
        got.lock()
            .unwrap()
            .iter()
            .find(|r| r.path == "/slack")
            .map(Request::json)
    });
    assert_eq!(
        slack["text"], "[FIRING] errors host=web-1: 3 (_count > 2)",
        "{slack}"
    );
    let attachment = &slack["attachments"][0];
    assert_eq!(attachment["color"], "danger");
    assert_eq!(
        attachment["fields"],
        json!([{"title": "host", "value": "web-1", "short": true}])
    );
    assert!(
        attachment["text"]
            .as_str()
            .unwrap()
            .contains("GET /pay 503"),
        "{slack}"
    );

    // The mail, through a real SMTP server.
    let mail = wait_for("the mail", || mails(&maildir).into_iter().next());
    assert!(
        mail.contains("Subject: [FIRING] errors host=web-1: 3 (_count > 2)"),
        "{mail}"
    );
    assert!(mail.contains("To: ops@example.com"), "{mail}");
    assert!(mail.contains("GET /pay 503"), "{mail}");
    assert!(mail.contains("first time this alert fired"), "{mail}");

    // IRC: the lines said in the channel.
    let lines = wait_for("the IRC lines", || {
        let h = heard.lock().unwrap();
        (h.len() >= 3).then(|| h.clone())
    });
    assert_eq!(lines[0], "[FIRING] errors host=web-1: 3 (_count > 2)");
    assert_eq!(lines[1], "first time this alert fired");
    // The causing event's raw line (here the JSON line it came as).
    assert!(lines[2].contains("GET /pay 503"), "{lines:?}");
    server.stop();
}

/// A TCP server that accepts connections and never answers: the open connections.
fn black_hole() -> (String, Arc<Mutex<Vec<TcpStream>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    let keep = held.clone();
    std::thread::spawn(move || {
        for c in listener.incoming().flatten() {
            keep.lock().unwrap().push(c);
        }
    });
    (url, held)
}

/// Whether the peer has closed `c` (read gives end of file), without waiting.
fn closed(c: &TcpStream) -> bool {
    c.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 4096];
    let mut stream = c;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(_) => return false,
        }
    }
}

#[test]
fn a_failing_channel_does_not_delay_another_rule_and_is_counted_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let (hole, held) = black_hole();
    let (hook, got) = receiver();
    let server = Server::start(
        dir.path(),
        &format!(
            "[channels.stuck]\nkind = \"webhook\"\nurl = \"{hole}\"\n\
             [channels.good]\nkind = \"webhook\"\nurl = \"{hook}/good\"\n\
             [alerts.stuck]\nfrom = \"open\"\nquery = \"app=a | count()\"\nwindow = \"5s\"\nabove = 0\n\
             every = \"100ms\"\nchannels = [\"stuck\"]\n\
             [alerts.healthy]\nfrom = \"open\"\nquery = \"app=b | count()\"\nwindow = \"5s\"\nabove = 0\n\
             every = \"100ms\"\nchannels = [\"good\"]\n"
        ),
    );
    let post = |body: &str| {
        let (s, _) = common::post(&server, "/api/v1/ingest/open", &[NDJSON], body.as_bytes());
        assert_eq!(s, 200);
    };
    // Rule stuck fires and its channel hangs on the notice.
    post("{\"app\":\"a\"}\n");
    wait_for("the stuck channel to hold a request", || {
        (!held.lock().unwrap().is_empty()).then_some(())
    });
    // While it hangs, the other rule fires and is delivered.
    post("{\"app\":\"b\"}\n");
    let healthy = wait_for("the healthy rule's notice", || {
        notices(&got, "/good", "firing").into_iter().next()
    });
    assert_eq!(healthy["alert"], "healthy");
    assert!(
        !closed(&held.lock().unwrap()[0]),
        "the stuck request was still open when the other rule's notice arrived"
    );
    // The stuck channel's failure (its time-out) is counted per channel and recorded in the
    // alert's history in _alerts.
    server.wait_for_metric(
        "eddy_alert_channel_failures_total{alert=\"stuck\",channel=\"stuck\"}",
        1.0,
    );
    let history = wait_for("the failure in the history", || {
        let out = eddy(&server, &["alert", "history", "stuck", "--json"]);
        assert!(out.status.success(), "{out:?}");
        let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["status"] == "channel_failing")
            .cloned()
    });
    assert!(
        history["note"]
            .as_str()
            .unwrap()
            .contains("channel \"stuck\""),
        "{history}"
    );
    let status = rule(&server, "stuck")["status"].clone();
    assert!(
        status["channels"]["stuck"]["failures"].as_u64() >= Some(1),
        "{status}"
    );
    server.stop();
}

#[test]
fn a_silence_mutes_a_firing_alert_and_its_end_is_told() {
    let dir = tempfile::tempdir().unwrap();
    let (hook, got) = receiver();
    let server = Server::start(
        dir.path(),
        &format!(
            "[alerts.errors]\nfrom = \"open\"\nquery = \"status>=500 | groupBy(host)\"\nwindow = \"2s\"\n\
             above = 3\nevery = \"100ms\"\nwebhook = \"{hook}/hook\"\n"
        ),
    );
    let errors = Sender::start(&server, &"{\"host\":\"h1\",\"status\":500}\n".repeat(5));
    wait_for("the firing notice", || {
        notices(&got, "/hook", "firing").into_iter().next()
    });
    let out = eddy(
        &server,
        &[
            "alert",
            "silence",
            "alert=errors",
            "host=h1",
            "--for",
            "4s",
            "--comment",
            "deploy",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(id.len(), 32, "{id}");
    let listed = eddy(&server, &["alert", "silences", "--json"]);
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed["silences"][0]["id"], id.as_str());
    assert_eq!(listed["silences"][0]["active"], true);

    // The errors stop while silenced: the resolution is kept in _alerts, muted, not sent.
    errors.pause();
    let muted = wait_for("the muted resolution in _alerts", || {
        let out = eddy(&server, &["alert", "history", "errors", "--json"]);
        let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["status"] == "resolved")
            .cloned()
    });
    assert_eq!(muted["muted"], format!("silenced by {id}"), "{muted}");
    // The silence ends: one notice says so, and that the alert is no longer firing.
    let expired = wait_for("the silence's end", || {
        notices(&got, "/hook", "silence_expired").into_iter().next()
    });
    assert_eq!(expired["group"], json!({"host": "h1"}));
    assert!(
        expired["note"]
            .as_str()
            .unwrap()
            .contains(&format!("silence {id} ended; the alert is not firing")),
        "{expired}"
    );
    assert!(notices(&got, "/hook", "resolved").is_empty());

    // It fires again: the notice remembers the last firing and that it ended silenced.
    errors.resume();
    let again = wait_for("the second firing", || {
        notices(&got, "/hook", "firing").get(1).cloned()
    });
    assert_eq!(again["fired_before"], 1, "{again}");
    assert_eq!(again["previous_ended"], "silenced", "{again}");
    drop(errors);
    server.stop();
}

#[test]
fn a_silence_removed_with_unsilence_ends_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (hook, got) = receiver();
    let server = Server::start(
        dir.path(),
        &format!(
            "[alerts.errors]\nfrom = \"open\"\nquery = \"status>=500 | count()\"\nwindow = \"2s\"\n\
             above = 0\nevery = \"100ms\"\nwebhook = \"{hook}/hook\"\n"
        ),
    );
    let out = eddy(
        &server,
        &["alert", "silence", "alert=errors", "--for", "1h"],
    );
    assert!(out.status.success(), "{out:?}");
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let errors = Sender::start(&server, "{\"status\":500}\n");
    // Firing while silenced: in _alerts, not sent.
    wait_for("the muted firing", || {
        let out = eddy(&server, &["alert", "history", "errors", "--json"]);
        let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["status"] == "firing" && r["muted"] == format!("silenced by {id}"))
            .cloned()
    });
    assert!(got.lock().unwrap().is_empty());
    let out = eddy(&server, &["alert", "unsilence", &id]);
    assert!(out.status.success(), "{out:?}");
    let expired = wait_for("the silence's end", || {
        notices(&got, "/hook", "silence_expired").into_iter().next()
    });
    assert!(
        expired["note"].as_str().unwrap().ends_with("still firing"),
        "{expired}"
    );
    let again = eddy(&server, &["alert", "unsilence", &id]);
    assert_eq!(again.status.code(), Some(1), "{again:?}");
    drop(errors);
    server.stop();
}

#[test]
fn an_inhibiting_alert_mutes_the_alerts_it_covers_and_only_those() {
    let dir = tempfile::tempdir().unwrap();
    let (hook, got) = receiver();
    let server = Server::start(
        dir.path(),
        &format!(
            "[alerts.site_down]\nfrom = \"open\"\nquery = \"kind=down | groupBy(dc)\"\nwindow = \"10s\"\n\
             above = 0\nevery = \"100ms\"\nwebhook = \"{hook}/hook\"\n\
             [alerts.errors]\nfrom = \"open\"\nquery = \"status>=500 | groupBy([dc, host])\"\nwindow = \"10s\"\n\
             above = 0\nevery = \"100ms\"\nwebhook = \"{hook}/hook\"\ninhibited_by = [\"site_down\"]\n\
             inhibit_equal = [\"dc\"]\n"
        ),
    );
    let post = |body: &str| {
        let (s, _) = common::post(&server, "/api/v1/ingest/open", &[NDJSON], body.as_bytes());
        assert_eq!(s, 200);
    };
    post("{\"kind\":\"down\",\"dc\":\"eu\"}\n");
    wait_for("site_down firing", || {
        notices(&got, "/hook", "firing").into_iter().next()
    });
    post("{\"dc\":\"eu\",\"host\":\"e1\",\"status\":500}\n{\"dc\":\"us\",\"host\":\"u1\",\"status\":500}\n");
    let us = wait_for("the errors of us", || {
        notices(&got, "/hook", "firing")
            .into_iter()
            .find(|n| n["alert"] == "errors")
    });
    assert_eq!(us["group"], json!({"dc": "us", "host": "u1"}));
    let inhibited = wait_for("the inhibited alert in _alerts", || {
        let out = eddy(&server, &["alert", "history", "errors", "--json"]);
        let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["group.dc"] == "eu")
            .cloned()
    });
    assert_eq!(inhibited["muted"], "inhibited by site_down", "{inhibited}");
    let errors_sent: Vec<Value> = notices(&got, "/hook", "firing")
        .into_iter()
        .filter(|n| n["alert"] == "errors")
        .collect();
    assert_eq!(errors_sent.len(), 1, "{errors_sent:?}");
    server.stop();
}

#[test]
fn for_suppresses_a_spike_shorter_than_it() {
    let dir = tempfile::tempdir().unwrap();
    let (hook, got) = receiver();
    let server = Server::start(
        dir.path(),
        &format!(
            "[alerts.patient]\nfrom = \"open\"\nquery = \"status>=500 | count()\"\nwindow = \"3s\"\n\
             above = 0\nfor = \"5s\"\nevery = \"100ms\"\nwebhook = \"{hook}/hook\"\n\
             [alerts.eager]\nfrom = \"open\"\nquery = \"status>=500 | count()\"\nwindow = \"3s\"\n\
             above = 0\nevery = \"100ms\"\nwebhook = \"{hook}/hook\"\n"
        ),
    );
    // One spike: the eager rule (no `for`) sees it, the patient one goes pending and back. The
    // windows (3 s) outlast any pause of the sender and any delay of the event's way to the
    // rules on a loaded machine (an event older than its window when it arrives is not
    // counted), so the eager rule sees the spike and the patient rule's held condition below
    // does not reset `for`; the spike stays in the patient window 2 s short of `for`.
    let (s, _) = common::post(
        &server,
        "/api/v1/ingest/open",
        &[NDJSON],
        b"{\"status\":500}\n",
    );
    assert_eq!(s, 200);
    wait_for("the eager rule's notice", || {
        notices(&got, "/hook", "firing")
            .into_iter()
            .find(|n| n["alert"] == "eager")
    });
    wait_for("the spike to leave the eager rule's window", || {
        notices(&got, "/hook", "resolved")
            .into_iter()
            .find(|n| n["alert"] == "eager")
    });
    let patient = wait_for("the patient rule back to inactive", || {
        group(&server, "patient").filter(|g| g["state"] == "inactive")
    });
    assert_eq!(patient["fired"], 0, "{patient}");
    assert!(notices(&got, "/hook", "firing")
        .iter()
        .all(|n| n["alert"] != "patient"));

    // Held longer than `for`, it fires.
    let errors = Sender::start(&server, "{\"status\":500}\n");
    wait_for("the patient rule's notice", || {
        notices(&got, "/hook", "firing")
            .into_iter()
            .find(|n| n["alert"] == "patient")
    });
    drop(errors);
    server.stop();
}

#[test]
fn keep_firing_for_holds_a_firing_alert_across_a_short_dip() {
    let dir = tempfile::tempdir().unwrap();
    let (hook, got) = receiver();
    let server = Server::start(
        dir.path(),
        &format!(
            "[alerts.errors]\nfrom = \"open\"\nquery = \"status>=500 | count()\"\nwindow = \"1s\"\n\
             above = 0\nkeep_firing_for = \"30s\"\nevery = \"100ms\"\nwebhook = \"{hook}/hook\"\n"
        ),
    );
    let errors = Sender::start(&server, "{\"status\":500}\n");
    wait_for("the firing notice", || {
        notices(&got, "/hook", "firing").into_iter().next()
    });
    // A dip: the condition stops holding (a count of 0) while the alert keeps firing.
    errors.pause();
    let dip = wait_for("the dip", || {
        group(&server, "errors").filter(|g| g["value"].as_f64().unwrap_or(0.0) == 0.0)
    });
    assert_eq!(dip["state"], "firing", "{dip}");
    errors.resume();
    let back = wait_for("the errors back", || {
        group(&server, "errors").filter(|g| g["value"].as_f64() > Some(0.0))
    });
    assert_eq!(back["state"], "firing", "{back}");
    assert_eq!(back["fired"], 1, "{back}");
    assert_eq!(notices(&got, "/hook", "firing").len(), 1);
    assert!(notices(&got, "/hook", "resolved").is_empty());
    drop(errors);
    server.stop();
}

const HOUR: i64 = 3_600_000_000_000;
const DAY: i64 = 24 * HOUR;

fn rfc3339(ns: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_nanos(ns as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

#[test]
fn an_anomaly_in_a_seasonal_history_is_found_with_no_alert_on_the_normal_days_before() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        "[alerts.traffic]\nfrom = \"open\"\nquery = \"page=pay | count()\"\nwindow = \"1h\"\n\
         condition = \"anomaly\"\nseason = \"1d\"\nseasons = 3\ndeviations = 3\nevery = \"1h\"\n",
    );
    // Four days of a daily curve (a few events at night, many at noon), whole hours from
    // midnight four days ago, with a tripled hour on the last day.
    let now = eddy_event::time::now_ns();
    let day0 = now.div_euclid(DAY) * DAY - 4 * DAY;
    let anomalous_hour = 3 * 24 + 15;
    let mut body = String::new();
    let mut sent = 0;
    for h in 0..(4 * 24) {
        let hour_of_day = (h % 24) as f64;
        let base = 4.0 + 36.0 * (hour_of_day / 24.0 * std::f64::consts::PI).sin();
        let count = if h == anomalous_hour {
            (base * 3.0) as i64 + 10
        } else {
            base as i64 + [0, 1, 0, -1][h as usize % 4]
        };
        for i in 0..count.max(1) {
            // Inside the hour, never on its edges.
            let t = day0 + h * HOUR + 60_000_000_000 + i * (HOUR - 120_000_000_000) / count.max(1);
            body.push_str(&format!(
                "{{\"@timestamp\":{},\"page\":\"pay\"}}\n",
                t / 1_000_000
            ));
            sent += 1;
        }
        if body.len() > 50_000 {
            let (s, r) = common::post(&server, "/api/v1/ingest/open", &[NDJSON], body.as_bytes());
            assert_eq!(s, 200, "{r}");
            body.clear();
        }
    }
    let (s, r) = common::post(&server, "/api/v1/ingest/open", &[NDJSON], body.as_bytes());
    assert_eq!(s, 200, "{r}");

    // From the end of the first hour: the first evaluation's window is then inside the data
    // (before it there is nothing, and "nothing, then traffic" is a change worth an alert).
    let (start, end) = (rfc3339(day0 + HOUR), rfc3339(day0 + 4 * DAY));
    let answer = wait_for("every event in the store", || {
        let out = eddy(
            &server,
            &[
                "alert", "test", "traffic", "--start", &start, "--end", &end, "--json",
            ],
        );
        assert!(out.status.success(), "{out:?}");
        let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
        (answer["events"].as_i64() == Some(sent)).then_some(answer)
    });
    assert_eq!(answer["evaluations"], 4 * 24 - 1, "{answer}");
    let notices: Vec<(String, i64)> = answer["notices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["status"].as_str().unwrap().to_string(),
                (n["at"].as_i64().unwrap() - day0) / HOUR,
            )
        })
        .collect();
    // Evaluated at the end of the tripled hour it fires; an hour later it resolves.
    assert_eq!(
        notices,
        [
            ("firing".to_string(), anomalous_hour + 1),
            ("resolved".to_string(), anomalous_hour + 2)
        ],
        "{answer}"
    );
    // The text form says the same.
    let out = eddy(
        &server,
        &["alert", "test", "traffic", "--start", &start, "--end", &end],
    );
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("firing") && text.contains("outside 3 deviations"),
        "{text}"
    );
    server.stop();
}

#[test]
fn alert_test_over_history_agrees_with_what_the_live_rule_did() {
    let dir = tempfile::tempdir().unwrap();
    let (hook, got) = receiver();
    let server = Server::start(
        dir.path(),
        &format!(
            "[alerts.errors]\nfrom = \"open\"\nquery = \"status>=500 | groupBy(host)\"\nwindow = \"2s\"\n\
             above = 3\nevery = \"1s\"\nwebhook = \"{hook}/hook\"\n"
        ),
    );
    let start = rfc3339(eddy_event::time::now_ns() - 5_000_000_000);
    // Two bursts of errors, each followed by quiet until the rule resolves. A burst goes on
    // for a window and a step past the firing: cut at the firing, it could hold just over the
    // threshold, which the test's evaluations, a second apart from other instants, may see
    // split between two slices of the window.
    let errors = Sender::start(&server, &"{\"host\":\"h1\",\"status\":500}\n".repeat(2));
    for round in 1..=2 {
        errors.resume();
        wait_for("a firing", || {
            (notices(&got, "/hook", "firing").len() == round).then_some(())
        });
        std::thread::sleep(Duration::from_secs(3));
        errors.pause();
        wait_for("a resolution", || {
            (notices(&got, "/hook", "resolved").len() == round).then_some(())
        });
    }
    drop(errors);
    let live: Vec<(String, i64)> = got
        .lock()
        .unwrap()
        .iter()
        .map(Request::json)
        .map(|n| {
            (
                n["status"].as_str().unwrap().to_string(),
                n["at"].as_i64().unwrap(),
            )
        })
        .collect();
    let last = std::cell::RefCell::new(Value::Null);
    let answer = wait_for_or(
        "the test over the same range",
        || {
            let out = eddy(
                &server,
                &["alert", "test", "errors", "--start", &start, "--json"],
            );
            assert!(out.status.success(), "{out:?}");
            let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
            *last.borrow_mut() = answer.clone();
            (answer["notices"].as_array().unwrap().len() >= live.len()).then_some(answer)
        },
        || format!("live: {live:?}\nlast test: {}", last.borrow()),
    );
    let replayed: Vec<(String, i64)> = answer["notices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["status"].as_str().unwrap().to_string(),
                n["at"].as_i64().unwrap(),
            )
        })
        .collect();
    let statuses = |v: &[(String, i64)]| v.iter().map(|n| n.0.clone()).collect::<Vec<_>>();
    assert_eq!(
        statuses(&replayed),
        statuses(&live),
        "{replayed:?} {live:?}"
    );
    // Each at the same evaluation, give or take the step and the window's slice (both 1 s):
    // the live rule evaluates at its own instants, the test from the range's start.
    for (r, l) in replayed.iter().zip(&live) {
        assert!((r.1 - l.1).abs() <= 2_000_000_000, "{replayed:?} {live:?}");
    }
    server.stop();
}

#[test]
fn grouped_alerts_wait_for_each_other_and_go_as_one_message_per_group() {
    let dir = tempfile::tempdir().unwrap();
    let (hook, got) = receiver();
    let server = Server::start(
        dir.path(),
        &format!(
            "[alerts.errors]\nfrom = \"open\"\nquery = \"status>=500 | groupBy([dc, host])\"\nwindow = \"60s\"\n\
             above = 0\nevery = \"100ms\"\nwebhook = \"{hook}/hook\"\ngroup_by = [\"dc\"]\n\
             group_wait = \"10s\"\ngroup_interval = \"1s\"\n"
        ),
    );
    let post = |body: &str| {
        let (s, _) = common::post(&server, "/api/v1/ingest/open", &[NDJSON], body.as_bytes());
        assert_eq!(s, 200);
    };
    let firing = |host: &str| {
        rule(&server, "errors")["status"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["group"]["host"] == host && g["state"] == "firing")
    };
    let hosts = |message: &Value| {
        let mut h: Vec<String> = message["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["group"]["host"].as_str().unwrap().to_string())
            .collect();
        h.sort();
        h
    };
    // A host of eu fails, then (while its group waits) another of eu and one of us.
    post("{\"dc\":\"eu\",\"host\":\"e1\",\"status\":500}\n");
    wait_for("e1 firing", || firing("e1").then_some(()));
    post("{\"dc\":\"eu\",\"host\":\"e2\",\"status\":500}\n{\"dc\":\"us\",\"host\":\"u1\",\"status\":500}\n");
    // One message per data centre, eu's carrying both of its hosts.
    let messages = wait_for("a message per group", || {
        let m = notices(&got, "/hook", "firing");
        (m.len() >= 2).then_some(m)
    });
    assert_eq!(messages.len(), 2, "{messages:#?}");
    let eu = messages.iter().find(|m| m["group"] == json!({"dc": "eu"}));
    let us = messages.iter().find(|m| m["group"] == json!({"dc": "us"}));
    assert_eq!(hosts(eu.unwrap()), ["e1", "e2"]);
    assert_eq!(hosts(us.unwrap()), ["u1"]);
    // A third host of eu after the group sent: a message of its own, carrying only it.
    post("{\"dc\":\"eu\",\"host\":\"e3\",\"status\":500}\n");
    let third = wait_for("eu's next message", || {
        notices(&got, "/hook", "firing").get(2).cloned()
    });
    assert_eq!(third["group"], json!({"dc": "eu"}));
    assert_eq!(hosts(&third), ["e3"]);
    // Each notice is in _alerts on its own.
    wait_for("the four firings in _alerts", || {
        let out = eddy(&server, &["alert", "history", "errors", "--json"]);
        let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
        let firings = rows
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["status"] == "firing")
            .count();
        (firings == 4).then_some(())
    });
    assert_eq!(notices(&got, "/hook", "firing").len(), 3);
    server.stop();
}

#[test]
fn a_closed_throttle_stays_closed_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (hook, got) = receiver();
    // A window of whole-second slices: "3s" keeps the one error at least 2 s, so that it is
    // not gone before the rule reads it ("1s" can end a few ms after it arrives).
    let config = format!(
        "[alerts.errors]\nfrom = \"open\"\nquery = \"status>=500 | count()\"\nwindow = \"3s\"\n\
         above = 0\nevery = \"100ms\"\nwebhook = \"{hook}/hook\"\nthrottle = \"1/1h\"\n"
    );
    // A window of 3 s: the single events below reach the rule within it on a loaded machine
    // (an event older than the window when it arrives is not counted).
    let history = |server: &Server, status: &str| -> Vec<Value> {
        let out = eddy(server, &["alert", "history", "errors", "--json"]);
        let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
        rows.as_array()
            .unwrap()
            .iter()
            .filter(|r| r["status"] == status)
            .cloned()
            .collect()
    };
    let error = |server: &Server| {
        let (s, _) = common::post(
            server,
            "/api/v1/ingest/open",
            &[NDJSON],
            b"{\"status\":500}\n",
        );
        assert_eq!(s, 200);
    };
    let server = Server::start(dir.path(), &config);
    // The first notice takes the throttle's one place; the resolution is held back.
    error(&server);
    wait_for("the firing notice", || {
        notices(&got, "/hook", "firing").into_iter().next()
    });
    let resolved = wait_for("the throttled resolution", || {
        history(&server, "resolved").into_iter().next()
    });
    assert_eq!(resolved["muted"], "throttled", "{resolved}");
    server.stop();

    // After a restart the throttle is still closed: the next firing is only in _alerts.
    let server = Server::start(dir.path(), &config);
    error(&server);
    let again = wait_for("the second firing in _alerts", || {
        history(&server, "firing")
            .into_iter()
            .find(|r| r["fired_before"] == 1)
    });
    assert_eq!(again["muted"], "throttled", "{again}");
    assert_eq!(
        got.lock().unwrap().len(),
        1,
        "only the first notice was sent"
    );
    server.stop();
}

#[test]
fn alerts_of_two_rules_for_one_host_go_as_one_message_of_the_channel_group_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (hook, got) = receiver();
    let config = format!(
        "[channels.ops]\nkind = \"webhook\"\nurl = \"{hook}/ops\"\ngroup_by = [\"host\"]\n\
         group_wait = \"10s\"\ngroup_interval = \"1m\"\n\
         [alerts.cpu]\nfrom = \"open\"\nquery = \"cpu>90 | groupBy(host)\"\nwindow = \"5m\"\n\
         above = 0\nevery = \"100ms\"\nchannels = [\"ops\"]\n\
         [alerts.errors]\nfrom = \"open\"\nquery = \"status>=500 | groupBy(host)\"\nwindow = \"5m\"\n\
         above = 0\nevery = \"100ms\"\nchannels = [\"ops\"]\n"
    );
    let server = Server::start(dir.path(), &config);
    let (s, _) = common::post(
        &server,
        "/api/v1/ingest/open",
        &[NDJSON],
        b"{\"host\":\"web-1\",\"cpu\":97}\n{\"host\":\"web-1\",\"status\":503}\n",
    );
    assert_eq!(s, 200);
    // Both alerts wait in the channel's group for web-1 (as the CLI shows it).
    let waiting = || {
        let out = eddy(&server, &["alert", "groups", "--json"]);
        let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
        answer["channels"][0]["groups"]
            .as_array()
            .and_then(|g| g.first().cloned())
    };
    let group = wait_for("both alerts waiting in web-1's group", || {
        waiting().filter(|g| g["waiting"] == 2)
    });
    assert_eq!(group["labels"], json!({"host": "web-1"}));
    assert_eq!(group["waiting_alerts"], json!(["cpu", "errors"]));
    assert!(
        got.lock().unwrap().is_empty(),
        "nothing goes before group_wait"
    );
    // A crash while the group waits neither loses it nor sends it twice.
    server.kill();
    let server = Server::start(dir.path(), &config);
    let message = wait_for("the group's message", || {
        notices(&got, "/ops", "firing").into_iter().next()
    });
    let mut alerts: Vec<&str> = message["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["alert"].as_str().unwrap())
        .collect();
    alerts.sort_unstable();
    assert_eq!(alerts, ["cpu", "errors"], "{message:#}");
    assert_eq!(message["group"], json!({"host": "web-1"}));
    // Once it went, the group holds nothing more to send.
    wait_for("the channel's outbox empty", || {
        let out = eddy(&server, &["alert", "groups", "--json"]);
        let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
        (answer["channels"][0]["outbox"] == 0 && answer["channels"][0]["groups"][0]["waiting"] == 0)
            .then_some(())
    });
    server.stop();
    assert_eq!(
        got.lock().unwrap().len(),
        1,
        "one message for both alerts, once"
    );
}
