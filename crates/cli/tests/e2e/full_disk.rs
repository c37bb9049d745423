//! A full disk during ingest: `503` with `Retry-After`, the acknowledged events survive, and
//! ingest resumes by itself once there is space again. The disk is made full by the bus's fault
//! hook (`eddy_log::fault`, compiled into the binary these tests run, never into a release):
//! while its flag file exists in the data directory, every bus write fails with `ENOSPC`.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::time::{Duration, Instant};

use common::{agent, Server, NDJSON, TOKEN};

fn body(from: u64, to: u64) -> String {
    (from..to)
        .map(|n| format!("{{\"n\":{n},\"msg\":\"order {n} placed\"}}\n"))
        .collect()
}

/// Posts events `from..to` to `open`: the status, its `Retry-After` and the answer's text.
fn ingest(server: &Server, from: u64, to: u64) -> (u16, Option<String>, String) {
    let mut resp = agent()
        .post(format!("{}/api/v1/ingest/open", server.url))
        .header(NDJSON.0, NDJSON.1)
        .send(body(from, to).as_bytes())
        .unwrap();
    let retry_after = resp
        .headers()
        .get("Retry-After")
        .map(|v| v.to_str().unwrap().to_string());
    let text = resp.body_mut().read_to_string().unwrap();
    (resp.status().as_u16(), retry_after, text)
}

/// The events of `open`, counted by a query, and their distinct `n`.
fn counted(server: &Server) -> (u64, u64) {
    let query = serde_json::json!({
        "query": "groupBy(n) | count()",
        "start": "1970-01-01T00:00:00Z",
        "end": "2200-01-01T00:00:00Z"
    });
    let (_, all) = common::post(
        server,
        "/api/v1/repositories/open/query",
        &[
            ("Authorization", &format!("Bearer {TOKEN}")),
            ("Content-Type", "application/json"),
        ],
        serde_json::json!({ "query": "count()", "start": query["start"], "end": query["end"] })
            .to_string()
            .as_bytes(),
    );
    let (_, distinct) = common::post(
        server,
        "/api/v1/repositories/open/query",
        &[
            ("Authorization", &format!("Bearer {TOKEN}")),
            ("Content-Type", "application/json"),
        ],
        query.to_string().as_bytes(),
    );
    (
        all["rows"][0]["_count"].as_u64().unwrap_or(0),
        distinct["rows"][0]["_count"].as_u64().unwrap_or(0),
    )
}

fn until_counted(server: &Server, events: u64) -> (u64, u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let c = counted(server);
        if c.0 >= events || Instant::now() > deadline {
            return c;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_full_disk_answers_503_with_retry_after_keeps_what_was_acknowledged_and_resumes_when_space_returns(
) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "");
    let (status, _, text) = ingest(&server, 0, 100);
    assert_eq!(status, 200, "{text}");

    let flag = dir
        .path()
        .join("data")
        .join(eddy_log::fault::FULL_DISK_FLAG);
    std::fs::write(&flag, "").unwrap();
    for _ in 0..3 {
        let (status, retry_after, text) = ingest(&server, 100, 150);
        assert_eq!(status, 503, "{text}");
        assert!(retry_after.is_some(), "a 503 without Retry-After: {text}");
        assert!(text.contains("No space left on device"), "{text}");
    }
    // The server stays up, and what it acknowledged is searchable.
    assert_eq!(until_counted(&server, 100), (100, 100));

    // Space returns: the client's retry is stored, with no restart.
    std::fs::remove_file(&flag).unwrap();
    let (status, _, text) = ingest(&server, 100, 150);
    assert_eq!(status, 200, "{text}");
    let (status, _, text) = ingest(&server, 150, 200);
    assert_eq!(status, 200, "{text}");
    assert_eq!(until_counted(&server, 200), (200, 200));

    // Every acknowledged event survives a crash, once: the refused writes left nothing behind
    // that recovery or the digest would trip on.
    server.kill();
    let server = Server::start(dir.path(), "");
    assert_eq!(until_counted(&server, 200), (200, 200));
    server.stop();
    assert_eq!(common::stored_events(dir.path(), "open").len(), 200);
}
