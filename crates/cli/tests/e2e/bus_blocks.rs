//! The store's blocks on the bus, through the real binary: a large request goes to the bus as
//! blocks (a third of the bytes records take), is searchable once digested, reads back through
//! `eddy consume` as one record per event, and damage in a block on the bus is named.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{get, post, Server, NDJSON, TOKEN};

/// Two repositories alike but for the bus's layout, one partition each, big enough bodies.
const CONFIG: &str = "[http]\nlisten = \"127.0.0.1:0\"\nmax_body_bytes = 4000000\n\
    admin_tokens = [\"TOKEN\"]\n\
    [repositories.blocks]\npartitions = 1\n\
    [repositories.rows]\npartitions = 1\nbus_blocks = false\n";

/// `n` JSON lines of about 230 bytes, each with its number.
fn body(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "{{\"@timestamp\":\"2026-12-03T10:{:02}:{:02}.{:03}Z\",\"level\":\"info\",\"service\":\"checkout\",\
                 \"n\":{i},\"trace_id\":\"{:032x}\",\"msg\":\"order {i} paid in {} ms\",\"status\":{}}}\n",
                (i / 60_000) % 60,
                (i / 1000) % 60,
                i % 1000,
                (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835),
                i % 700,
                [200, 200, 200, 404, 500][i % 5],
            )
        })
        .collect()
}

/// The `_count` of `query` over all time.
fn count(server: &Server, repository: &str, query: &str) -> u64 {
    let (status, body) = post(
        server,
        &format!("/api/v1/repositories/{repository}/query"),
        &[
            ("Authorization", &format!("Bearer {TOKEN}")),
            ("Content-Type", "application/json"),
        ],
        serde_json::json!({ "query": query, "start": "1970-01-01T00:00:00Z", "end": "2200-01-01T00:00:00Z" })
            .to_string()
            .as_bytes(),
    );
    assert_eq!(status, 200, "{body}");
    body["rows"][0]["_count"].as_u64().unwrap_or(0)
}

fn bus_bytes(server: &Server, repository: &str) -> u64 {
    let (status, body) = get(
        server,
        &format!("/api/v1/repositories/{repository}"),
        &[("Authorization", &format!("Bearer {TOKEN}"))],
    );
    assert_eq!(status, 200, "{body}");
    body["footprint"]["bus_bytes"].as_u64().unwrap()
}

#[test]
fn a_large_request_goes_to_the_bus_as_blocks_and_reads_back_event_by_event() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &CONFIG.replace("TOKEN", TOKEN));
    let lines = body(12_000);
    for repository in ["blocks", "rows"] {
        let (status, answer) = post(
            &server,
            &format!("/api/v1/ingest/{repository}"),
            &[NDJSON],
            lines.as_bytes(),
        );
        assert_eq!(status, 200, "{answer}");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while count(&server, "blocks", "count()") < 12_000 || count(&server, "rows", "count()") < 12_000
    {
        assert!(
            Instant::now() < deadline,
            "not every event became searchable"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (blocks, rows) = (bus_bytes(&server, "blocks"), bus_bytes(&server, "rows"));
    assert!(
        blocks * 10 < rows * 8,
        "blocks take {blocks} bytes on the bus, records {rows}"
    );
    // The same answers from both layouts.
    for repository in ["blocks", "rows"] {
        assert_eq!(count(&server, repository, "status=500 | count()"), 2400);
        assert_eq!(
            count(&server, repository, "\"order 4321 paid\" | count()"),
            1
        );
    }
    server.stop();

    // Readers of the bus other than the digest see one record per event, in order.
    let data = dir.path().join("data");
    let consumed = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args([
            "consume",
            "repo.blocks",
            "--data-dir",
            data.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(consumed.status.code(), Some(0));
    let printed = String::from_utf8_lossy(&consumed.stdout);
    let numbers: Vec<u64> = printed
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let raw: serde_json::Value =
                serde_json::from_str(v["@rawstring"].as_str().unwrap()).unwrap();
            raw["n"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(numbers, (0..12_000).collect::<Vec<u64>>());

    // A flipped byte inside a block on the bus is damage that `eddy topic verify` names.
    let partition = data.join("topics/repo.blocks/0");
    let segment = std::fs::read_dir(&partition)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "log"))
        .unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x20;
    std::fs::write(&segment, &bytes).unwrap();
    let verified = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args([
            "topic",
            "verify",
            "repo.blocks",
            "--data-dir",
            data.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&verified.stdout).to_string()
        + &String::from_utf8_lossy(&verified.stderr);
    assert_eq!(verified.status.code(), Some(1), "{said}");
    assert!(
        said.contains(segment.file_name().unwrap().to_str().unwrap()),
        "{said}"
    );
}
