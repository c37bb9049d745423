//! The bus benchmark: append, read, follow and acknowledgement latency of the embedded log,
//! beside the disk's own sequential write + fdatasync rate at the same batch size.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use eddy_log::{Compression, EncodedBatch, Log, Partition, Record, TopicConfig};

use crate::baselines;
use crate::error::{Error, IoContext, Result};
use crate::report::{format_value, Figure, Row, Section};

const RECORD_BYTES: usize = 100;
const BATCH: usize = 1000;
const LATENCY_RATE: u64 = 100_000;
const LATENCY_BATCH: usize = 100;
const LATENCY_THREADS: usize = 4;

/// Settings of a log benchmark run.
#[derive(Debug, Clone)]
pub struct LogBenchOptions {
    /// Scratch directory on the disk to measure.
    pub dir: PathBuf,
    /// Runs per figure.
    pub runs: usize,
    /// Records per append run.
    pub records: u64,
    /// Seconds of the latency run.
    pub latency_seconds: u64,
    /// Memory read bandwidth (bytes/s), measured once by the caller.
    pub memory_bandwidth: f64,
}

/// Realistic 100-byte log lines, varied enough not to be trivially repetitive.
fn values() -> Vec<Bytes> {
    let levels = ["INFO", "INFO", "INFO", "WARN", "DEBUG", "ERROR"];
    let paths = [
        "/api/v1/orders",
        "/api/v1/users",
        "/health",
        "/api/v2/search",
        "/static/app.js",
    ];
    (0..BATCH)
        .map(|i| {
            let mut line = format!(
                "2026-11-24T10:{:02}:{:02}.{:03}Z {} svc-{} req={:08x} path={} took={}ms user={}",
                i % 60,
                (i * 7) % 60,
                (i * 37) % 1000,
                levels[i % levels.len()],
                i % 13,
                (i as u64).wrapping_mul(0x9E37_79B9) as u32,
                paths[i % paths.len()],
                (i * i) % 997,
                i * 31 % 10007,
            );
            line.truncate(RECORD_BYTES);
            while line.len() < RECORD_BYTES {
                line.push(' ');
            }
            Bytes::from(line)
        })
        .collect()
}

fn batch(values: &[Bytes], n: usize) -> Vec<Record> {
    values
        .iter()
        .take(n)
        .map(|v| Record::new(v.clone()))
        .collect()
}

fn bench_topic() -> TopicConfig {
    TopicConfig {
        retention_ms: None,
        ..TopicConfig::default()
    }
}

fn histogram() -> Result<hdrhistogram::Histogram<u64>> {
    hdrhistogram::Histogram::<u64>::new(3).map_err(|e| Error::Invalid(e.to_string()))
}

fn joined<T>(handle: std::thread::JoinHandle<Result<T>>, who: &str) -> Result<T> {
    handle
        .join()
        .map_err(|_| Error::Invalid(format!("{who} thread panicked")))?
}

struct Bench<'a> {
    opts: &'a LogBenchOptions,
    values: Vec<Bytes>,
}

impl Bench<'_> {
    fn fresh_dir(&self, name: &str) -> Result<PathBuf> {
        let d = self.opts.dir.join(name);
        if d.exists() {
            std::fs::remove_dir_all(&d).context(|| format!("removing {}", d.display()))?;
        }
        std::fs::create_dir_all(&d).context(|| format!("creating {}", d.display()))?;
        Ok(d)
    }

    fn remove(&self, d: &Path) -> Result<()> {
        Ok(std::fs::remove_dir_all(d).context(|| format!("removing {}", d.display()))?)
    }

    /// Appends with `producers` threads; returns (records/s, bytes/s, the log dir).
    fn append(&self, producers: usize) -> Result<(f64, f64, PathBuf)> {
        let d = self.fresh_dir(&format!("append-{producers}"))?;
        let log = Log::builder(&d).retention_check(Duration::ZERO).open()?;
        let topic = log.create_topic("bench", bench_topic())?;
        let partition = topic.partition(0)?.clone();
        let per = self.opts.records / BATCH as u64 / producers as u64;
        let start = Instant::now();
        let threads: Vec<_> = (0..producers)
            .map(|_| {
                let p = partition.clone();
                // The producer's records exist before the append; the log's work is to encode,
                // checksum, write and fsync them.
                let records = batch(&self.values, BATCH);
                std::thread::spawn(move || -> Result<()> {
                    for _ in 0..per {
                        p.append(&records)?;
                    }
                    Ok(())
                })
            })
            .collect();
        for t in threads {
            joined(t, "producer")?;
        }
        let secs = start.elapsed().as_secs_f64();
        let info = partition.info();
        Ok((
            info.end_offset as f64 / secs,
            info.size_bytes as f64 / secs,
            d,
        ))
    }

    /// Reads a whole partition from offset 0.
    fn read(&self, dir: &Path) -> Result<f64> {
        let log = Log::builder(dir).retention_check(Duration::ZERO).open()?;
        let topic = log.topic("bench")?;
        let mut reader = topic.reader(0, 0)?;
        let start = Instant::now();
        let mut n = 0u64;
        loop {
            let records = reader.poll()?;
            if records.is_empty() {
                break;
            }
            n += records.len() as u64;
        }
        let secs = start.elapsed().as_secs_f64();
        let end = topic.partition(0)?.end_offset();
        if n != end {
            return Err(Error::Mismatch {
                what: "records read back".into(),
                expected: end.to_string(),
                got: n.to_string(),
            });
        }
        Ok(n as f64 / secs)
    }

    /// A follower at the tail while one producer appends: records delivered per second.
    fn follow(&self) -> Result<f64> {
        let d = self.fresh_dir("follow")?;
        let log = Log::builder(&d).retention_check(Duration::ZERO).open()?;
        let topic = log.create_topic("bench", bench_topic())?;
        let total = (self.opts.records / BATCH as u64) * BATCH as u64;
        let mut reader = topic.reader(0, 0)?;
        let follower = std::thread::spawn(move || -> Result<(u64, Instant)> {
            let mut n = 0;
            while n < total {
                n += reader.poll_wait(Duration::from_secs(10))?.len() as u64;
            }
            Ok((n, Instant::now()))
        });
        let partition = topic.partition(0)?.clone();
        let records = batch(&self.values, BATCH);
        let start = Instant::now();
        for _ in 0..total / BATCH as u64 {
            partition.append(&records)?;
        }
        let (n, end) = joined(follower, "follower")?;
        drop(log);
        self.remove(&d)?;
        Ok(n as f64 / (end - start).as_secs_f64())
    }

    /// Acknowledgement latency at a steady rate, open loop: each batch has a scheduled send
    /// time and its latency counts from then, so a stall delays everything behind it too.
    fn latency(&self) -> Result<(hdrhistogram::Histogram<u64>, f64)> {
        let d = self.fresh_dir("latency")?;
        let log = Log::builder(&d).retention_check(Duration::ZERO).open()?;
        let topic = log.create_topic("bench", bench_topic())?;
        let partition: Arc<Partition> = topic.partition(0)?.clone();
        let batches_per_sec = LATENCY_RATE / LATENCY_BATCH as u64;
        let interval = Duration::from_nanos(1_000_000_000 / batches_per_sec);
        let total = batches_per_sec * self.opts.latency_seconds;
        let start = Instant::now() + Duration::from_millis(50);
        let threads: Vec<_> = (0..LATENCY_THREADS)
            .map(|t| {
                let p = partition.clone();
                let records = batch(&self.values, LATENCY_BATCH);
                std::thread::spawn(move || -> Result<hdrhistogram::Histogram<u64>> {
                    let mut h = histogram()?;
                    let mut i = t as u64;
                    while i < total {
                        let due = start + interval * i as u32;
                        let now = Instant::now();
                        if due > now {
                            std::thread::sleep(due - now);
                        }
                        p.append(&records)?;
                        h.record(due.elapsed().as_micros() as u64)
                            .map_err(|e| Error::Invalid(e.to_string()))?;
                        i += LATENCY_THREADS as u64;
                    }
                    Ok(h)
                })
            })
            .collect();
        let mut all = histogram()?;
        for t in threads {
            all.add(joined(t, "latency producer")?)
                .map_err(|e| Error::Invalid(e.to_string()))?;
        }
        let rate = partition.end_offset() as f64 / start.elapsed().as_secs_f64();
        drop(log);
        self.remove(&d)?;
        Ok((all, rate))
    }
}

/// Runs the log benchmark and returns its report section. `progress` is told each step.
pub fn run(opts: &LogBenchOptions, mode: &str, progress: &dyn Fn(&str)) -> Result<Section> {
    if opts.records < BATCH as u64 * 4 {
        return Err(Error::Invalid(format!(
            "records per run must be at least {}",
            BATCH * 4
        )));
    }
    let b = Bench {
        opts,
        values: values(),
    };
    let batch_bytes = EncodedBatch::encode(&batch(&b.values, BATCH), Compression::None, 0).len();
    let runs = opts.runs.max(1);
    let mut disk = Figure::new("disk: sequential write + fdatasync per batch", "MB/s");
    let mut append1 = Figure::new("append, 1 producer", "records/s");
    let mut append1_bytes = Figure::new("append, 1 producer (bytes)", "MB/s");
    let mut append4 = Figure::new("append, 4 producers (group commit)", "records/s");
    let mut append4_bytes = Figure::new("append, 4 producers (bytes)", "MB/s");
    let mut read = Figure::new("read from offset 0 (page cache)", "records/s");
    let mut follow = Figure::new("follow the tail while 1 producer appends", "records/s");
    let mut achieved = Figure::new("latency run: achieved rate", "records/s");
    let mut p50 = Figure::new("ack latency p50", "µs");
    let mut p99 = Figure::new("ack latency p99", "µs");
    let mut p999 = Figure::new("ack latency p99.9", "µs");
    let mut pmax = Figure::new("ack latency max", "µs");
    for run in 1..=runs {
        let step = |what: &str| progress(&format!("log run {run}/{runs}: {what}"));
        step("disk baseline");
        let scratch = b.fresh_dir("disk")?;
        disk.runs.push(baselines::disk_fsync(
            &scratch,
            batch_bytes,
            opts.records * RECORD_BYTES as u64,
        )?);
        b.remove(&scratch)?;
        step("append, 1 producer");
        let (r, by, d1) = b.append(1)?;
        append1.runs.push(r);
        append1_bytes.runs.push(by);
        step("read");
        read.runs.push(b.read(&d1)?);
        b.remove(&d1)?;
        step("append, 4 producers");
        let (r, by, d4) = b.append(4)?;
        append4.runs.push(r);
        append4_bytes.runs.push(by);
        b.remove(&d4)?;
        step("follow");
        follow.runs.push(b.follow()?);
        step("ack latency at 100k records/s");
        let (h, rate) = b.latency()?;
        p50.runs.push(h.value_at_quantile(0.50) as f64);
        p99.runs.push(h.value_at_quantile(0.99) as f64);
        p999.runs.push(h.value_at_quantile(0.999) as f64);
        pmax.runs.push(h.max() as f64);
        achieved.runs.push(rate);
    }

    let disk_med = disk.median();
    let disk_txt = format!("disk {}", format_value(disk_med, "MB/s"));
    let vs_disk = |f: &Figure| format!("{:.2}", f.median() / disk_med);
    let row = |figure: Figure, baseline: &str, ratio: String, goal: &str| Row {
        figure,
        baseline: baseline.to_string(),
        ratio,
        goal: goal.to_string(),
    };
    let read_bytes = read.median() * (batch_bytes as f64 / BATCH as f64);
    let mem = opts.memory_bandwidth;
    let follow_ratio = format!("{:.2}", follow.median() / append1.median());
    let rows = vec![
        row(disk, "", String::new(), "the limit"),
        row(append1, "", String::new(), "≥ 1.50 M records/s"),
        row(
            append1_bytes.clone(),
            &disk_txt,
            vs_disk(&append1_bytes),
            "≥ 0.90",
        ),
        row(append4, "", String::new(), "≥ 1.50 M records/s"),
        row(
            append4_bytes.clone(),
            &disk_txt,
            vs_disk(&append4_bytes),
            "≥ 0.90",
        ),
        row(
            read,
            &format!("memory {}", format_value(mem, "GB/s")),
            format!(
                "{:.3} ({})",
                read_bytes / mem,
                format_value(read_bytes, "MB/s")
            ),
            "≥ 3.00 M records/s",
        ),
        row(
            follow,
            "append rate (1 producer)",
            follow_ratio,
            "≥ 3.00 M records/s where appends allow",
        ),
        row(
            achieved,
            &format!("{LATENCY_THREADS} producers, batches of {LATENCY_BATCH}"),
            String::new(),
            "100.0 k records/s",
        ),
        row(p50, "", String::new(), "printed"),
        row(p99, "", String::new(), "printed"),
        Row::plain(p999),
        Row::plain(pmax),
    ];
    let mut rows = rows;
    rows.extend(codec_rows(progress)?);
    Ok(Section {
        id: "log".into(),
        title: "Log (bus)".into(),
        intro: format!(
            "{}\n\nWorkload: {RECORD_BYTES}-byte records (log lines), batches of {BATCH} ({batch_bytes} bytes on disk), \
             one partition, durable mode (acknowledged after fdatasync, group commit, linger 0), no compression; \
             {} records per append run. Regenerate this section alone with \
             `cargo run --release -p eddy -- bench log` (`--quick` for a short run).",
            crate::report::provenance(mode, runs),
            opts.records
        ),
        rows,
        notes: "The disk baseline writes one batch-sized buffer and fdatasyncs it, repeatedly, on the same disk \
                as the log. With one producer every append pays its own fsync, exactly like the baseline; with \
                four, group commit lets one fsync cover several batches, so the ratio can exceed 1. Follow is \
                bounded by the rate of the single producer feeding it. Latency is open loop: it counts from each \
                batch's scheduled send time. For reference, Apache Kafka's published single-producer figure is \
                about 0.82 M records/s on a 6-core machine without fsync per batch. The codec rows encode \
                the generator's access and JSON lines as repository records (raw text, tags, id, times and \
                parsed fields, as the doors append them) in batches of 1,000, on one thread; zstd is level 3."
            .into(),
    })
}

/// Bytes of each kind of generated data the codec comparison encodes.
const CODEC_SAMPLE_BYTES: u64 = 16 << 20;

/// Repository records as the doors append them: each generated line parsed by its parser and
/// encoded as an event (raw text, tags, id, times and fields), in batches of [`BATCH`].
fn repository_batches(
    kind: crate::gen::Kind,
    parser: eddy_event::Parser,
) -> Result<Vec<Vec<Record>>> {
    let mut text = Vec::new();
    crate::gen::generate(kind, 7, CODEC_SAMPLE_BYTES, &mut text)?;
    let text = String::from_utf8(text).map_err(|e| Error::Invalid(e.to_string()))?;
    let now = eddy_log::now_ns();
    let records: Vec<Record> = text
        .lines()
        .filter_map(|line| parser.parse(line, now).ok())
        .map(|e| Record::new(eddy_event::codec::encode(&e)).with_timestamp(e.timestamp))
        .collect();
    Ok(records.chunks(BATCH).map(<[Record]>::to_vec).collect())
}

/// Compares the bus's codecs on repository records: encode and decode rate (MB/s of record
/// bytes, one thread) and the ratio of record bytes to batch bytes on disk.
pub fn codec_rows(progress: &dyn Fn(&str)) -> Result<Vec<Row>> {
    use eddy_event::Parser;
    let mut rows = Vec::new();
    for (kind, parser) in [
        (crate::gen::Kind::Access, Parser::Accesslog),
        (crate::gen::Kind::Json, Parser::Json),
    ] {
        progress(&format!("codecs on {} records", kind.name()));
        let batches = repository_batches(kind, parser)?;
        let record_bytes: usize = batches.iter().flatten().map(|r| r.value.len()).sum();
        for codec in [Compression::None, Compression::Lz4, Compression::Zstd] {
            let start = Instant::now();
            let encoded: Vec<Bytes> = batches
                .iter()
                .map(|b| Bytes::copy_from_slice(EncodedBatch::encode(b, codec, 0).as_bytes()))
                .collect();
            let encode_s = start.elapsed().as_secs_f64();
            let disk: usize = encoded.iter().map(Bytes::len).sum();
            let start = Instant::now();
            let mut seen = 0usize;
            for b in &encoded {
                eddy_log::batch::decode(b, 0, |r| seen += r.value.len())
                    .map_err(|e| Error::Invalid(format!("decoding a {codec} batch: {e}")))?;
            }
            let decode_s = start.elapsed().as_secs_f64();
            // The report's MB/s figures take bytes per second.
            let bytes = record_bytes as f64;
            let name = |what: &str| format!("{} records, {codec}: {what}", kind.name());
            let mut ratio = Figure::new(&name("record bytes ÷ bytes on disk"), "ratio");
            ratio.runs.push(record_bytes as f64 / disk as f64);
            let mut enc = Figure::new(&name("encode"), "MB/s");
            enc.runs.push(bytes / encode_s.max(1e-9));
            let mut dec = Figure::new(&name("decode"), "MB/s");
            dec.runs.push(bytes / decode_s.max(1e-9));
            if seen != record_bytes {
                return Err(Error::Invalid(format!(
                    "{codec} batches gave back {seen} bytes of {record_bytes}"
                )));
            }
            rows.extend([Row::plain(ratio), Row::plain(enc), Row::plain(dec)]);
        }
    }
    Ok(rows)
}
