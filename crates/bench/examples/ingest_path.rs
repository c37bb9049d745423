//! The ingest path in one process, for an instruction-counting profiler: request bodies of the
//! benchmark's data (NDJSON, or access lines with `?parser=accesslog`) go through the HTTP
//! door's parse and gatekeeper, the shared store (de-dup, keys, encode, durable produce with
//! fsync) and the repository's digest, until every event is in sealed segments.
//!
//! ```text
//! cargo build --release -p eddy-bench --example ingest_path
//! valgrind --tool=callgrind target/release/examples/ingest_path json 20000
//! target/release/examples/ingest_path access 100000 zstd   # the bus's codec (default lz4)
//! target/release/examples/ingest_path json 20000 zstd rows  # records, not blocks, on the bus
//! ```
//!
//! Run it with two event counts and divide the difference of the instruction totals by the
//! difference of the counts: that is the cost of one event, without the start and the stop.
//! No HTTP: hyper's share is measured by `eddy bench ingest`. It prints the bytes the bus holds
//! per event, to compare its codecs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy_bench::gen::{self, Kind};
use eddy_event::Parser;
use eddy_ingest::config::{IngestConfig, RepositoryConfig};
use eddy_ingest::metrics::IngestMetrics;
use eddy_ingest::{body, Door, Ingest, Repository};

/// Events per request: about the 4 MB bodies of `eddy bench ingest`, smaller so that a short
/// run still makes several requests.
const PER_REQUEST: usize = 5_000;

fn main() {
    let mut args = std::env::args().skip(1);
    let kind = match args.next().as_deref() {
        Some("access") | Some("accesslog") => Kind::Access,
        Some("json") | None => Kind::Json,
        Some(other) => panic!("kind must be json or access, not {other:?}"),
    };
    let events: usize = args
        .next()
        .map_or(20_000, |n| n.parse().expect("event count"));
    let bus_compression = args.next().unwrap_or_else(|| "lz4".into());
    let bus_blocks = match args.next().as_deref() {
        Some("rows") => false,
        Some("blocks") | None => true,
        Some(other) => panic!("the bus's layout must be blocks or rows, not {other:?}"),
    };
    // As `eddy serve` does: the bus's readers can read the store's blocks.
    eddy_store::bus_block::register();

    // More bytes than `events` lines need (the JSON lines are about 300 bytes), times ending
    // about now so that retention keeps them.
    let bytes = (events * 400) as u64;
    let mut text = Vec::new();
    let start = eddy_event::time::now_ns() - gen::time_span_ns(kind, 42, bytes);
    gen::generate_from(kind, 42, bytes, start, &mut text).unwrap();
    let lines: Vec<&[u8]> = text.split(|&b| b == b'\n').take(events).collect();
    let bodies: Vec<Vec<u8>> = lines
        .chunks(PER_REQUEST)
        .map(|chunk| chunk.join(&b'\n'))
        .collect();
    let (content_type, parser) = match kind {
        Kind::Access => ("text/plain", Some(Parser::Accesslog)),
        _ => ("application/x-ndjson", None),
    };

    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(eddy_log::Log::open(dir.path().join("topics")).unwrap());
    let registry = Arc::new(eddy_schema::Registry::open(log.clone()).unwrap());
    let ingest = Ingest::new(
        IngestConfig::default(),
        1 << 20,
        Arc::new(IngestMetrics::register(
            &mut prometheus_client::registry::Registry::default(),
        )),
    );
    let bus: Arc<dyn eddy_log::Bus> = log.clone();
    let repo = Repository::open(
        &log,
        &bus,
        &registry,
        "bench",
        RepositoryConfig {
            bus_compression,
            bus_blocks,
            ..RepositoryConfig::default()
        },
        &ingest.config,
        &dir.path().join("store"),
    )
    .unwrap();

    let mut stored = 0;
    let door_cpu = thread_cpu_seconds();
    for b in &bodies {
        let received = Instant::now();
        let now = eddy_log::now_ns();
        let events = body::events(&repo, b, content_type, parser, 1 << 20, now).unwrap();
        stored += ingest
            .store(Door::Http, &repo, events, b.len(), received)
            .unwrap()
            .events;
    }
    let door_cpu = thread_cpu_seconds() - door_cpu;
    // The digest seals what it has read; wait until it has read everything.
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let sealed: u64 = repo
            .store
            .catalogue()
            .segments
            .values()
            .map(|s| s.info.count)
            .sum();
        let digested = sealed + repo.store.work_in_progress().events;
        if digested >= stored as u64 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    repo.stop_digest();
    repo.store.seal_all().unwrap();
    let sealed: u64 = repo
        .store
        .catalogue()
        .segments
        .values()
        .map(|s| s.info.count)
        .sum();
    let bus_bytes = bytes_under(&dir.path().join("topics"));
    println!(
        "{} events in {} requests stored; {sealed} in sealed segments; bus {bus_bytes} bytes, \
         {:.1} per event",
        stored,
        bodies.len(),
        bus_bytes as f64 / stored.max(1) as f64
    );
    println!(
        "door (parse, gatekeeper, encode, produce): {:.2} µs CPU per event",
        door_cpu * 1e6 / stored.max(1) as f64
    );
}

/// CPU seconds (user and system) of the calling thread, the door's here, from Linux's
/// `/proc/thread-self/stat` in 10 ms ticks; 0 where it cannot be read.
fn thread_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    // Fields 14 (utime) and 15 (stime) of proc(5), counted after the name's closing parenthesis.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: Vec<f64> = after_name
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|t| t.parse().ok())
        .collect();
    ticks.iter().sum::<f64>() / 100.0
}

/// Bytes of the files under `dir`.
fn bytes_under(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => bytes_under(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}
