//! Peers: systems users would pick instead of eddy, run on the same data in the same run.
//!
//! ClickHouse runs embedded through chDB (PyPI `chdb-core`), driven by
//! `bench/peers/clickhouse.py`, which is compiled into this binary so the runner needs no
//! checkout. When chDB is not installed the peer is reported as not run, with how to install it;
//! when it runs, every count it returns is checked against the generator's.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, IoContext, Result};
use crate::gen::{self, Manifest};
use crate::report::{format_value, Figure, Row};

const CLICKHOUSE_PY: &str = include_str!("../../../bench/peers/clickhouse.py");

/// What became of a peer.
#[derive(Debug)]
pub enum Peer {
    /// It ran: its version and its rows for the report.
    Ran {
        /// Name and version.
        name: String,
        /// Its figures.
        rows: Vec<Row>,
    },
    /// It could not run here, and why.
    NotRun(String),
}

#[derive(Debug, serde::Deserialize)]
struct ChOutput {
    version: String,
    kinds: Vec<ChKind>,
}

#[derive(Debug, serde::Deserialize)]
struct ChKind {
    kind: String,
    bytes: u64,
    lines: u64,
    #[serde(rename = "LZ4")]
    lz4: ChStore,
    #[serde(rename = "ZSTD(3)")]
    zstd: ChStore,
    probes: Vec<ChProbe>,
}

#[derive(Debug, serde::Deserialize)]
struct ChStore {
    ingest_seconds: f64,
    stored_bytes: u64,
}

#[derive(Debug, serde::Deserialize)]
struct ChProbe {
    name: String,
    count: u64,
    seconds: Vec<f64>,
}

/// Runs ClickHouse (chDB) over the generated files: bulk ingest, stored size, probe counts.
pub fn clickhouse(
    work: &Path,
    data_dir: &Path,
    files: &[(gen::Kind, PathBuf, Manifest)],
    runs: usize,
) -> Result<Peer> {
    let available = Command::new("python3")
        .args(["-c", "import chdb"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !available {
        return Ok(Peer::NotRun(
            "ClickHouse (embedded, chDB) is not installed: `pip install chdb-core` or `bench/setup.sh --peers`".into(),
        ));
    }
    std::fs::create_dir_all(work).context(|| format!("creating {}", work.display()))?;
    let script = work.join("clickhouse.py");
    std::fs::write(&script, CLICKHOUSE_PY).context(|| format!("writing {}", script.display()))?;
    let mut cmd = Command::new("python3");
    cmd.arg(&script)
        .arg(work.join("chdb"))
        .arg(runs.max(1).to_string());
    for (kind, path, _) in files {
        let manifest = gen::manifest_path(data_dir, *kind);
        cmd.arg(format!("{}:{}", manifest.display(), path.display()));
    }
    let out = cmd
        .output()
        .context(|| "running bench/peers/clickhouse.py".to_string())?;
    let _ = std::fs::remove_dir_all(work);
    if !out.status.success() {
        return Err(Error::ToolFailed {
            command: "python3 bench/peers/clickhouse.py".into(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).to_string(),
        });
    }
    let parsed: ChOutput = serde_json::from_slice(&out.stdout)
        .map_err(|e| Error::Invalid(format!("unreadable output of clickhouse.py: {e}")))?;
    let mut rows = Vec::new();
    for k in &parsed.kinds {
        rows.push(Row {
            figure: Figure::once(
                &format!("ClickHouse bulk ingest of {} lines ({})", k.lines, k.kind),
                "MB/s",
                k.bytes as f64 / k.lz4.ingest_seconds,
            ),
            baseline: "INSERT … SELECT FROM file() into MergeTree, then OPTIMIZE FINAL".into(),
            ratio: String::new(),
            goal: "eddy: see Ingest (HTTP, durable acks per batch)".into(),
        });
        for (codec, store) in [("LZ4", &k.lz4), ("ZSTD(3)", &k.zstd)] {
            rows.push(Row {
                figure: Figure::once(
                    &format!("ClickHouse stored ratio, {codec} ({})", k.kind),
                    "ratio",
                    k.bytes as f64 / store.stored_bytes.max(1) as f64,
                ),
                baseline: format!("{} stored", format_value(store.stored_bytes as f64, "MB")),
                ratio: String::new(),
                goal: "eddy: segment store (issue 4)".into(),
            });
        }
        for p in &k.probes {
            rows.push(Row {
                figure: Figure {
                    name: format!(
                        "ClickHouse search, {}: {} ({} lines)",
                        k.kind, p.name, p.count
                    ),
                    unit: "GB/s".into(),
                    runs: p.seconds.iter().map(|s| k.bytes as f64 / s).collect(),
                },
                baseline: "count over the stored table, checked".into(),
                ratio: String::new(),
                goal: "eddy: query engine (issue 5)".into(),
            });
        }
    }
    Ok(Peer::Ran {
        name: format!("ClickHouse {} (embedded via chDB)", parsed.version),
        rows,
    })
}
