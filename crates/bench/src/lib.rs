//! eddy's benchmarks: realistic data and one report that puts eddy beside its baselines.
//!
//! [`gen`] makes deterministic, seeded data (access logs, JSON application logs, StatsD lines)
//! with needles whose counts are known. [`baselines`] measures what the hardware and common tools
//! achieve on that data (fsync'd sequential writes, memory bandwidth, `rg`, `zstd`, `gzip`).
//! [`log_bench`] measures the bus, [`ingest_bench`] the real `eddy serve` under load,
//! [`fanout_bench`] queries on one node beside three nodes fanned out, [`kafka_bench`] ingest
//! through Kafka beside the embedded bus. [`run_all`] does all of it and returns the [`report`]
//! sections, each figure the median of several runs with min and max; a figure whose part of
//! eddy does not exist yet is reported as missing, never invented.

#![deny(missing_docs)]

pub mod alerts_bench;
pub mod baselines;
pub mod crash_bench;
pub mod doors_bench;
mod error;
pub mod fanout_bench;
pub mod gen;
pub mod ingest_bench;
pub mod ingest_e2e;
pub mod kafka_bench;
pub mod live_bench;
pub mod log_bench;
pub mod peers;
mod proc_stat;
pub mod query_bench;
pub mod report;
pub mod schema_bench;
mod serve;
pub mod store_bench;

use std::path::PathBuf;

pub use error::{Error, Result};
use gen::Kind;
use report::{format_value, Figure, Row, Section};

/// Settings of a full benchmark run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where generated data and scratch logs go (generated data is kept for reuse).
    pub dir: PathBuf,
    /// `quick` or `full`, for the report.
    pub mode: String,
    /// Runs per figure.
    pub runs: usize,
    /// Seed of the generator.
    pub seed: u64,
    /// Bytes of generated data per kind.
    pub data_bytes: u64,
    /// Records per append run of the log benchmark.
    pub log_records: u64,
    /// Seconds of the log's latency run.
    pub latency_seconds: u64,
    /// Seconds of each ingest run (and of each UDP rate step).
    pub ingest_seconds: u64,
    /// The `eddy` binary run as the server by the ingest benchmark.
    pub server: PathBuf,
    /// Bytes of raw data per kind for the store benchmark.
    pub store_bytes: u64,
    /// Bytes of raw access-log and JSON data for the query benchmark.
    pub query_bytes: (u64, u64),
    /// Bytes of raw access-log and JSON data each for the ingest benchmark's end-to-end rows.
    pub e2e_bytes: u64,
    /// Another `eddy` binary whose end-to-end ingest is measured beside this one's.
    pub baseline_server: Option<PathBuf>,
}

/// The running `eddy` binary (the ingest benchmark starts it as `eddy serve`).
fn this_binary() -> PathBuf {
    std::env::current_exe().unwrap_or_else(|_| PathBuf::from("eddy"))
}

impl Options {
    /// The quick mode: about a minute on a 2-core machine.
    pub fn quick(dir: PathBuf) -> Options {
        Options {
            dir,
            mode: "quick".into(),
            runs: 3,
            seed: 42,
            data_bytes: 32 << 20,
            log_records: 1_000_000,
            latency_seconds: 3,
            ingest_seconds: 3,
            server: this_binary(),
            store_bytes: 64 << 20,
            query_bytes: (128 << 20, 128 << 20),
            e2e_bytes: 64 << 20,
            baseline_server: None,
        }
    }

    /// The full mode: over 1 GB of generated data.
    pub fn full(dir: PathBuf) -> Options {
        Options {
            dir,
            mode: "full".into(),
            runs: 5,
            seed: 42,
            data_bytes: 400 << 20,
            log_records: 4_000_000,
            latency_seconds: 10,
            ingest_seconds: 10,
            server: this_binary(),
            store_bytes: 1 << 30,
            // 10 M access-log events for groupBy and timechart.
            query_bytes: (2 << 30, 1 << 30),
            e2e_bytes: 1 << 30,
            baseline_server: None,
        }
    }
}

impl Options {
    /// The store benchmark's settings.
    pub fn store_options(&self, zstd: PathBuf) -> store_bench::StoreBenchOptions {
        store_bench::StoreBenchOptions {
            dir: self.dir.join("store"),
            data_dir: self.dir.join("store-data"),
            seed: self.seed,
            data_bytes: self.store_bytes,
            zstd,
        }
    }

    /// The crash benchmark's settings: 30 short rounds quick; 100, two of them long enough
    /// to merge, full.
    pub fn crash_options(&self) -> crash_bench::CrashOptions {
        let quick = self.mode == "quick";
        let mut o = crash_bench::CrashOptions::new(
            self.server.clone(),
            self.dir.join("crash"),
            if quick { 30 } else { 100 },
        );
        o.long_rounds = if quick { 0 } else { 2 };
        o.seed = self.seed;
        o
    }

    /// The fan-out benchmark's settings: the query benchmark's JSON data size.
    pub fn fanout_options(&self) -> fanout_bench::FanoutBenchOptions {
        fanout_bench::FanoutBenchOptions {
            exe: self.server.clone(),
            dir: self.dir.join("fanout"),
            data_dir: self.dir.join("store-data"),
            seed: self.seed,
            bytes: self.query_bytes.1,
            runs: self.runs,
        }
    }

    /// The query benchmark's settings.
    pub fn query_options(&self) -> query_bench::QueryBenchOptions {
        query_bench::QueryBenchOptions {
            dir: self.dir.join("query"),
            data_dir: self.dir.join("store-data"),
            seed: self.seed,
            access_bytes: self.query_bytes.0,
            json_bytes: self.query_bytes.1,
            runs: self.runs,
        }
    }

    /// The ingest benchmark's settings.
    pub fn ingest_options(&self) -> ingest_bench::IngestBenchOptions {
        ingest_bench::IngestBenchOptions {
            server: self.server.clone(),
            dir: self.dir.join("ingest"),
            runs: self.runs,
            seconds: self.ingest_seconds,
            clients: 4,
            e2e: ingest_e2e::E2eOptions {
                server: self.server.clone(),
                baseline: self.baseline_server.clone(),
                dir: self.dir.join("ingest-e2e"),
                bytes: self.e2e_bytes,
                clients: 4,
                window: std::time::Duration::from_secs(if self.mode == "quick" { 10 } else { 60 }),
            },
        }
    }
}

/// The report's opening: how to regenerate it and the machine it ran on.
pub fn header(opts: &Options, tools: &baselines::Tools) -> String {
    format!(
        "# eddy benchmark report\n\n\
         Regenerate with `bench/run.sh --quick` (about two minutes) or `bench/run.sh` (full: over 1 GB of \
         generated data, about 20 minutes). The script installs the baseline tools and peers if they are missing, then runs \
         `cargo run --release -p eddy -- bench all`.\n\n\
         {}\n\n{}\n- baseline tools: {}\n",
        report::provenance(&opts.mode, opts.runs),
        report::machine(&opts.dir),
        tools.versions()
    )
}

fn missing(name: &str, baseline: &str, goal: &str) -> Row {
    Row {
        figure: Figure::new(name, "records/s"),
        baseline: baseline.to_string(),
        ratio: String::new(),
        goal: goal.to_string(),
    }
}

/// Runs every benchmark; returns the header and the sections. Fails before any long run if a
/// baseline tool is missing.
pub fn run_all(opts: &Options, progress: &dyn Fn(&str)) -> Result<(String, Vec<Section>)> {
    let tools = baselines::Tools::find()?;
    let data_dir = opts.dir.join("data");
    let runs = opts.runs.max(1);

    // Data.
    let mut data_rows = Vec::new();
    let mut files = Vec::new();
    for kind in Kind::ALL {
        progress(&format!("generating {} data", kind.name()));
        let start = std::time::Instant::now();
        let (path, manifest) = gen::generate_file(&data_dir, kind, opts.seed, opts.data_bytes)?;
        let secs = start.elapsed().as_secs_f64();
        data_rows.push(Row {
            figure: Figure::once(
                &format!("{} data: {} lines", kind.name(), manifest.lines),
                "MB",
                manifest.bytes as f64,
            ),
            baseline: format!("generated (or reused) in {secs:.1} s"),
            ratio: String::new(),
            goal: format!("seed {}", manifest.seed),
        });
        files.push((kind, path, manifest));
    }
    let data = Section {
        id: "data".into(),
        title: "Data".into(),
        intro: "Deterministic, seeded data from `eddy bench gen` (crates/bench/src/gen.rs): web access logs in \
                combined log format, JSON application logs, StatsD lines; Zipf-skewed clients, paths and users, \
                log-normal sizes and latencies, rare errors, and a planted needle whose count is known."
            .into(),
        rows: data_rows,
        notes: String::new(),
    };

    // Physical limits.
    progress("memory bandwidth");
    let mem = baselines::memory_bandwidth();
    let limits = Section {
        id: "limits".into(),
        title: "Physical limits".into(),
        intro: "The disk's fsync'd sequential write rate is measured in the log section, at the log's batch size."
            .into(),
        rows: vec![Row::plain(Figure::once("memory read bandwidth (sum over 512 MiB)", "GB/s", mem))],
        notes: String::new(),
    };

    // Search: rg over the raw files, counts checked against the generator's truth.
    let mut search_rows = Vec::new();
    for (kind, path, manifest) in &files {
        for probe in &manifest.probes {
            progress(&format!("rg {}: {}", kind.name(), probe.name));
            let mut rate = Figure::new("rg", "GB/s");
            for _ in 0..runs {
                let (_, secs) = baselines::rg_count(&tools, probe, path)?;
                rate.runs.push(manifest.bytes as f64 / secs);
            }
            let kind_of = if probe.regex { "regex" } else { "literal" };
            search_rows.push(Row {
                figure: Figure::new(
                    &format!(
                        "eddy search, {}: {} ({} lines)",
                        kind.name(),
                        probe.name,
                        probe.count
                    ),
                    "GB/s",
                ),
                baseline: format!(
                    "rg {} ({}–{}), count checked",
                    format_value(rate.median(), "GB/s"),
                    format_value(rate.min(), "GB/s"),
                    format_value(rate.max(), "GB/s")
                ),
                ratio: String::new(),
                goal: format!(
                    "{kind_of} `{}`: the query engine (issue 5)",
                    probe.pattern.replace('|', "\\|")
                ),
            });
        }
    }
    let search = Section {
        id: "search".into(),
        title: "Search".into(),
        intro: "Lines matching each probe, counted by `rg --count` over the raw file (page cache warm); every \
                count is checked against the generator's. eddy's figures appear here once its query engine exists."
            .into(),
        rows: search_rows,
        notes: String::new(),
    };

    // Compression: the tools' ratios on the raw files.
    let mut compression_rows = Vec::new();
    for (kind, path, manifest) in &files {
        let mut ratios = Vec::new();
        for (label, tool, args, tool_runs) in [
            ("zstd -3", &tools.zstd, vec!["-3", "-q", "-c", "-T1"], runs),
            // Level 19 runs at about 2 MB/s a thread: use both cores, once.
            ("zstd -19", &tools.zstd, vec!["-19", "-q", "-c", "-T0"], 1),
            ("gzip -6", &tools.gzip, vec!["-6", "-c"], 1),
        ] {
            progress(&format!("{label} on {}", kind.name()));
            let mut speed = Figure::new("", "MB/s");
            let mut size = 0;
            for _ in 0..tool_runs {
                let (bytes, secs) = baselines::compressed_size(tool, &args, path)?;
                size = bytes;
                speed.runs.push(manifest.bytes as f64 / secs);
            }
            let ratio = manifest.bytes as f64 / size.max(1) as f64;
            ratios.push(format!("{label} {ratio:.2}×"));
            compression_rows.push(Row {
                figure: Figure::once(&format!("{label} on {}", kind.name()), "ratio", ratio),
                baseline: format!(
                    "(baseline) compresses at {}",
                    format_value(speed.median(), "MB/s")
                ),
                ratio: String::new(),
                goal: String::new(),
            });
        }
    }
    let compression = Section {
        id: "compression".into(),
        title: "Compression".into(),
        intro: "Ratio = raw bytes ÷ compressed bytes over the whole raw file; zstd -3 and gzip -6 on one thread, \
                zstd -19 on all cores (-T0)."
            .into(),
        rows: compression_rows,
        notes: String::new(),
    };

    // The bus.
    let log = log_bench::run(
        &log_bench::LogBenchOptions {
            dir: opts.dir.join("log"),
            runs,
            records: opts.log_records,
            latency_seconds: opts.latency_seconds,
            memory_bandwidth: mem,
        },
        &opts.mode,
        progress,
    )?;
    let _ = std::fs::remove_dir_all(opts.dir.join("log"));

    let ingest = ingest_bench::run(&opts.ingest_options(), &opts.mode, progress)?;
    let store = store_bench::run(
        &opts.store_options(tools.zstd.clone()),
        &opts.mode,
        progress,
    )?;
    let query = query_bench::run(&opts.query_options(), &opts.mode, progress)?;
    let crash = crash_bench::section(
        &crash_bench::run(&opts.crash_options(), progress)?,
        &opts.mode,
    );

    let not_yet = Section {
        id: "missing".into(),
        title: "Figures of parts not built yet".into(),
        intro: "Reported as missing rather than invented; each issue adds its figures here.".into(),
        rows: vec![
            missing(
                "live query: acknowledgement → websocket update p99",
                "",
                "≤ 100 ms (issue 6)",
            ),
            missing("schema validation rate", "", "issue 7"),
        ],
        notes: String::new(),
    };
    progress("peers: ClickHouse");
    let not_available = "Not run: Grafana Loki, VictoriaLogs, Humio/LogScale, Vector, Riemann and Apache Kafka with \
                         a schema registry are not in the package registries this machine reaches (Debian, \
                         crates.io, PyPI, npm), and nothing else can be downloaded here.";
    let peers = match peers::clickhouse(&opts.dir.join("peers"), &data_dir, &files, runs)? {
        peers::Peer::Ran { name, rows } => Section {
            id: "peers".into(),
            title: "Peers".into(),
            intro: format!(
                "{name}, on the same generated files: one column of raw lines per table, as a log store \
                 without schema would keep them; searches scan the stored table every run (query condition cache \
                 and query cache off). Its counts are checked against the generator's.\n\n{not_available}"
            ),
            rows,
            notes: String::new(),
        },
        peers::Peer::NotRun(why) => Section {
            id: "peers".into(),
            title: "Peers".into(),
            intro: format!("{why}.\n\n{not_available}"),
            rows: Vec::new(),
            notes: String::new(),
        },
    };
    Ok((
        header(opts, &tools),
        vec![
            data,
            limits,
            log,
            ingest,
            search,
            compression,
            store,
            query,
            crash,
            not_yet,
            peers,
        ],
    ))
}
