//! Several `eddy serve` nodes on loopback sharing one Kafka-protocol broker: events ingested
//! through any node are digested exactly once across the digest nodes, a SIGKILLed node's
//! partitions move to the others without loss or doubles, a restarted node rejoins, and a
//! broker reset is recognised.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{post, Server, NDJSON, TOKEN};
use eddy_kafka::testing::Broker;

/// Node `name` of the cluster: every role, the repository `main` in 6 partitions on the broker.
fn node(dir: &Path, broker: &Broker, name: &str) -> Server {
    node_with(dir, broker, &format!("node = {name:?}"))
}

/// A node with `cluster` settings added.
fn node_with(dir: &Path, broker: &Broker, cluster: &str) -> Server {
    common::kafka_node(dir, broker, 6, &format!("[cluster]\n{cluster}"))
}

/// Posts events `from..to` (`{"n": i}`) through `server`; true if acknowledged.
fn send(server: &Server, from: i64, to: i64) -> bool {
    let body: String = (from..to)
        .map(|n| format!("{{\"n\":{n},\"message\":\"event {n}\"}}\n"))
        .collect();
    let (status, answer) = post(
        server,
        "/api/v1/ingest/main",
        &[("Authorization", &format!("Bearer {TOKEN}")), NDJSON],
        body.as_bytes(),
    );
    assert!(status == 200 || status >= 500, "{status}: {answer}");
    status == 200
}

/// Every `n` each node's own store holds (its share of the partitions), by node.
fn held(nodes: &[&Server]) -> Vec<BTreeMap<i64, u64>> {
    nodes
        .iter()
        .map(|server| {
            let query = serde_json::json!({
                "query": "groupBy(n, function=count(), limit=1000000)",
                "start": "1970-01-01T00:00:00Z",
                "end": "2200-01-01T00:00:00Z",
            });
            let (status, answer) = post(
                server,
                "/api/v1/repositories/main/query",
                &[
                    ("Authorization", &format!("Bearer {TOKEN}")),
                    ("Content-Type", "application/json"),
                ],
                query.to_string().as_bytes(),
            );
            assert_eq!(status, 200, "{answer}");
            answer["rows"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    let n = r["n"].as_i64().or_else(|| r["n"].as_str()?.parse().ok());
                    (n.unwrap(), r["_count"].as_u64().unwrap())
                })
                .collect()
        })
        .collect()
}

/// Waits until the nodes together hold every event of `acked` (each once), failing with what
/// is missing or doubled after 120 s.
fn wait_until_held_once(nodes: &[&Server], acked: &[i64]) -> Vec<BTreeMap<i64, u64>> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let shares = held(nodes);
        let mut all: BTreeMap<i64, u64> = BTreeMap::new();
        for share in &shares {
            for (n, c) in share {
                *all.entry(*n).or_default() += c;
            }
        }
        let missing: Vec<_> = acked.iter().filter(|n| !all.contains_key(n)).collect();
        let doubled: Vec<_> = all.iter().filter(|(_, c)| **c > 1).collect();
        if missing.is_empty() && doubled.is_empty() {
            return shares;
        }
        assert!(
            Instant::now() < deadline,
            "after 120 s: {} of {} acknowledged events missing (first {:?}), {} doubled (first {:?})",
            missing.len(),
            acked.len(),
            missing.first(),
            doubled.len(),
            doubled.first()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn three_nodes_on_one_broker_digest_each_event_once_and_a_killed_node_loses_nothing() {
    let broker = Broker::start();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = node(dirs[0].path(), &broker, "a");
    let b = node(dirs[1].path(), &broker, "b");
    let mut c = node(dirs[2].path(), &broker, "c");

    // Through every node in turn.
    let mut acked = Vec::new();
    for (i, server) in [&a, &b, &c].iter().cycle().take(30).enumerate() {
        let from = i as i64 * 100;
        assert!(send(server, from, from + 100));
        acked.extend(from..from + 100);
    }
    let shares = wait_until_held_once(&[&a, &b, &c], &acked);
    // The group shared the partitions: more than one node digests.
    let digesting = shares.iter().filter(|s| !s.is_empty()).count();
    assert!(
        digesting >= 2,
        "only {digesting} node digests: {:?}",
        shares.iter().map(BTreeMap::len).collect::<Vec<_>>()
    );

    // SIGKILL a digest node, keep ingesting through the others: its partitions move.
    c.kill();
    for (i, server) in [&a, &b].iter().cycle().take(20).enumerate() {
        let from = 10_000 + i as i64 * 100;
        assert!(send(server, from, from + 100));
        acked.extend(from..from + 100);
    }
    // Segments seal after an hour, so the killed node had sealed nothing: its partitions' events
    // are all re-digested by the survivors from the committed offsets.
    wait_until_held_once(&[&a, &b], &acked);
    // Restarted, it rejoins the group and takes its share again. Joining is a rebalance that
    // may finish after a round of events is digested by the others, so rounds go on until the
    // restarted node holds some of them.
    c = node(dirs[2].path(), &broker, "c");
    let deadline = Instant::now() + Duration::from_secs(120);
    for round in 0.. {
        for (i, server) in [&a, &b, &c].iter().cycle().take(9).enumerate() {
            let from = 20_000 + (round * 9 + i as i64) * 100;
            assert!(send(server, from, from + 100));
            acked.extend(from..from + 100);
        }
        let shares = wait_until_held_once(&[&a, &b, &c], &acked);
        if shares[2].keys().any(|n| *n >= 20_000) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after 120 s the restarted node digests none of the new events"
        );
        std::thread::sleep(Duration::from_secs(1));
    }

    // A query node that digests nothing, and is told of no peer, finds the digest nodes in
    // the cluster's directory (the restarted node under its new address) and answers for the
    // whole cluster, fanned out.
    let query_dir = tempfile::tempdir().unwrap();
    let q = node_with(
        query_dir.path(),
        &broker,
        &format!("node = \"q\"\nroles = [\"query\"]\ntoken = \"{TOKEN}\""),
    );
    let (status, listed) = common::get(
        &q,
        "/api/v1/cluster/nodes",
        &[("Authorization", &format!("Bearer {TOKEN}"))],
    );
    assert_eq!(status, 200, "{listed}");
    let known: BTreeMap<String, String> = listed["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["node"].as_str().unwrap().to_string(),
                n["url"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected: BTreeMap<String, String> = [("a", &a), ("b", &b), ("c", &c)]
        .iter()
        .map(|(name, s)| (name.to_string(), s.url.trim_end_matches('/').to_string()))
        .collect();
    assert_eq!(known, expected, "{listed}");
    let (status, answer) = post(
        &q,
        "/api/v1/repositories/main/query",
        &[
            ("Authorization", &format!("Bearer {TOKEN}")),
            ("Content-Type", "application/json"),
        ],
        serde_json::json!({"query": "count()", "start": "1970-01-01T00:00:00Z", "end": "2200-01-01T00:00:00Z"})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["complete"], true, "{answer}");
    assert_eq!(answer["rows"][0]["_count"], acked.len(), "{answer}");
    assert_eq!(answer["nodes"].as_array().unwrap().len(), 4, "{answer}");
}
