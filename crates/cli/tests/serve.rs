//! End-to-end tests of `eddy serve`'s HTTP door: the real binary on a free port, a real HTTP
//! client, and the bus read back from disk afterwards.
#![allow(clippy::unwrap_used)]

mod common;

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
