//! End-to-end tests of `eddy serve`'s TCP and UDP doors with real clients: the system's own
//! `logger` (util-linux) for syslog over UDP and TCP, raw sockets for statsd and JSON lines.

use crate::common;

use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::process::Command;
use std::time::Duration;

use common::*;
use eddy_event::{Event, Value};

fn logger(args: &[&str], port: u16, message: &str) {
    let status = Command::new("logger")
        .args(args)
        .args(["--server", "127.0.0.1", "--port", &port.to_string()])
        .args([
            "--tag",
            "eddytest",
            "--id=4242",
            "--priority",
            "local3.warning",
        ])
        .arg(message)
        .status()
        .expect("the logger command (util-linux) is needed for this test");
    assert!(status.success(), "logger {args:?} failed: {status}");
}

fn find<'a>(events: &'a [Event], message: &str) -> &'a Event {
    events
        .iter()
        .find(|e| e.fields.get("message") == Some(&Value::from(message)))
        .unwrap_or_else(|| panic!("no event with message {message:?} in {events:#?}"))
}

#[test]
fn syslog_from_logger_over_udp_and_tcp_with_both_framings() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        "[[tcp]]\nlisten = \"127.0.0.1:0\"\nrepository = \"open\"\nparser = \"syslog\"\ntags = { type = \"syslog\" }\n\
         [[udp]]\nlisten = \"127.0.0.1:0\"\nrepository = \"open\"\nparser = \"syslog\"\ntags = { type = \"syslog\" }\n",
    );
    let (tcp, udp) = (server.tcp[0].port(), server.udp[0].port());
    logger(&["--udp", "--rfc5424"], udp, "over udp 5424");
    logger(&["--udp", "--rfc3164"], udp, "over udp 3164");
    logger(&["--tcp", "--rfc5424"], tcp, "over tcp with newlines");
    logger(
        &["--tcp", "--rfc5424", "--octet-count"],
        tcp,
        "over tcp octet-counted",
    );
    logger(
        &[
            "--tcp",
            "--rfc5424",
            "--sd-id",
            "order@32473",
            "--sd-param",
            "id=\"17\"",
        ],
        tcp,
        "with structured data",
    );
    let stored = server.wait_for_metric(
        r#"eddy_ingest_events_total{door="udp",repository="open"}"#,
        2.0,
    ) + server.wait_for_metric(
        r#"eddy_ingest_events_total{door="tcp",repository="open"}"#,
        3.0,
    );
    assert_eq!(stored, 5.0, "{}", server.metrics());
    server.stop();

    let events = stored_events(dir.path(), "open");
    assert_eq!(events.len(), 5);
    for e in &events {
        assert_eq!(e.tags["type"], "syslog");
        assert_eq!(e.fields["facility_name"], Value::from("local3"), "{e:?}");
        assert_eq!(e.fields["severity_name"], Value::from("warning"), "{e:?}");
        assert_eq!(e.fields["app"], Value::from("eddytest"), "{e:?}");
        assert_eq!(e.fields["procid"], Value::Int(4242), "{e:?}");
        // logger stamps the time; it is the event's time, close to its arrival.
        assert!(
            (e.ingest_timestamp - e.timestamp).abs() < 60_000_000_000,
            "{e:?}"
        );
    }
    find(&events, "over udp 5424");
    find(&events, "over udp 3164");
    find(&events, "over tcp with newlines");
    find(&events, "over tcp octet-counted");
    let sd = find(&events, "with structured data");
    assert_eq!(
        sd.fields.get("sd.order@32473.id"),
        Some(&Value::from("17")),
        "{sd:?}"
    );
}

#[test]
fn statsd_over_udp_and_json_lines_over_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        "[[udp]]\nlisten = \"127.0.0.1:0\"\nrepository = \"open\"\nparser = \"statsd\"\n\
         [[tcp]]\nlisten = \"127.0.0.1:0\"\nrepository = \"open\"\n",
    );
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    // Several metrics in one datagram, one per line, and a bad one.
    socket
        .send_to(
            b"http.requests:3|c|@0.5|#service:web,region:eu\nhttp.latency:32.5|ms\nqueue.depth:-4|g\n",
            server.udp[0],
        )
        .unwrap();
    socket.send_to(b"users:alice|s", server.udp[0]).unwrap();
    socket.send_to(b"not a metric", server.udp[0]).unwrap();

    let mut tcp = TcpStream::connect(server.tcp[0]).unwrap();
    tcp.write_all(b"{\"msg\":\"one\",\"#host\":\"a\"}\r\n{broken\n\n{\"msg\":\"two\"}")
        .unwrap();
    drop(tcp);

    server.wait_for_metric(
        r#"eddy_ingest_events_total{door="udp",repository="open"}"#,
        4.0,
    );
    server.wait_for_metric(
        r#"eddy_ingest_events_total{door="tcp",repository="open"}"#,
        2.0,
    );
    let rejected = server.wait_for_metric(
        r#"eddy_ingest_rejected_events_total{door="udp",repository="open",reason="parse"}"#,
        1.0,
    ) + server.wait_for_metric(
        r#"eddy_ingest_rejected_events_total{door="tcp",repository="open",reason="parse"}"#,
        1.0,
    );
    assert_eq!(rejected, 2.0);
    server.stop();

    let events = stored_events(dir.path(), "open");
    assert_eq!(events.len(), 6, "{events:#?}");
    let metric = |name: &str| {
        events
            .iter()
            .find(|e| e.fields.get("metric") == Some(&Value::from(name)))
            .unwrap()
    };
    let requests = metric("http.requests");
    assert_eq!(requests.fields["type"], Value::from("counter"));
    assert_eq!(requests.fields["count"], Value::Float(6.0));
    assert_eq!(requests.fields["tag.region"], Value::from("eu"));
    assert_eq!(metric("http.latency").fields["type"], Value::from("timer"));
    assert_eq!(metric("queue.depth").fields["delta"], Value::Bool(true));
    assert_eq!(metric("users").fields["type"], Value::from("set"));
    let one = events
        .iter()
        .find(|e| e.fields.get("msg") == Some(&Value::from("one")))
        .unwrap();
    assert_eq!(one.tags["host"], "a");
    assert!(events
        .iter()
        .any(|e| e.fields.get("msg") == Some(&Value::from("two"))));
}

#[test]
fn a_full_udp_queue_drops_and_counts_instead_of_growing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        "[ingest]\nudp_queue_datagrams = 1\n[[udp]]\nlisten = \"127.0.0.1:0\"\nrepository = \"open\"\nparser = \"none\"\n",
    );
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sent = 20_000;
    for i in 0..sent {
        socket
            .send_to(format!("datagram {i}").as_bytes(), server.udp[0])
            .unwrap();
    }
    let listener = server.udp[0].to_string();
    let dropped = server.wait_for_metric(
        &format!(r#"eddy_ingest_dropped_datagrams_total{{door="udp",listener="{listener}"}}"#),
        1.0,
    );
    assert!(dropped >= 1.0, "{}", server.metrics());
    server.stop();
    // What was not dropped was stored, and nothing was both.
    let stored = stored_events(dir.path(), "open").len() as f64;
    assert!(
        stored >= 1.0 && stored + dropped <= sent as f64,
        "stored {stored}, dropped {dropped}"
    );
}

#[test]
fn udp_queue_depth_reads_zero_once_the_queue_drains() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        "[[udp]]\nlisten = \"127.0.0.1:0\"\nrepository = \"open\"\nparser = \"none\"\n",
    );
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..5_000 {
        socket
            .send_to(format!("datagram {i}").as_bytes(), server.udp[0])
            .unwrap();
    }
    let events = r#"eddy_ingest_events_total{door="udp",repository="open"}"#;
    let depth = format!(
        r#"eddy_ingest_queued_datagrams{{door="udp",listener="{}"}}"#,
        server.udp[0]
    );
    // Once the stored count stops growing, the queue is empty and must read so. Bounded by count
    // as a hang guard.
    let mut last = -1.0;
    for _ in 0..400 {
        std::thread::sleep(Duration::from_millis(50));
        let now = server.metric(events);
        if now > 0.0 && now == last && server.metric(&depth) == 0.0 {
            break;
        }
        last = now;
    }
    assert!(last > 0.0, "{}", server.metrics());
    assert_eq!(server.metric(&depth), 0.0, "{}", server.metrics());
    server.stop();
}

#[test]
fn eddy_send_of_an_access_log_without_parser_suggests_accesslog() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "");
    let log = dir.path().join("access.log");
    std::fs::write(
        &log,
        "10.0.0.1 - - [10/Oct/2026:13:55:36 +0000] \"GET / HTTP/1.1\" 200 512 \"-\" \"curl/8\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["send", "--quiet", "-r", "open", "--url", &server.url])
        .arg(&log)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("try --parser accesslog"), "{stderr}");
    server.stop();
}

#[test]
fn statsd_gauges_answer_their_last_value_per_metric() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        "[[udp]]\nlisten = \"127.0.0.1:0\"\nrepository = \"open\"\nparser = \"statsd\"\n",
    );
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let gauges = [
        "cpu.temp:40|g",
        "disk.free:100|g",
        "cpu.temp:42.5|g",
        "disk.free:90|g",
        "cpu.temp:41|g",
    ];
    // One at a time: each is stored before the next is sent, so their times are in this order.
    for (n, gauge) in gauges.iter().enumerate() {
        socket.send_to(gauge.as_bytes(), server.udp[0]).unwrap();
        server.wait_for_metric(
            r#"eddy_ingest_events_total{door="udp",repository="open"}"#,
            (n + 1) as f64,
        );
    }
    let search = || {
        let out = Command::new(env!("CARGO_BIN_EXE_eddy"))
            .args([
                "search",
                "--url",
                &server.url,
                "-r",
                "open",
                "--json",
                "--token",
                TOKEN,
            ])
            .arg("type=gauge | groupBy(metric, function=[count(), last(value), first(value)])")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    // Stored events become searchable within moments.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let answer = loop {
        let a = search();
        let counted: u64 = a["rows"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["_count"].as_u64())
            .sum();
        if counted == 5 || std::time::Instant::now() > deadline {
            break a;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        answer["rows"],
        serde_json::json!([
            { "metric": "cpu.temp", "_count": 3, "_last": 41, "_first": 40 },
            { "metric": "disk.free", "_count": 2, "_last": 90, "_first": 100 },
        ]),
        "{answer}"
    );
    server.stop();
}

#[test]
fn a_tcp_listener_with_first_line_tokens_stores_only_what_an_ingest_token_opened() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        "[[tcp]]\nlisten = \"127.0.0.1:0\"\nrepository = \"secure\"\ntoken_first_line = true\n",
    );
    let send = |text: String| {
        let mut tcp = TcpStream::connect(server.tcp[0]).unwrap();
        tcp.write_all(text.as_bytes()).unwrap();
        drop(tcp);
    };
    send(format!(
        "{TOKEN}\n{{\"msg\":\"let in\"}}\n{{\"msg\":\"also in\"}}\n"
    ));
    send("not-a-token-at-all\n{\"msg\":\"wrong token\"}\n".to_string());
    send("{\"msg\":\"no token line\"}\n{\"msg\":\"after it\"}\n".to_string());
    server.wait_for_metric(
        r#"eddy_ingest_events_total{door="tcp",repository="secure"}"#,
        2.0,
    );
    let refused = server.wait_for_metric(
        r#"eddy_ingest_rejected_events_total{door="tcp",repository="secure",reason="auth"}"#,
        2.0,
    );
    assert_eq!(refused, 2.0);
    server.stop();
    let mut stored: Vec<String> = stored_events(dir.path(), "secure")
        .iter()
        .map(|e| e.fields["msg"].to_text())
        .collect();
    stored.sort();
    assert_eq!(stored, ["also in", "let in"]);
}
