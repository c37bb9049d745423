//! The ingest benchmark: the real `eddy serve` process, loaded by this one over loopback.
//!
//! - HTTP: 200-byte JSON events in NDJSON batches of 1,000, posted by several client threads
//!   for a fixed time, each request timed until its durable 200; events/s and p50/p99.
//! - Syslog over UDP: RFC 5424 messages sent at rising rates; for each rate, the events stored
//!   (read from the server's `/metrics`) are compared with the datagrams sent. The report gives
//!   the highest rate at which every datagram was stored.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, IoContext, Result};
use crate::report::{format_value, Figure, Row, Section};
use crate::serve::Serve;

const EVENT_BYTES: usize = 200;
pub(crate) const BATCH: usize = 1000;
const HOSTS: usize = 8;
const UDP_RATES: [u64; 9] = [
    25_000, 50_000, 100_000, 200_000, 300_000, 400_000, 600_000, 800_000, 1_000_000,
];

/// Settings of an ingest benchmark run.
#[derive(Debug, Clone)]
pub struct IngestBenchOptions {
    /// The `eddy` binary to run as the server.
    pub server: PathBuf,
    /// Scratch directory (its data directory goes here).
    pub dir: PathBuf,
    /// Runs per figure.
    pub runs: usize,
    /// Seconds of each HTTP run and of each UDP rate step.
    pub seconds: u64,
    /// Client threads posting at once.
    pub clients: usize,
    /// The end-to-end and footprint rows' settings.
    pub e2e: crate::ingest_e2e::E2eOptions,
}

/// A running `eddy serve`, stopped (SIGKILL) when dropped.
pub(crate) struct Server {
    _serve: Serve,
    pub(crate) http: String,
    tcp: SocketAddr,
    udp: SocketAddr,
}

impl Server {
    pub(crate) fn start(exe: &Path, dir: &Path) -> Result<Server> {
        let config = Serve::fresh_config(
            dir,
            "[http]\nlisten = \"127.0.0.1:0\"\n[ingest]\nudp_queue_datagrams = 262144\n\
             [repositories.bench]\npartitions = 4\n\
             [repositories.gated]\npartitions = 4\nschema = { subject = \"bench-value\" }\n\
             [[tcp]]\nlisten = \"127.0.0.1:0\"\nrepository = \"bench\"\nparser = \"json\"\n\
             [[udp]]\nlisten = \"127.0.0.1:0\"\nrepository = \"bench\"\nparser = \"syslog\"\n",
        )?;
        let (serve, doors) = Serve::start(
            exe,
            &config,
            true,
            &["listening on tcp://", "listening on udp://"],
        )?;
        let address = |door: &str, a: &str| -> Result<SocketAddr> {
            a.parse()
                .map_err(|e| Error::Invalid(format!("bad {door} address from eddy serve: {e}")))
        };
        let server = Server {
            http: serve.http.clone(),
            tcp: address("tcp", &doors[0])?,
            udp: address("udp", &doors[1])?,
            _serve: serve,
        };
        server.register_gated_schema()?;
        Ok(server)
    }

    /// Registers the schema the `gated` repository checks the benchmark's events against.
    fn register_gated_schema(&self) -> Result<()> {
        let body = serde_json::json!({ "schema": GATED_SCHEMA }).to_string();
        let resp = Self::agent()
            .post(format!(
                "{}/api/v1/registry/subjects/bench-value/versions",
                self.http
            ))
            .header("Content-Type", "application/vnd.schemaregistry.v1+json")
            .send(body.as_bytes())
            .map_err(|e| Error::Invalid(format!("registering the benchmark schema: {e}")))?;
        match resp.status().as_u16() {
            200 => Ok(()),
            s => Err(Error::Invalid(format!(
                "registering the benchmark schema: status {s}"
            ))),
        }
    }

    pub(crate) fn agent() -> ureq::Agent {
        crate::serve::agent()
    }

    /// Events stored through `door` into `bench`, from the server's metrics.
    fn stored(&self, door: &str) -> Result<u64> {
        self.stored_in(door, "bench")
    }

    /// Events stored through `door` into `repository`, from the server's metrics.
    pub(crate) fn stored_in(&self, door: &str, repository: &str) -> Result<u64> {
        let text = Self::agent()
            .get(format!("{}/metrics", self.http))
            .call()
            .and_then(|mut r| r.body_mut().read_to_string())
            .map_err(|e| Error::Invalid(format!("reading /metrics: {e}")))?;
        let series =
            format!("eddy_ingest_events_total{{door=\"{door}\",repository=\"{repository}\"}} ");
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix(&series)?.parse().ok())
            .unwrap_or(0))
    }
}

/// One NDJSON body of `BATCH` events of `EVENT_BYTES` bytes each (before the newline).
pub(crate) fn body(client: usize, batch: usize) -> Vec<u8> {
    let levels = ["info", "info", "info", "warn", "debug", "error"];
    let mut out = Vec::with_capacity(BATCH * (EVENT_BYTES + 1));
    for i in 0..BATCH {
        let n = batch * BATCH + i;
        let mut line = format!(
            r##"{{"@timestamp":"2026-11-24T10:{:02}:{:02}.{:03}Z","#host":"web-{}","level":"{}","service":"checkout","status":{},"latency_ms":{},"user":"u{:05}","msg":"order placed","c":{client},"n":{n},"pad":""##,
            (n / 60) % 60,
            n % 60,
            n % 1000,
            n % HOSTS,
            levels[n % levels.len()],
            [200, 200, 200, 404, 500][n % 5],
            (n * 37) % 997,
            (n * 7919) % 100_000,
        );
        while line.len() < EVENT_BYTES - 2 {
            line.push('x');
        }
        line.push_str("\"}");
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out
}

/// The Avro schema of [`body`]'s events (eddy's `@timestamp` and `#host` are not checked).
const GATED_SCHEMA: &str = r#"{"type": "record", "name": "Order", "fields": [
    {"name": "level", "type": "string"}, {"name": "service", "type": "string"},
    {"name": "status", "type": "int"}, {"name": "latency_ms", "type": "int"},
    {"name": "user", "type": "string"}, {"name": "msg", "type": "string"},
    {"name": "c", "type": "long"}, {"name": "n", "type": "long"}, {"name": "pad", "type": "string"}]}"#;

/// One HTTP run into `repository`: events/s and the latency histogram (µs).
pub(crate) fn http_run(
    server: &Server,
    opts: &IngestBenchOptions,
    repository: &str,
) -> Result<(f64, hdrhistogram::Histogram<u64>)> {
    let url = format!("{}/api/v1/ingest/{repository}", server.http);
    let deadline = Instant::now() + Duration::from_secs(opts.seconds);
    let started = Instant::now();
    let results: Vec<Result<(u64, hdrhistogram::Histogram<u64>)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..opts.clients)
            .map(|c| {
                let url = url.clone();
                s.spawn(move || -> Result<(u64, hdrhistogram::Histogram<u64>)> {
                    let bodies: Vec<Vec<u8>> = (0..8).map(|b| body(c, b)).collect();
                    let agent = Server::agent();
                    let mut hist = histogram()?;
                    let mut events = 0u64;
                    let mut i = 0;
                    while Instant::now() < deadline {
                        let t = Instant::now();
                        let resp = agent
                            .post(&url)
                            .header("Content-Type", "application/x-ndjson")
                            .send(&bodies[i % bodies.len()][..])
                            .map_err(|e| Error::Invalid(format!("posting a batch: {e}")))?;
                        if resp.status() != 200 {
                            return Err(Error::Invalid(format!(
                                "eddy serve answered {} to a valid batch",
                                resp.status()
                            )));
                        }
                        let _ = hist.record(t.elapsed().as_micros() as u64);
                        events += BATCH as u64;
                        i += 1;
                    }
                    Ok((events, hist))
                })
            })
            .collect();
        crate::serve::joined(handles).collect()
    });
    let secs = started.elapsed().as_secs_f64();
    let mut total = 0;
    let mut hist = histogram()?;
    for r in results {
        let (events, h) = r?;
        total += events;
        let _ = hist.add(&h);
    }
    Ok((total as f64 / secs, hist))
}

pub(crate) fn histogram() -> Result<hdrhistogram::Histogram<u64>> {
    hdrhistogram::Histogram::<u64>::new(3).map_err(|e| Error::Invalid(e.to_string()))
}

/// Streams JSON lines over `connections` TCP connections for `seconds`; returns events/s from
/// the first byte sent to the last event stored (read from the server's metrics).
fn tcp_run(server: &Server, connections: usize, seconds: u64) -> Result<f64> {
    use std::io::Write;
    let before = server.stored("tcp")?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let sent: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..connections)
            .map(|c| {
                s.spawn(move || -> Result<u64> {
                    let bodies: Vec<Vec<u8>> = (0..8).map(|b| body(c, b)).collect();
                    let mut stream = std::net::TcpStream::connect(server.tcp)
                        .context(|| format!("connecting to {}", server.tcp))?;
                    let mut sent = 0u64;
                    let mut i = 0;
                    while Instant::now() < deadline {
                        stream
                            .write_all(&bodies[i % bodies.len()])
                            .context(|| "sending JSON lines".into())?;
                        sent += BATCH as u64;
                        i += 1;
                    }
                    Ok(sent)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::Invalid("a sender panicked".into())))
            })
            .sum::<Result<u64>>()
    })?;
    let settle = Instant::now() + Duration::from_secs(30);
    let mut stored = server.stored("tcp")? - before;
    while stored < sent && Instant::now() < settle {
        std::thread::sleep(Duration::from_millis(20));
        stored = server.stored("tcp")? - before;
    }
    if stored != sent {
        return Err(Error::Mismatch {
            what: "JSON lines stored by eddy serve vs sent over TCP".into(),
            expected: sent.to_string(),
            got: stored.to_string(),
        });
    }
    Ok(sent as f64 / started.elapsed().as_secs_f64())
}

/// Sends syslog datagrams at `rate` per second for `seconds`; returns (sent, achieved rate).
fn udp_send(target: SocketAddr, rate: u64, seconds: u64) -> Result<(u64, f64)> {
    let socket = UdpSocket::bind("127.0.0.1:0").context(|| "binding a UDP socket".into())?;
    let total = rate * seconds;
    let started = Instant::now();
    let mut sent = 0u64;
    let mut msg = String::with_capacity(256);
    while sent < total {
        // Pace in 1 ms steps: send what is due, then wait for the next step.
        let due = ((started.elapsed().as_secs_f64() * rate as f64) as u64 + 1).min(total);
        while sent < due {
            msg.clear();
            msg.push_str(&format!(
                "<134>1 2026-11-24T10:00:00.{:06}Z web-{} checkout {} ID{} [meta@1 seq=\"{sent}\"] order placed for user u{:05} in {} ms",
                sent % 1_000_000,
                sent % HOSTS as u64,
                1000 + sent % 50,
                sent % 7,
                (sent * 7919) % 100_000,
                (sent * 37) % 997
            ));
            socket
                .send_to(msg.as_bytes(), target)
                .context(|| format!("sending to {target}"))?;
            sent += 1;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    Ok((sent, sent as f64 / started.elapsed().as_secs_f64()))
}

/// Runs the ingest benchmark and returns its report section.
pub fn run(opts: &IngestBenchOptions, mode: &str, progress: &dyn Fn(&str)) -> Result<Section> {
    let runs = opts.runs.max(1);
    let mut rate = Figure::new(
        &format!(
            "HTTP ingest, {EVENT_BYTES}-byte JSON events, batches of {BATCH}, {} clients",
            opts.clients
        ),
        "events/s",
    );
    let mut p50 = Figure::new("HTTP ack latency p50 (per batch of 1,000)", "ms");
    let mut p99 = Figure::new("HTTP ack latency p99 (per batch of 1,000)", "ms");
    let mut gated = Figure::new(
        "HTTP ingest into a repository bound to an Avro schema (the gatekeeper)",
        "events/s",
    );
    for run in 0..runs {
        progress(&format!("HTTP ingest, run {}/{runs}", run + 1));
        let server = Server::start(&opts.server, &opts.dir)?;
        let (r, h) = http_run(&server, opts, "bench")?;
        progress(&format!(
            "HTTP ingest through the gatekeeper, run {}/{runs}",
            run + 1
        ));
        let (g, gh) = http_run(&server, opts, "gated")?;
        gated.runs.push(g);
        // Every acknowledged event is counted by the server too.
        for (repository, hist) in [("bench", &h), ("gated", &gh)] {
            let stored = server.stored_in("http", repository)?;
            let acked = hist.len() * BATCH as u64;
            if stored != acked {
                return Err(Error::Mismatch {
                    what: format!("events stored in {repository} vs acknowledged to the clients"),
                    expected: acked.to_string(),
                    got: stored.to_string(),
                });
            }
        }
        rate.runs.push(r);
        p50.runs.push(h.value_at_quantile(0.50) as f64 / 1e3);
        p99.runs.push(h.value_at_quantile(0.99) as f64 / 1e3);
    }

    let mut tcp = Figure::new(
        &format!(
            "JSON lines over TCP, {EVENT_BYTES}-byte events, {} connections",
            opts.clients
        ),
        "events/s",
    );
    for run in 0..runs {
        progress(&format!("JSON lines over TCP, run {}/{runs}", run + 1));
        let server = Server::start(&opts.server, &opts.dir)?;
        tcp.runs.push(tcp_run(&server, opts.clients, opts.seconds)?);
    }

    progress("syslog over UDP");
    let server = Server::start(&opts.server, &opts.dir)?;
    let mut best: Option<(u64, f64)> = None;
    let mut first_loss = String::from("no loss up to the highest rate tried");
    let mut stored_before = 0;
    for target in UDP_RATES {
        progress(&format!("syslog over UDP at {target}/s"));
        let (sent, achieved) = udp_send(server.udp, target, opts.seconds)?;
        // Let the server store what is queued.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut stored = server.stored("udp")? - stored_before;
        while stored < sent && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            stored = server.stored("udp")? - stored_before;
        }
        stored_before += stored;
        if stored == sent {
            best = Some((target, achieved));
            if achieved < 0.95 * target as f64 {
                first_loss = format!(
                    "no loss; the sender (one thread) reached only {} of {} asked",
                    format_value(achieved, "events/s"),
                    format_value(target as f64, "events/s")
                );
                break;
            }
        } else {
            first_loss = format!(
                "at {}: {} of {sent} datagrams stored ({:.2}% lost)",
                format_value(achieved, "events/s"),
                stored,
                100.0 * (sent - stored) as f64 / sent as f64
            );
            break;
        }
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&opts.dir);
    progress("the gatekeeper in process");
    let events = if opts.seconds <= 3 { 100_000 } else { 400_000 };
    let (parse_only, check, decode) = crate::schema_bench::figures(&opts.dir, events, runs)?;
    let parse_floor = parse_only.median();
    let plain_rate = rate.median();
    let udp = match best {
        Some((_, achieved)) => Figure::once(
            "syslog over UDP: highest rate with no datagram dropped",
            "events/s",
            achieved,
        ),
        None => Figure::new(
            "syslog over UDP: highest rate with no datagram dropped",
            "events/s",
        ),
    };
    progress("the protocol doors");
    let doors = crate::doors_bench::rows(opts, progress)?;
    let mut rows = vec![
        Row {
            baseline: String::new(),
            ratio: String::new(),
            goal: "≥ 300.0 k events/s".into(),
            figure: rate,
        },
        Row::plain(p50),
        Row::plain(p99),
        Row {
            baseline: "the same events, no schema".into(),
            ratio: format!("{:.2}× the rate without", gated.median() / plain_rate),
            goal: "cost printed as a ratio".into(),
            figure: gated,
        },
        Row {
            baseline: String::new(),
            ratio: String::new(),
            goal: String::new(),
            figure: parse_only,
        },
        Row {
            baseline: "JSON parsing alone (row above)".into(),
            ratio: format!("{:.2}× its rate", check.median() / parse_floor),
            goal: "≥ 200.0 k events/s".into(),
            figure: check,
        },
        Row::plain(decode),
        Row {
            baseline: "counted until every line sent is stored".into(),
            ratio: String::new(),
            goal: String::new(),
            figure: tcp,
        },
        Row {
            baseline: format!(
                "rates tried: {}",
                UDP_RATES
                    .map(|r| format_value(r as f64, "events/s"))
                    .join(", ")
            ),
            ratio: String::new(),
            goal: first_loss,
            figure: udp,
        },
    ];
    rows.extend(doors);
    rows.extend(crate::ingest_e2e::rows(&opts.e2e, progress)?);
    Ok(Section {
        id: "ingest".into(),
        title: "Ingest (eddy serve)".into(),
        intro: format!(
            "{}\n\nThe real `eddy serve` process on loopback, loaded by the benchmark process: {} client threads post \
             NDJSON batches of {BATCH} JSON events of {EVENT_BYTES} bytes (8 `#host` tags, so 4 partitions) for {} s per \
             run; each request is timed until its 200, which eddy sends only after the events are fsync'd in the bus. \
             TCP: the same events as JSON lines streamed over {} connections, timed from the first byte to the last \
             event stored (no acknowledgements on TCP). \
             The gatekeeper: the same HTTP load into a repository bound to an Avro schema of the events' nine \
             fields (each event parsed, then converted to Avro), on the same server right after the plain run; \
             and in process on one core, a 10-field record checked against its Avro schema (text to verdict) \
             beside parsing the JSON alone, and binary Avro decoded. \
             Syslog: RFC 5424 datagrams at rising rates for {} s each; the events stored (the server's \
             `/metrics`) are compared with the datagrams sent. The protocol doors: the same events shaped as \
             each protocol carries them, 1,000 per request from the same clients, through each door in turn \
             on one server beside the native door (`doors_bench`). End to end: {} of generated access lines \
             (posted raw with `?parser=accesslog`) and as much JSON, in bodies of 4 MiB by 4 clients, \
             into a server whose digest runs beside ingest, timed from the first request until a `count()` \
             equals what was acknowledged; beside it the same load with `digest = false`, timed until the last \
             acknowledgement; the data directory against the raw bytes while the bus holds the data and once a \
             {} s `bus_retention` (and `segment_age`) has passed. Regenerate this section alone with \
             `cargo run --release -p eddy -- bench ingest` (`--quick` for a short run).",
            crate::report::provenance(mode, runs),
            opts.clients,
            opts.seconds,
            opts.clients,
            opts.seconds,
            format_value(opts.e2e.bytes as f64, "MB"),
            opts.e2e.window.as_secs(),
        ),
        rows,
        notes: "Client and server share the machine's cores. Each acknowledged event is checked against the \
                server's own count of stored events. The UDP figure is the last step of the ramp without loss: \
                the limit lies between it and the first step with loss, shown under goal."
            .into(),
    })
}
