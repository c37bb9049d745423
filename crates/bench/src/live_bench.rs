//! The live benchmark: the real `eddy serve` under a steady 100,000 events/s of HTTP ingest
//! with 20 live queries subscribed over websockets (filters, `groupBy`s and `timechart`s),
//! against the same load with none.
//!
//! - Freshness: a probe thread posts one small event every 10 ms and notes when its 200 came
//!   back; a websocket client of the live filter `probe=*` notes when each probe arrives. The
//!   figure is arrival minus acknowledgement (and minus sending).
//! - Ingest cost: the rate achieved at the offered 100 k/s, and the highest HTTP rate the
//!   server takes (unpaced clients), each with and without the live queries.

use std::collections::HashMap;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use eddy_base::sync::lock;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use crate::error::{Error, Result};
use crate::ingest_bench::{body, histogram, http_run, IngestBenchOptions, Server, BATCH};
use crate::report::{Figure, Row, Section};
use crate::serve::paced_load;

/// Events per second offered.
const RATE: u64 = 100_000;
/// Paced client threads.
const CLIENTS: u64 = 4;

/// The 20 live queries: 5 filters (one is the probe), 8 `groupBy`s and aggregates, 7
/// `timechart`s.
const QUERIES: [&str; 20] = [
    "probe=*",
    "status=500 level=error",
    "user=u00042",
    "msg=\"never sent\"",
    "#host=web-3 status=404 latency_ms>990",
    "groupBy(#host)",
    "groupBy(level)",
    "groupBy(status, function=[count(), avg(latency_ms), max(latency_ms)])",
    "level=error | groupBy(user, limit=1000)",
    "groupBy([#host, level])",
    "percentile(latency_ms, percentiles=[50, 99])",
    "count(user, distinct=true)",
    "status>=500 | groupBy(#host, function=count())",
    "timechart(span=10s)",
    "timechart(level, span=10s)",
    "status>=500 | timechart(span=1m)",
    "timechart(#host, span=30s)",
    "timechart(span=5s, function=avg(latency_ms))",
    "level=warn | timechart(status, span=10s)",
    "timechart(service, span=1m, function=percentile(latency_ms, percentiles=[99]))",
];

type Socket = WebSocket<MaybeTlsStream<TcpStream>>;

fn subscribe(server: &Server, query: &str) -> Result<Socket> {
    let url = format!(
        "{}/api/v1/repositories/bench/live?query={}&window=5m&interval=1s",
        server.http.replace("http://", "ws://"),
        form_urlencoded::byte_serialize(query.as_bytes()).collect::<String>()
    );
    let (socket, _) = tungstenite::connect(&url)
        .map_err(|e| Error::Invalid(format!("subscribing to {query:?}: {e}")))?;
    if let MaybeTlsStream::Plain(s) = socket.get_ref() {
        let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    }
    Ok(socket)
}

/// What the websocket clients saw.
#[derive(Default)]
struct Seen {
    /// Per probe, when it arrived.
    probes: Mutex<HashMap<u64, Instant>>,
    messages: AtomicU64,
}

/// Reads every message of `socket` until `stop`; probe arrivals are noted.
fn drain(mut socket: Socket, seen: &Seen, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let text = match socket.read() {
            Ok(Message::Text(t)) => t,
            Ok(_) => continue,
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => return,
        };
        let now = Instant::now();
        seen.messages.fetch_add(1, Ordering::Relaxed);
        if !text.contains("\"probe\"") {
            continue;
        }
        let Ok(message) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        if message["type"] != "events" {
            continue;
        }
        let mut probes = lock(&seen.probes);
        for row in message["rows"].as_array().into_iter().flatten() {
            if let Some(id) = row["probe"].as_u64() {
                probes.entry(id).or_insert(now);
            }
        }
    }
    let _ = socket.close(None);
}

/// Posts one probe every 10 ms until `stop`; returns when each was sent and acknowledged.
fn probes(server: &Server, stop: &AtomicBool) -> Result<HashMap<u64, (Instant, Instant)>> {
    let url = format!("{}/api/v1/ingest/bench", server.http);
    let agent = Server::agent();
    let mut out = HashMap::new();
    let mut id = 0u64;
    while !stop.load(Ordering::Relaxed) {
        id += 1;
        let sent = Instant::now();
        let resp = agent
            .post(&url)
            .header("Content-Type", "application/x-ndjson")
            .send(format!("{{\"probe\":{id},\"#host\":\"probe\"}}\n").as_bytes())
            .map_err(|e| Error::Invalid(format!("posting a probe: {e}")))?;
        if resp.status() != 200 {
            return Err(Error::Invalid(format!("a probe got {}", resp.status())));
        }
        out.insert(id, (sent, Instant::now()));
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(out)
}

/// What one run measured.
struct RunFigures {
    /// Events/s acknowledged under the paced load.
    paced: f64,
    /// Events/s of the unpaced load after it.
    unpaced: f64,
    /// Per probe, websocket arrival minus acknowledgement, µs (live runs only).
    from_ack: Vec<u64>,
    /// … minus sending, µs.
    from_send: Vec<u64>,
    /// Websocket messages the clients received.
    messages: u64,
}

/// One run: the paced load for `seconds` (with the queries subscribed if `live`), then the
/// unpaced load.
fn run_once(opts: &IngestBenchOptions, live: bool) -> Result<RunFigures> {
    let server = Server::start(&opts.server, &opts.dir)?;
    let seen = Seen::default();
    let (stop_clients, stop_load) = (AtomicBool::new(false), AtomicBool::new(false));
    let sockets = if live {
        QUERIES
            .iter()
            .map(|q| subscribe(&server, q))
            .collect::<Result<Vec<_>>>()?
    } else {
        Vec::new()
    };
    let url = format!("{}/api/v1/ingest/bench", server.http);
    let (paced, probed, unpaced) = std::thread::scope(|s| -> Result<_> {
        for socket in sockets {
            let (seen, stop) = (&seen, &stop_clients);
            s.spawn(move || drain(socket, seen, stop));
        }
        let started = Instant::now();
        let load = s.spawn(|| paced_load(&url, RATE, CLIENTS as usize, BATCH, body, &stop_load));
        let probe = s.spawn(|| probes(&server, &stop_load));
        std::thread::sleep(Duration::from_secs(opts.seconds));
        stop_load.store(true, Ordering::Relaxed);
        let acked = load
            .join()
            .unwrap_or_else(|_| Err(Error::Invalid("the load panicked".into())))?;
        let paced = acked as f64 / started.elapsed().as_secs_f64();
        let probed = probe
            .join()
            .unwrap_or_else(|_| Err(Error::Invalid("the probe panicked".into())))?;
        // The last probes' updates are still on their way.
        std::thread::sleep(Duration::from_millis(500));
        let unpaced_opts = IngestBenchOptions {
            seconds: opts.seconds.min(10),
            ..opts.clone()
        };
        let (unpaced, _) = http_run(&server, &unpaced_opts, "bench")?;
        stop_clients.store(true, Ordering::Relaxed);
        Ok((paced, probed, unpaced))
    })?;
    let arrived = lock(&seen.probes).clone();
    let (mut from_ack, mut from_send) = (Vec::new(), Vec::new());
    if live {
        for (id, (sent, acked)) in &probed {
            let Some(at) = arrived.get(id) else {
                return Err(Error::Mismatch {
                    what: "probes acknowledged but never pushed to the websocket".into(),
                    expected: probed.len().to_string(),
                    got: arrived.len().to_string(),
                });
            };
            from_ack.push(at.saturating_duration_since(*acked).as_micros() as u64);
            from_send.push(at.saturating_duration_since(*sent).as_micros() as u64);
        }
    }
    Ok(RunFigures {
        paced,
        unpaced,
        from_ack,
        from_send,
        messages: seen.messages.load(Ordering::Relaxed),
    })
}

fn quantile(values: &[u64], q: f64) -> Result<f64> {
    let mut h = histogram()?;
    for &v in values {
        let _ = h.record(v.max(1));
    }
    Ok(h.value_at_quantile(q) as f64 / 1e3)
}

/// Runs the benchmark and makes the report's section.
pub fn run(opts: &IngestBenchOptions, mode: &str, progress: &dyn Fn(&str)) -> Result<Section> {
    let runs = opts.runs.max(1);
    let mut paced_none = Figure::new(
        "HTTP ingest at 100 k events/s offered, no live queries",
        "events/s",
    );
    let mut paced_live = Figure::new(
        "HTTP ingest at 100 k events/s offered, 20 live queries",
        "events/s",
    );
    let mut max_none = Figure::new("HTTP ingest, unpaced clients, no live queries", "events/s");
    let mut max_live = Figure::new("HTTP ingest, unpaced clients, 20 live queries", "events/s");
    let mut p50 = Figure::new("ingest acknowledged → websocket update, p50", "ms");
    let mut p99 = Figure::new("ingest acknowledged → websocket update, p99", "ms");
    let mut send_p99 = Figure::new("request sent → websocket update, p99", "ms");
    let mut messages = Figure::new("websocket messages received by the 20 clients", "messages");
    for run in 0..runs {
        progress(&format!("no live queries, run {}/{runs}", run + 1));
        let none = run_once(opts, false)?;
        paced_none.runs.push(none.paced);
        max_none.runs.push(none.unpaced);
        progress(&format!("20 live queries, run {}/{runs}", run + 1));
        let live = run_once(opts, true)?;
        paced_live.runs.push(live.paced);
        max_live.runs.push(live.unpaced);
        p50.runs.push(quantile(&live.from_ack, 0.50)?);
        p99.runs.push(quantile(&live.from_ack, 0.99)?);
        send_p99.runs.push(quantile(&live.from_send, 0.99)?);
        messages.runs.push(live.messages as f64);
    }
    let _ = std::fs::remove_dir_all(&opts.dir);
    let lost = |with: &Figure, without: &Figure| {
        format!(
            "{:.1} % lost",
            100.0 * (1.0 - with.median() / without.median())
        )
    };
    let rows = vec![
        Row::plain(paced_none.clone()),
        Row {
            baseline: "the same load, no live queries (row above)".into(),
            ratio: lost(&paced_live, &paced_none),
            goal: "≤ 10 % lost".into(),
            figure: paced_live,
        },
        Row {
            baseline: String::new(),
            ratio: String::new(),
            goal: "≤ 100 ms".into(),
            figure: p99,
        },
        Row::plain(p50),
        Row::plain(send_p99),
        Row::plain(max_none.clone()),
        Row {
            baseline: "unpaced, no live queries (row above)".into(),
            ratio: lost(&max_live, &max_none),
            goal: "printed".into(),
            figure: max_live,
        },
        Row::plain(messages),
    ];
    Ok(Section {
        id: "live".into(),
        title: "Live queries (eddy serve, websockets)".into(),
        intro: format!(
            "{}\n\nThe real `eddy serve` on loopback. {CLIENTS} client threads post NDJSON batches of {BATCH} 200-byte \
             events paced to a steady {RATE} events/s for {} s per run, while 20 websocket clients follow live queries \
             over a 5-minute window with 1 s updates: 5 filters, 8 `groupBy`s and other aggregates, 7 `timechart`s \
             (listed in `crates/bench/src/live_bench.rs`). A probe thread posts one small event every 10 ms; the \
             filter `probe=*` pushes it, and the figure is its arrival at the websocket client minus the HTTP 200 \
             (the 200 comes after the fsync). The same run without subscriptions is the baseline. After the paced \
             part, unpaced clients measure the highest rate the server then takes, with the queries still \
             subscribed. Regenerate this section alone with `cargo run --release -p eddy -- bench live`.",
            crate::report::provenance(mode, runs),
            opts.seconds,
        ),
        rows,
        notes: "Client, websocket readers and server share the machine's two cores; the live queries' work (one decode \
                per event in the tap, then each query's filters and state) runs on the server's own threads, off the \
                ingest path. Every probe acknowledged must reach the websocket, or the run fails. The p50 rounds to \
                0.0 ms: the tap reads a record as soon as it is durable, which is when the 200 leaves, so the two \
                travel together; \"request sent\" adds the wait for the bus's group commit."
            .into(),
    })
}
