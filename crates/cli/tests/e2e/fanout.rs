//! Queries across nodes, with real processes: three `eddy serve` nodes on loopback ports, each
//! holding a different share of one event set, and node `a` fanning queries out to the other
//! two (`[cluster] peers`). For every kind of aggregate and for event searches, the fanned-out
//! answer equals that of a single node holding all the events. Then a peer is killed: the
//! answer is marked incomplete and names the missing node.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::path::Path;
use std::process::Command;

use common::{agent, post, wait_for, Server, NDJSON, TOKEN};
use serde_json::{json, Value};

const EVENTS: usize = 600;
const ALL_TIME: (&str, &str) = ("1970-01-01T00:00:00Z", "2200-01-01T00:00:00Z");

/// Event `i`: its own second of time (so every order is the same on every node), numbers
/// that are exact in floating point (so sums and averages merge to the same bits).
fn event(i: usize) -> String {
    format!(
        "{{\"@timestamp\":\"2026-01-01T00:{:02}:{:02}Z\",\"n\":{i},\"host\":\"web-{}\",\"method\":\"{}\",\"status\":{},\"ms\":{}}}\n",
        i / 60,
        i % 60,
        i % 5,
        ["GET", "POST", "PUT"][i % 3],
        200 + (i % 4) * 100,
        (i * 37) % 1000
    )
}

fn start(dir: &Path, cluster: &str) -> Server {
    Server::start(
        dir,
        &format!("[repositories.web]\ntokens = [\"{TOKEN}\"]\n[cluster]\n{cluster}"),
    )
}

/// Ingests the events `which` selects into `server`'s repository `web` and waits until a
/// query counts them all.
fn load(server: &Server, which: impl Fn(usize) -> bool) -> usize {
    let body: String = (0..EVENTS).filter(|&i| which(i)).map(event).collect();
    let n = body.lines().count();
    let (status, answer) = post(
        server,
        "/api/v1/ingest/web",
        &[("Authorization", &format!("Bearer {TOKEN}")), NDJSON],
        body.as_bytes(),
    );
    assert_eq!(status, 200, "{answer}");
    wait_for("the events to be searchable", || {
        let a = query(server, "count()", 200);
        (a["rows"][0]["_count"] == n).then_some(())
    });
    n
}

fn query_as(server: &Server, text: &str, limit: usize, accept: &str) -> (u16, Value) {
    post(
        server,
        "/api/v1/repositories/web/query",
        &[
            ("Authorization", &format!("Bearer {TOKEN}")),
            ("Content-Type", "application/json"),
            ("Accept", accept),
        ],
        json!({ "query": text, "start": ALL_TIME.0, "end": ALL_TIME.1, "limit": limit })
            .to_string()
            .as_bytes(),
    )
}

fn query(server: &Server, text: &str, limit: usize) -> Value {
    let (status, answer) = query_as(server, text, limit, "application/json");
    assert_eq!(status, 200, "{text}: {answer}");
    answer
}

const QUERIES: &[&str] = &[
    "count()",
    "groupBy(host, function=[count(), sum(ms), avg(ms), min(ms), max(ms)])",
    "groupBy(host, function=[countDistinct(ms), percentile(ms, percentiles=[50, 95, 99])])",
    "groupBy(method, function=[first(ms), last(ms), boxplot(ms)])",
    "countDistinct(n)",
    "timechart(span=1m, function=count())",
    "timechart(span=1m, series=method, function=avg(ms))",
    "bucket(span=2m, field=host, function=max(ms))",
    "histogram(ms, buckets=10)",
    "top(host)",
    "status>=400 | groupBy([host, method], function=count()) | sort(_count, order=asc) | head(4)",
    "sort(ms, limit=15)",
    "head(7)",
    "tail(7)",
    "status=500",
    "status=500 | table([n, host, ms], limit=20)",
    "method=GET ms>500 | select([n, ms])",
];

#[test]
fn fanned_out_answers_equal_one_node_holding_every_event_and_a_dead_peer_is_named() {
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    // The reference: one node with every event.
    let single = start(dirs[0].path(), "");
    assert_eq!(load(&single, |_| true), EVENTS);
    let b = start(dirs[1].path(), "node = \"b\"\n");
    let c = start(dirs[2].path(), "node = \"c\"\n");
    let a = start(
        dirs[3].path(),
        &format!(
            "node = \"a\"\npeers = [{:?}, {:?}]\ntoken = \"{TOKEN}\"\npeer_timeout = \"60s\"\n",
            b.url, c.url
        ),
    );
    // Unequal shares: a holds every third event, b the next, c the rest.
    let shares = [
        load(&b, |i| i % 3 == 1),
        load(&c, |i| i % 3 == 2),
        0, // a's own count is the fanned-out total, loaded below
    ];
    let body: String = (0..EVENTS).filter(|i| i % 3 == 0).map(event).collect();
    post(
        &a,
        "/api/v1/ingest/web",
        &[("Authorization", &format!("Bearer {TOKEN}")), NDJSON],
        body.as_bytes(),
    );
    wait_for("a's fanned-out count to cover every event", || {
        (query(&a, "count()", 200)["rows"][0]["_count"] == EVENTS).then_some(())
    });

    for text in QUERIES {
        let want = query(&single, text, 50);
        let got = query(&a, text, 50);
        assert_eq!(got["columns"], want["columns"], "{text}");
        assert_eq!(got["rows"], want["rows"], "{text}\n{got}\n{want}");
        assert_eq!(got["events"], want["events"], "{text}");
        assert!(!got["rows"].as_array().unwrap().is_empty(), "{text}");
        assert_eq!(got["complete"], true, "{text}");
        let nodes = got["nodes"].as_array().unwrap();
        let names: Vec<&str> = nodes.iter().map(|n| n["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["a", "b", "c"], "{text}");
        assert!(nodes.iter().all(|n| n["ok"] == true), "{text}: {got}");
    }
    let nodes = query(&a, "count()", 200)["nodes"].clone();
    assert_eq!(nodes[1]["events_scanned"], shares[0]);
    assert_eq!(nodes[2]["events_scanned"], shares[1]);
    assert_eq!(nodes[0]["events_scanned"], EVENTS - shares[0] - shares[1]);

    // NDJSON and CSV carry the same answer; NDJSON's last line says who answered.
    let (status, lines) = query_as(&a, "top(host)", 50, NDJSON.1);
    assert_eq!(status, 200);
    let lines: Vec<Value> = lines
        .as_str()
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let rows: Vec<&Value> = lines.iter().filter_map(|l| l.get("row")).collect();
    assert_eq!(rows.len(), 5);
    let done = &lines.last().unwrap()["done"];
    assert_eq!(done["complete"], true, "{done}");
    assert_eq!(done["nodes"].as_array().unwrap().len(), 3);

    // One peer dies: the answer still comes, marked incomplete, naming the node it lacks.
    let c_url = c.url.clone();
    c.kill();
    let got = query(&a, "count()", 200);
    assert_eq!(got["rows"][0]["_count"], EVENTS - shares[1], "{got}");
    assert_eq!(got["complete"], false, "{got}");
    let dead = &got["nodes"][2];
    assert_eq!(dead["ok"], false, "{got}");
    assert_eq!(dead["name"], c_url.as_str(), "{got}");
    assert!(
        dead["error"].as_str().unwrap().starts_with("no answer"),
        "{got}"
    );
    let warning = got["warnings"][0].as_str().unwrap();
    assert!(
        warning.starts_with("incomplete answer") && warning.contains(&c_url),
        "{got}"
    );
    // The client: the answer printed, the warning on stderr, and exit code 3.
    let out = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["search", "count()", "--url", &a.url, "--repository", "web"])
        .args(["--token", TOKEN, "--start", ALL_TIME.0, "--end", ALL_TIME.1])
        .arg("--json")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["complete"], false);
    assert_eq!(printed["rows"][0]["_count"], EVENTS - shares[1]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("incomplete answer"));
    for s in [single, a, b] {
        s.stop();
    }
}

#[test]
fn the_partial_endpoint_answers_a_node_s_unfinished_state_and_refuses_bad_requests() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), "node = \"solo\"\n");
    load(&node, |i| i < 10);
    let ask = |body: &str| {
        agent()
            .post(format!(
                "{}/api/v1/repositories/web/query/partial",
                node.url
            ))
            .header("Authorization", &format!("Bearer {TOKEN}"))
            .header("Content-Type", "application/json")
            .send(body.as_bytes())
            .unwrap()
    };
    let mut resp =
        ask(&json!({ "query": "count()", "start": 0, "end": i64::MAX, "limit": 10 }).to_string());
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["eddy-node"], "solo");
    assert_eq!(
        resp.headers()["content-type"],
        "application/vnd.eddy.partial"
    );
    let bytes = resp.body_mut().read_to_vec().unwrap();
    let program = eddy_query::prepare("count()", 10).unwrap().program;
    let partial = eddy_query::Partial::decode(&bytes, &program).unwrap();
    assert_eq!(partial.progress.events_scanned, 10);
    let answer = partial.into_answer(&program);
    assert_eq!(answer.rows[0]["_count"], eddy_event::Value::Int(10));
    // Relative times are the query node's business: a peer takes nanoseconds only.
    for (body, says) in [
        (
            json!({ "query": "count()", "start": "1h", "end": 0, "limit": 10 }),
            "not a partial query request",
        ),
        (
            json!({ "query": "count()", "start": 5, "end": 1, "limit": 10 }),
            "time range is empty",
        ),
        (
            json!({ "query": "count()", "start": 0, "end": 1, "limit": 0 }),
            "limit",
        ),
        (
            json!({ "query": "cuont()", "start": 0, "end": 1, "limit": 10 }),
            "cuont",
        ),
    ] {
        let mut resp = ask(&body.to_string());
        assert_eq!(resp.status(), 400, "{body}");
        let text = resp.body_mut().read_to_string().unwrap();
        assert!(text.contains(says), "{body}: {text}");
    }
    node.stop();
}

#[test]
fn a_peer_that_hangs_or_answers_something_else_is_left_out_and_named() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let b = start(dirs[0].path(), "node = \"b\"\n");
    load(&b, |i| i < 30);
    // Accepts connections (the kernel's backlog) and never answers.
    let hanging = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hanging_url = format!("http://{}", hanging.local_addr().unwrap());
    // Answers every POST with 200 "ok": not a partial answer.
    let (other_url, _) = common::receiver();
    let a = start(
        dirs[1].path(),
        &format!(
            "node = \"a\"\npeers = [{hanging_url:?}, {other_url:?}, {:?}]\ntoken = \"{TOKEN}\"\npeer_timeout = \"1s\"\n",
            b.url
        ),
    );
    let got = query(&a, "count()", 200);
    assert_eq!(got["rows"][0]["_count"], 30, "{got}");
    assert_eq!(got["complete"], false, "{got}");
    let nodes = got["nodes"].as_array().unwrap();
    let ok: Vec<bool> = nodes.iter().map(|n| n["ok"].as_bool().unwrap()).collect();
    assert_eq!(ok, [true, false, false, true], "{got}");
    assert_eq!(nodes[1]["name"], hanging_url.as_str());
    assert!(
        nodes[1]["error"].as_str().unwrap().contains("peer timeout"),
        "{got}"
    );
    assert!(
        nodes[2]["error"]
            .as_str()
            .unwrap()
            .contains("not a partial answer"),
        "{got}"
    );
    let warning = got["warnings"][0].as_str().unwrap();
    assert!(
        warning.contains("2 of 4 nodes")
            && warning.contains(&hanging_url)
            && warning.contains(&other_url),
        "{got}"
    );
    drop(hanging);
    a.stop();
    b.stop();
}
