//! `eddy topic …`: create, list, describe, verify and delete topics.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use eddy_log::{Compression, TopicConfig};

use crate::output::{human_bytes, json_line, table};
use crate::BusArgs;
use eddy_event::units::{format_time, parse_duration, parse_size};

#[derive(Debug, Args)]
pub struct TopicArgs {
    #[command(flatten)]
    bus: BusArgs,
    #[command(subcommand)]
    command: TopicCommand,
}

#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create(CreateArgs),
    /// List topics with their partitions, records and sizes.
    List(JsonFlag),
    /// Show a topic's configuration and, per partition, its offsets, segments and size.
    Describe {
        /// The topic.
        name: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Read and check every batch of every segment; names every damaged stretch (file, bytes,
    /// offsets lost) and exits with 1 if there is any.
    Verify {
        /// The topic.
        name: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Cut damaged stretches out of a topic's segments (with `eddy serve` stopped): the good
    /// batches around them stay, the damaged bytes are kept in the partition's `damaged/`
    /// directory, and the records they held are a gap in the offsets.
    Repair {
        /// The topic.
        name: String,
        /// Only say what would be cut.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Delete a topic and all its data.
    Delete {
        /// The topic.
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct JsonFlag {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Settings of a new topic (shared with `produce --create`).
#[derive(Debug, Args, Clone)]
pub struct TopicSettings {
    /// Number of partitions (1..=1024).
    #[arg(long, default_value_t = 1)]
    pub partitions: u32,
    /// Compression of appended batches: none, lz4 or zstd.
    #[arg(long, default_value = "none")]
    pub compression: Compression,
    /// Seal the active segment at this size.
    #[arg(long, value_parser = parse_size, default_value = "256MiB")]
    pub segment_bytes: u64,
    /// Delete segments whose newest record is older than this (e.g. 7d), or `forever`.
    #[arg(long, default_value = "7d")]
    pub retention: String,
    /// Delete the oldest segments while a partition is larger than this (e.g. 10GiB).
    #[arg(long, value_parser = parse_size)]
    pub retention_bytes: Option<u64>,
    /// Largest record (key + value + headers).
    #[arg(long, value_parser = parse_size, default_value = "1MiB")]
    pub max_record_bytes: u64,
    /// A consumer group that holds back retention until it has committed past a segment
    /// (repeatable).
    #[arg(long = "retain-for-group", value_name = "GROUP")]
    pub retain_for_groups: Vec<String>,
}

impl TopicSettings {
    pub fn to_config(&self) -> anyhow::Result<TopicConfig> {
        let retention_ms = match self.retention.as_str() {
            "forever" | "none" => None,
            s => Some(
                parse_duration(s)
                    .map_err(anyhow::Error::msg)
                    .context("--retention")?
                    .as_millis() as u64,
            ),
        };
        Ok(TopicConfig {
            partitions: self.partitions,
            compression: self.compression,
            segment_bytes: self.segment_bytes,
            retention_ms,
            retention_bytes: self.retention_bytes,
            max_record_bytes: usize::try_from(self.max_record_bytes).unwrap_or(usize::MAX),
            retain_for_groups: self.retain_for_groups.clone(),
            ..TopicConfig::default()
        })
    }
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Topic name: letters, digits, '.', '_' and '-'.
    name: String,
    #[command(flatten)]
    settings: TopicSettings,
    /// Print the created topic as JSON.
    #[arg(long)]
    json: bool,
}

fn retention_text(config: &TopicConfig) -> String {
    let age = config.retention_ms.map_or("forever".to_string(), |ms| {
        eddy_event::units::format_duration(Duration::from_millis(ms))
    });
    let limits = match config.retention_bytes {
        Some(b) => format!("{age} or {}", human_bytes(b)),
        None => age,
    };
    if config.retain_for_groups.is_empty() {
        limits
    } else {
        format!(
            "{limits}, once committed by {}",
            config.retain_for_groups.join(", ")
        )
    }
}

pub fn run(args: &TopicArgs) -> anyhow::Result<ExitCode> {
    let (bus, cmd) = (&args.bus, &args.command);
    if let TopicCommand::Repair {
        name,
        dry_run,
        json,
    } = cmd
    {
        return repair(bus, name, *dry_run, json.json);
    }
    let writes = matches!(cmd, TopicCommand::Create(_) | TopicCommand::Delete { .. });
    let log = if writes {
        bus.open_log()?
    } else {
        bus.dir.open_log_read_only()?
    };
    match cmd {
        TopicCommand::Create(args) => {
            let topic = log.create_topic(&args.name, args.settings.to_config()?)?;
            if args.json {
                json_line(&topic.info())?;
            } else {
                println!(
                    "created topic {} with {} partition(s), retention {}",
                    topic.name(),
                    topic.partition_count(),
                    retention_text(&topic.config())
                );
            }
        }
        TopicCommand::List(JsonFlag { json }) => {
            let infos: Vec<_> = log.topics().iter().map(|t| t.info()).collect();
            if *json {
                json_line(&infos)?;
            } else {
                let rows = infos
                    .iter()
                    .map(|t| {
                        let records: u64 = t
                            .partitions
                            .iter()
                            .map(|p| p.end_offset - p.start_offset)
                            .sum();
                        let size: u64 = t.partitions.iter().map(|p| p.size_bytes).sum();
                        vec![
                            t.name.clone(),
                            t.partitions.len().to_string(),
                            records.to_string(),
                            human_bytes(size),
                            retention_text(&t.config),
                        ]
                    })
                    .collect::<Vec<_>>();
                table(
                    &["TOPIC", "PARTITIONS", "RECORDS", "SIZE", "RETENTION"],
                    &rows,
                )?;
            }
        }
        TopicCommand::Describe { name, json } => {
            let info = log.topic(name)?.info();
            if json.json {
                json_line(&info)?;
            } else {
                let c = &info.config;
                println!("topic        {}", info.name);
                println!("partitions   {}", c.partitions);
                println!("compression  {}", c.compression);
                println!("segments of  {}", human_bytes(c.segment_bytes));
                println!("retention    {}", retention_text(c));
                println!("max record   {}", human_bytes(c.max_record_bytes as u64));
                println!();
                let rows = info
                    .partitions
                    .iter()
                    .map(|p| {
                        vec![
                            p.partition.to_string(),
                            p.start_offset.to_string(),
                            p.end_offset.to_string(),
                            (p.end_offset - p.start_offset).to_string(),
                            p.segments.to_string(),
                            human_bytes(p.size_bytes),
                            p.max_timestamp.map_or("-".into(), format_time),
                        ]
                    })
                    .collect::<Vec<_>>();
                table(
                    &[
                        "PARTITION",
                        "START",
                        "END",
                        "RECORDS",
                        "SEGMENTS",
                        "SIZE",
                        "NEWEST",
                    ],
                    &rows,
                )?;
            }
        }
        TopicCommand::Verify { name, json } => {
            let topic = log.topic(name)?;
            let mut problems = Vec::new();
            for p in topic.partitions() {
                problems.extend(p.verify()?.into_iter().map(|d| (p.id(), d)));
            }
            if json.json {
                let problems: Vec<_> = problems
                    .iter()
                    .map(|(p, d)| serde_json::json!({"partition": p, "error": d.to_string(), "damage": d}))
                    .collect();
                json_line(
                    &serde_json::json!({"topic": name, "ok": problems.is_empty(), "problems": problems}),
                )?;
            } else if problems.is_empty() {
                println!("topic {name}: every batch of every segment is intact");
            } else {
                for (p, d) in &problems {
                    // Topic, partition and offsets first: what a reader of the bus loses.
                    let lost = &d.offsets;
                    println!(
                        "topic {name} partition {p} offsets {}..{}: {d}",
                        lost.start, lost.end
                    );
                }
                println!("readers skip this damage; `eddy topic repair {name}` (with eddy serve stopped) cuts it out");
            }
            if !problems.is_empty() {
                return Ok(ExitCode::FAILURE);
            }
        }
        TopicCommand::Repair { .. } => unreachable!("handled before the log is opened"),
        TopicCommand::Delete { name } => {
            log.delete_topic(name)?;
            println!("deleted topic {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `eddy topic repair`: works on the files with no log open, so it needs the data directory to
/// itself.
fn repair(bus: &BusArgs, name: &str, dry_run: bool, json: bool) -> anyhow::Result<ExitCode> {
    let repairs = eddy_log::repair_topic(&bus.dir.data_dir, name, dry_run)
        .with_context(|| format!("repairing topic {name}"))?;
    if json {
        json_line(&serde_json::json!({"topic": name, "dry_run": dry_run, "repairs": repairs}))?;
        return Ok(ExitCode::SUCCESS);
    }
    if repairs.is_empty() {
        println!("topic {name}: nothing damaged to repair");
    }
    let verb = if dry_run { "would cut" } else { "cut" };
    for r in &repairs {
        println!(
            "partition {}: {verb} {} (bytes kept in {})",
            r.partition,
            r.damage,
            r.kept_in.display()
        );
    }
    let lost: u64 = repairs.iter().map(|r| r.damage.records()).sum();
    if !repairs.is_empty() {
        println!("{} stretch(es), {lost} record(s) lost", repairs.len());
    }
    Ok(ExitCode::SUCCESS)
}
