//! Alerting through the real binary: rules made with `eddy alert`, events over HTTP, notices
//! received by a real HTTP server on loopback, a restart in the middle, and the notices found
//! again with `eddy search` in `_alerts`.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{
    agent, alert_rule as rule, eddy_client as eddy, receiver, wait_for, Received, Server, NDJSON,
};
use serde_json::Value;

/// Each notice the receiver got: its `Idempotency-Key` and JSON body.
fn pairs(got: &Received) -> Vec<(String, Value)> {
    got.lock()
        .unwrap()
        .iter()
        .map(|r| {
            let key = r
                .headers
                .get("idempotency-key")
                .and_then(|k| k.to_str().ok());
            (key.unwrap_or_default().to_string(), r.json())
        })
        .collect()
}

fn with_status<'a>(got: &'a [(String, Value)], status: &str) -> Vec<&'a (String, Value)> {
    got.iter().filter(|(_, n)| n["status"] == status).collect()
}

/// Posts errors of host h1 to the server at `url` until `stop`; failures (the server
/// restarting) are retried.
fn send_errors(url: Arc<Mutex<String>>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let target = format!("{}/api/v1/ingest/open", url.lock().unwrap());
            let body = "{\"host\":\"h1\",\"status\":500}\n".repeat(5);
            let _ = agent()
                .post(&target)
                .header(NDJSON.0, NDJSON.1)
                .send(body.as_bytes());
            std::thread::sleep(Duration::from_millis(100));
        }
    })
}

#[test]
fn a_firing_rule_notifies_once_stays_firing_across_a_restart_and_resolves_with_a_notice() {
    let dir = tempfile::tempdir().unwrap();
    let (base, got) = receiver();
    let hook = format!("{base}/hook");
    let server = Server::start(dir.path(), "");
    let created = eddy(
        &server,
        &[
            "alert",
            "create",
            "errors",
            "--from",
            "open",
            "--query",
            "status>=500 | groupBy(host)",
            "--window",
            "2s",
            "--above",
            "3",
            "--keep-firing-for",
            "5s",
            "--every",
            "100ms",
            "--webhook",
            &hook,
        ],
    );
    assert!(created.status.success(), "{created:?}");

    let url = Arc::new(Mutex::new(server.url.clone()));
    let stop = Arc::new(AtomicBool::new(false));
    let sender = send_errors(url.clone(), stop.clone());
    let first = wait_for("the firing notice", || {
        with_status(&pairs(&got), "firing")
            .first()
            .map(|n| (*n).clone())
    });
    assert_eq!(first.1["alert"], "errors");
    assert_eq!(first.1["group"], serde_json::json!({"host": "h1"}));
    assert_eq!(first.1["fired_before"], 0);
    assert!(first.1["value"].as_f64().unwrap() > 3.0, "{}", first.1);
    assert_eq!(first.0, first.1["id"].as_str().unwrap().replace('-', ""));
    // The events that caused it come with it.
    let causes = first.1["events"].as_array().unwrap();
    assert!(!causes.is_empty() && causes.len() <= 3, "{}", first.1);
    assert!(
        causes
            .iter()
            .all(|e| e["host"] == "h1" && e["status"] == 500),
        "{}",
        first.1
    );

    // A restart while the errors go on: still firing, and no second notice.
    server.stop();
    let server = Server::start(dir.path(), "");
    *url.lock().unwrap() = server.url.clone();
    let after = wait_for("evaluations after the restart", || {
        let r = rule(&server, "errors");
        (r["status"]["evaluations"].as_u64() >= Some(20)).then_some(r)
    });
    let groups = after["status"]["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{after}");
    assert_eq!(groups[0]["state"], "firing", "{after}");
    assert_eq!(groups[0]["fired"], 1, "{after}");
    assert_eq!(after["status"]["outbox"], 0, "{after}");
    assert_eq!(with_status(&pairs(&got), "firing").len(), 1);

    // The errors stop: after the window and keep_firing_for, one resolved notice.
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    let resolved = wait_for("the resolved notice", || {
        with_status(&pairs(&got), "resolved")
            .first()
            .map(|n| (*n).clone())
    });
    assert_eq!(resolved.1["group"], serde_json::json!({"host": "h1"}));
    assert_eq!(resolved.1["since"], first.1["at"]);
    assert_eq!(got.lock().unwrap().len(), 2, "{:?}", got.lock().unwrap());

    // Both notices are events of _alerts, found with the ordinary query language.
    let rows = wait_for("the notices in _alerts", || {
        let out = eddy(
            &server,
            &[
                "search",
                "-r",
                "_alerts",
                "#alert=errors group.host=h1 | groupBy(status)",
                "--start",
                "1h",
                "--json",
            ],
        );
        assert!(out.status.success(), "{out:?}");
        let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
        let rows = answer["rows"].as_array().unwrap().clone();
        (rows.len() == 2).then_some(rows)
    });
    let statuses: Vec<&str> = rows.iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert!(
        statuses.contains(&"firing") && statuses.contains(&"resolved"),
        "{rows:?}"
    );
    assert!(rows.iter().all(|r| r["_count"] == 1), "{rows:?}");

    let history = eddy(&server, &["alert", "history", "errors", "--json"]);
    assert!(history.status.success(), "{history:?}");
    let notices: Value = serde_json::from_slice(&history.stdout).unwrap();
    let statuses: Vec<&str> = notices
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["resolved", "firing"], "{notices}");

    let deleted = eddy(&server, &["alert", "delete", "errors"]);
    assert!(deleted.status.success(), "{deleted:?}");
    let list = eddy(&server, &["alert", "list", "--json"]);
    let list: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(list["alerts"], serde_json::json!([]));
    server.stop();
}

#[test]
fn a_rule_with_several_problems_is_refused_with_each_of_them_and_its_query_position() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "");
    let out = eddy(
        &server,
        &[
            "alert",
            "create",
            "bad",
            "--from",
            "nowhere",
            "--query",
            "status>=500 | groupBy(host, function=cuont())",
            "--window",
            "soon",
            "--above",
            "1",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("400"), "{err}");
    assert!(err.contains("line 1, column"), "{err}");
    assert!(err.contains("cuont"), "{err}");
    assert!(
        err.contains("window = \\\"soon\\\"") || err.contains("window = \"soon\""),
        "{err}"
    );
    assert!(
        err.contains("repository \"nowhere\" does not exist"),
        "{err}"
    );
    let list = eddy(&server, &["alert", "list", "--json"]);
    let list: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(list["alerts"], serde_json::json!([]));
    server.stop();
}

#[test]
fn a_host_that_stops_reporting_is_found_absent() {
    let dir = tempfile::tempdir().unwrap();
    let (base, got) = receiver();
    let hook = format!("{base}/hook");
    let server = Server::start(
        dir.path(),
        &format!(
            "[alerts.quiet]\nfrom = \"open\"\nquery = \"groupBy(host)\"\nwindow = \"3s\"\ncondition = \"absence\"\nevery = \"100ms\"\nwebhook = \"{hook}\"\n"
        ),
    );
    let body = "{\"host\":\"a\"}\n{\"host\":\"b\"}\n";
    let (s, _) = common::post(&server, "/api/v1/ingest/open", &[NDJSON], body.as_bytes());
    assert_eq!(s, 200);
    // Host a keeps reporting, far more often than the window (which slides by whole seconds,
    // so it always covers at least 2 s); b sent once and went quiet.
    let notice = wait_for("host b found absent", || {
        let _ = common::post(
            &server,
            "/api/v1/ingest/open",
            &[NDJSON],
            b"{\"host\":\"a\"}\n",
        );
        with_status(&pairs(&got), "firing")
            .first()
            .map(|n| n.1.clone())
    });
    assert_eq!(
        notice["group"],
        serde_json::json!({"host": "b"}),
        "{notice}"
    );
    assert_eq!(notice["condition"], "no events in the window");
    let firing: Vec<Value> = with_status(&pairs(&got), "firing")
        .iter()
        .map(|n| n.1["group"].clone())
        .collect();
    assert!(
        !firing.contains(&serde_json::json!({"host": "a"})),
        "{firing:?}"
    );
    server.stop();
}

/// Rules that fire together share the server's few delivery threads: each is still notified,
/// once.
#[test]
fn many_rules_firing_at_once_are_each_notified_once() {
    const RULES: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let (base, got) = receiver();
    let config: String = (0..RULES)
        .map(|i| {
            format!(
                "[alerts.burst{i}]\nfrom = \"open\"\nquery = \"app=burst | count()\"\nwindow = \"10s\"\n\
                 above = 0\nevery = \"100ms\"\nwebhook = \"{base}/r{i}\"\n"
            )
        })
        .collect();
    let server = Server::start(dir.path(), &config);
    wait_for("every rule evaluated", || {
        (0..RULES)
            .all(|i| {
                rule(&server, &format!("burst{i}"))["status"]["evaluations"].as_u64() > Some(0)
            })
            .then_some(())
    });
    let (s, _) = common::post(
        &server,
        "/api/v1/ingest/open",
        &[NDJSON],
        b"{\"app\":\"burst\"}\n",
    );
    assert_eq!(s, 200);
    let firing = |i: usize| common::notices(&got, &format!("/r{i}"), "firing").len();
    wait_for("a firing notice from every rule", || {
        (0..RULES).all(|i| firing(i) > 0).then_some(())
    });
    // Once each rule's outbox is empty, no notice can follow.
    wait_for("every outbox empty", || {
        (0..RULES)
            .all(|i| rule(&server, &format!("burst{i}"))["status"]["outbox"] == 0)
            .then_some(())
    });
    let counts: Vec<usize> = (0..RULES).map(firing).collect();
    assert!(counts.iter().all(|&n| n == 1), "{counts:?}");
    server.stop();
}

#[test]
fn an_event_older_than_the_window_when_it_arrives_is_counted_late_not_alerted_on() {
    let dir = tempfile::tempdir().unwrap();
    let (base, got) = receiver();
    let server = Server::start(
        dir.path(),
        &format!(
            "[alerts.errors]\nfrom = \"open\"\nquery = \"status>=500 | count()\"\nwindow = \"10s\"\n\
             above = 0\nevery = \"100ms\"\nwebhook = \"{base}/hook\"\n"
        ),
    );
    // The rule runs before the event comes, so the event reaches it from the bus, an hour
    // after its own time.
    wait_for("the rule running", || {
        (rule(&server, "errors")["status"]["evaluations"].as_u64() > Some(0)).then_some(())
    });
    let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    let body = format!(
        "{{\"@timestamp\":\"{}\",\"status\":500}}\n",
        humantime::format_rfc3339_millis(hour_ago)
    );
    let (s, _) = common::post(&server, "/api/v1/ingest/open", &[NDJSON], body.as_bytes());
    assert_eq!(s, 200);
    wait_for("the late event counted", || {
        (rule(&server, "errors")["status"]["late_events"] == 1).then_some(())
    });
    server.wait_for_metric(r#"eddy_alert_late_events_total{alert="errors"}"#, 1.0);
    // Later evaluations have passed, and nothing fired.
    let evaluated = rule(&server, "errors")["status"]["evaluations"].as_u64();
    wait_for("two more evaluations", || {
        (rule(&server, "errors")["status"]["evaluations"].as_u64() >= evaluated.map(|n| n + 2))
            .then_some(())
    });
    assert!(pairs(&got).is_empty(), "{:?}", pairs(&got));
    server.stop();
}
