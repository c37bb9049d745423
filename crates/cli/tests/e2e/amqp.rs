//! The AMQP collector against a real RabbitMQ (Debian's `rabbitmq-server`, installed by
//! bench/setup.sh), published to with pika: messages become searchable events, a SIGKILL of
//! eddy loses and duplicates nothing, malformed messages are dead-lettered while the collector
//! goes on, and a broker that is down or drops the connection is retried with back-off.
//!
//! One broker serves every test of this binary (it takes seconds to start): on loopback, with
//! its own node name, ports and directories, so it clashes with nothing. A watchdog stops it
//! when the test process ends. Each test uses its own queues and its own eddy.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::{post, Server};

const PYTHON: &str = "/usr/bin/python3";
const LOGS: &str = "[http]\nlisten = \"127.0.0.1:0\"\n[repositories.logs]\n";

fn client_script() -> String {
    format!(
        "{}/tests/clients/amqp_client.py",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The shared broker.
struct Broker {
    port: u16,
    /// Holding its stdin open keeps the watchdog waiting; when this process ends, it stops
    /// the broker and removes its directory.
    _watchdog: Mutex<Child>,
}

fn broker() -> &'static Broker {
    static BROKER: OnceLock<Broker> = OnceLock::new();
    BROKER.get_or_init(start_broker)
}

fn start_broker() -> Broker {
    // Kept past this process (statics are not dropped): the watchdog removes it.
    let d = &tempfile::tempdir().unwrap().keep();
    std::fs::write(d.join("enabled_plugins"), "[].\n").unwrap();
    let (port, dist, epmd) = (free_port(), free_port(), free_port());
    let node = format!("eddy-test-{}@localhost", std::process::id());
    let script = format!(
        "/usr/lib/rabbitmq/bin/rabbitmq-server >{out} 2>&1 & pid=$!\nread -r _\nkill -TERM $pid\nwait $pid\nepmd -port {epmd} -kill >/dev/null 2>&1\nrm -rf {dir}\n",
        out = d.join("broker.out").display(),
        dir = d.display()
    );
    let watchdog = Command::new("bash")
        .args(["-c", &script])
        .current_dir(d)
        .env("HOME", d)
        .env("RABBITMQ_NODENAME", &node)
        .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
        .env("RABBITMQ_NODE_PORT", port.to_string())
        .env("RABBITMQ_DIST_PORT", dist.to_string())
        .env("ERL_EPMD_PORT", epmd.to_string())
        .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
        .env("RABBITMQ_LOG_BASE", d.join("log"))
        .env("RABBITMQ_PID_FILE", d.join("broker.pid"))
        .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("enabled_plugins"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("bash starts the broker (bench/setup.sh installs rabbitmq-server)");
    let deadline = Instant::now() + Duration::from_secs(180);
    while !amqp(port, &["ready"], "").status.success() {
        assert!(
            Instant::now() < deadline,
            "RabbitMQ did not start within 3 minutes: {}",
            std::fs::read_to_string(d.join("broker.out")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    Broker {
        port,
        _watchdog: Mutex::new(watchdog),
    }
}

/// Runs the pika client against the broker on `port`.
fn amqp(port: u16, args: &[&str], stdin: &str) -> std::process::Output {
    let mut command = Command::new(PYTHON);
    command
        .arg(client_script())
        .arg(port.to_string())
        .args(args);
    common::output_with_stdin(command, stdin)
}

/// Runs the pika client against the shared broker; it must succeed.
fn pika(args: &[&str], stdin: &str) -> String {
    let out = amqp(broker().port, args, stdin);
    assert!(
        out.status.success(),
        "amqp_client.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Publishes one message per JSON value of `messages` (see amqp_client.py).
fn publish(queue: &str, messages: &[serde_json::Value]) {
    let lines: String = messages.iter().map(|m| format!("{m}\n")).collect();
    pika(&["publish", queue], &lines);
}

fn ready_in(queue: &str) -> u64 {
    pika(&["count", queue], "").trim().parse().unwrap()
}

fn collector(queue: &str, port: u16, extra: &str) -> String {
    format!(
        "[[amqp]]\nurl = \"amqp://guest:guest@127.0.0.1:{port}/%2f\"\nqueue = \"{queue}\"\nrepository = \"logs\"\n{extra}\n"
    )
}

/// `eddy serve` with `config`, its log (JSON lines) going to `dir/eddy.log`.
fn serve(dir: &Path, config: &str) -> Server {
    let path = dir.join("eddy.toml");
    std::fs::write(
        &path,
        format!("data_dir = {:?}\n{config}", dir.join("data")),
    )
    .unwrap();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("eddy.log"))
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["--log-format", "json", "-v", "serve", "--config"])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    Server {
        child,
        url,
        tcp: Vec::new(),
        udp: Vec::new(),
    }
}

/// The log lines of eddy in `dir` whose message contains `text`.
fn logged(dir: &Path, text: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("eddy.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(text))
        })
        .collect()
}

fn count(server: &Server, query: &str) -> u64 {
    let body = serde_json::json!({ "query": query, "start": "1970-01-01T00:00:00Z", "end": "2200-01-01T00:00:00Z" });
    let (status, a) = post(
        server,
        "/api/v1/repositories/logs/query",
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    );
    assert_eq!(status, 200, "{a}");
    a["rows"][0]["_count"].as_u64().unwrap_or(0)
}

/// Waits until `query` counts `expected` events (what the collector stores is searchable
/// within moments).
fn wait_for_count(server: &Server, query: &str, expected: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = count(server, query);
        if n == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{query}: {n} events, expected {expected}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn messages_published_to_a_queue_arrive_as_searchable_events_once_per_message_id() {
    let dir = tempfile::tempdir().unwrap();
    let port = broker().port;
    let config = format!(
        "{LOGS}{}{}",
        collector("arrive.json", port, "tags = { source = \"rabbit\" }"),
        collector("arrive.lines", port, "parser = \"kv\"\nname = \"kv-lines\"")
    );
    let server = serve(dir.path(), &config);
    wait_until("both collectors to consume", || {
        logged(dir.path(), "AMQP collector: consuming").len() == 2
    });
    publish(
        "arrive.json",
        &[
            serde_json::json!({"body": "{\"msg\":\"one document\",\"n\":1}", "id": "doc-1", "type": "application/json"}),
            serde_json::json!({"body": "{\"msg\":\"ndjson\",\"n\":2}\n{\"msg\":\"ndjson\",\"n\":3}\n", "id": "nd-1"}),
            serde_json::json!({"body": "[{\"msg\":\"array\",\"n\":4},{\"msg\":\"array\",\"n\":5}]"}),
            // The same message sent again (a producer's retry): stored once.
            serde_json::json!({"body": "{\"msg\":\"one document\",\"n\":1}", "id": "doc-1"}),
        ],
    );
    publish(
        "arrive.lines",
        &[
            serde_json::json!({"body": "msg=kv n=6\nmsg=kv n=7\n", "id": "kv-1", "type": "text/plain"}),
        ],
    );
    wait_for_count(&server, "count()", 7);
    assert_eq!(count(&server, "#source=rabbit | count()"), 5);
    assert_eq!(count(&server, "msg=ndjson | count()"), 2);
    assert_eq!(count(&server, "msg=kv n>6 | count()"), 1);
    assert_eq!(ready_in("arrive.json"), 0);
    for (series, value) in [
        (
            "eddy_ingest_events_total{door=\"amqp\",repository=\"logs\"}",
            7.0,
        ),
        (
            "eddy_ingest_duplicate_events_total{repository=\"logs\"}",
            1.0,
        ),
        (
            "eddy_amqp_messages_total{collector=\"arrive.json\",outcome=\"acked\"}",
            4.0,
        ),
        (
            "eddy_amqp_messages_total{collector=\"kv-lines\",outcome=\"acked\"}",
            1.0,
        ),
        ("eddy_amqp_connected{collector=\"kv-lines\"}", 1.0),
    ] {
        assert_eq!(server.wait_for_metric(series, value), value, "{series}");
    }
    server.stop();
}

#[test]
fn a_sigkill_while_consuming_loses_no_message_and_stores_none_twice() {
    const MESSAGES: u64 = 6000;
    let dir = tempfile::tempdir().unwrap();
    let port = broker().port;
    pika(&["declare", "crash"], "");
    let messages: Vec<_> = (0..MESSAGES)
        .map(|n| serde_json::json!({"body": format!("{{\"n\":{n}}}"), "id": format!("m-{n}")}))
        .collect();
    publish("crash", &messages);
    // A small prefetch: many small batches, so the kill lands while messages are in flight.
    let config = format!("{LOGS}{}", collector("crash", port, "prefetch = 10"));
    let server = serve(dir.path(), &config);
    let stored = "eddy_ingest_events_total{door=\"amqp\",repository=\"logs\"}";
    let before = server.wait_for_metric(stored, 100.0);
    server.kill();
    assert!(
        (100.0..MESSAGES as f64).contains(&before),
        "killed after {before} of {MESSAGES} events"
    );
    let left = ready_in("crash");
    assert!(left > 0, "the kill came after the last message");
    // The unacknowledged messages went back to the queue; the next eddy takes them all.
    let server = serve(dir.path(), &config);
    wait_for_count(&server, "count()", MESSAGES);
    wait_until("the queue to drain", || ready_in("crash") == 0);
    server.stop();
    let events = common::stored_events(dir.path(), "logs");
    let mut ns: Vec<i64> = events
        .iter()
        .map(|e| match e.fields.get("n") {
            Some(eddy_event::Value::Int(n)) => *n,
            other => panic!("no n: {other:?}"),
        })
        .collect();
    ns.sort_unstable();
    ns.dedup();
    assert_eq!(events.len() as u64, MESSAGES, "stored twice or lost");
    assert_eq!(ns.len() as u64, MESSAGES, "stored twice or lost");
}

#[test]
fn a_malformed_message_is_dead_lettered_counted_and_the_collector_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let port = broker().port;
    // A queue with a dead-letter queue, declared by its owner: eddy must not redeclare it.
    pika(&["declare", "orders", "orders.dead"], "");
    let config = format!("{LOGS}{}", collector("orders", port, "declare = false"));
    let server = serve(dir.path(), &config);
    publish(
        "orders",
        &[
            serde_json::json!({"body": "{\"order\":1}", "id": "o-1"}),
            serde_json::json!({"body": "{\"order\":2}\n{\"order\": oops}\n", "id": "o-bad"}),
            serde_json::json!({"body_hex": "7b226f72646572223aff7d", "id": "o-binary"}),
            serde_json::json!({"body": "{\"order\":3}", "id": "o-3"}),
        ],
    );
    wait_for_count(&server, "count()", 2);
    wait_until("both bad messages to be dead-lettered", || {
        ready_in("orders.dead") == 2
    });
    let dead = pika(&["drain", "orders.dead"], "");
    assert!(dead.contains("oops"), "{dead}");
    assert_eq!(ready_in("orders"), 0);
    for (series, value) in [
        (
            "eddy_amqp_messages_total{collector=\"orders\",outcome=\"rejected\"}",
            2.0,
        ),
        (
            "eddy_amqp_messages_total{collector=\"orders\",outcome=\"acked\"}",
            2.0,
        ),
        (
            "eddy_ingest_rejected_events_total{door=\"amqp\",repository=\"logs\",reason=\"parse\"}",
            3.0,
        ),
    ] {
        assert_eq!(server.wait_for_metric(series, value), value, "{series}");
    }
    let rejected = logged(dir.path(), "rejected a message without requeue");
    assert_eq!(rejected.len(), 2, "{rejected:?}");
    let first = rejected[0]["fields"].to_string();
    assert!(
        first.contains("o-bad") && first.contains("line 2"),
        "{first}"
    );
    let second = rejected[1]["fields"].to_string();
    assert!(second.contains("not UTF-8"), "{second}");
    server.stop();
}

/// A TCP proxy in front of the broker that can be down, up, or cut: a broker outage or
/// restart as eddy sees it, without disturbing the other tests' broker.
struct Proxy {
    port: u16,
    target: u16,
    up: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<TcpStream>>>,
    acceptor: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    fn new(target: u16) -> Proxy {
        Proxy {
            port: free_port(),
            target,
            up: Arc::new(AtomicBool::new(false)),
            connections: Arc::default(),
            acceptor: None,
        }
    }

    fn open(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).unwrap();
        self.up.store(true, Ordering::SeqCst);
        let (up, connections, target) = (self.up.clone(), self.connections.clone(), self.target);
        self.acceptor = Some(std::thread::spawn(move || {
            for client in listener.incoming() {
                if !up.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let mut all = connections.lock().unwrap();
                all.push(client.try_clone().unwrap());
                all.push(server.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16384];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 || to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
            }
        }));
    }

    /// Stops listening and cuts every connection.
    fn close(&mut self) {
        self.up.store(false, Ordering::SeqCst);
        // Wakes the acceptor, which sees it is down and drops the listener.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(a) = self.acceptor.take() {
            a.join().unwrap();
        }
        for c in self.connections.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

#[test]
fn a_broker_that_is_down_or_drops_the_connection_is_retried_with_back_off_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    pika(&["declare", "flaky"], "");
    let mut proxy = Proxy::new(broker().port);
    let config = format!(
        "{LOGS}{}",
        collector(
            "flaky",
            proxy.port,
            "reconnect_delay = \"100ms\"\nreconnect_max_delay = \"400ms\""
        )
    );
    let server = serve(dir.path(), &config);
    let failures = "eddy_amqp_connection_failures_total{collector=\"flaky\"}";
    // Down: each attempt fails, is logged with the wait before the next, which doubles.
    let retrying = "AMQP collector: not consuming; retrying";
    wait_until("four failed attempts", || {
        logged(dir.path(), retrying).len() >= 4
    });
    assert!(server.wait_for_metric(failures, 4.0) >= 4.0);
    let retries = logged(dir.path(), retrying);
    let waits: Vec<_> = retries
        .iter()
        .map(|l| l["fields"]["retry_in"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        waits[..4],
        ["100 ms", "200 ms", "400 ms", "400 ms"],
        "{retries:?}"
    );
    assert!(
        retries[0]["fields"]["error"]
            .as_str()
            .unwrap()
            .contains(&format!(
                "cannot connect to amqp://127.0.0.1:{}",
                proxy.port
            )),
        "{retries:?}"
    );
    assert!(
        !retries[0].to_string().contains("guest:guest"),
        "{retries:?}"
    );
    assert_eq!(
        server.metric("eddy_amqp_connected{collector=\"flaky\"}"),
        0.0
    );
    // Up: it connects and consumes.
    proxy.open();
    publish(
        "flaky",
        &[serde_json::json!({"body": "{\"phase\":\"up\"}", "id": "f-1"})],
    );
    wait_for_count(&server, "count()", 1);
    assert_eq!(
        server.metric("eddy_amqp_connected{collector=\"flaky\"}"),
        1.0
    );
    // The broker goes away mid-connection (a restart): messages wait in the queue until eddy
    // is back.
    let before = server.metric(failures);
    proxy.close();
    server.wait_for_metric(failures, before + 1.0);
    publish(
        "flaky",
        &[serde_json::json!({"body": "{\"phase\":\"down\"}", "id": "f-2"})],
    );
    proxy.open();
    wait_for_count(&server, "count()", 2);
    let lost = logged(dir.path(), retrying);
    assert!(lost.len() > retries.len(), "{lost:?}");
    server.stop();
    proxy.close();
}
