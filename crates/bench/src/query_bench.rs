//! The query benchmark: eddy's engine over a repository's segments beside ripgrep over the raw
//! file, on the same generated data in the same run.
//!
//! Each kind of data is digested into a store once (kept under the scratch directory and reused
//! while the data file is the same). Then each query runs through `eddy_query::run` on every
//! core, the way the server runs it, and each search also as `rg --count` over the raw file;
//! both read from the page cache (each is run once before timing). Counts are compared: a
//! search whose answer differs from ripgrep's is an error, not a figure.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use eddy_query::{Answer, Options as QueryOptions};
use eddy_store::{RepoStore, StoreConfig};

use crate::baselines::{self, Tools};
use crate::gen::{self, Kind, Manifest, RARE_NEEDLE};
use crate::report::{format_value, Figure, Row, Section};
use crate::store_bench::{build_store, process_cpu};
use crate::{Error, Result};

/// Settings of the query benchmark.
#[derive(Debug, Clone)]
pub struct QueryBenchOptions {
    /// Scratch directory: the stores built from the data, kept for reuse.
    pub dir: PathBuf,
    /// Where generated data is kept.
    pub data_dir: PathBuf,
    /// Generator seed.
    pub seed: u64,
    /// Bytes of raw access-log data (the groupBy and timechart figures need 10 M events:
    /// 2 GiB).
    pub access_bytes: u64,
    /// Bytes of raw JSON application-log data.
    pub json_bytes: u64,
    /// Timed runs per figure (the median is reported).
    pub runs: usize,
}

/// What a query is measured as.
enum Measure {
    /// A search: its count is ripgrep's with these flags and pattern, and its time is set
    /// beside ripgrep's.
    Search {
        rg_flags: &'static [&'static str],
        rg_pattern: String,
        goal: &'static str,
        /// Also report raw bytes per CPU-second against this goal.
        per_core_goal: Option<&'static str>,
    },
    /// An aggregate over every event: its rate in events per second.
    Aggregate,
}

struct Case {
    name: &'static str,
    query: String,
    measure: Measure,
}

fn cases(kind: Kind) -> Vec<Case> {
    let search = |name, query: &str, rg_flags, rg_pattern: &str, goal, per_core_goal| Case {
        name,
        query: query.to_string(),
        measure: Measure::Search {
            rg_flags,
            rg_pattern: rg_pattern.to_string(),
            goal,
            per_core_goal,
        },
    };
    let aggregate = |name, query: &str| Case {
        name,
        query: query.to_string(),
        measure: Measure::Aggregate,
    };
    let needle = search(
        "needle, one event in a million",
        &format!("{RARE_NEEDLE} | count()"),
        &["--fixed-strings"],
        RARE_NEEDLE,
        "≥ 10× faster than rg",
        None,
    );
    match kind {
        Kind::Access => vec![
            search(
                "count, non-selective word (GET, 80 % of events)",
                "GET | count()",
                &["--fixed-strings", "--ignore-case", "--word-regexp"],
                "GET",
                "",
                Some("≥ 1 GB/s of raw data per core"),
            ),
            needle,
            search(
                "regex over everything (5xx status)",
                r#"/" 5[0-9][0-9] / | count()"#,
                &[],
                r#"" 5[0-9][0-9] "#,
                "no slower than rg",
                None,
            ),
            aggregate("groupBy status, count", "groupBy(status, function=count())"),
            aggregate(
                "groupBy method and status, count and avg size",
                "groupBy([method, status], function=[count(), avg(size)])",
            ),
            aggregate("timechart, 1 min buckets, count", "timechart(span=1m)"),
            aggregate(
                "timechart, 1 h buckets, series per status",
                "timechart(span=1h, series=status)",
            ),
        ],
        Kind::Json => vec![
            search(
                "count, non-selective word (info)",
                "info | count()",
                &["--fixed-strings", "--ignore-case", "--word-regexp"],
                "info",
                "",
                Some("≥ 1 GB/s of raw data per core"),
            ),
            needle,
            search(
                "regex over everything (time ?out, any case)",
                "/time ?out/i | count()",
                &["--ignore-case"],
                "time ?out",
                "no slower than rg",
                None,
            ),
            aggregate(
                "groupBy service and level, count",
                "groupBy([service, level], function=count())",
            ),
        ],
        Kind::Statsd => Vec::new(),
    }
}

/// The store of `kind` data under `dir`, built unless one from the same data is there.
fn store_for(
    dir: &Path,
    kind: Kind,
    file: &Path,
    manifest: &Manifest,
    progress: &dyn Fn(&str),
) -> Result<RepoStore> {
    let scratch = dir.join(kind.name());
    let marker = scratch.join("built-from.json");
    let want = serde_json::to_string(manifest).map_err(|e| Error::Invalid(e.to_string()))?;
    if std::fs::read_to_string(&marker).ok().as_deref() != Some(want.as_str()) {
        build_store(&scratch, kind, file, &|m| progress(&format!("query: {m}")))?;
        std::fs::write(&marker, &want).map_err(|e| Error::Invalid(e.to_string()))?;
    }
    RepoStore::open("bench", &scratch.join("store"), StoreConfig::default())
        .map_err(|e| Error::Invalid(e.to_string()))
}

/// How long a quick query is repeated for, at most [`QUICK_QUERY_RUNS`] times.
const QUICK_QUERY_TIME: std::time::Duration = std::time::Duration::from_secs(1);
const QUICK_QUERY_RUNS: usize = 25;

struct Timed {
    wall: Figure,
    cpu: Figure,
    answer: Answer,
}

fn run_query(store: &RepoStore, query: &str, runs: usize) -> Result<Timed> {
    let prepared = eddy_query::prepare(query, eddy_query::engine::DEFAULT_LIMIT)
        .map_err(|e| Error::Invalid(format!("query {query:?}: {e}")))?;
    let options = QueryOptions::default();
    let cancel = AtomicBool::new(false);
    let mut timed = Timed {
        wall: Figure::new("eddy", "ms"),
        cpu: Figure::new("eddy CPU", "s"),
        // Once untimed, to warm the page cache and the segment index.
        answer: eddy_query::run(store, &prepared, &options, &cancel, &|_| {}),
    };
    // Quick queries (a needle takes milliseconds) repeat for a second, so that their median is
    // not one scheduler hiccup.
    let started = Instant::now();
    while timed.wall.runs.len() < runs
        || (started.elapsed() < QUICK_QUERY_TIME && timed.wall.runs.len() < QUICK_QUERY_RUNS)
    {
        let (cpu0, start) = (process_cpu(), Instant::now());
        timed.answer = eddy_query::run(store, &prepared, &options, &cancel, &|_| {});
        timed.wall.runs.push(start.elapsed().as_secs_f64() * 1e3);
        timed.cpu.runs.push((process_cpu() - cpu0).as_secs_f64());
    }
    if let Some(w) = timed.answer.warnings.first() {
        return Err(Error::Invalid(format!("query {query:?} warned: {w}")));
    }
    Ok(timed)
}

fn count_of(answer: &Answer) -> Option<u64> {
    let n = answer.rows.first()?.get("_count")?.as_f64()?;
    Some(n as u64)
}

/// Runs the benchmark.
pub fn run(opts: &QueryBenchOptions, mode: &str, progress: &dyn Fn(&str)) -> Result<Section> {
    let tools = Tools::find()?;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut rows = Vec::new();
    let mut sizes = Vec::new();
    for (kind, bytes) in [
        (Kind::Access, opts.access_bytes),
        (Kind::Json, opts.json_bytes),
    ] {
        progress(&format!("query: generating {} data", kind.name()));
        let (file, manifest) = gen::generate_file(&opts.data_dir, kind, opts.seed, bytes)?;
        let store = store_for(&opts.dir, kind, &file, &manifest, progress)?;
        sizes.push(format!(
            "{} {} lines ({})",
            kind.name(),
            manifest.lines,
            format_value(manifest.bytes as f64, "MB")
        ));
        for case in cases(kind) {
            progress(&format!("query: {} on {}", case.name, kind.name()));
            let timed = run_query(&store, &case.query, opts.runs)?;
            let eddy = timed.wall.median();
            let label = format!("{}: {} — `{}`", kind.name(), case.name, case.query);
            match &case.measure {
                Measure::Search {
                    rg_flags,
                    rg_pattern,
                    goal,
                    per_core_goal,
                } => {
                    let mut rg = Figure::new("rg", "ms");
                    let mut rg_count = 0;
                    // Once untimed, to have the file in the page cache.
                    baselines::rg_count_with(&tools, rg_flags, rg_pattern, &file)?;
                    for _ in 0..opts.runs {
                        let (count, secs) =
                            baselines::rg_count_with(&tools, rg_flags, rg_pattern, &file)?;
                        rg_count = count;
                        rg.runs.push(secs * 1e3);
                    }
                    let ours = count_of(&timed.answer);
                    if ours != Some(rg_count) {
                        return Err(Error::Mismatch {
                            what: format!("eddy's count for {:?}", case.query),
                            expected: format!("{rg_count} (rg {})", rg_flags.join(" ")),
                            got: format!("{ours:?}"),
                        });
                    }
                    rows.push(Row {
                        figure: Figure {
                            name: format!("{label} ({rg_count} events)"),
                            ..timed.wall.clone()
                        },
                        baseline: format!(
                            "rg --count {} '{rg_pattern}': {}",
                            rg_flags.join(" "),
                            format_value(rg.median(), "ms")
                        ),
                        ratio: format!("{:.1}× faster", rg.median() / eddy),
                        goal: goal.to_string(),
                    });
                    if let Some(goal) = per_core_goal {
                        rows.push(Row {
                            figure: Figure {
                                name: format!(
                                    "{}: {} — raw data per CPU-second",
                                    kind.name(),
                                    case.name
                                ),
                                unit: "GB/s".into(),
                                runs: timed
                                    .cpu
                                    .runs
                                    .iter()
                                    .map(|c| manifest.bytes as f64 / c.max(1e-9))
                                    .collect(),
                            },
                            baseline: format!(
                                "rg, one thread: {}",
                                format_value(manifest.bytes as f64 * 1e3 / rg.median(), "GB/s")
                            ),
                            ratio: String::new(),
                            goal: goal.to_string(),
                        });
                    }
                }
                Measure::Aggregate => {
                    rows.push(Row {
                        figure: Figure {
                            name: format!("{label} ({} rows)", timed.answer.rows.len()),
                            unit: "events/s".into(),
                            runs: timed
                                .wall
                                .runs
                                .iter()
                                .map(|w| manifest.lines as f64 * 1e3 / w.max(1e-9))
                                .collect(),
                        },
                        baseline: format!(
                            "{} of {} events; {} per CPU-second",
                            format_value(eddy / 1e3, "s"),
                            manifest.lines,
                            format_value(
                                manifest.lines as f64 / timed.cpu.median().max(1e-9),
                                "events/s"
                            )
                        ),
                        ratio: String::new(),
                        goal: "printed".into(),
                    });
                }
            }
        }
    }
    Ok(Section {
        id: "query".into(),
        title: "Queries".into(),
        intro: format!(
            "Data: {}, digested into segments with the default settings (1 MiB blocks, zstd, 10-bit blooms). \
             Each query runs in-process through `eddy_query::run` on {threads} threads, over all time; ripgrep runs \
             `rg --count` over the raw file on one thread (one file is one thread for rg). Both read from the page \
             cache: each is run once untimed first. Figures are medians of the timed runs (quick queries repeat for a second, up to 25 runs); a count that differs \
             from ripgrep's fails the benchmark. Free text in eddy is whole words, any case, so the word searches \
             run rg with `--ignore-case --word-regexp` for the same answer ({mode} mode).",
            sizes.join(", ")
        ),
        rows,
        notes: String::new(),
    })
}
