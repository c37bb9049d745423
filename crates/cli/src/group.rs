//! `eddy group …`: consumer groups, their committed offsets and their lag.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::output::{json_line, table};
use crate::topic::JsonFlag;
use crate::DataDir;

#[derive(Debug, Args)]
pub struct GroupArgs {
    #[command(flatten)]
    dir: DataDir,
    #[command(subcommand)]
    command: GroupCommand,
}

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// List consumer groups.
    List(JsonFlag),
    /// Show a group's committed offset, the partition's end and the lag, per partition.
    Describe {
        /// The group.
        name: String,
        #[command(flatten)]
        json: JsonFlag,
    },
}

#[derive(Debug, serde::Serialize)]
struct Row {
    topic: String,
    partition: u32,
    committed: u64,
    end_offset: Option<u64>,
    lag: Option<u64>,
}

/// The segment store's consumer group.
const DIGEST_GROUP: &str = "digest";

/// What the digest's lag means: it commits an offset only once its event is sealed in a
/// segment, so until a seal it shows 0 and a growing lag without being stuck.
fn digest_note(dir: &DataDir, rows: &[Row]) -> String {
    let mut waiting = Vec::new();
    let repositories: std::collections::BTreeSet<_> = rows
        .iter()
        .filter_map(|r| r.topic.strip_prefix("repo."))
        .collect();
    for repository in repositories {
        let store = dir.data_dir.join("store").join(repository);
        if let Ok((sources, bytes, _, _)) = crate::store::work_in_progress(&store) {
            if sources > 0 {
                waiting.push(format!(
                    "{repository}: {sources} data source(s), {} written",
                    crate::output::human_bytes(bytes)
                ));
            }
        }
    }
    let waiting = if waiting.is_empty() {
        String::new()
    } else {
        format!(
            " Waiting for work in progress to be sealed ({}).",
            waiting.join("; ")
        )
    };
    format!(
        "The digest commits an offset once its event is sealed in a segment, at the \
         repository's segment_size or segment_age (by default 1 GiB or 1 h): until then the lag \
         grows, but the events are stored and searchable; it is not stuck.{waiting}"
    )
}

pub fn run(args: &GroupArgs) -> anyhow::Result<ExitCode> {
    let log = args.dir.open_log_read_only()?;
    match &args.command {
        GroupCommand::List(JsonFlag { json }) => {
            let groups = log.groups().list();
            if *json {
                json_line(&groups)?;
            } else {
                for g in groups {
                    println!("{g}");
                }
            }
        }
        GroupCommand::Describe { name, json } => {
            let offsets = log.groups().get(name).ok_or_else(|| {
                anyhow::anyhow!("consumer group {name:?} has committed no offsets")
            })?;
            let mut rows = Vec::new();
            for (topic, partitions) in offsets {
                for (partition, committed) in partitions {
                    let end = log
                        .topic(&topic)
                        .ok()
                        .and_then(|t| t.partition(partition).ok().map(|p| p.end_offset()));
                    rows.push(Row {
                        lag: end.map(|e| e.saturating_sub(committed)),
                        topic: topic.clone(),
                        partition,
                        committed,
                        end_offset: end,
                    });
                }
            }
            if json.json {
                json_line(&rows)?;
            } else {
                let cells = rows
                    .iter()
                    .map(|r| {
                        let opt = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
                        vec![
                            r.topic.clone(),
                            r.partition.to_string(),
                            r.committed.to_string(),
                            opt(r.end_offset),
                            opt(r.lag),
                        ]
                    })
                    .collect::<Vec<_>>();
                table(&["TOPIC", "PARTITION", "COMMITTED", "END", "LAG"], &cells)?;
                if name == DIGEST_GROUP && rows.iter().any(|r| r.lag.unwrap_or(0) > 0) {
                    println!("{}", digest_note(&args.dir, &rows));
                }
            }
            for r in &rows {
                if let Some(end) = r.end_offset.filter(|&end| end < r.committed) {
                    eprintln!(
                        "warning: {name} committed {} in {}/{}, past its end {end}: records were lost on disk; the writer goes on from {} when it next opens the log, so no offset is reused",
                        r.committed, r.topic, r.partition, r.committed
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
