//! What the end-to-end tests of `eddy serve` share: the real binary on free ports, a real HTTP
//! client, and the bus read back from disk.
#![allow(clippy::unwrap_used, dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use eddy_event::codec;
use eddy_log::Log;

pub const TOKEN: &str = "test-token-0123456789";
pub const NDJSON: (&str, &str) = ("Content-Type", "application/x-ndjson");

pub fn gzip(bytes: &[u8], level: flate2::Compression) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), level);
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

pub struct Server {
    pub child: Child,
    pub url: String,
    pub tcp: Vec<SocketAddr>,
    pub udp: Vec<SocketAddr>,
}

impl Server {
    /// Starts `eddy serve` with the tests' usual config (an admin token, repositories `open` and
    /// `secure`, small body limits) and `extra` after it.
    pub fn start(dir: &Path, extra: &str) -> Server {
        Server::start_with(
            dir,
            &format!(
                "[http]\nlisten = \"127.0.0.1:0\"\nmax_body_bytes = 100000\nmax_event_bytes = 2000\n\
                 admin_tokens = [\"{TOKEN}\"]\n[repositories.open]\n[repositories.secure]\ntokens = [\"{TOKEN}\"]\n{extra}"
            ),
        )
    }

    /// Starts `eddy serve` with exactly `config` (plus its `data_dir`) and reads its doors.
    pub fn start_with(dir: &Path, config: &str) -> Server {
        let path = dir.join("eddy.toml");
        std::fs::write(
            &path,
            format!("data_dir = {:?}\n{config}", dir.join("data")),
        )
        .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_eddy"))
            .args(["serve", "--config", path.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // One line per door: HTTP, then each [[tcp]] and [[udp]] listener.
        let doors = 1 + config.matches("[[tcp]]").count() + config.matches("[[udp]]").count();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut server = Server {
            child,
            url: String::new(),
            tcp: Vec::new(),
            udp: Vec::new(),
        };
        for _ in 0..doors {
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
            let door = line.trim().strip_prefix("listening on ").unwrap();
            let tcp = door.strip_prefix("tcp://");
            if let Some(a) = tcp.or_else(|| door.strip_prefix("tls://")) {
                server.tcp.push(a.parse().unwrap());
            } else if let Some(a) = door.strip_prefix("udp://") {
                server.udp.push(a.parse().unwrap());
            } else {
                server.url = door.to_string();
            }
        }
        server
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// The `/metrics` text.
    pub fn metrics(&self) -> String {
        agent()
            .get(format!("{}/metrics", self.url))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap()
    }

    /// The value of one metric line (by its name and labels), 0 if absent.
    pub fn metric(&self, series: &str) -> f64 {
        self.metrics()
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    /// Waits until a metric reaches `at_least` (the doors store asynchronously).
    pub fn wait_for_metric(&self, series: &str, at_least: f64) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v = self.metric(series);
            if v >= at_least || Instant::now() > deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then wait: a clean shutdown exits 0.
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(killed.success());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{status}");
    }
}

/// A server a failed test leaves behind is killed, not left running beside the next tests.
impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Four senders post NDJSON batches of `batch` events (`line(n)` each, every `n` unique) to
/// `repository` until, after `run_for`, the server is SIGKILLed while they still send. Returns
/// the `n` of every event acknowledged; a request cut off by the kill is not.
pub fn ingest_until_killed(
    server: &Server,
    repository: &str,
    batch: i64,
    run_for: Duration,
    line: impl Fn(i64) -> String + Sync,
) -> Vec<i64> {
    let url = format!("{}/api/v1/ingest/{repository}", server.url);
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let senders: Vec<_> = (0..4i64)
            .map(|t| {
                let (url, stop, line) = (url.clone(), &stop, &line);
                s.spawn(move || {
                    let mut acked = Vec::new();
                    for round in 0i64.. {
                        if stop.load(std::sync::atomic::Ordering::Relaxed) {
                            break;
                        }
                        let first = t * 1_000_000_000 + round * batch;
                        let body: String = (first..first + batch).map(line).collect();
                        match agent()
                            .post(&url)
                            .header(NDJSON.0, NDJSON.1)
                            .send(body.as_bytes())
                        {
                            Ok(r) if r.status() == 200 => acked.extend(first..first + batch),
                            _ => break,
                        }
                    }
                    acked
                })
            })
            .collect();
        std::thread::sleep(run_for);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        Command::new("kill")
            .args(["-KILL", &server.child.id().to_string()])
            .status()
            .unwrap();
        senders
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

pub fn post(
    server: &Server,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, serde_json::Value) {
    let mut req = agent().post(format!("{}{path}", server.url));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut resp = req.send(body).unwrap();
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

pub fn get(server: &Server, path: &str, headers: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let mut req = agent().get(format!("{}{path}", server.url));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut resp = req.call().unwrap();
    let status = resp.status().as_u16();
    let text = resp
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_string()
        .unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

pub fn stored_events(dir: &Path, repository: &str) -> Vec<eddy_event::Event> {
    let log = Log::open(dir.join("data")).unwrap();
    let topic = log.topic(&format!("repo.{repository}")).unwrap();
    let mut out = Vec::new();
    for p in 0..topic.partition_count() {
        let mut r = topic.reader(p, 0).unwrap();
        loop {
            let batch = r.poll().unwrap();
            if batch.is_empty() {
                break;
            }
            out.extend(batch.iter().map(|rec| codec::decode(&rec.value).unwrap()));
        }
    }
    out
}

/// Runs the `eddy` client with `args` against `server`, with the test token.
pub fn eddy_client(server: &Server, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(args)
        .args(["--url", &server.url, "--token", TOKEN])
        .output()
        .unwrap()
}

/// Polls `check` until it gives a value, for at most a minute.
pub fn wait_for<T>(what: &str, check: impl FnMut() -> Option<T>) -> T {
    wait_for_or(what, check, String::new)
}

/// [`wait_for`], saying what `seen` tells when it gives up.
pub fn wait_for_or<T>(
    what: &str,
    check: impl FnMut() -> Option<T>,
    seen: impl Fn() -> String,
) -> T {
    wait_for_within(what, Duration::from_secs(60), check, seen)
}

/// [`wait_for_or`] for at most `limit` (the Kafka test broker's first group join is slow).
pub fn wait_for_within<T>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> Option<T>,
    seen: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "gave up waiting for {what}\n{}",
            seen()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Alert rule `name`'s description from the API.
pub fn alert_rule(server: &Server, name: &str) -> serde_json::Value {
    let auth = format!("Bearer {TOKEN}");
    get(
        server,
        &format!("/api/v1/alerts/{name}"),
        &[("Authorization", &auth)],
    )
    .1
}

/// Runs `command` with `stdin` written to it, and waits for its output.
pub fn output_with_stdin(mut command: Command, stdin: &str) -> std::process::Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub headers: axum::http::HeaderMap,
    pub body: Vec<u8>,
}

impl Request {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

pub type Received = std::sync::Arc<std::sync::Mutex<Vec<Request>>>;

/// An axum server on 127.0.0.1 that records every POST (any path) and answers 200.
pub fn receiver() -> (String, Received) {
    let got: Received = Received::default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_io()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = got.clone();
    let app = axum::Router::new().fallback(axum::routing::post(
        move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: axum::body::Bytes| async move {
            seen.lock().unwrap().push(Request {
                path: uri.path().to_string(),
                headers,
                body: body.to_vec(),
            });
            "ok"
        },
    ));
    std::thread::spawn(move || runtime.block_on(async { axum::serve(listener, app).await }));
    (url, got)
}

/// The JSON bodies POSTed to `path` with `status`.
pub fn notices(got: &Received, path: &str, status: &str) -> Vec<serde_json::Value> {
    got.lock()
        .unwrap()
        .iter()
        .filter(|r| r.path == path)
        .map(Request::json)
        .filter(|n| n["status"] == status)
        .collect()
}

/// A node on the Kafka-protocol test broker `broker`: the repository `main` in `partitions`
/// partitions and `extra` configuration (whole sections), with short group timeouts so that a
/// killed node's partitions and duties move within seconds.
pub fn kafka_node(
    dir: &Path,
    broker: &eddy_kafka::testing::Broker,
    partitions: u32,
    extra: &str,
) -> Server {
    let kafka = broker.config();
    let properties: String = kafka
        .properties
        .iter()
        .chain([
            (&"session.timeout.ms".to_string(), &"6000".to_string()),
            (&"max.poll.interval.ms".to_string(), &"6000".to_string()),
        ])
        .map(|(k, v)| format!("{k:?} = {v:?}\n"))
        .collect();
    Server::start_with(
        dir,
        &format!(
            "[http]\nlisten = \"127.0.0.1:0\"\nadmin_tokens = [\"{TOKEN}\"]\n\
             [repositories.main]\npartitions = {partitions}\ntokens = [\"{TOKEN}\"]\n\
             {extra}\n\
             [bus]\nkind = \"kafka\"\nbrokers = {:?}\nreplication_factor = 1\n\
             [bus.properties]\n{properties}",
            kafka.bootstrap_servers
        ),
    )
}
