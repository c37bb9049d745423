//! End-to-end tests of `eddy serve`'s HTTP door: the real binary on a free port, a real HTTP
//! client, and the bus read back from disk afterwards.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::process::Command;

use common::*;
use eddy_event::Value;

#[test]
fn ingests_json_ndjson_and_parsed_lines_durably() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "");
    let (s, body) = post(&server, "/api/v1/ingest/open", &[("Content-Type", "application/json")],
        br##"[{"@timestamp":"2026-11-01T10:00:00Z","#host":"web-1","http":{"status":500}},{"msg":"second"}]"##);
    assert_eq!((s, body["events"].as_u64()), (200, Some(2)), "{body}");
    let (s, _) = post(
        &server,
        "/api/v1/ingest/open",
        &[NDJSON],
        b"{\"a\":1}\n\n{\"a\":2}\n",
    );
    assert_eq!(s, 200);
    let line = br#"127.0.0.1 - frank [10/Oct/2026:13:55:36 -0700] "GET /a.gif HTTP/1.0" 200 2326 "-" "curl/8""#;
    let (s, _) = post(
        &server,
        "/api/v1/ingest/open?parser=accesslog",
        &[("Content-Type", "text/plain")],
        line,
    );
    assert_eq!(s, 200);
    // gzip bodies are accepted.
    let zipped = gzip(b"{\"zipped\":true}\n", flate2::Compression::default());
    let (s, body) = post(
        &server,
        "/api/v1/ingest/open",
        &[NDJSON, ("Content-Encoding", "gzip")],
        &zipped,
    );
    assert_eq!(s, 200, "{body}");
    server.stop();

    let events = stored_events(dir.path(), "open");
    assert_eq!(events.len(), 6);
    let first = events
        .iter()
        .find(|e| e.tags.get("host").map(String::as_str) == Some("web-1"))
        .unwrap();
    assert_eq!(first.fields["http.status"], Value::Int(500));
    assert_eq!(first.timestamp, 1_793_527_200_000_000_000);
    assert!(first.ingest_timestamp > first.timestamp);
    let access = events
        .iter()
        .find(|e| e.fields.contains_key("url"))
        .unwrap();
    assert_eq!(access.fields["status"], Value::Int(200));
    assert_eq!(
        access.raw.as_deref(),
        Some(std::str::from_utf8(line).unwrap())
    );
    assert!(events
        .iter()
        .any(|e| e.fields.get("zipped") == Some(&Value::Bool(true))));
    // `eddy consume` shows a repository's events as JSON.
    let out = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["consume", "repo.open", "--data-dir"])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let shown: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(shown.len(), 6);
    assert!(shown
        .iter()
        .all(|e| e["@timestamp"].is_i64() && e["@id"].is_string()));
}

#[test]
fn a_bad_line_rejects_the_whole_request_and_says_where() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "");
    let body = b"{\"ok\":1}\n{\"broken\": tru}\n{\"ok\":2}\n[1,2]\n";
    let (s, answer) = post(&server, "/api/v1/ingest/open", &[NDJSON], body);
    assert_eq!(s, 400);
    let lines = answer["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 2, "{answer}");
    assert_eq!(lines[0]["line"], 2);
    assert!(lines[0]["column"].as_u64().unwrap() >= 12, "{answer}");
    assert_eq!(lines[1]["line"], 4);
    assert!(answer["error"]
        .as_str()
        .unwrap()
        .contains("nothing was stored"));
    let (s, answer) = post(
        &server,
        "/api/v1/ingest/open?parser=accesslog",
        &[],
        b"not an access log line\n",
    );
    assert_eq!(s, 400);
    assert_eq!(answer["lines"][0]["field"], "timestamp");
    let (s, _) = post(&server, "/api/v1/ingest/open?parser=yaml", &[], b"x\n");
    assert_eq!(s, 400);
    server.stop();
    assert!(
        stored_events(dir.path(), "open").is_empty(),
        "nothing of a rejected request is stored"
    );
}

#[test]
fn tokens_limits_and_unknown_repositories() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "");
    assert_eq!(
        post(&server, "/api/v1/ingest/secure", &[NDJSON], b"{}\n").0,
        401
    );
    assert_eq!(
        post(
            &server,
            "/api/v1/ingest/secure",
            &[NDJSON, ("Authorization", "Bearer wrong-token-0123456789")],
            b"{}\n"
        )
        .0,
        403
    );
    let auth = format!("Bearer {TOKEN}");
    assert_eq!(
        post(
            &server,
            "/api/v1/ingest/secure",
            &[NDJSON, ("Authorization", &auth)],
            b"{}\n"
        )
        .0,
        200
    );
    assert_eq!(
        post(&server, "/api/v1/ingest/nope", &[NDJSON], b"{}\n").0,
        404
    );
    let big_event = format!("{{\"x\":\"{}\"}}\n", "y".repeat(3000));
    let (s, answer) = post(
        &server,
        "/api/v1/ingest/open",
        &[NDJSON],
        big_event.as_bytes(),
    );
    assert_eq!(s, 413);
    assert!(
        answer["error"].as_str().unwrap().contains("event 1"),
        "{answer}"
    );
    let big_body = "{\"x\":1}\n".repeat(20_000);
    assert_eq!(
        post(
            &server,
            "/api/v1/ingest/open",
            &[NDJSON],
            big_body.as_bytes()
        )
        .0,
        413
    );
    // A gzip bomb is cut off at the limit, not inflated in memory.
    let bomb = gzip(&vec![b'\n'; 10_000_000], flate2::Compression::best());
    assert_eq!(
        post(
            &server,
            "/api/v1/ingest/open",
            &[NDJSON, ("Content-Encoding", "gzip")],
            &bomb
        )
        .0,
        413
    );
    let health = agent()
        .get(format!("{}/health", server.url))
        .call()
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(health, 200);
    assert_eq!(
        get(&server, "/ready", &[]),
        (200, serde_json::Value::String("ready\n".into()))
    );
    server.stop();
    assert_eq!(stored_events(dir.path(), "secure").len(), 1);
}

#[test]
fn an_invalid_config_lists_every_problem_and_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(
        &config,
        "[http]\nmax_event_bytes = 0\n[repositories.web]\npartitions = 0\ntokens = [\"short\"]\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("max_event_bytes")
            && err.contains("partitions = 0")
            && err.contains("tokens[0]"),
        "{err}"
    );
    assert!(!err.contains("short\""), "tokens are never printed: {err}");
}

#[test]
fn a_retry_with_the_same_id_is_stored_once_even_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let body = b"{\"@id\":\"01a20000-0000-7000-8000-000000000001\",\"n\":1}\n\
                 {\"@id\":\"01a20000-0000-7000-8000-000000000002\",\"n\":2}\n\
                 {\"@id\":\"01a20000-0000-7000-8000-000000000002\",\"n\":2}\n\
                 {\"n\":3}\n";
    let server = Server::start(dir.path(), "");
    let (s, answer) = post(&server, "/api/v1/ingest/open", &[NDJSON], body);
    assert_eq!(s, 200);
    assert_eq!(
        (answer["events"].as_u64(), answer["duplicates"].as_u64()),
        (Some(3), Some(1)),
        "{answer}"
    );
    // The client did not see the answer and sends the batch again.
    let (_, answer) = post(&server, "/api/v1/ingest/open", &[NDJSON], body);
    assert_eq!(
        (answer["events"].as_u64(), answer["duplicates"].as_u64()),
        (Some(1), Some(3)),
        "{answer}"
    );
    assert_eq!(
        server.metric(r#"eddy_ingest_duplicate_events_total{repository="open"}"#),
        4.0
    );
    server.stop();
    // The window outlives a restart: it is rebuilt from the bus.
    let server = Server::start(dir.path(), "");
    let (_, answer) = post(&server, "/api/v1/ingest/open", &[NDJSON], body);
    assert_eq!(
        (answer["events"].as_u64(), answer["duplicates"].as_u64()),
        (Some(1), Some(3)),
        "{answer}"
    );
    server.stop();
    let events = stored_events(dir.path(), "open");
    assert_eq!(
        events.len(),
        5,
        "2 with ids once, the one without an id each time"
    );
    assert_eq!(events.iter().filter(|e| e.id_from_client).count(), 2);
}

#[test]
fn overload_answers_429_with_retry_after_and_loses_no_accepted_event() {
    let dir = tempfile::tempdir().unwrap();
    // Room for one request at a time, and no waiting for more.
    let server = Server::start(
        dir.path(),
        "[ingest]\nmax_inflight_bytes = 100000\nqueue_timeout = \"0s\"\nretry_after = \"2s\"\n",
    );
    let url = format!("{}/api/v1/ingest/open", server.url);
    let results: Vec<(u64, u64, bool)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let url = url.clone();
                s.spawn(move || {
                    let (mut accepted, mut refused, mut retry_after) = (0u64, 0u64, true);
                    for i in 0..15 {
                        let body: String = (0..500)
                            .map(|j| {
                                format!(
                                    "{{\"t\":{t},\"i\":{i},\"j\":{j},\"pad\":\"{}\"}}\n",
                                    "x".repeat(60)
                                )
                            })
                            .collect();
                        let resp = agent()
                            .post(&url)
                            .header(NDJSON.0, NDJSON.1)
                            .send(body.as_bytes())
                            .unwrap();
                        match resp.status().as_u16() {
                            200 => accepted += 500,
                            429 => {
                                refused += 1;
                                retry_after &= resp
                                    .headers()
                                    .get("retry-after")
                                    .and_then(|v| v.to_str().ok())
                                    == Some("2");
                            }
                            other => panic!("unexpected status {other}"),
                        }
                    }
                    (accepted, refused, retry_after)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let accepted: u64 = results.iter().map(|r| r.0).sum();
    let refused: u64 = results.iter().map(|r| r.1).sum();
    assert!(refused > 0, "no 429 under forced overload");
    assert!(accepted > 0, "nothing accepted at all");
    assert!(results.iter().all(|r| r.2), "every 429 carries Retry-After");
    let overload = server.metric(
        r#"eddy_ingest_rejected_events_total{door="http",repository="open",reason="overload"}"#,
    );
    assert_eq!(overload, refused as f64);
    server.stop();
    assert_eq!(stored_events(dir.path(), "open").len() as u64, accepted);
}

#[test]
fn acknowledged_events_survive_a_kill_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "");
    let acked = ingest_until_killed(
        &server,
        "open",
        100,
        std::time::Duration::from_millis(400),
        |n| format!("{{\"n\":{n}}}\n"),
    );
    server.kill();
    assert!(
        acked.len() >= 100,
        "the test acknowledged too little to mean anything"
    );
    let server = Server::start(dir.path(), "");
    server.stop();
    let stored: std::collections::HashSet<i64> = stored_events(dir.path(), "open")
        .iter()
        .filter_map(|e| match e.fields.get("n") {
            Some(Value::Int(n)) => Some(*n),
            _ => None,
        })
        .collect();
    let lost = acked.iter().filter(|n| !stored.contains(n)).count();
    assert_eq!(
        lost,
        0,
        "{lost} of {} acknowledged events were lost",
        acked.len()
    );
}

#[test]
fn repositories_are_created_through_the_api_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "");
    let admin = format!("Bearer {TOKEN}");
    let auth = [("Authorization", admin.as_str())];
    assert_eq!(get(&server, "/api/v1/repositories", &[]).0, 401);
    let (s, answer) = post(
        &server,
        "/api/v1/repositories",
        &auth,
        br#"{"name":"web","partitions":2}"#,
    );
    assert_eq!(s, 201, "{answer}");
    assert_eq!(answer["partitions"], 2);
    assert_eq!(
        post(&server, "/api/v1/repositories", &auth, br#"{"name":"web"}"#).0,
        409
    );
    let (s, answer) = post(
        &server,
        "/api/v1/repositories",
        &auth,
        br#"{"name":"bad/name"}"#,
    );
    assert_eq!(s, 400, "{answer}");
    let (s, answer) = post(
        &server,
        "/api/v1/repositories",
        &auth,
        br#"{"name":"x","partitons":2}"#,
    );
    assert_eq!(s, 400);
    assert!(
        answer["error"].as_str().unwrap().contains("partitons"),
        "{answer}"
    );
    assert_eq!(
        post(&server, "/api/v1/ingest/web", &[NDJSON], b"{\"a\":1}\n").0,
        200
    );
    server.stop();

    let server = Server::start(dir.path(), "");
    let (s, answer) = get(&server, "/api/v1/repositories/web", &auth);
    assert_eq!((s, answer["events"].as_u64()), (200, Some(1)), "{answer}");
    let (_, all) = get(&server, "/api/v1/repositories", &auth);
    let names: Vec<_> = all["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    // `_audit` holds the refused request and the creation above.
    assert_eq!(names, ["_audit", "open", "secure", "web"]);
    server.stop();
}

#[test]
fn metrics_count_what_came_in_and_auto_grouping_bounds_data_sources() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        "[repositories.many]\nmax_tag_values = 5\ntag_buckets = 2\n",
    );
    let body: String = (0..100)
        .map(|i| format!("{{\"#request\":\"r{i}\",\"#type\":\"web\"}}\n"))
        .collect();
    assert_eq!(
        post(&server, "/api/v1/ingest/many", &[NDJSON], body.as_bytes()).0,
        200
    );
    assert_eq!(
        post(
            &server,
            "/api/v1/ingest/many",
            &[NDJSON],
            b"{\"x\": nope}\n"
        )
        .0,
        400
    );
    let metrics = server.metrics();
    for line in [
        r#"eddy_ingest_events_total{door="http",repository="many"} 100"#,
        r#"eddy_ingest_rejected_events_total{door="http",repository="many",reason="parse"} 1"#,
        r#"eddy_ingest_ack_seconds_count{door="http"} 1"#,
        r#"eddy_ingest_ack_recent_seconds{door="http",quantile="0.99"} "#,
        r#"eddy_ingest_grouped_tags{repository="many"} 1"#,
        "eddy_ingest_inflight_bytes 0",
    ] {
        assert!(metrics.contains(line), "{line} missing in\n{metrics}");
    }
    server.stop();
    let log = eddy_log::Log::open(dir.path().join("data")).unwrap();
    let topic = log.topic("repo.many").unwrap();
    let mut keys = std::collections::HashSet::new();
    for p in 0..topic.partition_count() {
        for r in topic.reader(p, 0).unwrap().poll().unwrap() {
            keys.insert(r.key.unwrap());
        }
    }
    // Five real values, then two buckets; every event keeps its real tag.
    assert!(keys.len() <= 7, "{keys:?}");
    drop(log);
    let events = stored_events(dir.path(), "many");
    assert_eq!(
        events
            .iter()
            .map(|e| &e.tags["request"])
            .collect::<std::collections::HashSet<_>>()
            .len(),
        100
    );
}

fn send(server: &Server, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["send", "--url", &server.url])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn eddy_send_batches_files_retries_overload_and_maps_bad_lines_to_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    // Little room and no waiting: concurrent batches meet 429 and are retried.
    let server = Server::start(
        dir.path(),
        "[ingest]\nmax_inflight_bytes = 100000\nqueue_timeout = \"0s\"\nretry_after = \"0s\"\n",
    );
    let access = dir.path().join("access.log");
    let line =
        r#"10.0.0.1 - - [24/Nov/2026:10:00:00 +0000] "GET /x HTTP/1.1" 200 512 "-" "curl/8""#;
    std::fs::write(&access, format!("{line}\n").repeat(2500)).unwrap();
    let out = send(
        &server,
        &[
            "-r",
            "open",
            "--parser",
            "accesslog",
            "--batch-size",
            "400",
            "--concurrency",
            "6",
            "--json",
            access.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["events"], 2500, "{summary}");

    let ndjson = dir.path().join("events.ndjson");
    let mut text: String = (1..=1600).map(|i| format!("{{\"i\":{i}}}\n")).collect();
    text = text.replace("{\"i\":1503}", "{\"i\":15 03}");
    std::fs::write(&ndjson, text).unwrap();
    let out = send(
        &server,
        &["-r", "open", "--concurrency", "1", ndjson.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("events.ndjson:1503: column 9"), "{err}");
    assert!(
        err.contains("stored before the failure: 1000 events"),
        "{err}"
    );

    // A JSON array, pretty-printed, is sent element by element; a bad element is named.
    let array = dir.path().join("events.json");
    let elements: Vec<serde_json::Value> = (0..1200)
        .map(|i| serde_json::json!({"i": i, "nested": {"a": [1, 2]}}))
        .collect();
    std::fs::write(&array, serde_json::to_string_pretty(&elements).unwrap()).unwrap();
    let out = send(&server, &["-r", "open", "--json", array.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["events"], 1200, "{summary}");
    std::fs::write(&array, r#"[{"a":1}, {"b":2}, 17]"#).unwrap();
    let out = send(&server, &["-r", "open", array.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("events.json element 3: column 1"), "{err}");

    // stdin works too, and a wrong repository is a clear error.
    let mut child = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args([
            "send",
            "--url",
            &server.url,
            "-r",
            "nope",
            "--attempts",
            "1",
        ])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(b"{}\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("404"));
    server.stop();
    assert_eq!(stored_events(dir.path(), "open").len(), 4700);
}

#[test]
fn a_second_server_on_the_same_data_dir_names_the_pid_holding_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "");
    let out = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args([
            "serve",
            "--config",
            dir.path().join("eddy.toml").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let pid = format!("pid {}", server.child.id());
    assert!(stderr.contains(&pid), "{stderr}");
    assert_eq!(stderr.matches("in use").count(), 1, "{stderr}");
    server.stop();
}
