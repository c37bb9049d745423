//! `eddy store …`: the segment files of each repository, read straight from the data
//! directory (a running server need not be stopped: sealed segments never change), and their
//! repair (which needs it stopped).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use eddy_log::Log;
use eddy_store::catalogue::Catalogue;
use eddy_store::repair::SegmentRepair;
use eddy_store::{RepoStore, SegmentFile, StoreConfig};

use crate::output::{human_bytes, json_line, rows};
use crate::DataDir;

#[derive(Debug, Args)]
pub struct StoreArgs {
    #[command(flatten)]
    dir: DataDir,
    #[command(subcommand)]
    command: StoreCommand,
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// List sealed segments with their data source, events, sizes and compression ratio.
    List(StoreOptions),
    /// Check every checksum and decode every block; name the file and block of any damage.
    /// Exits with 1 when something is damaged.
    Verify(StoreOptions),
    /// Show the compression ratio per repository, index (blooms, block tables) and catalogue
    /// sizes included.
    Ratio(StoreOptions),
    /// Replace damaged segments (cut short, damaged footer or blocks) with what their readable
    /// blocks and the bus still hold, each event once; name what could not be restored. Needs
    /// the data directory to itself (stop `eddy serve`). Exits with 1 when something is lost.
    Repair(StoreOptions),
}

#[derive(Debug, Args)]
pub struct StoreOptions {
    /// Only this repository.
    #[arg(long, short)]
    repository: Option<String>,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, serde::Serialize)]
struct SegmentRow {
    repository: String,
    id: u64,
    source: String,
    events: u64,
    raw_bytes: u64,
    file_bytes: u64,
    index_bytes: u64,
    ratio: f64,
    min_time: i64,
    max_time: i64,
    partition: u32,
    first_offset: u64,
    last_offset: u64,
}

#[derive(Debug, serde::Serialize)]
struct RepositoryRow {
    repository: String,
    segments: usize,
    events: u64,
    raw_bytes: u64,
    stored_bytes: u64,
    index_bytes: u64,
    catalogue_bytes: u64,
    ratio: f64,
    catalogue_bytes_per_gb: f64,
    /// Data sources whose events are still in work in progress (counted in the ratio as far as
    /// their blocks are written).
    in_progress_sources: usize,
    /// Compressed bytes the work in progress has written so far.
    in_progress_bytes: u64,
    /// Raw bytes of the blocks the work in progress has written so far.
    in_progress_raw_bytes: u64,
    /// When the oldest work in progress began (ns), if any.
    in_progress_since: Option<i64>,
    /// Bytes of the repository's bus topic on disk.
    bus_bytes: u64,
    /// Everything the repository takes on disk: bus, segments, work in progress, catalogue.
    total_bytes: u64,
    /// Raw bytes (sealed and in progress) ÷ everything on disk.
    ratio_with_bus: f64,
}

/// The work in progress of a repository: `<id>.wip` files, their bytes, the raw bytes of
/// their written blocks, the oldest's start.
pub(crate) fn work_in_progress(dir: &Path) -> anyhow::Result<(usize, u64, u64, Option<i64>)> {
    let (mut files, mut bytes, mut raw, mut oldest) = (0, 0, 0, None::<i64>);
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        if entry.path().extension().is_none_or(|e| e != "wip") {
            continue;
        }
        // Sealed or removed since listed: not in progress any more.
        let Ok(meta) = entry.metadata() else { continue };
        files += 1;
        bytes += meta.len();
        // Sealed or removed while read: counted with the segments, or gone.
        raw += eddy_store::wip_file_raw_bytes(&entry.path()).unwrap_or(0);
        let began = meta.created().or_else(|_| meta.modified()).ok();
        if let Some(ns) = began.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()) {
            let ns = i64::try_from(ns.as_nanos()).unwrap_or(i64::MAX);
            oldest = Some(oldest.map_or(ns, |o| o.min(ns)));
        }
    }
    Ok((files, bytes, raw, oldest))
}

/// Why a repository's ratio is 0 or partial: its events wait in work in progress, which is
/// sealed (and counted) at `segment_size` or `segment_age`.
fn in_progress_note(r: &RepositoryRow) -> Option<String> {
    if r.in_progress_sources == 0 {
        return None;
    }
    let sealed = if r.segments == 0 {
        "nothing sealed yet"
    } else {
        "more not sealed yet"
    };
    let when = r.in_progress_since.map_or(String::new(), |since| {
        let due = since.saturating_add(3_600_000_000_000);
        let due = eddy_event::units::format_time(due);
        format!(
            ", the oldest about {}",
            due.get(..16).unwrap_or(&due).replace('T', " ")
        )
    });
    Some(format!(
        "{}: {sealed}: {} data source(s) in work in progress ({} of raw events in {} written so \
         far, counted above; blocks still filling in the server's memory are not). A data \
         source is sealed at the repository's segment_size or segment_age (by default 1 GiB or \
         1 h after its first event{when} UTC).",
        r.repository,
        r.in_progress_sources,
        human_bytes(r.in_progress_raw_bytes),
        human_bytes(r.in_progress_bytes)
    ))
}

fn repositories(root: &Path, only: Option<&str>) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("reading {}", root.display())),
    };
    for entry in entries {
        let path = entry?.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
        else {
            continue;
        };
        if path.is_dir() && only.is_none_or(|o| o == name) {
            out.push((name, path));
        }
    }
    out.sort();
    if let Some(o) = only {
        anyhow::ensure!(
            !out.is_empty(),
            "repository {o:?} has no store in {}",
            root.display()
        );
    }
    Ok(out)
}

fn segment_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    eddy_store::catalogue::segment_files(dir).with_context(|| format!("reading {}", dir.display()))
}

/// Bytes of the files under `dir` (0 if it does not exist): a bus topic's footprint.
fn dir_bytes(dir: &Path) -> anyhow::Result<u64> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    let mut total = 0;
    for entry in entries {
        let path = entry
            .with_context(|| format!("reading {}", dir.display()))?
            .path();
        // Retention may delete a file between the listing and the look.
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        total += if meta.is_dir() {
            dir_bytes(&path)?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

fn ratio(raw: u64, stored: u64) -> f64 {
    if stored == 0 {
        0.0
    } else {
        raw as f64 / stored as f64
    }
}

pub fn run(args: &StoreArgs) -> anyhow::Result<ExitCode> {
    let root = args.dir.data_dir.join("store");
    match &args.command {
        StoreCommand::List(args) => list(&root, args),
        StoreCommand::Verify(args) => verify(&root, args),
        StoreCommand::Ratio(options) => {
            ratio_per_repository(&root, &args.dir.data_dir.join("topics"), options)
        }
        StoreCommand::Repair(options) => repair(&args.dir, &root, options),
    }
}

fn segment_rows(root: &Path, args: &StoreOptions) -> anyhow::Result<Vec<SegmentRow>> {
    let mut rows = Vec::new();
    for (repository, dir) in repositories(root, args.repository.as_deref())? {
        for path in segment_files(&dir)? {
            let seg = SegmentFile::open(&path)?;
            let i = &seg.footer().info;
            rows.push(SegmentRow {
                repository: repository.clone(),
                id: i.id,
                source: i.source.clone(),
                events: i.count,
                raw_bytes: i.raw_bytes,
                file_bytes: seg.file_len(),
                index_bytes: seg.index_len(),
                ratio: ratio(i.raw_bytes, seg.file_len()),
                min_time: i.min_time,
                max_time: i.max_time,
                partition: i.partition,
                first_offset: i.first_offset,
                last_offset: i.last_offset,
            });
        }
    }
    Ok(rows)
}

fn list(root: &Path, args: &StoreOptions) -> anyhow::Result<ExitCode> {
    let segments = segment_rows(root, args)?;
    rows(
        args.json,
        &segments,
        &[
            "REPOSITORY",
            "SEGMENT",
            "DATA SOURCE",
            "EVENTS",
            "RAW",
            "STORED",
            "RATIO",
            "FROM",
            "TO",
            "BUS OFFSETS",
        ],
        |r| {
            vec![
                r.repository.clone(),
                r.id.to_string(),
                if r.source.is_empty() {
                    "-".into()
                } else {
                    r.source.clone()
                },
                r.events.to_string(),
                human_bytes(r.raw_bytes),
                human_bytes(r.file_bytes),
                format!("{:.1}×", r.ratio),
                eddy_event::units::format_time(r.min_time),
                eddy_event::units::format_time(r.max_time),
                format!("{}:{}-{}", r.partition, r.first_offset, r.last_offset),
            ]
        },
    )?;
    Ok(ExitCode::SUCCESS)
}

fn verify(root: &Path, args: &StoreOptions) -> anyhow::Result<ExitCode> {
    let mut problems = Vec::new();
    let mut checked = 0usize;
    let mut blocks = 0usize;
    for (_, dir) in repositories(root, args.repository.as_deref())? {
        for path in segment_files(&dir)? {
            checked += 1;
            match SegmentFile::open(&path) {
                Ok(seg) => {
                    blocks += seg.footer().blocks.len();
                    problems.extend(seg.verify().into_iter().map(|e| e.to_string()));
                }
                Err(e) => problems.push(e.to_string()),
            }
        }
    }
    let hint = (!problems.is_empty()).then_some(REPAIR_HINT);
    if args.json {
        json_line(&serde_json::json!({
            "segments": checked, "blocks": blocks, "problems": problems, "hint": hint,
        }))?;
    } else {
        for p in &problems {
            println!("DAMAGED {p}");
        }
        if let Some(hint) = hint {
            println!("{hint}");
        }
        println!(
            "{checked} segments, {blocks} blocks checked: {}",
            if problems.is_empty() {
                "all intact".to_string()
            } else {
                format!("{} problems", problems.len())
            }
        );
    }
    Ok(if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

const REPAIR_HINT: &str =
    "to restore the damaged segments from their readable blocks and the bus: \
     stop eddy serve, then run `eddy store repair`";

fn repair(dir: &DataDir, root: &Path, args: &StoreOptions) -> anyhow::Result<ExitCode> {
    // Held for writing: no server digests while segments change hands. Retention waits.
    let log = Log::builder(&dir.data_dir)
        .retention_check(Duration::ZERO)
        .open()
        .with_context(|| {
            format!(
                "opening the log in {} (stop eddy serve before a repair)",
                dir.data_dir.display()
            )
        })?;
    let mut repairs = Vec::new();
    for (repository, dir) in repositories(root, args.repository.as_deref())? {
        let store = RepoStore::open(&repository, &dir, StoreConfig::default())
            .with_context(|| format!("opening the store of {repository}"))?;
        let topic = log.topic(&format!("repo.{repository}")).ok();
        if topic.is_none() {
            tracing::warn!(%repository, "the repository's bus topic is gone: only readable blocks can be restored");
        }
        for r in eddy_store::repair::repair(&store, topic.as_deref())
            .with_context(|| format!("repairing the store of {repository}"))?
        {
            repairs.push((repository.clone(), r));
        }
    }
    let incomplete = repairs.iter().filter(|(_, r)| !r.complete()).count();
    for (repository, r) in &repairs {
        if args.json {
            let mut line = serde_json::to_value(r)?;
            line["repository"] = repository.as_str().into();
            json_line(&line)?;
        } else {
            print_repair(repository, r);
        }
    }
    if !args.json {
        println!(
            "{} damaged segments: {} restored whole, {incomplete} with events lost",
            repairs.len(),
            repairs.len() - incomplete
        );
    }
    Ok(if incomplete == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_repair(repository: &str, r: &SegmentRepair) {
    let name = r.path.file_name().map_or_else(
        || r.path.display().to_string(),
        |n| n.to_string_lossy().to_string(),
    );
    println!("DAMAGED {repository}/{name}: {}", r.problem);
    let held = match &r.held {
        Some(h) => format!(
            "partition {} offsets {}-{}, {} events",
            h.partition, h.first_offset, h.last_offset, h.events
        ),
        None => "what it held is unknown".into(),
    };
    let now = match r.restored_as {
        Some(id) => format!("now in segment {id}"),
        None => "nothing restored".into(),
    };
    println!(
        "  {held}: {} from its blocks, {} from the bus, {now}; the damaged file is kept as {}",
        r.from_blocks,
        r.from_bus,
        r.kept_as.display()
    );
    if let Some(lost) = &r.lost {
        let events = lost
            .events
            .map_or("an unknown number of".to_string(), |n| n.to_string());
        let times = match (lost.min_time, lost.max_time) {
            (Some(a), Some(b)) => format!(
                " from {} to {}",
                eddy_event::units::format_time(a),
                eddy_event::units::format_time(b)
            ),
            _ => String::new(),
        };
        println!("  LOST {events} events{times}: {}", lost.reason);
    }
}

fn ratio_per_repository(
    root: &Path,
    topics: &Path,
    args: &StoreOptions,
) -> anyhow::Result<ExitCode> {
    let segments = segment_rows(root, args)?;
    let mut repositories_rows = Vec::new();
    for (repository, dir) in repositories(root, args.repository.as_deref())? {
        let mine: Vec<&SegmentRow> = segments
            .iter()
            .filter(|s| s.repository == repository)
            .collect();
        let catalogue = Catalogue::load(&dir).map_or(0, |c| c.encoded_len() as u64);
        let (in_progress_sources, in_progress_bytes, in_progress_raw_bytes, in_progress_since) =
            work_in_progress(&dir)?;
        let raw = mine.iter().map(|s| s.raw_bytes).sum::<u64>() + in_progress_raw_bytes;
        let stored = mine.iter().map(|s| s.file_bytes).sum::<u64>() + in_progress_bytes;
        let bus_bytes = dir_bytes(&topics.join(format!("repo.{repository}")))?;
        let total_bytes = stored + catalogue + bus_bytes;
        repositories_rows.push(RepositoryRow {
            in_progress_sources,
            in_progress_bytes,
            in_progress_raw_bytes,
            in_progress_since,
            repository,
            segments: mine.len(),
            events: mine.iter().map(|s| s.events).sum(),
            raw_bytes: raw,
            stored_bytes: stored,
            index_bytes: mine.iter().map(|s| s.index_bytes).sum(),
            catalogue_bytes: catalogue,
            ratio: ratio(raw, stored + catalogue),
            catalogue_bytes_per_gb: if raw == 0 {
                0.0
            } else {
                catalogue as f64 * 1e9 / raw as f64
            },
            bus_bytes,
            total_bytes,
            ratio_with_bus: ratio(raw, total_bytes),
        });
    }
    rows(
        args.json,
        &repositories_rows,
        &[
            "REPOSITORY",
            "SEGMENTS",
            "EVENTS",
            "RAW",
            "STORED",
            "OF WHICH INDEX",
            "CATALOGUE",
            "RATIO",
            "BUS",
            "ALL ON DISK",
            "RAW ÷ ALL",
        ],
        |r| {
            vec![
                r.repository.clone(),
                r.segments.to_string(),
                r.events.to_string(),
                human_bytes(r.raw_bytes),
                human_bytes(r.stored_bytes),
                human_bytes(r.index_bytes),
                human_bytes(r.catalogue_bytes),
                format!("{:.2}×", r.ratio),
                human_bytes(r.bus_bytes),
                human_bytes(r.total_bytes),
                format!("{:.2}×", r.ratio_with_bus),
            ]
        },
    )?;
    if !args.json {
        for note in repositories_rows.iter().filter_map(in_progress_note) {
            println!("{note}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
