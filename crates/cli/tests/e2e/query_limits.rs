//! Queries of death through the real binary: deep or chained queries over HTTP and the live
//! websocket, huge texts, bodies and limits, and an empty time range each get a `400` (or an
//! answer) that says what and where, and the server still answers normal queries afterwards.

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{agent, post, Server, NDJSON, TOKEN};
use serde_json::{json, Value};

const PATH: &str = "/api/v1/repositories/open/query";

fn query(server: &Server, body: Value) -> (u16, Value) {
    post(
        server,
        PATH,
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &format!("Bearer {TOKEN}")),
        ],
        body.to_string().as_bytes(),
    )
}

/// A server holding 100 events in repository `open`, all visible to queries.
fn loaded(dir: &std::path::Path) -> Server {
    let server = Server::start(dir, "");
    let body: String = (0..100)
        .map(|n| format!("{{\"n\":{n},\"msg\":\"a request {n} done\"}}\n"))
        .collect();
    let (status, answer) = post(&server, "/api/v1/ingest/open", &[NDJSON], body.as_bytes());
    assert_eq!(status, 200, "{answer}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, a) = query(&server, json!({ "query": "count()" }));
        assert_eq!(status, 200, "{a}");
        if a["rows"][0]["_count"] == 100 || Instant::now() > deadline {
            assert_eq!(a["rows"][0]["_count"], 100, "{a}");
            return server;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn still_answers(server: &Server) {
    let (status, a) = query(server, json!({ "query": "request | count()" }));
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["rows"][0]["_count"], 100, "{a}");
}

#[test]
fn deep_and_chained_queries_get_400_or_an_answer_and_the_server_survives() {
    let dir = tempfile::tempdir().unwrap();
    let server = loaded(dir.path());
    let nested = [
        format!("{}a{}", "(".repeat(1_500), ")".repeat(1_500)),
        format!("{}a", "!".repeat(60_000)),
        format!("{}a", "not ".repeat(15_000)),
        format!("x := {}1", "-".repeat(60_000)),
        format!("eval(x = {}1{})", "(".repeat(30_000), ")".repeat(30_000)),
    ];
    for q in &nested {
        let (status, a) = query(&server, json!({ "query": q }));
        assert_eq!(status, 400, "{a}");
        assert!(
            a["error"]
                .as_str()
                .unwrap()
                .contains("nests more than 64 levels"),
            "{a}"
        );
        assert_eq!(a["line"], 1, "{a}");
        assert!(a["column"].as_u64().unwrap() > 1, "{a}");
    }
    // Chains that are legitimate just work: a pasted log line, a long or, a long sum.
    for (q, count) in [
        ("a ".repeat(2_000) + "| count()", 100),
        (format!("a{} | count()", " or a".repeat(1_000)), 100),
        (
            format!("x := 1{} | x > 10000 | count()", "+1".repeat(20_000)),
            100,
        ),
    ] {
        let (status, a) = query(&server, json!({ "query": q }));
        assert_eq!(status, 200, "{a}");
        assert_eq!(a["rows"][0]["_count"], count, "{a}");
    }
    still_answers(&server);
    server.stop();
}

#[test]
fn oversized_texts_bodies_and_limits_and_empty_ranges_get_400_and_the_server_survives() {
    let dir = tempfile::tempdir().unwrap();
    let server = loaded(dir.path());
    // 100,000 nested parentheses in eval, a 200 KB text: refused for its size, unparsed.
    let q = format!("eval(x = {}1{})", "(".repeat(100_000), ")".repeat(100_000));
    let (status, a) = query(&server, json!({ "query": q }));
    assert_eq!(status, 400, "{a}");
    assert!(
        a["error"].as_str().unwrap().contains("at most 65536 bytes"),
        "{a}"
    );
    // A 20 MB body is not read past the body limit.
    let huge = json!({ "query": "a ".repeat(10 << 20) }).to_string();
    let sent = agent()
        .post(format!("{}{PATH}", server.url))
        .header("Content-Type", "application/json")
        .header("Authorization", &format!("Bearer {TOKEN}"))
        .send(huge.as_bytes());
    if let Ok(mut r) = sent {
        // The server may also close the connection while the client still sends.
        assert_eq!(
            r.status().as_u16(),
            413,
            "{}",
            r.body_mut().read_to_string().unwrap()
        );
    }
    let (status, a) = query(
        &server,
        json!({ "query": "a", "limit": 1_000_000_000_000u64 }),
    );
    assert_eq!(status, 400, "{a}");
    assert!(a["error"].as_str().unwrap().contains("limit"), "{a}");
    let (status, a) = query(&server, json!({ "query": "a", "start": "1h", "end": "2h" }));
    assert_eq!(status, 400, "{a}");
    assert!(a["error"].as_str().unwrap().contains("after end"), "{a}");
    // eddy search says why and exits 1.
    let out = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["search", "--url", &server.url, "--repository", "open"])
        .args(["--token", TOKEN])
        .arg("a ".repeat(40_000))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("at most 65536 bytes"), "{stderr}");
    still_answers(&server);
    server.stop();
}

#[test]
fn deep_and_huge_live_queries_get_400_and_the_server_survives() {
    let dir = tempfile::tempdir().unwrap();
    let server = loaded(dir.path());
    let live = |q: &str| {
        let url = format!(
            "{}/api/v1/repositories/open/live?query={}&token={TOKEN}",
            server.url.replace("http://", "ws://"),
            form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>()
        );
        match tungstenite::connect(url) {
            Err(tungstenite::Error::Http(response)) => {
                let body = response.body().clone().unwrap_or_default();
                (
                    response.status().as_u16(),
                    String::from_utf8_lossy(&body).into_owned(),
                )
            }
            Ok(_) => panic!("{q:.40}: subscribed"),
            Err(e) => panic!("{q:.40}: {e}"),
        }
    };
    let (status, body) = live(&format!("{}a{}", "(".repeat(2_000), ")".repeat(2_000)));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("nests more than 64 levels"), "{body}");
    // A text over the size limit makes a URI longer than clients and the server's HTTP layer
    // take (64 KiB): sent raw, it is refused before the handler, which would refuse it too.
    let mut stream = TcpStream::connect(server.url.trim_start_matches("http://")).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "GET /api/v1/repositories/open/live?token={TOKEN}&query={} HTTP/1.1\r\nHost: x\r\n\
         Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        "a+".repeat(1 << 20)
    )
    .ok();
    let mut status_line = String::new();
    BufReader::new(&stream).read_line(&mut status_line).ok();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    assert!([0, 400, 414, 431].contains(&status), "{status_line}");
    still_answers(&server);
    server.stop();
}
