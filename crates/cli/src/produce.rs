//! `eddy produce`: lines from stdin become records, appended in batches.
//!
//! A reader thread splits stdin into lines; the main thread appends whatever has arrived (up to
//! `--batch-size`) as one batch, so piped bulk data goes in large batches and interactive input
//! is appended line by line without waiting.

use std::io::{BufRead, Read};
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use eddy_log::{PartitionChoice, Record};

use crate::output::json_line;
use crate::topic::TopicSettings;
use crate::BusArgs;

#[derive(Debug, Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    bus: BusArgs,
    /// The topic to append to.
    topic: String,
    /// Create the topic (with the settings below) if it does not exist.
    #[arg(long)]
    create: bool,
    /// Append every record to this partition instead of choosing by key.
    #[arg(short, long)]
    partition: Option<u32>,
    /// Use this key for every record.
    #[arg(long, conflicts_with = "key_separator")]
    key: Option<String>,
    /// Split each line at the first SEP into key and value.
    #[arg(long, value_name = "SEP")]
    key_separator: Option<String>,
    /// Most lines per appended batch.
    #[arg(long, default_value_t = 1000)]
    batch_size: usize,
    /// Keep empty lines as empty records (they are skipped by default).
    #[arg(long)]
    keep_empty: bool,
    /// Print a JSON summary on stdout.
    #[arg(long)]
    json: bool,
    #[command(flatten, next_help_heading = "Settings of a topic made by --create")]
    settings: TopicSettings,
}

#[derive(Debug, serde::Serialize)]
struct Summary {
    topic: String,
    records: u64,
    batches: u64,
    bytes: u64,
    seconds: f64,
    records_per_second: f64,
    partitions: Vec<u32>,
}

fn line_to_record(line: Vec<u8>, args: &ProduceArgs) -> Record {
    if let Some(key) = &args.key {
        return Record::new(line).with_key(key.clone());
    }
    if let Some(sep) = &args.key_separator {
        let sep = sep.as_bytes();
        if let Some(at) = line.windows(sep.len()).position(|w| w == sep) {
            let value = line[at + sep.len()..].to_vec();
            let mut key = line;
            key.truncate(at);
            return Record::new(value).with_key(key);
        }
    }
    Record::new(line)
}

pub fn run(args: &ProduceArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.batch_size > 0, "--batch-size must be at least 1");
    let log = args.bus.open_log()?;
    let topic = if args.create {
        log.topic_or_create(&args.topic, args.settings.to_config()?)?
    } else {
        log.topic(&args.topic)
            .with_context(|| format!("use --create to create topic {:?}", args.topic))?
    };
    let choice = match args.partition {
        Some(p) => {
            topic.partition(p)?;
            PartitionChoice::Explicit(p)
        }
        None => PartitionChoice::ByKey,
    };

    let (tx, rx) = mpsc::sync_channel::<(u64, Vec<u8>)>(args.batch_size * 4);
    let reader = std::thread::spawn(move || -> std::io::Result<()> {
        let stdin = std::io::stdin();
        let mut input = std::io::BufReader::with_capacity(1 << 20, stdin.lock().take(u64::MAX));
        let mut line = Vec::new();
        let mut number = 0u64;
        loop {
            number += 1;
            line.clear();
            if input.read_until(b'\n', &mut line)? == 0 {
                return Ok(());
            }
            if line.last() == Some(&b'\n') {
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
            }
            if tx.send((number, line.clone())).is_err() {
                return Ok(());
            }
        }
    });

    let start = Instant::now();
    let mut summary = Summary {
        topic: args.topic.clone(),
        records: 0,
        batches: 0,
        bytes: 0,
        seconds: 0.0,
        records_per_second: 0.0,
        partitions: Vec::new(),
    };
    let mut batch = Vec::with_capacity(args.batch_size);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < args.batch_size {
            match rx.try_recv() {
                Ok(line) => batch.push(line),
                Err(_) => break,
            }
        }
        let (numbers, records): (Vec<u64>, Vec<Record>) = batch
            .drain(..)
            .filter(|(_, l)| args.keep_empty || !l.is_empty())
            .map(|(n, l)| (n, line_to_record(l, args)))
            .unzip();
        if records.is_empty() {
            continue;
        }
        let n = records.len() as u64;
        summary.bytes += records.iter().map(|r| r.value.len() as u64).sum::<u64>();
        let acks = topic.produce(records, choice).map_err(|e| match e {
            eddy_log::Error::RecordTooLarge { index, size, limit } => anyhow::anyhow!(
                "line {} of stdin is {size} bytes as a record, over topic {:?}'s limit of {limit} bytes \
                 (max_record_bytes); the {} records before this batch were appended",
                numbers.get(index).copied().unwrap_or_default(),
                args.topic,
                summary.records
            ),
            e => anyhow::Error::new(e).context(format!(
                "appending to topic {:?} after {} records",
                args.topic, summary.records
            )),
        })?;
        for a in acks {
            if !summary.partitions.contains(&a.partition) {
                summary.partitions.push(a.partition);
            }
            summary.batches += 1;
        }
        summary.records += n;
    }
    match reader.join() {
        Ok(result) => result.context("reading stdin")?,
        Err(_) => anyhow::bail!("the stdin reader thread panicked"),
    }
    summary.partitions.sort_unstable();
    summary.seconds = start.elapsed().as_secs_f64();
    summary.records_per_second = summary.records as f64 / summary.seconds.max(1e-9);
    if args.json {
        json_line(&summary)?;
    } else {
        eprintln!(
            "produced {} records in {} batches to {} (partitions {:?}) in {:.2}s ({:.0} records/s)",
            summary.records,
            summary.batches,
            summary.topic,
            summary.partitions,
            summary.seconds,
            summary.records_per_second
        );
    }
    Ok(ExitCode::SUCCESS)
}
