//! The segment store benchmark: the access-log and JSON application-log data is loaded into a
//! bus topic, then the digest turns it into segments; the report gives the compression ratio
//! (index and catalogue included) beside `zstd -3` over the same raw file, the digest's rate per
//! CPU-second, and the catalogue's size per GB of raw data.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy_event::{codec, Parser};
use eddy_log::{Log, PartitionChoice, Record, TopicConfig};
use eddy_store::{digest, Digest, RepoStore, SegmentFile, StoreConfig};

use crate::error::IoContext;
use crate::gen::{self, Kind};
use crate::report::{format_value, Figure, Row, Section};
use crate::{baselines, Error, Result};

/// Settings of the store benchmark.
#[derive(Debug, Clone)]
pub struct StoreBenchOptions {
    /// Scratch directory (bus and store), removed afterwards.
    pub dir: PathBuf,
    /// Where generated data is kept.
    pub data_dir: PathBuf,
    /// Generator seed.
    pub seed: u64,
    /// Bytes of raw data per kind.
    pub data_bytes: u64,
    /// The `zstd` tool, the baseline.
    pub zstd: PathBuf,
}

/// CPU time this process has used, user and system (Linux `/proc/self/stat`, 100 ticks/s).
pub(crate) fn process_cpu() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    // Every field after the name counts (some may be negative, like tpgid without a terminal).
    let fields: Vec<u64> = after
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse::<i64>().map_or(0, |v| v.max(0) as u64))
        .collect();
    // utime and stime are fields 14 and 15 of the line; this list starts at field 4 (ppid).
    let ticks = fields.get(10).copied().unwrap_or(0) + fields.get(11).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

struct Measured {
    raw: u64,
    stored: u64,
    index: u64,
    catalogue: u64,
    segments: usize,
    wall: f64,
    cpu: f64,
}

pub(crate) fn parser_of(kind: Kind) -> Parser {
    match kind {
        Kind::Access => Parser::Accesslog,
        Kind::Json => Parser::Json,
        Kind::Statsd => Parser::Statsd,
    }
}

/// Parses `file` into a fresh bus topic, in batches of 1,000 events.
fn load(dir: &Path, file: &Path, parser: Parser) -> Result<(Arc<Log>, Arc<eddy_log::Topic>, u64)> {
    let log = Arc::new(Log::open(dir.join("bus"))?);
    let topic = log.topic_or_create(
        "repo.bench",
        TopicConfig {
            partitions: 2,
            retain_for_groups: vec![digest::GROUP.into()],
            ..TopicConfig::default()
        },
    )?;
    let reader = std::io::BufReader::with_capacity(
        1 << 20,
        std::fs::File::open(file).context(|| format!("opening {}", file.display()))?,
    );
    let now = eddy_log::now_ns();
    let mut batch = Vec::with_capacity(1000);
    let mut events = 0u64;
    for line in reader.lines() {
        let line = line.context(|| format!("reading {}", file.display()))?;
        let e = parser.parse(&line, now).map_err(|e| {
            Error::Invalid(format!("{}: line {}: {e:?}", file.display(), events + 1))
        })?;
        batch.push(Record::new(codec::encode(&e)).with_timestamp(e.timestamp));
        events += 1;
        if batch.len() == 1000 {
            topic.produce(std::mem::take(&mut batch), PartitionChoice::ByKey)?;
        }
    }
    if !batch.is_empty() {
        topic.produce(batch, PartitionChoice::ByKey)?;
    }
    Ok((log, topic, events))
}

/// The digest's wall-clock and CPU seconds (the load into the bus not counted).
pub(crate) struct Built {
    pub(crate) wall: f64,
    pub(crate) cpu: f64,
}

/// Loads `file` into a fresh bus under `scratch`, digests it into a store at `scratch/store`
/// and seals it; the bus is removed afterwards, the store stays on disk.
pub(crate) fn build_store(
    scratch: &Path,
    kind: Kind,
    file: &Path,
    progress: &dyn Fn(&str),
) -> Result<Built> {
    let _ = std::fs::remove_dir_all(scratch);
    progress(&format!("loading {} data into the bus", kind.name()));
    let (log, topic, events) = load(scratch, file, parser_of(kind))?;
    progress(&format!(
        "digesting {} events of {} data",
        events,
        kind.name()
    ));
    let store = Arc::new(
        RepoStore::open("bench", &scratch.join("store"), StoreConfig::default())
            .map_err(|e| Error::Invalid(e.to_string()))?,
    );
    let cpu0 = process_cpu();
    let start = Instant::now();
    let digest = Digest::start(log.clone(), topic.name(), store.clone());
    while digest.stats.events.load(Ordering::Relaxed) < events {
        std::thread::sleep(Duration::from_millis(5));
    }
    store
        .seal_all()
        .map_err(|e| Error::Invalid(e.to_string()))?;
    let wall = start.elapsed().as_secs_f64();
    let cpu = (process_cpu() - cpu0).as_secs_f64();
    digest.stop();
    drop(log);
    let _ = std::fs::remove_dir_all(scratch.join("bus"));
    Ok(Built { wall, cpu })
}

fn digest_file(
    opts: &StoreBenchOptions,
    kind: Kind,
    file: &Path,
    raw: u64,
    progress: &dyn Fn(&str),
) -> Result<Measured> {
    let scratch = opts.dir.join(kind.name());
    let built = build_store(&scratch, kind, file, &|m| progress(&format!("store: {m}")))?;
    let store_dir = scratch.join("store");
    let mut m = Measured {
        raw,
        stored: 0,
        index: 0,
        catalogue: 0,
        segments: 0,
        wall: built.wall,
        cpu: built.cpu,
    };
    for path in eddy_store::catalogue::segment_files(&store_dir)
        .context(|| format!("reading {}", store_dir.display()))?
    {
        let seg = SegmentFile::open(&path).map_err(|e| Error::Invalid(e.to_string()))?;
        m.stored += seg.file_len();
        m.index += seg.index_len();
        m.segments += 1;
    }
    // No catalogue file when nothing was sealed.
    m.catalogue =
        std::fs::metadata(store_dir.join(eddy_store::catalogue::FILE)).map_or(0, |meta| meta.len());
    m.stored += m.catalogue;
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(m)
}

/// Runs the benchmark.
pub fn run(opts: &StoreBenchOptions, mode: &str, progress: &dyn Fn(&str)) -> Result<Section> {
    let mut rows = Vec::new();
    for kind in [Kind::Access, Kind::Json] {
        progress(&format!("store: generating {} data", kind.name()));
        let (file, manifest) =
            gen::generate_file(&opts.data_dir, kind, opts.seed, opts.data_bytes)?;
        progress(&format!("store: zstd -3 over the {} file", kind.name()));
        let (zstd_bytes, zstd_secs) =
            baselines::compressed_size(&opts.zstd, &["-3", "-q", "-c", "-T1"], &file)?;
        let zstd_ratio = manifest.bytes as f64 / zstd_bytes.max(1) as f64;
        let m = digest_file(opts, kind, &file, manifest.bytes, progress)?;
        let ratio = m.raw as f64 / m.stored.max(1) as f64;
        rows.push(Row {
            figure: Figure::once(
                &format!(
                    "compression ratio on {} ({} segments, index and catalogue included)",
                    kind.name(),
                    m.segments
                ),
                "ratio",
                ratio,
            ),
            baseline: format!(
                "zstd -3 over the file: {zstd_ratio:.2}× (at {})",
                format_value(manifest.bytes as f64 / zstd_secs, "MB/s")
            ),
            ratio: format!("{:.2}×", ratio / zstd_ratio),
            goal: "≥ zstd -3 (≥ 10×)".into(),
        });
        rows.push(Row {
            figure: Figure::once(
                &format!("digest on {}: raw MB per CPU-second", kind.name()),
                "MB/s",
                m.raw as f64 / m.cpu.max(1e-9),
            ),
            baseline: format!(
                "{} wall-clock over 2 partitions",
                format_value(m.raw as f64 / m.wall, "MB/s")
            ),
            ratio: String::new(),
            goal: "≥ 100 MB/s per core".into(),
        });
        rows.push(Row::plain(Figure::once(
            &format!("blooms and block tables on {}, % of raw", kind.name()),
            "%",
            100.0 * m.index as f64 / m.raw as f64,
        )));
        rows.push(Row::plain(Figure::once(
            &format!("catalogue per GB of raw {} data", kind.name()),
            "bytes",
            m.catalogue as f64 * 1e9 / m.raw as f64,
        )));
    }
    Ok(Section {
        id: "store".into(),
        title: "Segment store".into(),
        intro: format!(
            "{} of each kind parsed into a 2-partition bus topic (not timed), then digested into segments with the \
             default settings (1 MiB blocks, zstd by layout, 10-bit blooms, 1 GiB segments; the work in progress is \
             sealed at the end and counted). Stored size = segment files (blocks, blooms, block tables, footers) + \
             catalogue. Digest CPU is this process's user+system time while the digest ran ({mode} mode).",
            format_value(opts.data_bytes as f64, "MB")
        ),
        rows,
        notes: String::new(),
    })
}
