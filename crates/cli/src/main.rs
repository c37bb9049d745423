//! `eddy`: the one binary. This file parses the command line and maps errors to exit codes;
//! each subcommand lives in its own module.

mod alert;
mod bench;
mod client;
mod consume;
mod fields;
mod group;
mod output;
mod produce;
mod schema;
mod search;
mod send;
mod serve;
mod store;
mod tail;
mod token;
mod topic;
use eddy_event::units;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

// The doors allocate many small strings per event (field names, values); mimalloc serves them
// markedly faster than the system allocator under concurrent requests (measured with
// `eddy bench ingest`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use eddy_log::{Durability, Log};

/// eddy collects events, logs and metrics, keeps them in a durable partitioned log, and answers
/// questions over them.
#[derive(Debug, Parser)]
#[command(
    name = "eddy",
    version,
    propagate_version = true,
    arg_required_else_help = true
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options every command takes: how much it logs, and how; which CA a client trusts.
#[derive(Debug, Args)]
struct Global {
    /// More log output on stderr (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    /// Log lines as `text` (coloured only on a terminal) or `json` (one object per line).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    /// For the commands that call a server over https:// or wss://: trust the CA
    /// certificates in this PEM file instead of the public roots (as curl's --cacert).
    #[arg(long, global = true, env = "EDDY_CACERT", value_name = "FILE")]
    cacert: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// The data directory, for the commands that open it on this machine.
#[derive(Debug, Args)]
pub struct DataDir {
    /// Data directory of the embedded log.
    #[arg(
        long,
        global = true,
        env = "EDDY_DATA_DIR",
        default_value = "eddy-data"
    )]
    data_dir: PathBuf,
}

impl DataDir {
    /// Opens the log for reading only, so it works beside a process that writes it.
    fn open_log_read_only(&self) -> anyhow::Result<Log> {
        use anyhow::Context;
        Log::builder(&self.data_dir)
            .read_only(Duration::from_millis(10))
            .open()
            .with_context(|| format!("opening the log in {} to read", self.data_dir.display()))
    }
}

/// The data directory and how appends to it are made durable, for the commands that write the
/// bus themselves.
#[derive(Debug, Args)]
pub struct BusArgs {
    #[command(flatten)]
    dir: DataDir,

    /// When appends are acknowledged: `fsync` (after fsync, with group commit; the default) or
    /// `interval` (after the write; fsync every --fsync-interval, so a machine crash can lose
    /// that much acknowledged data).
    #[arg(long, global = true, value_parser = ["fsync", "interval"], default_value = "fsync")]
    durability: String,

    /// Group-commit linger in `fsync` mode: how long a sync waits for more appenders.
    #[arg(long, global = true, value_parser = units::parse_duration, default_value = "0ms")]
    linger: Duration,

    /// Time between background fsyncs in `interval` mode.
    #[arg(long, global = true, value_parser = units::parse_duration, default_value = "1s")]
    fsync_interval: Duration,
}

impl BusArgs {
    fn durability(&self) -> Durability {
        match self.durability.as_str() {
            "interval" => Durability::Interval {
                interval: self.fsync_interval,
            },
            _ => Durability::Fsync {
                linger: self.linger,
            },
        }
    }

    /// Opens the log with the chosen durability.
    fn open_log(&self) -> anyhow::Result<Log> {
        use anyhow::Context;
        Log::builder(&self.dir.data_dir)
            .durability(self.durability())
            .open()
            .with_context(|| format!("opening the log in {}", self.dir.data_dir.display()))
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server: HTTP, TCP, UDP, syslog and statsd doors into the bus.
    Serve(serve::ServeArgs),
    /// Send lines from files or stdin to a running server over HTTP, in batches, with retries.
    Send(send::SendArgs),
    /// Run a query on a server: `eddy search 'status>=500 | groupBy(host)' --start 24h`.
    Search(search::SearchArgs),
    /// List the fields a repository's events have, with types, counts and top values:
    /// `eddy fields --start 1h`.
    Fields(fields::FieldsArgs),
    /// Follow a live query: `eddy tail 'status>=500'` prints events as they come, an aggregate
    /// is a table redrawn as it changes.
    Tail(tail::TailArgs),
    /// Create, list, describe, verify and delete topics.
    Topic(topic::TopicArgs),
    /// Append lines from stdin to a topic, one record per line.
    Produce(produce::ProduceArgs),
    /// Print a topic's records: from the beginning, an offset or a time; optionally follow.
    Consume(consume::ConsumeArgs),
    /// List consumer groups and show their committed offsets and lag.
    Group(group::GroupArgs),
    /// The schema registry of a running server: register, list, show, check, diff.
    #[command(subcommand)]
    Schema(schema::SchemaCommand),
    /// Inspect the segment store: list segments, verify checksums, show compression ratios.
    Store(store::StoreArgs),
    /// Alert rules of a running server: list, show, create, delete, history.
    #[command(subcommand)]
    Alert(alert::AlertCommand),
    /// Tokens of a running server: create (the secret is shown once), list, revoke.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Run benchmarks and write their report.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

fn init_tracing(global: &Global) {
    let default = match global.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match global.log_format {
        LogFormat::Json => builder.json().init(),
        // Colour codes only help a person at a terminal; in a file they are noise.
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli.global);
    // Every command that reads a bus reads the blocks the doors lay out on it.
    eddy_store::bus_block::register();
    if let Some(path) = &cli.global.cacert {
        if let Err(e) = client::trust_ca(path) {
            eprintln!("error: {}", error_chain(&e));
            return ExitCode::from(2);
        }
    }
    let result = match &cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Send(args) => send::run(args),
        Command::Search(args) => search::run(args),
        Command::Fields(args) => fields::run(args),
        Command::Tail(args) => tail::run(args),
        Command::Topic(args) => topic::run(args),
        Command::Produce(args) => produce::run(args),
        Command::Consume(args) => consume::run(args),
        Command::Group(args) => group::run(args),
        Command::Schema(cmd) => schema::run(cmd),
        Command::Store(args) => store::run(args),
        Command::Alert(cmd) => alert::run(cmd),
        Command::Token(cmd) => token::run(cmd),
        Command::Bench(cmd) => bench::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) if output::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes joined by ": ", leaving out a cause whose text the message before it
/// already holds (library errors often say their source in their own message).
pub(crate) fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    /// Clap checks the whole command tree (e.g. no two arguments with one name) only when a
    /// subcommand is used; this checks it all at once.
    #[test]
    fn an_error_that_repeats_its_cause_is_printed_once() {
        let io = std::io::Error::other("disk on fire");
        let inner = eddy_log::Error::Io(eddy_log::IoError {
            context: "reading x".into(),
            source: io,
        });
        let e = anyhow::Error::new(inner).context("opening the log");
        assert_eq!(
            super::error_chain(&e),
            "opening the log: reading x: disk on fire"
        );
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
