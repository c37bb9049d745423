//! `eddy bench …`: generate data, run the benchmarks, write `bench/REPORT.md`.
//! The work is in the `eddy-bench` crate; this module parses options and shows progress.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use eddy_bench::gen::Kind;
use eddy_bench::{crash_bench, log_bench, report, Options};

use crate::output::json_line;

use eddy_event::units::{parse_size, parse_time};

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Generate the data, run every benchmark and baseline, and write the whole report.
    All(AllArgs),
    /// Benchmark the log only (append, read, follow, ack latency beside the disk) and replace
    /// the report's log section.
    Log(LogArgs),
    /// Benchmark `eddy serve` (HTTP ingest rate and latency, syslog over UDP, end to end until
    /// searchable, the data directory's footprint) and replace the report's ingest section.
    Ingest(IngestArgs),
    /// Benchmark live queries (20 websocket subscriptions under 100 k events/s of ingest:
    /// freshness and ingest cost) and replace the report's live section.
    Live(LogArgs),
    /// Benchmark alerting (many rules evaluated live under 100 k events/s of ingest: ingest
    /// cost, alert latency to a webhook, memory per rule) and replace the report's alerts
    /// section.
    Alerts(AlertsArgs),
    /// Benchmark the segment store (compression ratio beside zstd -3, digest rate, catalogue
    /// size) and replace the report's store section.
    Store(StoreArgs),
    /// Benchmark queries over segments beside ripgrep over the raw files (count, needle,
    /// regex, groupBy, timechart) and replace the report's query section.
    Query(QueryArgs),
    /// Benchmark queries across nodes: the same queries on one `eddy serve` holding every
    /// event beside three nodes each holding a third, one fanning out to the others (all on
    /// loopback), with one peer's partial answer size; replaces the report's fanout section.
    Fanout(FanoutArgs),
    /// Benchmark ingest through Kafka beside the embedded bus, in one run: the same HTTP load
    /// into one node on the embedded bus, one node on a Kafka-protocol broker, and three nodes
    /// on one broker (events/s and MB/s acknowledged, acknowledgement latency, end to end until
    /// counted, events/s per core, bytes per event stored); replaces the report's kafka
    /// section. Starts the broker (tansu, from crates/kafka/install-broker.sh) itself.
    Kafka(KafkaArgs),
    /// SIGKILL `eddy serve` again and again while clients ingest and its digest seals,
    /// commits and merges; then check that every acknowledged event is found exactly once.
    /// Replaces the report's crash section; exits with 1 if anything was lost or doubled.
    Crash(CrashArgs),
    /// Write deterministic generated data to a file or stdout.
    Gen(GenArgs),
}

#[derive(Debug, Args)]
pub struct CrashArgs {
    /// SIGKILLs (rounds).
    #[arg(long, default_value_t = 100)]
    kills: usize,
    /// Longest stretch between a start and its kill.
    #[arg(long, value_parser = eddy_event::units::parse_duration, default_value = "400ms")]
    max_round: std::time::Duration,
    /// Rounds that outlive the server's 30 s maintenance period, so that merges run (each
    /// takes 32 s).
    #[arg(long, default_value_t = 2)]
    long_rounds: usize,
    /// Print the outcome as one JSON object and write no report.
    #[arg(long)]
    json: bool,
    /// Scratch directory (emptied first).
    #[arg(long, default_value = "bench/data/crash")]
    dir: PathBuf,
    /// The report file.
    #[arg(long, default_value = "bench/REPORT.md")]
    report: PathBuf,
}

#[derive(Debug, Args)]
pub struct Common {
    /// Quick mode: about a minute instead of the full run.
    #[arg(long)]
    quick: bool,
    /// Working directory for generated data and scratch logs, on the disk to measure.
    #[arg(long, default_value = "bench/data")]
    dir: PathBuf,
    /// The report file.
    #[arg(long, default_value = "bench/REPORT.md")]
    report: PathBuf,
    /// Runs per figure (default 3 quick, 5 full); the median is reported with min and max.
    #[arg(long)]
    runs: Option<usize>,
    /// Records per append run of the log benchmark.
    #[arg(long)]
    records: Option<u64>,
    /// Seconds of the acknowledgement-latency run, and of each ingest run.
    #[arg(long)]
    latency_seconds: Option<u64>,
    /// Also print the sections as JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct StoreArgs {
    #[command(flatten)]
    common: Common,
    /// Bytes of raw data per kind (default 64MiB quick, 1GiB full).
    #[arg(long, value_parser = parse_size)]
    data_size: Option<u64>,
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    #[command(flatten)]
    common: Common,
    /// Bytes of raw access-log data (default 128MiB quick, 2GiB full: 10 M events).
    #[arg(long, value_parser = parse_size)]
    access_size: Option<u64>,
    /// Bytes of raw JSON application-log data (default 128MiB quick, 1GiB full).
    #[arg(long, value_parser = parse_size)]
    json_size: Option<u64>,
}

#[derive(Debug, Args)]
pub struct FanoutArgs {
    #[command(flatten)]
    common: Common,
    /// Bytes of raw JSON application-log data spread over the nodes (default 128MiB quick,
    /// 1GiB full).
    #[arg(long, value_parser = parse_size)]
    json_size: Option<u64>,
}

#[derive(Debug, Args)]
pub struct KafkaArgs {
    #[command(flatten)]
    common: Common,
    /// Bytes of raw data of each format, access lines and JSON logs (default 4MiB quick,
    /// 16MiB full: the test broker takes one record per batch, about a thousand events/s).
    #[arg(long, value_parser = parse_size)]
    size: Option<u64>,
    /// Client threads posting at once.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Seconds a count that differs from what was acknowledged may stay the same before the
    /// difference is reported (as events missing from or added to the count) instead of
    /// waited on.
    #[arg(long, default_value_t = 60)]
    stall_seconds: u64,
}

#[derive(Debug, Args)]
pub struct AllArgs {
    #[command(flatten)]
    common: Common,
    /// Bytes of generated data per kind (default 32MiB quick, 400MiB full); also the query
    /// benchmark's data when given.
    #[arg(long, value_parser = parse_size)]
    data_size: Option<u64>,
    /// Seed of the data generator.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    #[command(flatten)]
    common: Common,
    /// Bytes of raw access-log and JSON data each for the end-to-end and footprint rows
    /// (default 64MiB quick, 1GiB full).
    #[arg(long, value_parser = parse_size)]
    e2e_size: Option<u64>,
    /// Another eddy binary (an older build) whose end-to-end ingest and footprint are measured
    /// beside this one's, in the same run.
    #[arg(long)]
    baseline_server: Option<PathBuf>,
    /// Measure only the end-to-end and footprint rows, print them, and leave the report as it
    /// is (a partial section would replace the whole one).
    #[arg(long)]
    end_to_end_only: bool,
}

#[derive(Debug, Args)]
pub struct AlertsArgs {
    #[command(flatten)]
    common: Common,
    /// Alert rules (default 100 quick, 1000 full).
    #[arg(long)]
    rules: Option<usize>,
    /// Events per second offered by the load.
    #[arg(long, default_value_t = 100_000)]
    rate: u64,
    /// Seconds of each load (default 10 quick, 30 full).
    #[arg(long)]
    seconds: Option<u64>,
}

#[derive(Debug, Args)]
pub struct LogArgs {
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Args)]
pub struct GenArgs {
    /// access (combined log format), json (application logs) or statsd.
    #[arg(long)]
    kind: Kind,
    /// About how many bytes to write (whole lines).
    #[arg(long, value_parser = parse_size, default_value = "10MiB")]
    size: u64,
    /// Seed: the same seed and size give the same bytes.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Output file (default stdout); its manifest (probe counts) goes to stderr as JSON.
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Time of the first event: RFC 3339 or a relative time like 60d (that long ago). Default:
    /// the data ends now, so a search over the last hours finds it.
    #[arg(long, value_parser = parse_time)]
    start: Option<i64>,
}

impl GenArgs {
    fn start_ns(&self) -> i64 {
        self.start.unwrap_or_else(|| {
            eddy_event::time::now_ns()
                - eddy_bench::gen::time_span_ns(self.kind, self.seed, self.size)
        })
    }
}

impl Common {
    fn options(&self) -> Options {
        let mut o = if self.quick {
            Options::quick(self.dir.clone())
        } else {
            Options::full(self.dir.clone())
        };
        if let Some(r) = self.runs {
            o.runs = r.max(1);
        }
        if let Some(r) = self.records {
            o.log_records = r;
        }
        if let Some(s) = self.latency_seconds {
            o.latency_seconds = s.max(1);
            o.ingest_seconds = s.max(1);
        }
        o
    }
}

fn progress_bar() -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new_spinner().with_style(
        indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

/// Writes the report (whole, or only these sections) and prints the sections.
fn finish(
    common: &Common,
    header: &str,
    sections: &[report::Section],
    whole: bool,
) -> anyhow::Result<()> {
    if whole {
        report::write_report(&common.report, header, sections)?;
    } else {
        report::update_report(&common.report, header, sections)?;
    }
    let mut out = std::io::stdout().lock();
    for s in sections {
        let md = s.markdown();
        let text: Vec<&str> = md.lines().filter(|l| !l.starts_with("<!--")).collect();
        writeln!(out, "{}\n", text.join("\n"))?;
    }
    writeln!(out, "report written to {}", common.report.display())?;
    if common.json {
        serde_json::to_writer(&mut out, sections)?;
        writeln!(out)?;
    }
    Ok(())
}

/// Runs `bench` with a spinner showing its progress messages.
fn with_progress<T>(bench: impl FnOnce(&dyn Fn(&str)) -> T) -> T {
    let bar = progress_bar();
    let result = bench(&|m: &str| bar.set_message(m.to_string()));
    bar.finish_and_clear();
    result
}

/// Replaces one benchmark's section of the report and prints it.
fn finish_section(common: &Common, opts: &Options, section: report::Section) -> anyhow::Result<()> {
    let header = format!("# eddy benchmark report\n\n{}", report::machine(&opts.dir));
    finish(common, &header, &[section], false)
}

pub fn run(cmd: &BenchCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        BenchCommand::All(args) => {
            let mut opts = args.common.options();
            opts.seed = args.seed;
            if let Some(size) = args.data_size {
                opts.data_bytes = size;
                opts.query_bytes = (size, size);
            }
            let bar = progress_bar();
            let result = eddy_bench::run_all(&opts, &|m: &str| bar.set_message(m.to_string()));
            bar.finish_and_clear();
            let (header, sections) = result?;
            let _ = std::fs::remove_dir_all(opts.dir.join("log"));
            finish(&args.common, &header, &sections, true)?;
        }
        BenchCommand::Log(args) => {
            let opts = args.common.options();
            let bar = progress_bar();
            bar.set_message("memory bandwidth");
            let log_opts = log_bench::LogBenchOptions {
                dir: opts.dir.join("log"),
                runs: opts.runs,
                records: opts.log_records,
                latency_seconds: opts.latency_seconds,
                memory_bandwidth: eddy_bench::baselines::memory_bandwidth(),
            };
            let result = log_bench::run(&log_opts, &opts.mode, &|m: &str| {
                bar.set_message(m.to_string())
            });
            bar.finish_and_clear();
            let _ = std::fs::remove_dir_all(&log_opts.dir);
            finish_section(&args.common, &opts, result?)?;
        }
        BenchCommand::Ingest(args) => {
            let mut opts = args.common.options();
            if let Some(size) = args.e2e_size {
                opts.e2e_bytes = size;
            }
            opts.baseline_server.clone_from(&args.baseline_server);
            if args.end_to_end_only {
                let rows =
                    with_progress(|p| eddy_bench::ingest_e2e::rows(&opts.ingest_options().e2e, p))?;
                let section = report::Section {
                    id: "ingest-end-to-end".into(),
                    title: "Ingest end to end (not written to the report)".into(),
                    intro: String::new(),
                    rows,
                    notes: String::new(),
                };
                println!("{}", section.markdown());
                if args.common.json {
                    println!("{}", serde_json::to_string(&section)?);
                }
                return Ok(ExitCode::SUCCESS);
            }
            let section = with_progress(|p| {
                eddy_bench::ingest_bench::run(&opts.ingest_options(), &opts.mode, p)
            })?;
            finish_section(&args.common, &opts, section)?;
        }
        BenchCommand::Live(args) => {
            let opts = args.common.options();
            let mut live = opts.ingest_options();
            live.dir = opts.dir.join("live");
            let section = with_progress(|p| eddy_bench::live_bench::run(&live, &opts.mode, p))?;
            finish_section(&args.common, &opts, section)?;
        }
        BenchCommand::Alerts(args) => {
            let opts = args.common.options();
            let mut alerts = eddy_bench::alerts_bench::AlertsBenchOptions::quick(
                &opts.server,
                &opts.dir.join("alerts"),
            );
            alerts.rate = args.rate;
            alerts.runs = args.common.runs.unwrap_or(1).max(1);
            if !args.common.quick {
                alerts.rules = 1000;
                alerts.seconds = 30;
            }
            if let Some(rules) = args.rules {
                alerts.rules = rules.max(1);
            }
            if let Some(seconds) = args.seconds {
                alerts.seconds = seconds.max(1);
            }
            let section = with_progress(|p| eddy_bench::alerts_bench::run(&alerts, &opts.mode, p))?;
            finish_section(&args.common, &opts, section)?;
        }
        BenchCommand::Store(args) => {
            let mut opts = args.common.options();
            if let Some(size) = args.data_size {
                opts.store_bytes = size;
            }
            let tools = eddy_bench::baselines::Tools::find()?;
            let section = with_progress(|p| {
                eddy_bench::store_bench::run(&opts.store_options(tools.zstd.clone()), &opts.mode, p)
            })?;
            finish_section(&args.common, &opts, section)?;
        }
        BenchCommand::Query(args) => {
            let mut opts = args.common.options();
            if let Some(size) = args.access_size {
                opts.query_bytes.0 = size;
            }
            if let Some(size) = args.json_size {
                opts.query_bytes.1 = size;
            }
            let section = with_progress(|p| {
                eddy_bench::query_bench::run(&opts.query_options(), &opts.mode, p)
            })?;
            finish_section(&args.common, &opts, section)?;
        }
        BenchCommand::Fanout(args) => {
            let mut opts = args.common.options();
            if let Some(size) = args.json_size {
                opts.query_bytes.1 = size;
            }
            let section = with_progress(|p| {
                eddy_bench::fanout_bench::run(&opts.fanout_options(), &opts.mode, p)
            })?;
            finish_section(&args.common, &opts, section)?;
        }
        BenchCommand::Kafka(args) => {
            let opts = args.common.options();
            let kafka = eddy_bench::kafka_bench::KafkaBenchOptions {
                exe: opts.server.clone(),
                dir: opts.dir.join("kafka"),
                bytes: args.size.unwrap_or(match args.common.quick {
                    true => 4 << 20,
                    false => 16 << 20,
                }),
                clients: args.clients.max(1),
                seed: opts.seed,
                stall: std::time::Duration::from_secs(args.stall_seconds),
            };
            let section = with_progress(|p| eddy_bench::kafka_bench::run(&kafka, &opts.mode, p));
            let _ = std::fs::remove_dir_all(&kafka.dir);
            finish_section(&args.common, &opts, section?)?;
        }
        BenchCommand::Crash(args) => return crash(args),
        BenchCommand::Gen(args) => {
            let start = args.start_ns();
            let generate =
                |mut w: &mut dyn std::io::Write| -> anyhow::Result<eddy_bench::gen::Manifest> {
                    Ok(eddy_bench::gen::generate_from(
                        args.kind, args.seed, args.size, start, &mut w,
                    )?)
                };
            let manifest = match &args.out {
                Some(path) => {
                    let file = std::fs::File::create(path)
                        .with_context(|| format!("creating {}", path.display()))?;
                    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
                    let m = generate(&mut w)?;
                    w.flush()
                        .with_context(|| format!("writing {}", path.display()))?;
                    m
                }
                None => {
                    let mut w =
                        std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
                    let m = generate(&mut w)?;
                    w.flush()?;
                    m
                }
            };
            eprintln!("{}", serde_json::to_string(&manifest)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn crash(args: &CrashArgs) -> anyhow::Result<ExitCode> {
    let server = std::env::current_exe().context("finding the eddy binary")?;
    let mut opts = crash_bench::CrashOptions::new(server, args.dir.clone(), args.kills);
    opts.max_round = args.max_round;
    opts.long_rounds = args.long_rounds;
    let outcome = if args.json {
        crash_bench::run(&opts, &|_: &str| {})?
    } else {
        with_progress(|p| crash_bench::run(&opts, p))?
    };
    if args.json {
        json_line(&outcome)?;
    } else {
        let header = format!("# eddy benchmark report\n\n{}", report::machine(&args.dir));
        let section = crash_bench::section(&outcome, &format!("{} kills", outcome.kills));
        report::update_report(&args.report, &header, std::slice::from_ref(&section))?;
        println!(
            "{} kills in {:.0} s: {} events acknowledged, {} lost, {} doubled",
            outcome.kills, outcome.seconds, outcome.acknowledged, outcome.lost, outcome.doubled
        );
        if !outcome.exact() {
            println!(
                "lost e.g. {:?}, doubled e.g. {:?}",
                outcome.lost_examples, outcome.doubled_examples
            );
        }
        println!("report written to {}", args.report.display());
    }
    let _ = std::fs::remove_dir_all(&opts.dir);
    Ok(if outcome.exact() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
