//! Queries through the real binary: `POST /api/v1/repositories/{repo}/query` in its three
//! forms, read tokens apart from ingest tokens, and `eddy search` as a user runs it.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{agent, get, post, Server, NDJSON};

const INGEST: &str = "ingest-token-0123456789";
const READ: &str = "read-token-0123456789";
const LOGS: &str = "[repositories.logs]\ntokens = [\"ingest-token-0123456789\"]\nread_tokens = [\"read-token-0123456789\"]\n";

fn query(server: &Server, token: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    post(
        server,
        "/api/v1/repositories/logs/query",
        &[
            ("Authorization", &format!("Bearer {token}")),
            ("Content-Type", "application/json"),
        ],
        body.to_string().as_bytes(),
    )
}

fn search(server: &Server, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args([
            "search",
            "--url",
            &server.url,
            "--repository",
            "logs",
            "--token",
            READ,
        ])
        .args(args)
        .output()
        .unwrap()
}

/// A server holding 300 events in repository `logs`, all visible to queries.
fn loaded(dir: &std::path::Path) -> Server {
    let body: String = (0..300)
        .map(|n| {
            format!(
                "{{\"#host\":\"web-{}\",\"n\":{n},\"method\":\"{}\",\"status\":{},\"msg\":\"request {n} done\"}}\n",
                n % 2,
                ["GET", "POST", "PUT"][n % 3],
                200 + (n % 4) * 100
            )
        })
        .collect();
    holding(dir, &body, 300)
}

/// A server whose repository `logs` holds the `events` NDJSON lines of `body`, all visible to
/// queries over all time.
fn holding(dir: &std::path::Path, body: &str, events: u64) -> Server {
    let server = Server::start(dir, LOGS);
    let (status, answer) = post(
        &server,
        "/api/v1/ingest/logs",
        &[("Authorization", &format!("Bearer {INGEST}")), NDJSON],
        body.as_bytes(),
    );
    assert_eq!(status, 200, "{answer}");
    // Acknowledged events become searchable (work in progress) within moments.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, a) = query(
            &server,
            READ,
            serde_json::json!({ "query": "count()", "start": "1970-01-01T00:00:00Z", "end": "2200-01-01T00:00:00Z" }),
        );
        assert_eq!(status, 200, "{a}");
        if a["rows"][0]["_count"] == events || Instant::now() > deadline {
            assert_eq!(a["rows"][0]["_count"], events, "{a}");
            return server;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn rfc3339_ago(ago: Duration) -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now() - ago).to_string()
}

#[test]
fn string_ids_are_accepted_deduplicated_and_returned_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let server = holding(dir.path(), "{\"@id\":\"my-id-1\",\"m\":\"first\"}\n", 1);
    // A retry with the same id is stored once; another id is another event.
    let (status, answer) = post(
        &server,
        "/api/v1/ingest/logs",
        &[("Authorization", &format!("Bearer {INGEST}")), NDJSON],
        b"{\"@id\":\"my-id-1\",\"m\":\"retry\"}\n{\"@id\":\"order/42#2\",\"m\":\"other\"}\n",
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["duplicates"], 1, "{answer}");
    // Acknowledged events become searchable within moments, not at once.
    let a = common::wait_for("the other event searchable", || {
        let (status, a) = query(
            &server,
            READ,
            serde_json::json!({ "query": "sort(m, order=asc)", "start": "1h" }),
        );
        assert_eq!(status, 200, "{a}");
        (a["rows"].as_array().unwrap().len() >= 2).then_some(a)
    });
    let rows = a["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{a}");
    assert_eq!(rows[0]["m"], "first", "{a}");
    assert_eq!(rows[0]["@id"], "my-id-1", "{a}");
    assert_eq!(rows[1]["@id"], "order/42#2", "{a}");
    // Past the documented length: a 400 naming the field.
    let long = format!("{{\"@id\":\"{}\"}}\n", "x".repeat(257));
    let (status, answer) = post(
        &server,
        "/api/v1/ingest/logs",
        &[("Authorization", &format!("Bearer {INGEST}")), NDJSON],
        long.as_bytes(),
    );
    assert_eq!(status, 400, "{answer}");
    assert!(answer.to_string().contains("256"), "{answer}");
    server.stop();
}

#[test]
fn search_over_a_range_without_data_says_where_the_data_is() {
    let dir = tempfile::tempdir().unwrap();
    let body = "{\"@timestamp\":\"2026-01-05T10:00:00Z\",\"m\":\"error old\"}\n\
                {\"@timestamp\":\"2026-01-06T11:00:00Z\",\"m\":\"error older\"}\n";
    let server = holding(dir.path(), body, 2);
    let out = search(&server, &["error | count()"]);
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("holds no events")
            && stderr.contains("2026-01-05T10:00:00")
            && stderr.contains("2026-01-06T11:00:00"),
        "{stderr}"
    );
    // A range that holds data has no such warning.
    let out = search(
        &server,
        &["error | count()", "--start", "2026-01-01T00:00:00Z"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("holds no events"), "{stderr}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains('2'),
        "{out:?}"
    );
    let (status, a) = query(&server, READ, serde_json::json!({ "query": "count()" }));
    assert_eq!(status, 200, "{a}");
    assert!(a["warnings"].to_string().contains("holds no events"), "{a}");
    server.stop();
}

#[test]
fn client_timestamp_is_the_event_time_and_never_a_second_column() {
    let dir = tempfile::tempdir().unwrap();
    let (older, newer) = (
        rfc3339_ago(Duration::from_secs(7200)),
        rfc3339_ago(Duration::from_secs(3600)),
    );
    // The newer event is sent first, so arrival order would put it wrong.
    let body = format!(
        "{{\"@timestamp\":\"{newer}\",\"m\":\"newer\"}}\n{{\"@timestamp\":\"{older}\",\"m\":\"older\"}}\n"
    );
    let server = holding(dir.path(), &body, 2);
    let (status, a) = query(
        &server,
        READ,
        serde_json::json!({ "query": "sort(@timestamp, order=asc)", "start": "3h" }),
    );
    assert_eq!(status, 200, "{a}");
    let columns: Vec<_> = a["columns"].as_array().unwrap().iter().collect();
    assert_eq!(
        columns.iter().filter(|c| **c == "@timestamp").count(),
        1,
        "{a}"
    );
    assert_eq!(a["rows"][0]["m"], "older", "{a}");
    assert_eq!(a["rows"][1]["m"], "newer", "{a}");
    let (status, a) = query(
        &server,
        READ,
        serde_json::json!({ "query": "m=older | eval(t=@timestamp + 0) | table(t)", "start": "3h" }),
    );
    assert_eq!(status, 200, "{a}");
    assert!(a["rows"][0]["t"].is_number(), "{a}");
    server.stop();
}

#[test]
fn the_query_endpoint_answers_json_ndjson_and_csv() {
    let dir = tempfile::tempdir().unwrap();
    let server = loaded(dir.path());

    let (status, a) = query(
        &server,
        READ,
        serde_json::json!({ "query": "status>=400 | groupBy(method, function=[count(), max(n)])", "start": "1h", "end": "now" }),
    );
    assert_eq!(status, 200, "{a}");
    assert_eq!(
        a["columns"],
        serde_json::json!(["method", "_count", "_max"])
    );
    let total: i64 = a["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["_count"].as_i64().unwrap())
        .sum();
    assert_eq!(total, 150);

    let (status, a) = query(
        &server,
        READ,
        serde_json::json!({ "query": "msg=\"request 42 done\"" }),
    );
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["events"], true);
    assert_eq!(a["rows"].as_array().unwrap().len(), 1);
    assert_eq!(a["rows"][0]["#host"], "web-0");

    // NDJSON: columns, rows, then the totals.
    let ndjson = |body: serde_json::Value| {
        agent()
            .post(format!("{}/api/v1/repositories/logs/query", server.url))
            .header("Authorization", &format!("Bearer {READ}"))
            .header("Accept", "application/x-ndjson")
            .config()
            .http_status_as_error(false)
            .build()
            .send(body.to_string().as_bytes())
            .unwrap()
    };
    let mut resp = ndjson(serde_json::json!({ "query": "top(method)" }));
    assert_eq!(resp.status().as_u16(), 200);
    let text = resp.body_mut().read_to_string().unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["columns"] == serde_json::json!(["method", "_count"])),
        "{text}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.get("row").is_some()).count(),
        3,
        "{text}"
    );
    assert!(lines.last().unwrap().get("done").is_some(), "{text}");
    // Partial answers, if the query lasts long enough for one, have the answer's form.
    for partial in lines.iter().filter_map(|l| l.get("partial")) {
        assert_eq!(partial["columns"], serde_json::json!(["method", "_count"]));
    }
    let resp = ndjson(serde_json::json!({ "query": "count()", "partial_every": "10ms" }));
    assert_eq!(resp.status().as_u16(), 200);
    let mut resp = ndjson(serde_json::json!({ "query": "count()", "partial_every": "soon" }));
    assert_eq!(resp.status().as_u16(), 400);
    let text = resp.body_mut().read_to_string().unwrap();
    assert!(text.contains("partial_every"), "{text}");

    // CSV.
    let mut resp = agent()
        .post(format!("{}/api/v1/repositories/logs/query", server.url))
        .header("Authorization", &format!("Bearer {READ}"))
        .header("Accept", "text/csv")
        .send(
            serde_json::json!({ "query": "n<2 | select([n, method]) | sort(n, order=asc)" })
                .to_string()
                .as_bytes(),
        )
        .unwrap();
    let text = resp.body_mut().read_to_string().unwrap();
    assert_eq!(text, "n,method\r\n0,GET\r\n1,POST\r\n");

    // A bad query: 400 with the position and the offending text underlined.
    let (status, a) = query(
        &server,
        READ,
        serde_json::json!({ "query": "error | cuont()" }),
    );
    assert_eq!(status, 400);
    assert_eq!(
        (a["line"].as_u64(), a["column"].as_u64()),
        (Some(1), Some(9))
    );
    assert_eq!(a["hint"], "did you mean count?");
    assert!(a["rendered"].as_str().unwrap().contains("^^^^^"), "{a}");
    let (status, a) = query(
        &server,
        READ,
        serde_json::json!({ "query": "count()", "start": "yesterday" }),
    );
    assert_eq!(status, 400);
    assert!(a["error"].as_str().unwrap().starts_with("start:"), "{a}");

    // Ingest tokens do not read; no token does not read.
    assert_eq!(
        query(&server, INGEST, serde_json::json!({ "query": "count()" })).0,
        403
    );
    let (status, _) = post(
        &server,
        "/api/v1/repositories/logs/query",
        &[],
        br#"{"query": "count()"}"#,
    );
    assert_eq!(status, 401);
    server.stop();
}

#[test]
fn eddy_search_prints_tables_json_and_csv() {
    let dir = tempfile::tempdir().unwrap();
    let server = loaded(dir.path());

    let out = search(&server, &["groupBy(method) | sort(method, order=asc)"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8(out.stdout.clone()).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(
        lines[0].starts_with("method") && lines[0].contains("_count"),
        "{table}"
    );
    assert!(
        lines[1].starts_with("GET") && lines[1].ends_with("100"),
        "{table}"
    );

    let out = search(&server, &["#host=web-1 | count()", "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["rows"][0]["_count"], 150);
    assert!(
        v["progress"]["events_scanned"].as_u64().unwrap() >= 150,
        "{v}"
    );

    let out = search(&server, &["n=7", "--csv"]);
    assert!(out.status.success());
    let csv = String::from_utf8(out.stdout).unwrap();
    assert!(csv.starts_with("@timestamp,@rawstring,#host,"), "{csv}");
    assert_eq!(csv.lines().count(), 2, "{csv}");

    let out = search(&server, &["status>=500 | cuont()"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("line 1, column 15: unknown function cuont"),
        "{err}"
    );
    assert!(err.contains("did you mean count?"), "{err}");
    server.stop();
}

#[test]
fn fields_lists_what_the_events_hold_with_types_counts_and_top_values() {
    let dir = tempfile::tempdir().unwrap();
    let server = loaded(dir.path());
    let path = "/api/v1/repositories/logs/fields?start=1h";
    // Reading fields needs what reading events needs.
    let (status, _) = get(
        &server,
        path,
        &[("Authorization", &format!("Bearer {INGEST}"))],
    );
    assert_eq!(status, 403);
    let (status, a) = get(
        &server,
        path,
        &[("Authorization", &format!("Bearer {READ}"))],
    );
    assert_eq!(status, 200, "{a}");
    // The 300 events are in work in progress: nothing is sealed yet, and all are counted.
    assert_eq!(
        (a["events"].as_u64(), a["sampled"].as_bool()),
        (Some(300), Some(false)),
        "{a}"
    );
    let field = |name: &str| {
        a["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {a}"))
            .clone()
    };
    let method = field("method");
    assert_eq!(method["events"], 300);
    assert_eq!(method["types"], serde_json::json!({ "string": 300 }));
    assert_eq!(method["distinct"], 3);
    assert_eq!(
        method["top"][0],
        serde_json::json!({ "value": "GET", "count": 100 })
    );
    let status_field = field("status");
    assert_eq!(status_field["types"], serde_json::json!({ "int": 300 }));
    assert_eq!(status_field["top"][0]["count"], 75);
    // 300 distinct texts: too many to list.
    assert_eq!(field("msg")["distinct"], serde_json::Value::Null);
    assert_eq!(field("#host")["distinct"], 2);
    // A bad range is a 400 that names it.
    let (status, e) = get(
        &server,
        "/api/v1/repositories/logs/fields?start=soon",
        &[("Authorization", &format!("Bearer {READ}"))],
    );
    assert_eq!(status, 400);
    assert!(e["error"].as_str().unwrap().starts_with("start:"), "{e}");

    let fields = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_eddy"))
            .args([
                "fields",
                "--url",
                &server.url,
                "-r",
                "logs",
                "--token",
                READ,
            ])
            .args(args)
            .output()
            .unwrap()
    };
    let out = fields(&["--start", "1h"]);
    assert!(out.status.success(), "{out:?}");
    let table = String::from_utf8(out.stdout.clone()).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("FIELD") && lines[0].contains("TOP VALUES"),
        "{table}"
    );
    let method_line = lines.iter().find(|l| l.starts_with("method ")).unwrap();
    assert!(
        method_line.contains("string") && method_line.contains("GET (100)"),
        "{table}"
    );
    assert!(table.contains("many distinct values"), "{table}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("of 300 events"),
        "{out:?}"
    );
    let out = fields(&["--start", "1h", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["events"], 300, "{json}");
    // A range without events says where they are.
    let out = fields(&[
        "--start",
        "2000-01-01T00:00:00Z",
        "--end",
        "2000-01-02T00:00:00Z",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("holds no events"),
        "{out:?}"
    );
    server.stop();
}
