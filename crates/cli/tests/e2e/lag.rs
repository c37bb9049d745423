//! Humio's lag rule, end to end on the embedded bus: one partition's digest is slowed by the
//! bus's fault hook (`eddy_log::fault`, compiled into the binary these tests run, never into a
//! release: while its flag file is in the partition's directory, each bus read pauses and
//! gives one record). The data source on that partition gets spread over more partitions, its
//! new records land on several, `/metrics` shows the lag, and once the digest catches up every
//! acknowledged event is counted once and `groupBy(#host)` gives one row per source.
//!
//! On the real Kafka test broker (`eddy_kafka::testing::Broker`), an ingest-only node learns
//! the lag of partitions another node digests from the progress that node publishes, and
//! spreads a source when that digest node is gone.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{post, wait_for, wait_for_or, Server, NDJSON, TOKEN};
use eddy_kafka::testing::Broker;

const PARTITIONS: u32 = 4;
const HOT: &str = "#host=hot";

fn start(dir: &Path) -> Server {
    Server::start_with(
        dir,
        &format!(
            "[http]\nlisten = \"127.0.0.1:0\"\nadmin_tokens = [\"{TOKEN}\"]\n\
             [ingest]\nlag_threshold = \"1s\"\nlag_calm = \"2s\"\n\
             [repositories.main]\npartitions = {PARTITIONS}\ntokens = [\"{TOKEN}\"]\n"
        ),
    )
}

/// The directory of one partition of `main`'s topic.
fn partition_dir(dir: &Path, partition: u32) -> PathBuf {
    dir.join("data/topics/repo.main")
        .join(partition.to_string())
}

/// The events acknowledged so far, by host; each event's `n` is its number among them all.
#[derive(Default)]
struct Sent {
    by_host: BTreeMap<String, u64>,
}

impl Sent {
    fn total(&self) -> u64 {
        self.by_host.values().sum()
    }

    /// Posts `count` events of host `host` and counts them once acknowledged.
    fn send(&mut self, server: &Server, host: &str, count: u64) {
        let first = self.total();
        let body: String = (first..first + count)
            .map(|n| format!("{{\"#host\":\"{host}\",\"n\":{n},\"message\":\"event {n}\"}}\n"))
            .collect();
        let (status, answer) = post(
            server,
            "/api/v1/ingest/main",
            &[("Authorization", &format!("Bearer {TOKEN}")), NDJSON],
            body.as_bytes(),
        );
        assert_eq!(status, 200, "{answer}");
        *self.by_host.entry(host.to_string()).or_default() += count;
    }
}

/// The events of `server`'s `main` by host, from a `groupBy(#host)`.
fn by_host(server: &Server) -> BTreeMap<String, u64> {
    query(server, "groupBy(#host)")["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["#host"].as_str().unwrap().to_string(),
                r["_count"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn query(server: &Server, text: &str) -> serde_json::Value {
    let body = serde_json::json!({
        "query": text,
        "start": "1970-01-01T00:00:00Z",
        "end": "2200-01-01T00:00:00Z",
        "limit": 1000
    });
    let (status, answer) = post(
        server,
        "/api/v1/repositories/main/query",
        &[
            ("Authorization", &format!("Bearer {TOKEN}")),
            ("Content-Type", "application/json"),
        ],
        body.to_string().as_bytes(),
    );
    assert_eq!(status, 200, "{answer}");
    answer
}

/// A gauge of `/metrics` by its name and labels, if present.
fn gauge(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// The end offsets of `main`'s partitions once they hold `records` records in all (the
/// gauges are read once a second).
fn end_offsets(server: &Server, records: u64) -> Vec<f64> {
    wait_for_or(
        &format!("the end offsets to count {records} records"),
        || {
            let metrics = server.metrics();
            let ends: Vec<f64> = (0..PARTITIONS)
                .map(|p| {
                    gauge(
                        &metrics,
                        &format!("eddy_bus_end_offset{{repository=\"main\",partition=\"{p}\"}}"),
                    )
                    .unwrap_or(0.0)
                })
                .collect();
            (ends.iter().sum::<f64>() == records as f64).then_some(ends)
        },
        || server.metrics(),
    )
}

#[test]
fn a_slow_partitions_source_is_spread_and_every_acknowledged_event_is_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let home = eddy_log::partition_for_key(HOT.as_bytes(), PARTITIONS);
    let flag = partition_dir(dir.path(), home).join(eddy_log::fault::SLOW_READS_FLAG);
    std::fs::write(&flag, "50").unwrap();

    let mut sent = Sent::default();
    for i in 0..6 {
        sent.send(&server, &format!("cold-{i}"), 5);
    }
    // The hot source keeps coming while its partition's digest crawls: its lag passes the
    // threshold and the rule spreads it.
    let ways_series = format!("eddy_spread_ways{{repository=\"main\",source=\"{HOT}\"}}");
    let lag_series = format!("eddy_digest_lag_records{{repository=\"main\",partition=\"{home}\"}}");
    let mut lag_seen = 0.0f64;
    let ways = wait_for_or(
        "the hot source to be spread",
        || {
            sent.send(&server, "hot", 20);
            let metrics = server.metrics();
            lag_seen = lag_seen.max(gauge(&metrics, &lag_series).unwrap_or(0.0));
            gauge(&metrics, &ways_series).filter(|&w| w >= 2.0)
        },
        || server.metrics(),
    );
    assert!(ways <= f64::from(PARTITIONS), "{ways}");
    assert!(lag_seen > 0.0, "the slowed partition showed no lag");
    let metrics = server.metrics();
    assert!(
        gauge(
            &metrics,
            &format!("eddy_digest_lag_seconds{{repository=\"main\",partition=\"{home}\"}}")
        )
        .is_some(),
        "{metrics}"
    );
    assert!(
        metrics.contains("eddy_consumer_committed_offset{repository=\"main\",group=\"digest\""),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "eddy_digest_source_latency_seconds{repository=\"main\",source=\"#host=cold-0\"}"
        ),
        "{metrics}"
    );

    // Its new records land on more than its own partition.
    let before = end_offsets(&server, sent.total());
    for _ in 0..10 {
        sent.send(&server, "hot", 20);
    }
    let after = end_offsets(&server, sent.total());
    let grown: Vec<u32> = (0..PARTITIONS)
        .filter(|&p| after[p as usize] > before[p as usize])
        .collect();
    assert!(grown.len() >= 2, "hot records landed only on {grown:?}");
    assert!(grown.contains(&home), "{grown:?}");

    // The digest catches up: every acknowledged event counted once, one row per source.
    std::fs::remove_file(&flag).unwrap();
    let total: u64 = sent.total();
    let counted = wait_for_or(
        "every acknowledged event to be counted",
        || {
            let n = query(&server, "count()")["rows"][0]["_count"].as_u64()?;
            (n >= total).then_some(n)
        },
        || format!("sent {total}"),
    );
    assert_eq!(counted, total);
    let distinct = query(&server, "groupBy(n) | count()")["rows"][0]["_count"].as_u64();
    assert_eq!(distinct, Some(total), "an event counted twice or lost");
    assert_eq!(by_host(&server), sent.by_host);

    // With the lag gone for lag_calm, the spread shrinks back step by step.
    wait_for("the hot source to be on one partition again", || {
        gauge(&server.metrics(), &ways_series)
            .is_none()
            .then_some(())
    });
    server.stop();
}

/// A node of a Kafka cluster with `roles`, the repository `main` in 4 partitions.
fn kafka_node(dir: &Path, broker: &Broker, roles: &str) -> Server {
    common::kafka_node(
        dir,
        broker,
        PARTITIONS,
        &format!("[ingest]\nlag_threshold = \"1s\"\nlag_calm = \"2s\"\n[cluster]\nroles = {roles}"),
    )
}

/// Polls `check` for up to three minutes (the test broker's first group join is slow).
fn wait_long<T>(what: &str, check: impl FnMut() -> Option<T>, seen: impl Fn() -> String) -> T {
    common::wait_for_within(what, Duration::from_secs(180), check, seen)
}

#[test]
fn on_kafka_an_ingest_node_learns_the_digests_published_lag_and_spreads_when_the_digest_is_gone() {
    let broker = Broker::start();
    let (ingest_dir, digest_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ingest = kafka_node(ingest_dir.path(), &broker, "[\"ingest\"]");
    let digest = kafka_node(digest_dir.path(), &broker, "[\"digest\", \"query\"]");
    let home = eddy_log::partition_for_key(HOT.as_bytes(), PARTITIONS);
    let position_series =
        format!("eddy_digest_position{{repository=\"main\",partition=\"{home}\"}}");
    let end_series = format!("eddy_bus_end_offset{{repository=\"main\",partition=\"{home}\"}}");

    let mut sent = Sent::default();
    sent.send(&ingest, "hot", 20);
    sent.send(&ingest, "cold-1", 5);
    // The ingest node digests nothing: it knows the digest's position from the progress topic.
    wait_long(
        "the ingest node to learn the digest's position",
        || {
            let metrics = ingest.metrics();
            let position = gauge(&metrics, &position_series)?;
            (position > 0.0 && Some(position) == gauge(&metrics, &end_series)).then_some(())
        },
        || ingest.metrics(),
    );
    assert!(
        !ingest.metrics().contains("group=\"digest\""),
        "the ingest node runs no digest group"
    );
    wait_long(
        "the digest node to hold the first events",
        || (query(&digest, "count()")["rows"][0]["_count"].as_u64()? == 25).then_some(()),
        String::new,
    );

    // The digest node dies: the ingest node sees its partitions fall behind and spreads.
    digest.kill();
    let ways_series = format!("eddy_spread_ways{{repository=\"main\",source=\"{HOT}\"}}");
    wait_long(
        "the hot source to be spread",
        || {
            sent.send(&ingest, "hot", 20);
            gauge(&ingest.metrics(), &ways_series).filter(|&w| w >= 2.0)
        },
        || ingest.metrics(),
    );
    let before = end_offsets(&ingest, sent.total());
    for _ in 0..10 {
        sent.send(&ingest, "hot", 20);
    }
    let after = end_offsets(&ingest, sent.total());
    let grown = (0..PARTITIONS as usize)
        .filter(|&p| after[p] > before[p])
        .count();
    assert!(grown >= 2, "hot records landed on {grown} partition(s)");

    // Restarted, the digest node digests everything, each event once.
    let digest = kafka_node(digest_dir.path(), &broker, "[\"digest\", \"query\"]");
    let total: u64 = sent.total();
    wait_long(
        "every acknowledged event to be digested",
        || (query(&digest, "count()")["rows"][0]["_count"].as_u64()? >= total).then_some(()),
        || format!("sent {total}"),
    );
    assert_eq!(
        query(&digest, "groupBy(n) | count()")["rows"][0]["_count"].as_u64(),
        Some(total)
    );
    assert_eq!(by_host(&digest), sent.by_host);
}
