//! Damaged bus files through the real binary: eddy starts and serves around damage, the digest
//! says what it could not read, `eddy topic verify` names the damage and `eddy topic repair`
//! cuts it out; a bus tail cut below what the digest committed never makes eddy reuse offsets,
//! so events acknowledged after the restart are all stored.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{get, post, Server, NDJSON, TOKEN};
use eddy_log::{Log, PartitionChoice, Record, TopicConfig};

fn eddy(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(args)
        .args(["--data-dir", dir.join("data").to_str().unwrap()])
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// A repository of one partition whose store seals small segments, so the digest commits often.
fn repository(name: &str) -> String {
    format!(
        "[repositories.{name}]\npartitions = 1\nsegment_size = \"4KiB\"\nblock_size = \"4KiB\"\n"
    )
}

/// Creates the repository's bus topic beforehand with small bus segments, so there are sealed
/// ones to damage (the repository compresses them when it opens: 4 KiB keeps several of lz4's
/// batches).
fn small_bus_topic(dir: &Path, repository: &str) {
    let (code, out) = eddy(
        dir,
        &[
            "topic",
            "create",
            &format!("repo.{repository}"),
            "--segment-bytes",
            "4KiB",
            "--retain-for-group",
            "digest",
        ],
    );
    assert_eq!(code, Some(0), "{out}");
}

fn send(server: &Server, repository: &str, ns: std::ops::Range<i64>) {
    for chunk in ns.collect::<Vec<_>>().chunks(100) {
        let body: String = chunk
            .iter()
            .map(|n| format!("{{\"n\":{n},\"msg\":\"event number {n} of the test\"}}\n"))
            .collect();
        let (status, answer) = post(
            server,
            &format!("/api/v1/ingest/{repository}"),
            &[NDJSON],
            body.as_bytes(),
        );
        assert_eq!(status, 200, "{answer}");
    }
}

/// Every `n` a repository's events hold, with how often, once at least `count` are visible.
fn visible(server: &Server, repository: &str, count: usize) -> HashMap<i64, usize> {
    visible_when(server, repository, |seen| {
        seen.values().sum::<usize>() >= count
    })
}

/// Every `n` a repository's events hold, with how often, once `done` says so (or a minute).
fn visible_when(
    server: &Server,
    repository: &str,
    done: impl Fn(&HashMap<i64, usize>) -> bool,
) -> HashMap<i64, usize> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = get(
            server,
            &format!("/api/v1/repositories/{repository}/events?limit=1000000"),
            &[("Authorization", &format!("Bearer {TOKEN}"))],
        );
        assert_eq!(status, 200, "{body}");
        let mut seen = HashMap::new();
        for e in body["events"].as_array().unwrap() {
            *seen.entry(e["fields"]["n"].as_i64().unwrap()).or_insert(0) += 1;
        }
        if done(&seen) || Instant::now() > deadline {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn digest_committed(dir: &Path, repository: &str) -> u64 {
    let file = dir.join("data/groups/digest.json");
    let Ok(bytes) = std::fs::read(file) else {
        return 0;
    };
    let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    json["offsets"][format!("repo.{repository}")]["0"]
        .as_u64()
        .unwrap_or(0)
}

fn wait_for_commit(dir: &Path, repository: &str, at_least: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let committed = digest_committed(dir, repository);
        if committed >= at_least || Instant::now() > deadline {
            return committed;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn bus_segments(dir: &Path, repository: &str) -> Vec<PathBuf> {
    let pdir = dir.join(format!("data/topics/repo.{repository}/0"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(pdir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    files.sort();
    files
}

fn flip_a_byte_in_the_middle(file: &Path) {
    let mut bytes = std::fs::read(file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    std::fs::write(file, bytes).unwrap();
}

#[test]
fn events_acknowledged_after_a_bus_tail_cut_below_the_digest_commit_are_all_stored() {
    let dir = tempfile::tempdir().unwrap();
    let config = repository("cut");
    let server = Server::start(dir.path(), &config);
    send(&server, "cut", 0..500);
    let committed = wait_for_commit(dir.path(), "cut", 420);
    assert!(committed >= 420, "the digest committed only {committed}");
    server.stop();

    // The tail of the bus goes missing (a bad disk, or a power cut under `--durability
    // interval`), and the writer's published mark with it: the partition now ends below the
    // offset the digest committed.
    let active = bus_segments(dir.path(), "cut").pop().unwrap();
    let bytes = std::fs::read(&active).unwrap();
    std::fs::write(&active, &bytes[..bytes.len() - 100]).unwrap();
    std::fs::remove_file(active.parent().unwrap().join("committed")).unwrap();

    let server = Server::start(dir.path(), &config);
    send(&server, "cut", 1000..1300);
    let seen = visible_when(&server, "cut", |seen| {
        (1000..1300).all(|n| seen.contains_key(&n))
    });
    let lost_new: Vec<_> = (1000..1300).filter(|n| !seen.contains_key(n)).collect();
    assert!(
        lost_new.is_empty(),
        "{} events acknowledged after the restart are missing, e.g. {:?}",
        lost_new.len(),
        &lost_new[..lost_new.len().min(5)]
    );
    let lost_old: Vec<_> = (0..400).filter(|n| !seen.contains_key(n)).collect();
    assert!(lost_old.is_empty(), "older events lost: {lost_old:?}");
    let doubled: Vec<_> = seen.iter().filter(|(_, &c)| c > 1).collect();
    assert!(doubled.is_empty(), "events seen twice: {doubled:?}");
    server.stop();
}

#[test]
fn a_damaged_sealed_bus_segment_is_served_around_verified_and_repaired() {
    let dir = tempfile::tempdir().unwrap();
    small_bus_topic(dir.path(), "dmg");
    // lz4's larger batches fill more of the small segments than the default zstd's.
    let config = format!("{}bus_compression = \"lz4\"\n", repository("dmg"));
    let server = Server::start(dir.path(), &config);
    send(&server, "dmg", 0..1000);
    wait_for_commit(dir.path(), "dmg", 900);
    server.stop();
    let segments = bus_segments(dir.path(), "dmg");
    assert!(segments.len() >= 3, "{segments:?}");
    flip_a_byte_in_the_middle(&segments[1]);

    // eddy starts (its de-duplication window reads the damaged stretch and skips it), serves
    // every event (the store already held the damaged records) and every other repository.
    let server = Server::start(dir.path(), &config);
    let seen = visible(&server, "dmg", 1000);
    assert!((0..1000).all(|n| seen.get(&n) == Some(&1)));
    assert!(server.metric("eddy_bus_damaged_stretches{repository=\"dmg\"}") >= 1.0);
    assert_eq!(
        server.metric("eddy_bus_digest_unreadable_records{repository=\"dmg\"}"),
        0.0,
        "the digest had sealed the damaged records before: nothing to skip"
    );
    send(&server, "open", 0..100);
    assert_eq!(visible(&server, "open", 100).len(), 100);

    // Beside the running server, verify names the file and the offsets lost.
    let (code, out) = eddy(dir.path(), &["topic", "verify", "repo.dmg"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(segments[1].to_str().unwrap()), "{out}");
    assert!(
        out.contains("offsets") && out.contains("eddy topic repair"),
        "{out}"
    );
    let (code, out) = eddy(dir.path(), &["topic", "repair", "repo.dmg"]);
    assert_eq!(code, Some(1), "repair needs the server stopped: {out}");
    assert!(out.contains("in use"), "{out}");
    server.stop();

    let (code, out) = eddy(dir.path(), &["topic", "repair", "repo.dmg", "--json"]);
    assert_eq!(code, Some(0), "{out}");
    let report: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(report["repairs"].as_array().unwrap().len(), 1, "{out}");
    let (code, out) = eddy(dir.path(), &["topic", "verify", "repo.dmg"]);
    assert_eq!(code, Some(0), "{out}");
    let server = Server::start(dir.path(), &config);
    assert_eq!(
        server.metric("eddy_bus_damaged_stretches{repository=\"dmg\"}"),
        0.0
    );
    let seen = visible(&server, "dmg", 1000);
    assert!((0..1000).all(|n| seen.get(&n) == Some(&1)));
    server.stop();
}

#[test]
fn the_digest_skips_damage_it_has_not_sealed_and_counts_what_it_could_not_read() {
    let dir = tempfile::tempdir().unwrap();
    // Events written to the bus while no server runs, so the digest has not seen them yet.
    {
        let log = Log::open(dir.path().join("data")).unwrap();
        let topic = log
            .create_topic(
                "repo.late",
                TopicConfig {
                    segment_bytes: 16 << 10,
                    retain_for_groups: vec!["digest".into()],
                    ..TopicConfig::default()
                },
            )
            .unwrap();
        for chunk in (0..1000i64).collect::<Vec<_>>().chunks(50) {
            let records = chunk
                .iter()
                .map(|&n| {
                    let mut e = eddy_event::Event::new(eddy_log::now_ns());
                    e.fields.insert("n".into(), eddy_event::Value::Int(n));
                    e.raw = Some(format!("event number {n} of the test"));
                    Record::new(eddy_event::codec::encode(&e))
                })
                .collect();
            topic
                .produce(records, PartitionChoice::Explicit(0))
                .unwrap();
        }
    }
    let segments = bus_segments(dir.path(), "late");
    assert!(segments.len() >= 3, "{segments:?}");
    flip_a_byte_in_the_middle(&segments[1]);

    let config = repository("late");
    let server = Server::start(dir.path(), &config);
    let unreadable = server.wait_for_metric(
        "eddy_bus_digest_unreadable_records{repository=\"late\"}",
        1.0,
    );
    assert_eq!(unreadable, 50.0, "one batch of 50 records");
    let seen = visible(&server, "late", 950);
    assert_eq!(seen.len(), 950);
    assert!(seen.values().all(|&c| c == 1));
    // New events after the damage are stored as usual.
    send(&server, "late", 5000..5100);
    assert_eq!(visible(&server, "late", 1050).len(), 1050);
    server.stop();
}

/// Where each batch of a bus segment file starts, walking the headers (batch length at 8..12).
fn batch_positions(bytes: &[u8]) -> Vec<usize> {
    let mut at = 0;
    let mut out = Vec::new();
    while at + eddy_log::batch::HEADER_LEN <= bytes.len() {
        out.push(at);
        at += u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
    }
    out
}

/// Replaces the compressed records of the `n`th batch of `file` with bytes that do not
/// decompress, under a CRC made to match: only decompression can tell.
fn garble_compressed_batch(file: &Path, n: usize) {
    let mut bytes = std::fs::read(file).unwrap();
    let at = batch_positions(&bytes)[n];
    assert_ne!(
        bytes[at + 17] & 0b11,
        0,
        "the repository's batches are compressed"
    );
    let len = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
    for b in &mut bytes[at + eddy_log::batch::HEADER_LEN..at + len] {
        *b = 0xff;
    }
    let crc = crc32c::crc32c(&bytes[at + 16..at + len]);
    bytes[at + 12..at + 16].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(file, bytes).unwrap();
}

#[test]
fn a_corrupt_compressed_batch_is_named_by_verify_and_the_digest_skips_it_and_stores_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    // The digest is off at first, so the bus holds every batch (one per request of 100 events,
    // compressed by default) when one of them is damaged in the active segment.
    let held = "[repositories.lz]\npartitions = 1\ndigest = false\n";
    let server = Server::start(dir.path(), held);
    send(&server, "lz", 0..1000);
    server.stop();
    let segments = bus_segments(dir.path(), "lz");
    garble_compressed_batch(segments.last().unwrap(), 3);

    let (code, out) = eddy(dir.path(), &["topic", "verify", "repo.lz"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("topic repo.lz partition 0 offsets 300..400"),
        "{out}"
    );
    assert!(out.contains("decompress"), "names the cause: {out}");
    let (code, out) = eddy(dir.path(), &["topic", "verify", "repo.lz", "--json"]);
    assert_eq!(code, Some(1), "{out}");
    let report: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    let problem = &report["problems"][0];
    assert_eq!(report["topic"], "repo.lz", "{out}");
    assert_eq!(problem["partition"], 0, "{out}");
    assert_eq!(problem["damage"]["offsets"]["start"], 300, "{out}");
    assert_eq!(problem["damage"]["offsets"]["end"], 400, "{out}");

    // The digest, now on, counts the batch it cannot read and stores the batches after it.
    let server = Server::start(dir.path(), "[repositories.lz]\npartitions = 1\n");
    let unreadable =
        server.wait_for_metric("eddy_bus_digest_unreadable_records{repository=\"lz\"}", 1.0);
    assert_eq!(unreadable, 100.0, "one batch of 100 records");
    let seen = visible(&server, "lz", 900);
    let want: Vec<i64> = (0..300).chain(400..1000).collect();
    let mut got: Vec<i64> = seen.keys().copied().collect();
    got.sort_unstable();
    assert_eq!(got, want);
    assert!(seen.values().all(|&c| c == 1), "no event twice");
    // And ingest goes on as usual.
    send(&server, "lz", 5000..5100);
    assert_eq!(visible(&server, "lz", 1000).len(), 1000);
    server.stop();
}
