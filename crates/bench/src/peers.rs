//! Peers: systems users would pick instead of eddy, run on the same data in the same run.
//!
//! ClickHouse runs embedded through chDB (PyPI `chdb-core`), driven by
//! `bench/peers/clickhouse.py`, which is compiled into this binary so the runner needs no
//! checkout. When chDB is not installed the peer is reported as not run, with how to install it;
//! when it runs, every count it returns is checked against the generator's.
//!
//! [`clickhouse_fields`] runs ClickHouse a second way, the way its users would set it up for
//! questions about fields: the access-log and JSON fields as typed columns
//! (`bench/peers/clickhouse_fields.py` holds the tables), answering the SQL the query benchmark
//! sets beside each of eddy's field queries; the query benchmark checks the answers.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, IoContext, Result};
use crate::gen::{self, Kind, Manifest};
use crate::report::{format_value, Figure, Row};

const CLICKHOUSE_PY: &str = include_str!("../../../bench/peers/clickhouse.py");
const CLICKHOUSE_FIELDS_PY: &str = include_str!("../../../bench/peers/clickhouse_fields.py");

/// Why ClickHouse cannot run here, or `None` when chDB is installed.
pub(crate) fn chdb_missing() -> Option<String> {
    let available = Command::new("python3")
        .args(["-c", "import chdb"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    (!available).then(|| {
        "ClickHouse (embedded, chDB) is not installed: `pip install chdb-core` or `bench/setup.sh --peers`".into()
    })
}

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
    if let Some(why) = chdb_missing() {
        return Ok(Peer::NotRun(why));
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

/// A data file for [`clickhouse_fields`] to load into its typed table (named after the kind).
#[derive(Debug, serde::Serialize)]
pub struct FieldTable {
    /// `access` or `json`.
    pub kind: Kind,
    /// The raw file.
    pub data: PathBuf,
    /// Its lines: the table must hold as many rows.
    pub lines: u64,
}

/// A question for [`clickhouse_fields`], in SQL over its typed tables.
#[derive(Debug, serde::Serialize)]
pub struct FieldQuery {
    /// Names the answer.
    pub id: String,
    /// The timed query.
    pub sql: String,
    /// An untimed query for an exact answer to check approximate ones against.
    pub reference: Option<String>,
}

/// ClickHouse's answer to a [`FieldQuery`].
#[derive(Debug, Clone, serde::Deserialize)]
pub struct FieldAnswer {
    /// The query's id.
    pub id: String,
    /// Its rows, as ClickHouse's JSONCompact format gives them.
    pub rows: Vec<Vec<serde_json::Value>>,
    /// The reference query's rows.
    pub reference: Option<Vec<Vec<serde_json::Value>>>,
    /// Wall-clock seconds of each timed run.
    pub seconds: Vec<f64>,
}

/// How a typed table was loaded.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct LoadedTable {
    /// Which data.
    pub kind: Kind,
    /// Seconds to load the raw file and merge it into one part.
    pub load_seconds: f64,
    /// Compressed bytes of the table's columns.
    pub stored_bytes: u64,
}

/// What [`clickhouse_fields`] returns when it ran.
#[derive(Debug, serde::Deserialize)]
pub struct FieldRun {
    /// ClickHouse's version.
    pub version: String,
    /// The tables loaded.
    pub tables: Vec<LoadedTable>,
    /// One answer per query, in order.
    pub queries: Vec<FieldAnswer>,
}

/// Runs ClickHouse (chDB) with the fields of `tables` as typed columns and answers `queries`
/// on `threads` threads, each `runs` times timed after one untimed run. `Ok(Err(why))` when
/// chDB is not installed.
pub fn clickhouse_fields(
    work: &Path,
    tables: &[FieldTable],
    queries: &[FieldQuery],
    runs: usize,
    threads: usize,
) -> Result<std::result::Result<FieldRun, String>> {
    if let Some(why) = chdb_missing() {
        return Ok(Err(why));
    }
    let _ = std::fs::remove_dir_all(work);
    std::fs::create_dir_all(work).context(|| format!("creating {}", work.display()))?;
    let script = work.join("clickhouse_fields.py");
    std::fs::write(&script, CLICKHOUSE_FIELDS_PY)
        .context(|| format!("writing {}", script.display()))?;
    let spec = work.join("spec.json");
    let text = serde_json::to_vec(
        &serde_json::json!({ "threads": threads.max(1), "tables": tables, "queries": queries }),
    )
    .map_err(|e| Error::Invalid(e.to_string()))?;
    std::fs::write(&spec, text).context(|| format!("writing {}", spec.display()))?;
    let out = Command::new("python3")
        .arg(&script)
        .arg(work.join("chdb"))
        .arg(runs.max(1).to_string())
        .arg(&spec)
        .output()
        .context(|| "running bench/peers/clickhouse_fields.py".to_string());
    let _ = std::fs::remove_dir_all(work);
    let out = out?;
    if !out.status.success() {
        return Err(Error::ToolFailed {
            command: "python3 bench/peers/clickhouse_fields.py".into(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).to_string(),
        });
    }
    let run: FieldRun = serde_json::from_slice(&out.stdout)
        .map_err(|e| Error::Invalid(format!("unreadable output of clickhouse_fields.py: {e}")))?;
    let ids: Vec<&str> = run.queries.iter().map(|a| a.id.as_str()).collect();
    if ids != queries.iter().map(|q| q.id.as_str()).collect::<Vec<_>>() {
        return Err(Error::Invalid(format!(
            "clickhouse_fields.py answered {ids:?}, not the queries asked"
        )));
    }
    Ok(Ok(run))
}
