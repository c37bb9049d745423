//! `eddy consume`: print records from a position, optionally following the tail.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use base64::Engine;
use clap::Args;
use eddy_log::{PartitionReader, StoredRecord};

use crate::DataDir;
use eddy_event::units::{format_time, parse_duration, parse_time};

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("start").args(["from_beginning", "from_end", "offset", "since"]))]
pub struct ConsumeArgs {
    #[command(flatten)]
    dir: DataDir,
    /// The topic to read.
    topic: String,
    /// Read only this partition (default: all).
    #[arg(short, long)]
    partition: Option<u32>,
    /// Start at the oldest record held (the default without --group).
    #[arg(long)]
    from_beginning: bool,
    /// Start after the newest record (useful with --follow).
    #[arg(long)]
    from_end: bool,
    /// Start at this offset (in every partition read).
    #[arg(long)]
    offset: Option<u64>,
    /// Start at the first record at or after this time: RFC 3339 or a relative time like 15m.
    #[arg(long, value_parser = parse_time)]
    since: Option<i64>,
    /// Keep waiting for new records; woken as soon as they are durable.
    #[arg(short, long)]
    follow: bool,
    /// With --follow, stop after this long without new records.
    #[arg(long, value_parser = parse_duration, requires = "follow")]
    idle_timeout: Option<Duration>,
    /// Stop after this many records.
    #[arg(short = 'n', long)]
    max: Option<u64>,
    /// Consumer group: start where the group left off and commit what was printed.
    #[arg(short, long)]
    group: Option<String>,
    /// Print `key<TAB>value` instead of the value alone.
    #[arg(long)]
    print_key: bool,
    /// One JSON object per record: topic, partition, offset, timestamp, key, value, headers.
    #[arg(long)]
    json: bool,
}

fn bytes_json(b: &[u8]) -> serde_json::Value {
    match std::str::from_utf8(b) {
        Ok(s) => serde_json::Value::String(s.to_string()),
        Err(_) => {
            serde_json::json!({ "base64": base64::engine::general_purpose::STANDARD.encode(b) })
        }
    }
}

/// A record's value for people: a repository's topic (`repo.<name>`) holds events in their
/// binary encoding, shown as JSON; anything else is shown as it is.
fn event_json(args: &ConsumeArgs, value: &[u8]) -> Option<serde_json::Value> {
    if !args.topic.starts_with("repo.") {
        return None;
    }
    let event = eddy_event::codec::decode(value).ok()?;
    serde_json::to_value(&event).ok()
}

fn write_record(
    out: &mut impl Write,
    args: &ConsumeArgs,
    partition: u32,
    r: &StoredRecord,
) -> std::io::Result<()> {
    if args.json {
        let headers: serde_json::Map<String, serde_json::Value> = r
            .headers
            .iter()
            .map(|h| (h.name.clone(), bytes_json(&h.value)))
            .collect();
        let obj = serde_json::json!({
            "topic": args.topic,
            "partition": partition,
            "offset": r.offset,
            "timestamp": format_time(r.timestamp),
            "timestamp_ns": r.timestamp,
            "key": r.key.as_deref().map(bytes_json),
            "value": event_json(args, &r.value).unwrap_or_else(|| bytes_json(&r.value)),
            "headers": headers,
        });
        serde_json::to_writer(&mut *out, &obj)?;
        return writeln!(out);
    }
    if args.print_key {
        out.write_all(r.key.as_deref().unwrap_or_default())?;
        out.write_all(b"\t")?;
    }
    match event_json(args, &r.value) {
        Some(event) => serde_json::to_writer(&mut *out, &event)?,
        None => out.write_all(&r.value)?,
    }
    writeln!(out)
}

pub fn run(args: &ConsumeArgs) -> anyhow::Result<ExitCode> {
    let log = args.dir.open_log_read_only()?;
    let topic = log.topic(&args.topic)?;
    if let Some(group) = &args.group {
        eddy_log::validate_name("consumer group", group)?;
    }
    let partitions: Vec<u32> = match args.partition {
        Some(p) => {
            topic.partition(p)?;
            vec![p]
        }
        None => (0..topic.partition_count()).collect(),
    };
    let mut readers: Vec<PartitionReader> = Vec::with_capacity(partitions.len());
    for &p in &partitions {
        let part = topic.partition(p)?;
        let committed = args
            .group
            .as_deref()
            .and_then(|g| log.groups().committed(g, &args.topic, p));
        let start = if let Some(o) = args.offset {
            o
        } else if let Some(ts) = args.since {
            part.offset_for_time(ts)?
        } else if args.from_end {
            part.end_offset()
        } else if let (Some(c), false) = (committed, args.from_beginning) {
            c
        } else {
            part.start_offset()
        };
        readers.push(topic.reader(p, start)?.skipping_damage());
    }

    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut printed = 0u64;
    let max = args.max.unwrap_or(u64::MAX);
    let mut idle = Duration::ZERO;
    while printed < max {
        let wait = if args.follow {
            Duration::from_millis(500)
        } else {
            Duration::ZERO
        };
        let polled = topic.poll_many(&mut readers, wait)?;
        if polled.is_empty() {
            if !args.follow {
                break;
            }
            idle += wait;
            if args.idle_timeout.is_some_and(|limit| idle >= limit) {
                break;
            }
            continue;
        }
        idle = Duration::ZERO;
        let mut commits = Vec::new();
        for (partition, records) in &polled {
            let mut last = None;
            for r in records {
                if printed >= max {
                    break;
                }
                write_record(&mut out, args, *partition, r)?;
                printed += 1;
                last = Some(r.offset);
            }
            if let Some(o) = last {
                commits.push((args.topic.as_str(), *partition, o + 1));
            }
        }
        out.flush()?;
        if let Some(group) = &args.group {
            // Commit only what was printed and flushed: at-least-once.
            log.groups().commit(group, &commits)?;
        }
    }
    out.flush()?;
    let skipped: u64 = readers.iter().map(|r| r.skipped()).sum();
    if skipped > 0 {
        eprintln!(
            "error: {skipped} record(s) could not be read: the bus data holding them is damaged (named above; `eddy topic verify {}` lists it, `eddy topic repair` cuts it out)",
            args.topic
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
