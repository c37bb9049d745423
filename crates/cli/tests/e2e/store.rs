//! The segment store through the real binary: a SIGKILL while ingesting and digesting loses and
//! doubles nothing that queries see; `eddy store` lists, verifies and finds corruption.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{agent, get, ingest_until_killed, Server, NDJSON, TOKEN};

fn auth() -> String {
    format!("Bearer {TOKEN}")
}

/// A repository whose segments are small, so a short test seals many.
const SMALL: &str = "[repositories.small]\nsegment_size = \"64KiB\"\nblock_size = \"8KiB\"\n";

/// Every stored `n` in `repository` with how often it is seen.
fn visible(server: &Server, repository: &str) -> (HashMap<i64, usize>, serde_json::Value) {
    let (status, body) = get(
        server,
        &format!("/api/v1/repositories/{repository}/events?limit=100000000"),
        &[("Authorization", &auth())],
    );
    assert_eq!(status, 200, "{body}");
    let mut seen = HashMap::new();
    for e in body["events"].as_array().unwrap() {
        *seen.entry(e["fields"]["n"].as_i64().unwrap()).or_insert(0) += 1;
    }
    (seen, body["stats"].clone())
}

/// What the repository shows once every acknowledged event is in it (or after a minute).
/// Counting alone is not enough: events stored but not acknowledged before a kill can make up
/// the count while the digest is still catching up with acknowledged ones.
fn wait_for_all(server: &Server, repository: &str, acked: &[i64]) -> HashMap<i64, usize> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (seen, _) = visible(server, repository);
        if acked.iter().all(|n| seen.contains_key(n)) || Instant::now() > deadline {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_kill_while_digesting_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), SMALL);
    let acked = ingest_until_killed(&server, "small", 200, Duration::from_millis(1500), |n| {
        format!(
            "{{\"#host\":\"h{}\",\"n\":{n},\"msg\":\"event number {n}\"}}\n",
            n % 5
        )
    });
    server.kill();
    assert!(acked.len() >= 2000, "only {} acknowledged", acked.len());
    let store_dir = dir.path().join("data/store/small");
    let sealed = eddy_store::catalogue::segment_files(&store_dir)
        .unwrap()
        .len();
    assert!(sealed > 0, "no segment was sealed before the kill");

    let server = Server::start(dir.path(), SMALL);
    let seen = wait_for_all(&server, "small", &acked);
    let lost: Vec<_> = acked.iter().filter(|n| !seen.contains_key(n)).collect();
    let doubled: Vec<_> = seen.iter().filter(|(_, &c)| c > 1).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged events lost, e.g. {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
    assert!(
        doubled.is_empty(),
        "{} events seen twice, e.g. {:?}",
        doubled.len(),
        &doubled[..doubled.len().min(5)]
    );
    server.stop();

    // The store commands read the files directly.
    let eddy = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_eddy"))
            .args(args)
            .args(["--data-dir", dir.path().join("data").to_str().unwrap()])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    let (code, listed) = eddy(&["store", "list", "--repository", "small", "--json"]);
    assert_eq!(code, Some(0));
    let segments: Vec<serde_json::Value> = listed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(segments.len() >= sealed, "{listed}");
    assert!(
        segments.iter().all(|s| s["ratio"].as_f64().unwrap() > 1.0),
        "{listed}"
    );
    let (code, ratio) = eddy(&["store", "ratio"]);
    assert_eq!(code, Some(0));
    assert!(ratio.contains("small") && ratio.contains('×'), "{ratio}");
    // The footprint: the bus beside the segments, and raw over all of it.
    let (code, ratio) = eddy(&["store", "ratio", "--repository", "small", "--json"]);
    assert_eq!(code, Some(0));
    let row: serde_json::Value = serde_json::from_str(ratio.trim()).unwrap();
    let bytes = |k: &str| row[k].as_u64().unwrap();
    assert!(bytes("bus_bytes") > 0, "{ratio}");
    assert_eq!(
        bytes("total_bytes"),
        bytes("bus_bytes") + bytes("stored_bytes") + bytes("catalogue_bytes"),
        "{ratio}"
    );
    assert!(row["ratio_with_bus"].as_f64().unwrap() > 0.0, "{ratio}");
    let (code, verified) = eddy(&["store", "verify"]);
    assert_eq!(code, Some(0), "{verified}");
    assert!(verified.contains("all intact"), "{verified}");

    // One flipped bit in a block's data is found and named.
    let id = segments[0]["id"].as_u64().unwrap();
    let path = store_dir.join(format!("{id:020}.seg"));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[40] ^= 0x08;
    std::fs::write(&path, &bytes).unwrap();
    let (code, verified) = eddy(&["store", "verify"]);
    assert_eq!(code, Some(1), "{verified}");
    assert!(
        verified.contains(&format!("{id:020}.seg")) && verified.contains("block 0"),
        "{verified}"
    );
}

#[test]
fn recent_events_are_searchable_before_they_are_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "");
    let url = format!("{}/api/v1/ingest/open", server.url);
    let r = agent()
        .post(&url)
        .header(NDJSON.0, NDJSON.1)
        .send(&b"{\"n\":1,\"msg\":\"needle-7f3a in a haystack\"}\n"[..])
        .unwrap();
    assert_eq!(r.status(), 200);
    let acked = Instant::now();
    let deadline = acked + Duration::from_secs(20);
    loop {
        let (status, body) = get(
            &server,
            "/api/v1/repositories/open/events?token=7f3a",
            &[("Authorization", &auth())],
        );
        assert_eq!(status, 200, "{body}");
        if body["count"] == 1 {
            assert_eq!(
                body["events"][0]["fields"]["msg"],
                "needle-7f3a in a haystack"
            );
            eprintln!("searchable {:?} after acknowledgement", acked.elapsed());
            break;
        }
        assert!(Instant::now() < deadline, "never searchable: {body}");
        std::thread::sleep(Duration::from_millis(10));
    }
    let (status, body) = get(
        &server,
        "/api/v1/repositories/open/events?token=absent",
        &[("Authorization", &auth())],
    );
    assert_eq!((status, body["count"].as_u64()), (200, Some(0)));
    let (status, body) = get(
        &server,
        "/api/v1/repositories/open/events?start=yesterday",
        &[("Authorization", &auth())],
    );
    assert_eq!(status, 400);
    assert!(body.to_string().contains("start"), "{body}");
    server.stop();
}

/// Runs `eddy` on the data directory of `dir`: exit code, stdout, stderr.
fn eddy_in(dir: &std::path::Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(args)
        .args(["--data-dir", dir.join("data").to_str().unwrap()])
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// Posts `batches` batches of 200 events numbered from `first` to `repository`.
fn ingest(server: &Server, repository: &str, first: i64, batches: i64) -> Vec<i64> {
    let url = format!("{}/api/v1/ingest/{repository}", server.url);
    let mut acked = Vec::new();
    for b in 0..batches {
        let from = first + b * 200;
        let body: String = (from..from + 200)
            .map(|n| {
                format!(
                    "{{\"#host\":\"h{}\",\"n\":{n},\"msg\":\"event number {n}\"}}\n",
                    n % 3
                )
            })
            .collect();
        let r = agent()
            .post(&url)
            .header(NDJSON.0, NDJSON.1)
            .send(body.as_bytes())
            .unwrap();
        assert_eq!(r.status(), 200);
        acked.extend(from..from + 200);
    }
    acked
}

#[test]
fn a_segment_cut_short_and_a_flipped_byte_are_repaired_and_every_event_is_found_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), SMALL);
    let acked = ingest(&server, "small", 0, 30);
    wait_for_all(&server, "small", &acked);
    // The data directory is the server's: a repair refuses to start.
    let (code, _, err) = eddy_in(dir.path(), &["store", "repair"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("stop eddy serve"), "{err}");
    server.stop();

    let (code, listed, _) = eddy_in(
        dir.path(),
        &["store", "list", "--repository", "small", "--json"],
    );
    assert_eq!(code, Some(0));
    let mut segments: Vec<serde_json::Value> = listed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(segments.len() >= 3, "{listed}");
    segments.sort_by_key(|s| std::cmp::Reverse(s["events"].as_u64().unwrap()));
    let store_dir = dir.path().join("data/store/small");
    let path =
        |s: &serde_json::Value| store_dir.join(format!("{:020}.seg", s["id"].as_u64().unwrap()));
    let bytes = std::fs::read(path(&segments[0])).unwrap();
    std::fs::write(path(&segments[0]), &bytes[..bytes.len() * 2 / 3]).unwrap();
    let mut bytes = std::fs::read(path(&segments[1])).unwrap();
    bytes[40] ^= 0x08;
    std::fs::write(path(&segments[1]), &bytes).unwrap();

    let (code, verified, _) = eddy_in(dir.path(), &["store", "verify"]);
    assert_eq!(code, Some(1), "{verified}");
    assert!(verified.contains("eddy store repair"), "{verified}");
    let (code, repaired, err) = eddy_in(dir.path(), &["store", "repair", "--json"]);
    assert_eq!(code, Some(0), "{repaired}{err}");
    let repairs: Vec<serde_json::Value> = repaired
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(repairs.len(), 2, "{repaired}");
    for r in &repairs {
        assert!(r["lost"].is_null() && r["restored_as"].is_u64(), "{r}");
        assert_eq!(r["repository"], "small");
    }
    let (code, verified, _) = eddy_in(dir.path(), &["store", "verify"]);
    assert_eq!(code, Some(0), "{verified}");

    let server = Server::start(dir.path(), SMALL);
    let seen = wait_for_all(&server, "small", &acked);
    let (_, stats) = visible(&server, "small");
    assert_eq!(stats["warnings"], serde_json::json!([]), "{stats}");
    let lost = acked.iter().filter(|n| !seen.contains_key(n)).count();
    let doubled = seen.values().filter(|&&c| c > 1).count();
    assert_eq!((lost, doubled, seen.len()), (0, 0, acked.len()));
    server.stop();

    // Without the bus, what the blocks do not hold is reported lost, and the exit code says so.
    let (_, listed, _) = eddy_in(
        dir.path(),
        &["store", "list", "--repository", "small", "--json"],
    );
    let victim: serde_json::Value = serde_json::from_str(listed.lines().next().unwrap()).unwrap();
    let bytes = std::fs::read(path(&victim)).unwrap();
    std::fs::write(path(&victim), &bytes[..bytes.len() / 2]).unwrap();
    std::fs::remove_dir_all(dir.path().join("data/topics/repo.small")).unwrap();
    let (code, repaired, err) = eddy_in(dir.path(), &["store", "repair"]);
    assert_eq!(code, Some(1), "{repaired}{err}");
    let name = format!("{:020}.seg", victim["id"].as_u64().unwrap());
    assert!(
        repaired.contains(&name) && repaired.contains("LOST"),
        "{repaired}"
    );
    assert!(repaired.contains("bus topic is gone"), "{repaired}");
}

/// The crash benchmark at a count CI affords (`eddy bench crash` runs 100 and more): the real
/// server SIGKILLed 60 times on one data directory while clients ingest and the digest seals
/// and commits; every acknowledged event is found once.
#[test]
fn sixty_kills_while_ingesting_and_digesting_lose_and_double_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let scratch = dir.path().join("crash");
    let out = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["bench", "crash", "--kills", "60", "--max-round", "300ms"])
        .args([
            "--long-rounds",
            "0",
            "--json",
            "--dir",
            scratch.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let outcome: serde_json::Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}{stderr}"));
    assert_eq!(outcome["kills"], 60, "{outcome}");
    assert!(
        outcome["acknowledged"].as_u64().unwrap() >= 1000,
        "{outcome}"
    );
    assert_eq!(
        (&outcome["lost"], &outcome["doubled"]),
        (&0.into(), &0.into()),
        "{outcome}"
    );
    assert!(outcome["segments"].as_u64().unwrap() > 0, "{outcome}");
    assert_eq!(out.status.code(), Some(0), "{outcome}");
}

#[test]
fn group_describe_digest_says_what_it_waits_for() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "");
    ingest(&server, "open", 0, 1);
    // The digest picks the events up within moments; it commits nothing until a seal.
    let deadline = Instant::now() + Duration::from_secs(20);
    let out = loop {
        let (code, out, err) = eddy_in(dir.path(), &["group", "describe", "digest"]);
        if code == Some(0) && out.contains("Waiting for work in progress") {
            break out;
        }
        assert!(Instant::now() < deadline, "{out}{err}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        out.contains("not stuck") && out.contains("segment_age") && out.contains("open: "),
        "{out}"
    );
    server.stop();
}
