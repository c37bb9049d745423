//! Live queries and pipelines through the real binary: websockets (a real client), `eddy
//! tail`, a slow client that must not slow ingest, and pipelines that survive a crash.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{get, post, stored_events, Server, NDJSON, TOKEN};
use serde_json::{json, Value};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

type Socket = WebSocket<MaybeTlsStream<TcpStream>>;

fn live_url(server: &Server, repository: &str, query: &str, params: &str) -> String {
    format!(
        "{}/api/v1/repositories/{repository}/live?query={}&token={TOKEN}&{params}",
        server.url.replace("http://", "ws://"),
        form_urlencoded::byte_serialize(query.as_bytes()).collect::<String>()
    )
}

fn subscribe(server: &Server, query: &str, params: &str) -> Socket {
    let (socket, _) = tungstenite::connect(live_url(server, "open", query, params)).unwrap();
    if let MaybeTlsStream::Plain(s) = socket.get_ref() {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    }
    socket
}

fn next(socket: &mut Socket) -> Value {
    loop {
        match socket.read().unwrap() {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Close(c) => panic!("closed: {c:?}"),
            _ => {}
        }
    }
}

/// Messages until one satisfies `done`.
fn until(socket: &mut Socket, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(Instant::now() < deadline, "no such message in time");
        let m = next(socket);
        if done(&m) {
            return m;
        }
    }
}

fn ingest(server: &Server, events: &[Value]) {
    let body: String = events.iter().map(|e| format!("{e}\n")).collect();
    let (status, answer) = post(server, "/api/v1/ingest/open", &[NDJSON], body.as_bytes());
    assert_eq!(status, 200, "{answer}");
}

fn count_of(update: &Value, host: &str) -> i64 {
    update["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["host"] == host)
        .map_or(0, |r| r["_count"].as_i64().unwrap())
}

#[test]
fn aggregate_live_query_first_message_is_a_snapshot_then_updates() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "");
    ingest(&server, &[json!({"host": "h1"})]);
    let params = "window=15m&interval=100ms";
    let mut first_client = subscribe(&server, "count()", params);
    assert_eq!(next(&mut first_client)["type"], "snapshot");
    ingest(&server, &[json!({"host": "h2"})]);
    let update = until(&mut first_client, |m| m["rows"][0]["_count"] == 2);
    assert_eq!(update["type"], "update");
    // A client joining the running view also starts with a snapshot, not the view's update.
    let mut second_client = subscribe(&server, "count()", params);
    let first = next(&mut second_client);
    assert_eq!(first["type"], "snapshot", "{first}");
    assert_eq!(first["rows"][0]["_count"], 2, "{first}");
    server.stop();
}

#[test]
fn live_queries_start_from_history_share_one_view_and_push_updates() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "");
    let history: Vec<Value> = (0..60)
        .map(|i| json!({"host": format!("h{}", i % 3), "status": ([200, 404, 503][i % 3]), "n": i}))
        .collect();
    ingest(&server, &history);

    let params = "window=15m&interval=100ms";
    let mut a = subscribe(&server, "groupBy(host)", params);
    let first = next(&mut a);
    assert_eq!(first["type"], "snapshot");
    assert_eq!(count_of(&first, "h1"), 20, "seeded from history: {first}");
    let mut b = subscribe(&server, "groupBy(host)", params);
    assert_eq!(count_of(&next(&mut b), "h1"), 20);
    assert_eq!(server.metric("eddy_live_views"), 1.0, "one view for both");
    assert_eq!(server.metric("eddy_live_subscribers"), 2.0);

    let mut errors = subscribe(&server, "status>=500", params);
    let snapshot = next(&mut errors);
    assert_eq!(snapshot["type"], "snapshot");
    assert_eq!(snapshot["rows"].as_array().unwrap().len(), 20);

    ingest(
        &server,
        &(0..10)
            .map(|i| json!({"host": "h1", "status": 503, "n": 100 + i}))
            .collect::<Vec<_>>(),
    );
    for socket in [&mut a, &mut b] {
        let update = until(socket, |m| count_of(m, "h1") == 30);
        assert_eq!(count_of(&update, "h0"), 20);
    }
    let mut pushed = BTreeSet::new();
    while pushed.len() < 10 {
        let m = next(&mut errors);
        assert_eq!(m["type"], "events", "{m}");
        for row in m["rows"].as_array().unwrap() {
            assert_eq!(row["status"], 503);
            pushed.insert(row["n"].as_i64().unwrap());
        }
    }
    assert_eq!(pushed, (100..110).collect());
    assert!(server.metric("eddy_live_freshness_seconds_count") >= 1.0);

    // A bad query is refused before the upgrade, with its position.
    match tungstenite::connect(live_url(&server, "open", "groupBy(", params)) {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 400);
            let body: Value = serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
            assert!(body["rendered"].as_str().unwrap().contains('^'), "{body}");
        }
        other => panic!("expected a 400, got {:?}", other.map(|_| ())),
    }
    match tungstenite::connect(live_url(&server, "open", "count()", "window=2ms")) {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 400),
        other => panic!("expected a 400, got {:?}", other.map(|_| ())),
    }

    // eddy tail: the snapshot of an aggregate as a table, events as lines.
    let tail = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_eddy"))
            .args(["tail", "--url", &server.url, "-r", "open", "--count", "1"])
            .args(["--token", TOKEN])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let table = tail(&["groupBy(host)"]);
    assert!(table.contains("h1") && table.contains("30"), "{table}");
    let lines = tail(&["status>=500 | n>=105"]);
    assert_eq!(lines.lines().count(), 5, "{lines}");
    let json_line = tail(&["--json", "count()"]);
    let m: Value = serde_json::from_str(json_line.trim()).unwrap();
    assert_eq!(m["rows"][0]["_count"], 70);
    let bad = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args([
            "tail",
            "--url",
            &server.url,
            "-r",
            "open",
            "--token",
            TOKEN,
            "groupBy(",
        ])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    server.stop();
}

#[test]
fn views_seeded_while_ingest_runs_count_every_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "");
    let batches = 60;
    let total = batches * 500;
    std::thread::scope(|s| {
        let load = s.spawn(|| {
            for b in 0..batches {
                let events: Vec<Value> = (0..500)
                    .map(|i| json!({"host": format!("h{}", i % 7), "n": b * 500 + i}))
                    .collect();
                ingest(&server, &events);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        // Views start at different points of the load: seeded from the store, the bus and
        // the tap at once.
        let mut sockets = Vec::new();
        for (i, q) in ["count()", "groupBy(host)", "n>=0 | count()"]
            .iter()
            .enumerate()
        {
            std::thread::sleep(Duration::from_millis(150 * (i as u64 + 1)));
            sockets.push((q, subscribe(&server, q, "window=1h&interval=100ms")));
        }
        load.join().unwrap();
        for (q, socket) in &mut sockets {
            let counted = |m: &Value| -> i64 {
                m["rows"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["_count"].as_i64().unwrap())
                    .sum()
            };
            let last = until(socket, |m| {
                assert!(counted(m) <= total, "{q}: counted twice: {m}");
                counted(m) == total
            });
            assert_eq!(counted(&last), total, "{q}");
        }
    });
    let (_, historic) = post(
        &server,
        "/api/v1/repositories/open/query",
        &[("Authorization", &format!("Bearer {TOKEN}"))],
        br#"{"query": "groupBy(host)", "start": "1h"}"#,
    );
    let mut live = subscribe(&server, "groupBy(host)", "window=1h&interval=100ms");
    let snapshot = next(&mut live);
    let counts = |rows: &Value| -> Vec<(String, i64)> {
        rows.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["host"].as_str().unwrap().to_string(),
                    r["_count"].as_i64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(counts(&snapshot["rows"]), counts(&historic["rows"]));
    server.stop();
}

#[test]
fn a_slow_websocket_client_is_dropped_and_ingest_is_unaffected() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "");
    let params = "window=1h&interval=100ms";
    // Connects and never reads.
    let slow = subscribe(&server, "pad=*", params);
    let mut fast = subscribe(&server, "pad=*", params);
    assert_eq!(next(&mut fast)["type"], "snapshot");
    let reader = std::thread::spawn(move || {
        let mut seen = BTreeSet::new();
        let mut skipped = 0;
        // Batches go to partitions in turn: events of different batches may come in any order.
        while seen.len() < 30_000 {
            let m = next(&mut fast);
            match m["type"].as_str() {
                Some("events") => {
                    for r in m["rows"].as_array().unwrap() {
                        seen.insert(r["n"].as_i64().unwrap());
                    }
                }
                Some("skipped") => skipped += 1,
                _ => {}
            }
        }
        (seen.len(), skipped)
    });
    let pad = "x".repeat(1000);
    for batch in 0..500 {
        let events: Vec<Value> = (0..60)
            .map(|i| json!({"n": batch * 60 + i, "pad": pad}))
            .collect();
        ingest(&server, &events);
    }
    let (seen, skipped) = reader.join().unwrap();
    assert_eq!(
        (seen, skipped),
        (30_000, 0),
        "the fast client got every event"
    );
    server.wait_for_metric("eddy_live_dropped_clients_total", 1.0);
    assert_eq!(
        server.metric("eddy_ingest_events_total{door=\"http\",repository=\"open\"}"),
        30_000.0
    );
    drop(slow);
    server.stop();
}

/// A webhook receiver: records each POST's body, answers 503 to the first `failures`.
fn webhook(failures: usize) -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    let seen = got.clone();
    std::thread::spawn(move || {
        let mut refused = 0;
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut stream = stream;
            loop {
                let mut length = 0usize;
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).unwrap();
                    if h.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                let status = if refused < failures {
                    refused += 1;
                    "503 Service Unavailable"
                } else {
                    seen.lock()
                        .unwrap()
                        .push(serde_json::from_slice(&body).unwrap());
                    "200 OK"
                };
                let _ = stream.write_all(
                    format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").as_bytes(),
                );
            }
        }
    });
    (url, got)
}

#[test]
fn pipelines_resume_after_a_crash_and_deliver_every_result() {
    let dir = tempfile::tempdir().unwrap();
    // The webhook refuses its first requests for about a second: the crash comes before the
    // errors pipeline can commit, so the second run reads the first run's events again.
    let (hook, posted) = webhook(5);
    let config = format!(
        r#"
[repositories.errors]
[repositories.rollups]
[pipelines.errors]
from = "open"
query = 'status>=500 | eval(kind="error")'
start = "beginning"
split = "host"
[[pipelines.errors.sinks]]
repository = "errors"
buffer_events = 50
[[pipelines.errors.sinks]]
webhook = "{hook}"
on = "h1"
buffer_events = 20
max_backoff = "200ms"
[pipelines.per_host]
from = "open"
query = "groupBy(host)"
window = "1s"
lateness = "500ms"
keep = 5
start = "beginning"
[[pipelines.per_host.sinks]]
repository = "rollups"
"#
    );
    let batch = |from: i64| -> Vec<Value> {
        (from..from + 1000)
            .map(|i| json!({"host": format!("h{}", i % 3), "status": ([200, 500, 503, 404][(i % 4) as usize]), "n": i}))
            .collect()
    };
    let server = Server::start(dir.path(), &config);
    for b in 0..3 {
        ingest(&server, &batch(b * 1000));
    }
    // Crash while the pipelines are at work.
    std::thread::sleep(Duration::from_millis(300));
    server.kill();
    let server = Server::start(dir.path(), &config);
    for b in 3..5 {
        ingest(&server, &batch(b * 1000));
    }
    // Everything read, every window closed and delivered.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, p) = get(
            &server,
            "/api/v1/pipelines/per_host",
            &[("Authorization", &format!("Bearer {TOKEN}"))],
        );
        let (_, e) = get(
            &server,
            "/api/v1/pipelines/errors",
            &[("Authorization", &format!("Bearer {TOKEN}"))],
        );
        let windows: i64 = p["status"]["windows"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|w| w["rows"].as_array().unwrap().iter())
            .map(|r| r["_count"].as_i64().unwrap())
            .sum();
        let webhook_rows: usize = posted
            .lock()
            .unwrap()
            .iter()
            .map(|b| b.as_array().unwrap().len())
            .sum();
        if e["status"]["error"].is_null()
            && webhook_rows >= 833
            && windows > 0
            && p["status"]["error"].is_null()
        {
            std::thread::sleep(Duration::from_secs(3));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pipelines did not finish: {e} {p}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (_, e) = get(
        &server,
        "/api/v1/pipelines/errors",
        &[("Authorization", &format!("Bearer {TOKEN}"))],
    );
    assert!(
        e["status"]["read"].as_u64().unwrap() > 2000,
        "read again after the crash: {e}"
    );
    server.stop();

    // The errors repository: every error of both runs once, with the field the query added.
    let expected: BTreeSet<i64> = (0..5000).filter(|i| matches!(i % 4, 1 | 2)).collect();
    let stored = stored_events(dir.path(), "errors");
    let mut ns: Vec<i64> = stored
        .iter()
        .map(|e| {
            assert_eq!(e.fields["kind"], eddy_event::Value::Str("error".into()));
            match e.fields["n"] {
                eddy_event::Value::Int(n) => n,
                ref v => panic!("{v:?}"),
            }
        })
        .collect();
    ns.sort_unstable();
    assert_eq!(
        ns,
        expected.iter().copied().collect::<Vec<_>>(),
        "each error once"
    );
    // The webhook: the h1 errors at least once, nothing else; repeats carry the same @id.
    let mut by_id: BTreeMap<String, i64> = BTreeMap::new();
    for body in posted.lock().unwrap().iter() {
        for row in body.as_array().unwrap() {
            assert_eq!(row["host"], "h1");
            let n = row["n"].as_i64().unwrap();
            let previous = by_id.insert(row["@id"].as_str().unwrap().to_string(), n);
            assert!(previous.is_none_or(|p| p == n));
        }
    }
    let hooked: BTreeSet<i64> = by_id.values().copied().collect();
    let h1: BTreeSet<i64> = expected.iter().copied().filter(|n| n % 3 == 1).collect();
    assert_eq!(hooked, h1);
    // The rollups: each (window, host) once, and together they count every event once.
    let rollups = stored_events(dir.path(), "rollups");
    let mut keys = BTreeSet::new();
    let mut total = 0;
    for r in &rollups {
        let key = (
            format!("{:?}", r.fields["_window_start"]),
            format!("{:?}", r.fields["host"]),
        );
        assert!(keys.insert(key.clone()), "window row {key:?} twice");
        if let eddy_event::Value::Int(c) = r.fields["_count"] {
            total += c;
        }
    }
    assert_eq!(total, 5000, "{rollups:?}");
}
