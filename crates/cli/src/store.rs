//! `eddy store …`: the segment files of each repository, read straight from the data
//! directory (a running server need not be stopped: sealed segments never change).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use eddy_store::catalogue::Catalogue;
use eddy_store::SegmentFile;

use crate::output::{human_bytes, json_line, rows};
use crate::Global;

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// List sealed segments with their data source, events, sizes and compression ratio.
    List(StoreArgs),
    /// Check every checksum and decode every block; name the file and block of any damage.
    /// Exits with 1 when something is damaged.
    Verify(StoreArgs),
    /// Show the compression ratio per repository, index (blooms, block tables) and catalogue
    /// sizes included.
    Ratio(StoreArgs),
}

#[derive(Debug, Args)]
pub struct StoreArgs {
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

fn ratio(raw: u64, stored: u64) -> f64 {
    if stored == 0 {
        0.0
    } else {
        raw as f64 / stored as f64
    }
}

pub fn run(global: &Global, cmd: &StoreCommand) -> anyhow::Result<ExitCode> {
    let root = global.data_dir.join("store");
    match cmd {
        StoreCommand::List(args) => list(&root, args),
        StoreCommand::Verify(args) => verify(&root, args),
        StoreCommand::Ratio(args) => ratio_per_repository(&root, args),
    }
}

fn segment_rows(root: &Path, args: &StoreArgs) -> anyhow::Result<Vec<SegmentRow>> {
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

fn list(root: &Path, args: &StoreArgs) -> anyhow::Result<ExitCode> {
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

fn verify(root: &Path, args: &StoreArgs) -> anyhow::Result<ExitCode> {
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
    if args.json {
        json_line(
            &serde_json::json!({ "segments": checked, "blocks": blocks, "problems": problems }),
        )?;
    } else {
        for p in &problems {
            println!("DAMAGED {p}");
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

fn ratio_per_repository(root: &Path, args: &StoreArgs) -> anyhow::Result<ExitCode> {
    let segments = segment_rows(root, args)?;
    let mut repositories_rows = Vec::new();
    for (repository, dir) in repositories(root, args.repository.as_deref())? {
        let mine: Vec<&SegmentRow> = segments
            .iter()
            .filter(|s| s.repository == repository)
            .collect();
        let raw: u64 = mine.iter().map(|s| s.raw_bytes).sum();
        let stored: u64 = mine.iter().map(|s| s.file_bytes).sum();
        let catalogue = Catalogue::load(&dir).map_or(0, |c| c.encoded_len() as u64);
        repositories_rows.push(RepositoryRow {
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
            ]
        },
    )?;
    Ok(ExitCode::SUCCESS)
}
