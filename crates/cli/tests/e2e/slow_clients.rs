//! End-to-end tests of `eddy serve` against slow and greedy clients (issue 28): headers sent
//! byte by byte, bodies that stall or trickle, more connections than a door allows, and a
//! SIGTERM while a client holds a half-sent request. Small limits and timeouts keep each run
//! to seconds; every loop is bounded by a count, never by a measured time.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;

/// A step of a slow client: how long it waits for the server to answer before its next byte.
const STEP: Duration = Duration::from_millis(100);
/// Steps a slow client takes at most: far past every configured timeout (a hang guard).
const MAX_STEPS: usize = 300;

fn http_addr(server: &Server) -> SocketAddr {
    server.url.strip_prefix("http://").unwrap().parse().unwrap()
}

/// What the server did to a slow client.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// It answered (the status line's code) and/or closed the connection.
    Answered(String),
    /// It closed the connection without an answer.
    Closed,
    /// The client sent everything it had, or waited every step, and the connection was open.
    StillOpen,
}

/// Sends `bytes` one per step, then waits (for at most [`MAX_STEPS`] steps in all) for the
/// server to answer or close.
fn dribble(addr: SocketAddr, bytes: &[u8]) -> Outcome {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(STEP)).unwrap();
    let mut answer = Vec::new();
    for step in 0..MAX_STEPS {
        if let Some(b) = bytes.get(step) {
            if s.write_all(&[*b]).is_err() {
                return outcome(answer);
            }
        }
        let mut buf = [0u8; 512];
        match s.read(&mut buf) {
            Ok(0) => return outcome(answer),
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return outcome(answer),
        }
    }
    Outcome::StillOpen
}

fn outcome(answer: Vec<u8>) -> Outcome {
    let text = String::from_utf8_lossy(&answer);
    match text.split(' ').nth(1) {
        Some(code) => Outcome::Answered(code.to_string()),
        None => Outcome::Closed,
    }
}

/// A request's headers (`Content-Length: declared`) and the first bytes of its body, sent at
/// once; then the client stalls (sends nothing more) until the server answers or closes.
fn stalled_body(addr: SocketAddr, declared: usize) -> Outcome {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST /api/v1/ingest/main HTTP/1.1\r\nhost: eddy\r\ncontent-type: application/x-ndjson\r\ncontent-length: {declared}\r\n\r\n{{\"slow\":"
    )
    .unwrap();
    s.set_read_timeout(Some(STEP)).unwrap();
    let mut answer = Vec::new();
    for _ in 0..MAX_STEPS {
        let mut buf = [0u8; 512];
        match s.read(&mut buf) {
            Ok(0) => return outcome(answer),
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if !answer.is_empty() {
                    return outcome(answer);
                }
            }
            Err(_) => return outcome(answer),
        }
    }
    Outcome::StillOpen
}

fn ingest(server: &Server, first: usize, n: usize) -> u16 {
    let body: String = (first..first + n)
        .map(|i| format!("{{\"i\":{i},\"msg\":\"normal client\"}}\n"))
        .collect();
    post(server, "/api/v1/ingest/main", &[NDJSON], body.as_bytes()).0
}

const CONFIG: &str = r#"shutdown_timeout = "1s"
[http]
listen = "127.0.0.1:0"
max_body_bytes = 1000000
max_event_bytes = 2000
max_connections = 8
header_read_timeout = "1s"
body_idle_timeout = "1s"
body_timeout = "60s"
[ingest]
max_inflight_bytes = 1000000
queue_timeout = "500ms"
max_tcp_connections = 2
[repositories.main]
"#;

#[test]
fn slow_clients_past_the_limit_are_cut_while_others_ingest_and_sigterm_keeps_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), CONFIG);
    let addr = http_addr(&server);
    let mut acked = 0;

    // Three stalled bodies declare 2.7 MB against a budget of 1 MB: they hold only the bytes
    // they sent, so a normal client still ingests, and each is cut with 408.
    std::thread::scope(|s| {
        let stalled: Vec<_> = (0..3)
            .map(|_| s.spawn(move || stalled_body(addr, 900_000)))
            .collect();
        // The three are in (the scrape's own connection makes four).
        let open = format!(r#"eddy_ingest_tcp_connections{{door="http",listener="{addr}"}}"#);
        assert!(
            server.wait_for_metric(&open, 4.0) >= 4.0,
            "{}",
            server.metrics()
        );
        assert_eq!(ingest(&server, 0, 100), 200, "{}", server.metrics());
        acked += 100;
        for h in stalled {
            assert_eq!(h.join().unwrap(), Outcome::Answered("408".into()));
        }
    });

    // Twelve clients send headers byte by byte against a limit of 8 connections: those past
    // the limit are refused at once, the others closed by the header read timeout.
    let header = format!(
        "POST /api/v1/ingest/main HTTP/1.1\r\nhost: eddy\r\nx-pad: {}\r\n\r\n",
        "a".repeat(400)
    );
    let outcomes: Vec<Outcome> = std::thread::scope(|s| {
        let slow: Vec<_> = (0..12)
            .map(|_| s.spawn(|| dribble(addr, header.as_bytes())))
            .collect();
        slow.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        outcomes.iter().all(|o| *o != Outcome::StillOpen),
        "every slow client is cut: {outcomes:?}"
    );
    let refused = server.metric(&format!(
        r#"eddy_ingest_refused_connections_total{{door="http",listener="{addr}"}}"#
    ));
    let timed_out =
        server.metric(r#"eddy_ingest_timed_out_requests_total{door="http",phase="headers"}"#);
    assert!(refused >= 4.0, "refused {refused}\n{}", server.metrics());
    assert!(
        refused + timed_out >= 12.0,
        "refused {refused} + timed out {timed_out}\n{}",
        server.metrics()
    );
    assert_eq!(
        server.metric(r#"eddy_ingest_timed_out_requests_total{door="http",phase="body"}"#),
        3.0
    );
    // The slots are free again: normal clients are served.
    assert_eq!(ingest(&server, 100, 100), 200);
    acked += 100;

    // SIGTERM while a client trickles a body (a byte per step keeps the idle timer happy, the
    // body deadline is a minute away): the server cuts it at shutdown_timeout and exits
    // cleanly while the client is still sending.
    let trickler = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        write!(
            s,
            "POST /api/v1/ingest/main HTTP/1.1\r\nhost: eddy\r\ncontent-length: 900000\r\n\r\n"
        )
        .unwrap();
        for _ in 0..MAX_STEPS {
            if s.write_all(b" ").is_err() {
                return true;
            }
            std::thread::sleep(STEP);
        }
        false
    });
    // Wait (bounded) until the trickling request is inside the server.
    let mut inside = false;
    for _ in 0..MAX_STEPS {
        if server.metric(&format!(
            r#"eddy_ingest_tcp_connections{{door="http",listener="{addr}"}}"#
        )) >= 2.0
        {
            inside = true;
            break;
        }
        std::thread::sleep(STEP / 10);
    }
    assert!(inside, "{}", server.metrics());
    server.stop();
    assert!(
        trickler.join().unwrap(),
        "the server exited while the slow client was still sending"
    );
    assert_eq!(
        stored_events(dir.path(), "main").len(),
        acked,
        "every acknowledged event is stored, nothing else"
    );
}

#[test]
fn tcp_connections_past_the_listener_limit_are_refused_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path(),
        &format!("{CONFIG}[[tcp]]\nlisten = \"127.0.0.1:0\"\nrepository = \"main\"\n"),
    );
    let tcp = server.tcp[0];
    let mut held: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(tcp).unwrap()).collect();
    // The two held connections are accepted before the third arrives.
    server.wait_for_metric(
        &format!(r#"eddy_ingest_tcp_connections{{door="tcp",listener="{tcp}"}}"#),
        2.0,
    );
    let mut third = TcpStream::connect(tcp).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut buf = [0u8; 1];
    assert!(
        matches!(third.read(&mut buf), Ok(0) | Err(_)),
        "the third connection is closed at once"
    );
    assert_eq!(
        server.metric(&format!(
            r#"eddy_ingest_refused_connections_total{{door="tcp",listener="{tcp}"}}"#
        )),
        1.0
    );
    // The held ones still work; a line holding a JSON array gives its elements.
    held[0].write_all(b"{\"a\":1}\n").unwrap();
    held[1].write_all(b"[{\"b\":1},{\"b\":2}]\n").unwrap();
    assert_eq!(
        server.wait_for_metric(
            r#"eddy_ingest_events_total{door="tcp",repository="main"}"#,
            3.0
        ),
        3.0
    );
    held.clear();
    server.stop();
}

#[test]
fn a_tcp_connection_that_completes_no_line_is_closed_after_the_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path(),
        &format!("{CONFIG}[[tcp]]\nlisten = \"127.0.0.1:0\"\nrepository = \"main\"\n")
            .replace("[ingest]\n", "[ingest]\ntcp_idle_timeout = \"1s\"\n"),
    );
    let tcp = server.tcp[0];
    let mut stuck = TcpStream::connect(tcp).unwrap();
    stuck.write_all(b"{\"a\":1}\n{\"half\":").unwrap();
    stuck
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut buf = [0u8; 1];
    assert!(
        matches!(stuck.read(&mut buf), Ok(0) | Err(_)),
        "the connection is closed"
    );
    assert_eq!(
        server.metric(r#"eddy_ingest_timed_out_requests_total{door="tcp",phase="line"}"#),
        1.0
    );
    assert_eq!(
        server.metric(r#"eddy_ingest_events_total{door="tcp",repository="main"}"#),
        1.0,
        "the whole line it sent is stored"
    );
    server.stop();
}

#[test]
fn ndjson_labelled_json_or_unlabelled_is_read_as_lines() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), CONFIG);
    let ndjson = b"{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n";
    for headers in [
        &[("Content-Type", "application/json")][..],
        &[][..],
        &[("Content-Type", "application/octet-stream")][..],
    ] {
        let (status, answer) = post(&server, "/api/v1/ingest/main", headers, ndjson);
        assert_eq!(
            (status, &answer["events"]),
            (200, &3.into()),
            "{headers:?}: {answer}"
        );
    }
    // A pretty-printed document labelled NDJSON is one document.
    let (status, answer) = post(
        &server,
        "/api/v1/ingest/main",
        &[NDJSON],
        b"[\n  {\"a\": 4},\n  {\"a\": 5}\n]\n",
    );
    assert_eq!((status, &answer["events"]), (200, &2.into()), "{answer}");
    server.stop();
    assert_eq!(stored_events(dir.path(), "main").len(), 11);
}
