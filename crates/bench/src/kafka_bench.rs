//! The Kafka benchmark: the same HTTP ingest load, in one run, into
//!
//! - (a) one `eddy serve` on the embedded bus,
//! - (b) one `eddy serve` with `[bus] kind = "kafka"` on a Kafka-protocol broker on loopback,
//! - (c) three `eddy serve` nodes on one broker, the load spread over them (each request to the
//!   next node in turn), every node digesting its share of the partitions,
//! - (d) one node on a broker with librdkafka's own batching: what the test broker's
//!   one-record batches cost.
//!
//! The load is generated access lines (posted raw with `?parser=accesslog`) and JSON
//! application logs (NDJSON), in bodies of about [`BODY_BYTES`] posted by several client
//! threads. For each setup and load it measures the rate until the last acknowledgement (events
//! and raw MB), each request's time until its acknowledgement, the rate from the first request
//! until a `count()` (through the first node, which fans out to the others) equals what they acknowledged, the CPU time of the
//! eddy processes (split by thread: the digest's threads and the rest) and of the broker from
//! `/proc`, and the bytes the store holds per event.
//!
//! The broker is tansu, started from this process as the tests start it
//! (`eddy_kafka::testing::Broker`). It keeps its data in memory and answers wrong end offsets
//! for multi-record batches, so (b) and (c) produce one record per batch
//! (`batch.num.messages=1`, as the tests' configuration does).

use std::io::{BufRead, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use eddy_kafka::testing::Broker;
use eddy_log::Bus;

use crate::error::{Error, IoContext, Result};
use crate::gen::{self, Kind};
use crate::ingest_e2e::{cut, json, post};
use crate::proc_stat::{self, CpuSample};
use crate::report::{format_value, Figure, Row, Section};
use crate::serve::Serve;

/// Settings of the Kafka benchmark.
#[derive(Debug, Clone)]
pub struct KafkaBenchOptions {
    /// The `eddy` binary to start the nodes from.
    pub exe: PathBuf,
    /// Scratch directory (the generated data and the nodes' data directories).
    pub dir: PathBuf,
    /// Bytes of raw data of each format (access lines, JSON logs).
    pub bytes: u64,
    /// Client threads posting at once.
    pub clients: usize,
    /// Generator seed.
    pub seed: u64,
    /// How long a count that differs from what was acknowledged may stay the same before the
    /// difference is reported as missing or added events instead of waited on.
    pub stall: Duration,
}

/// Bytes per request body: enough requests per load for a latency distribution.
const BODY_BYTES: u64 = 1 << 20;
/// Partitions per repository: three nodes get two each.
const PARTITIONS: u32 = 6;
/// Lines of each file posted through every node before the timed load.
const WARM_UP_LINES: usize = 100;
/// How long the digest may take to make the acknowledged events countable.
const COUNT_DEADLINE: Duration = Duration::from_secs(1800);

/// One way of running eddy that the load goes into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setup {
    Embedded,
    Kafka,
    KafkaThree,
    KafkaBatched,
}

impl Setup {
    const ALL: [Setup; 4] = [
        Setup::Embedded,
        Setup::Kafka,
        Setup::KafkaThree,
        Setup::KafkaBatched,
    ];

    fn label(self) -> &'static str {
        match self {
            Setup::Embedded => "(a) one node, embedded bus",
            Setup::Kafka => "(b) one node on Kafka",
            Setup::KafkaThree => "(c) three nodes on Kafka",
            Setup::KafkaBatched => "(d) one node on Kafka, librdkafka's batching",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Setup::Embedded => "a",
            Setup::Kafka => "b",
            Setup::KafkaThree => "c",
            Setup::KafkaBatched => "d",
        }
    }

    fn nodes(self) -> usize {
        match self {
            Setup::KafkaThree => 3,
            _ => 1,
        }
    }

    fn on_kafka(self) -> bool {
        self != Setup::Embedded
    }
}

/// One load: a generated file cut into bodies, and where and how it is posted.
struct Load {
    label: &'static str,
    repository: &'static str,
    query: &'static str,
    content_type: &'static str,
    file: PathBuf,
    /// Byte ranges of whole lines, about [`BODY_BYTES`] each.
    bodies: Vec<(u64, u64)>,
    /// The file's first lines, posted through every node before the timed load.
    warm_up: Vec<u8>,
}

/// What one load into one setup measured.
#[derive(Debug, Clone, Default)]
struct Measured {
    /// Events and raw bytes acknowledged.
    events: u64,
    bytes: u64,
    /// From the first request until the last acknowledgement.
    ingest_secs: f64,
    /// From the first request until a `count()` finds every acknowledged event (none when the
    /// count stopped elsewhere).
    end_to_end_secs: Option<f64>,
    /// The events of the load a `count()` found in the end.
    counted: u64,
    /// On Kafka, what the repository's topic held once counted, warm-up included.
    in_topic: Option<Census>,
    /// The warm-up's events, in the topic beside the load's.
    warm_up: u64,
    /// Each request's time until its acknowledgement, in ms.
    latencies_ms: Vec<f64>,
    /// CPU seconds of the eddy processes outside the digest's threads, until the last
    /// acknowledgement.
    ingest_cpu: f64,
    /// CPU seconds of the digest's threads, until counted.
    digest_cpu: f64,
    /// CPU seconds of the broker, until counted.
    broker_cpu: Option<f64>,
    /// Bytes of the store (segments, work in progress, catalogue) and of the embedded bus for
    /// this load's repository, over all nodes, once counted; and the events they hold.
    store_bytes: u64,
    bus_bytes: u64,
    stored_events: u64,
}

/// What one setup measured.
struct SetupMeasured {
    setup: Setup,
    loads: Vec<Measured>,
    /// The broker's resident memory before the warm-up and after every load.
    broker_memory: Option<(u64, u64)>,
    /// Events the broker holds (warm-ups included).
    broker_events: u64,
}

/// Runs the benchmark.
pub fn run(opts: &KafkaBenchOptions, mode: &str, progress: &dyn Fn(&str)) -> Result<Section> {
    let broker_binary = eddy_kafka::testing::broker_binary()?;
    progress("generating the load's data");
    let loads = loads(opts)?;
    let load_before = proc_stat::load_average();
    let mut measured = Vec::new();
    for setup in Setup::ALL {
        measured.push(measure(setup, opts, &loads, &broker_binary, progress)?);
    }
    let load_after = proc_stat::load_average();
    let _ = std::fs::remove_dir_all(opts.dir.join("nodes"));
    Ok(section(
        opts,
        mode,
        &loads,
        &measured,
        (load_before, load_after),
    ))
}

/// Starts a broker from `binary` on a free loopback port; its process id for its CPU time.
fn start_broker(binary: &Path) -> Result<(Broker, Option<u32>)> {
    let broker = Broker::try_start_binary(binary)?;
    let pid = proc_stat::children_running(binary).into_iter().next();
    Ok((broker, pid))
}

/// What a Kafka topic holds: records, and distinct event ids among them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Census {
    records: u64,
    distinct_ids: u64,
}

/// Reads every record of `topic` back from `broker` (through eddy's own Kafka reader, until a
/// poll finds nothing more) and counts them and their distinct event ids: the layer between
/// what the nodes acknowledged and what their digests counted.
fn census(broker: &Broker, topic: &str) -> Result<Census> {
    let failed = |e: eddy_log::Error| Error::Invalid(format!("reading {topic} back: {e}"));
    let bus = eddy_kafka::KafkaBus::connect(broker.config()).map_err(failed)?;
    let mut ids = std::collections::HashSet::new();
    let mut census = Census::default();
    for partition in 0..bus.partition_count(topic).map_err(failed)? {
        let (first, _) = bus.offsets(topic, partition).map_err(failed)?;
        let mut reader = bus.reader(topic, partition, first).map_err(failed)?;
        // tansu's end offsets are wrong after multi-record batches: read until nothing comes.
        loop {
            let records = reader.poll(Duration::from_secs(1)).map_err(failed)?;
            if records.is_empty() {
                break;
            }
            for r in records {
                census.records += 1;
                if let Ok((event, _)) = eddy_event::codec::decode_lazily(&r.value) {
                    ids.insert(event.id);
                }
            }
        }
    }
    census.distinct_ids = ids.len() as u64;
    Ok(census)
}

/// Generates both files (times ending now, so that retention keeps them) and cuts them.
fn loads(opts: &KafkaBenchOptions) -> Result<Vec<Load>> {
    let dir = opts.dir.join("raw");
    std::fs::create_dir_all(&dir).context(|| format!("creating {}", dir.display()))?;
    let mut out = Vec::new();
    for (kind, label, repository, query, content_type) in [
        (
            Kind::Access,
            "access lines",
            "acc",
            "?parser=accesslog",
            "text/plain",
        ),
        (Kind::Json, "JSON events", "app", "", "application/x-ndjson"),
    ] {
        let file = dir.join(format!("{}.log", kind.name()));
        let start = eddy_event::time::now_ns() - gen::time_span_ns(kind, opts.seed, opts.bytes);
        let mut w = std::io::BufWriter::new(
            std::fs::File::create(&file).context(|| format!("creating {}", file.display()))?,
        );
        gen::generate_from(kind, opts.seed, opts.bytes, start, &mut w)?;
        drop(w);
        let reader = std::io::BufReader::new(
            std::fs::File::open(&file).context(|| format!("opening {}", file.display()))?,
        );
        let mut warm_up = Vec::new();
        for line in reader.lines().take(WARM_UP_LINES) {
            warm_up.extend_from_slice(
                line.context(|| format!("reading {}", file.display()))?
                    .as_bytes(),
            );
            warm_up.push(b'\n');
        }
        out.push(Load {
            label,
            repository,
            query,
            content_type,
            bodies: cut(&file, BODY_BYTES)?,
            file,
            warm_up,
        });
    }
    Ok(out)
}

/// The configuration of a node of `setup` on `broker`.
fn node_config(setup: Setup, broker: Option<&Broker>) -> String {
    let mut config = String::from("[http]\nlisten = \"127.0.0.1:0\"\n");
    for repository in ["acc", "app"] {
        config.push_str(&format!(
            "[repositories.{repository}]\npartitions = {PARTITIONS}\n"
        ));
    }
    if let Some(broker) = broker {
        config.push_str(&format!(
            "[bus]\nkind = \"kafka\"\nbrokers = {:?}\nreplication_factor = 1\n[bus.properties]\n",
            broker.bootstrap_servers()
        ));
        for (key, value) in producer_properties(setup, broker) {
            config.push_str(&format!("{key:?} = {value:?}\n"));
        }
    }
    config
}

/// The librdkafka properties a node of `setup` gets beside eddy's own: the tests' (one record
/// per batch, quick heartbeats), or for (d) all but the one-record batches.
fn producer_properties(setup: Setup, broker: &Broker) -> Vec<(String, String)> {
    broker
        .config()
        .properties
        .into_iter()
        .filter(|(key, _)| setup != Setup::KafkaBatched || key != "batch.num.messages")
        .collect()
}

/// An HTTP client whose requests may wait long (a body of one-record batches on a busy broker).
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(600)))
        .build()
        .into()
}

fn ingest_url(node: &Serve, load: &Load) -> String {
    format!(
        "{}/api/v1/ingest/{}{}",
        node.http, load.repository, load.query
    )
}

/// The events a `count()` over all time finds in `repository` through `node` (its own store,
/// and on a shared bus the other digest nodes' too).
fn count(agent: &ureq::Agent, node: &Serve, repository: &str) -> Result<u64> {
    let url = format!("{}/api/v1/repositories/{repository}/query", node.http);
    let body = serde_json::json!({
        "query": "count()",
        "start": "1970-01-01T00:00:00Z",
        "end": "2200-01-01T00:00:00Z",
    });
    let answer = agent
        .post(&url)
        .header("Content-Type", "application/json")
        .send(body.to_string().as_bytes())
        .and_then(|mut r| r.body_mut().read_to_string())
        .map_err(|e| Error::Invalid(format!("counting the events of {url}: {e}")))
        .and_then(|text| json(&text))?;
    Ok(answer["rows"][0]["_count"].as_u64().unwrap_or(0))
}

/// Waits until a `count()` of `repository` finds `events`, or stops changing for `stall` (a
/// loss or a double is reported, not waited on for ever); returns the last count.
fn until_counted(
    agent: &ureq::Agent,
    nodes: &[Serve],
    repository: &str,
    events: u64,
    stall: Duration,
    progress: &dyn Fn(&str),
) -> Result<u64> {
    let deadline = Instant::now() + COUNT_DEADLINE;
    let (mut last, mut changed) = (None, Instant::now());
    loop {
        // A node on a shared bus fans its query out to every digest node its node directory
        // lists: the first node's count is the cluster's (a sum over the nodes counted each
        // event once per node).
        let first = nodes
            .first()
            .ok_or_else(|| Error::Invalid("no node to count on".into()))?;
        let counted = count(agent, first, repository)?;
        if counted == events {
            return Ok(counted);
        }
        if last != Some(counted) {
            (last, changed) = (Some(counted), Instant::now());
        }
        if changed.elapsed() > stall {
            return Ok(counted);
        }
        if Instant::now() > deadline {
            return Err(Error::Mismatch {
                what: format!("events the nodes' count() of {repository} find vs acknowledged"),
                expected: events.to_string(),
                got: counted.to_string(),
            });
        }
        progress(&format!(
            "{repository}: {counted} of {events} acknowledged events counted"
        ));
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What the nodes' store and embedded bus hold for `repository`: store bytes, bus bytes,
/// events in the store.
fn stored(agent: &ureq::Agent, nodes: &[Serve], repository: &str) -> Result<(u64, u64, u64)> {
    let mut total = (0, 0, 0);
    for node in nodes {
        let url = format!("{}/api/v1/repositories/{repository}", node.http);
        let answer = agent
            .get(&url)
            .call()
            .and_then(|mut r| r.body_mut().read_to_string())
            .map_err(|e| Error::Invalid(format!("describing {url}: {e}")))
            .and_then(|text| json(&text))?;
        let f = &answer["footprint"];
        let bytes = |key: &str| f[key].as_u64().unwrap_or(0);
        total.0 +=
            bytes("segment_bytes") + bytes("work_in_progress_bytes") + bytes("catalogue_bytes");
        total.1 += bytes("bus_bytes");
        total.2 += answer["store"]["events"].as_u64().unwrap_or(0) + bytes("unsealed_events");
    }
    Ok(total)
}

/// Posts every body of `load`, request `i` to node `i mod n`, from `clients` threads; returns
/// the events and bytes acknowledged and each request's latency in ms.
fn post_all(
    nodes: &[Serve],
    load: &Load,
    clients: usize,
    progress: &dyn Fn(&str),
) -> Result<(u64, u64, Vec<f64>)> {
    let urls: Vec<String> = nodes.iter().map(|n| ingest_url(n, load)).collect();
    let next = AtomicUsize::new(0);
    let acked_bytes = AtomicU64::new(0);
    let results = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients.max(1))
            .map(|_| {
                s.spawn(|| -> Result<(u64, Vec<f64>)> {
                    let agent = agent();
                    let mut file = std::fs::File::open(&load.file)
                        .context(|| format!("opening {}", load.file.display()))?;
                    let (mut events, mut latencies, mut body) = (0, Vec::new(), Vec::new());
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&(from, to)) = load.bodies.get(i) else {
                            return Ok((events, latencies));
                        };
                        body.resize((to - from) as usize, 0);
                        file.seek(SeekFrom::Start(from))
                            .and_then(|_| file.read_exact(&mut body))
                            .context(|| format!("reading {}", load.file.display()))?;
                        let sent = Instant::now();
                        events += post(&agent, &urls[i % urls.len()], load.content_type, &body)?;
                        latencies.push(sent.elapsed().as_secs_f64() * 1e3);
                        acked_bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        let total: u64 = load.bodies.iter().map(|(a, b)| b - a).sum();
        while handles.iter().any(|h| !h.is_finished()) {
            progress(&format!(
                "{}: {} of {} acknowledged",
                load.label,
                format_value(acked_bytes.load(Ordering::Relaxed) as f64, "MB"),
                format_value(total as f64, "MB"),
            ));
            std::thread::sleep(Duration::from_millis(250));
        }
        crate::serve::joined(handles).collect::<Result<Vec<_>>>()
    })?;
    let mut events = 0;
    let mut latencies = Vec::new();
    for (e, l) in results {
        events += e;
        latencies.extend(l);
    }
    Ok((events, acked_bytes.into_inner(), latencies))
}

/// CPU samples of the nodes and the broker.
fn cpu(nodes: &[Serve], broker: Option<u32>) -> (Vec<CpuSample>, Option<CpuSample>) {
    (
        nodes.iter().map(|n| CpuSample::read(n.pid())).collect(),
        broker.map(CpuSample::read),
    )
}

/// The digest's threads: `digest-<repository>-<partition>` (and its membership thread).
fn is_digest_thread(name: &str) -> bool {
    name.starts_with("digest-")
}

fn measure(
    setup: Setup,
    opts: &KafkaBenchOptions,
    loads: &[Load],
    broker_binary: &Path,
    progress: &dyn Fn(&str),
) -> Result<SetupMeasured> {
    progress(&format!("{}: starting", setup.label()));
    let (broker, broker_pid) = match setup.on_kafka() {
        true => {
            let (b, pid) = start_broker(broker_binary)?;
            (Some(b), pid)
        }
        false => (None, None),
    };
    let memory_before = broker_pid.and_then(proc_stat::resident_bytes);
    let nodes = (0..setup.nodes())
        .map(|i| {
            let dir = opts.dir.join("nodes").join(format!("{}{i}", setup.short()));
            let config = Serve::fresh_config(&dir, &node_config(setup, broker.as_ref()))?;
            Ok(Serve::start(&opts.exe, &config, false, &[])?.0)
        })
        .collect::<Result<Vec<_>>>()?;
    let agent = agent();

    // Through every node before the timed load: topics exist, groups have formed, digests run.
    progress(&format!(
        "{}: warming up (topics, consumer groups)",
        setup.label()
    ));
    let mut warmed = Vec::new();
    for load in loads {
        let mut events = 0;
        for node in &nodes {
            events += post(
                &agent,
                &ingest_url(node, load),
                load.content_type,
                &load.warm_up,
            )?;
        }
        warmed.push(until_counted(
            &agent,
            &nodes,
            load.repository,
            events,
            opts.stall,
            progress,
        )?);
    }

    let mut measured = Vec::new();
    let mut broker_events = warmed.iter().sum();
    for (load, warm) in loads.iter().zip(warmed) {
        progress(&format!("{}: {}", setup.label(), load.label));
        let before = cpu(&nodes, broker_pid);
        let started = Instant::now();
        let (events, bytes, latencies_ms) = post_all(&nodes, load, opts.clients, &|m| {
            progress(&format!("{}: {m}", setup.label()))
        })?;
        let ingest_secs = started.elapsed().as_secs_f64();
        let acked = cpu(&nodes, broker_pid);
        let counted = until_counted(
            &agent,
            &nodes,
            load.repository,
            warm + events,
            opts.stall,
            &|m| progress(&format!("{}: {m}", setup.label())),
        )?;
        let end_to_end_secs = (counted == warm + events).then(|| started.elapsed().as_secs_f64());
        let at_count = cpu(&nodes, broker_pid);
        let mut m = Measured {
            events,
            bytes,
            ingest_secs,
            end_to_end_secs,
            latencies_ms,
            counted: counted.saturating_sub(warm),
            warm_up: warm,
            ..Measured::default()
        };
        if let Some(broker) = &broker {
            m.in_topic = Some(census(broker, &format!("repo.{}", load.repository))?);
        }
        for ((b, a), c) in before.0.iter().zip(&acked.0).zip(&at_count.0) {
            m.ingest_cpu += a.total_since(b) - a.threads_since(b, is_digest_thread);
            m.digest_cpu += c.threads_since(b, is_digest_thread);
        }
        m.broker_cpu = match (&before.1, &at_count.1) {
            (Some(b), Some(c)) => Some(c.total_since(b)),
            _ => None,
        };
        (m.store_bytes, m.bus_bytes, m.stored_events) = stored(&agent, &nodes, load.repository)?;
        broker_events += events;
        measured.push(m);
    }
    let memory_after = broker_pid.and_then(proc_stat::resident_bytes);
    for node in nodes {
        node.kill()?;
    }
    drop(broker);
    Ok(SetupMeasured {
        setup,
        loads: measured,
        broker_memory: memory_before.zip(memory_after),
        broker_events,
    })
}

/// The `q`-quantile (0–1) of `values`.
fn quantile(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n => v[((n - 1) as f64 * q).round() as usize],
    }
}

/// Events per CPU second: the events/s one fully used core would handle.
fn per_core(events: u64, cpu_secs: f64) -> f64 {
    match cpu_secs > 0.0 {
        true => events as f64 / cpu_secs,
        false => f64::NAN,
    }
}

fn section(
    opts: &KafkaBenchOptions,
    mode: &str,
    loads: &[Load],
    measured: &[SetupMeasured],
    load_average: (Option<f64>, Option<f64>),
) -> Section {
    let mut rows = Vec::new();
    let embedded = &measured[0];
    for (l, load) in loads.iter().enumerate() {
        let name =
            |s: &SetupMeasured, what: &str| format!("{} — {}: {what}", load.label, s.setup.label());
        let beside = |value: f64, base: f64| match base.is_finite() && base > 0.0 {
            true => format!("{:.2}× (a)", value / base),
            false => String::new(),
        };
        for s in measured {
            let m = &s.loads[l];
            let rate = m.events as f64 / m.ingest_secs;
            rows.push(Row {
                baseline: format!(
                    "{:.2} MB/s of raw {}",
                    m.bytes as f64 / m.ingest_secs / 1e6,
                    load.label
                ),
                ratio: match s.setup {
                    Setup::Embedded => String::new(),
                    _ => beside(
                        rate,
                        embedded.loads[l].events as f64 / embedded.loads[l].ingest_secs,
                    ),
                },
                ..Row::plain(Figure::once(
                    &name(s, "acknowledged, first request to last ack"),
                    "events/s",
                    rate,
                ))
            });
        }
        for s in measured {
            let m = &s.loads[l];
            rows.push(Row {
                baseline: format!(
                    "p99 {} over {} requests",
                    format_value(quantile(&m.latencies_ms, 0.99), "ms"),
                    m.latencies_ms.len()
                ),
                ..Row::plain(Figure::once(
                    &name(s, "acknowledgement latency p50 (a body of ~1 MiB)"),
                    "ms",
                    quantile(&m.latencies_ms, 0.5),
                ))
            });
        }
        for s in measured {
            let m = &s.loads[l];
            let counted = m.counted;
            rows.push(Row {
                baseline: format!("of {} acknowledged", m.events),
                goal: "0: every acknowledged event counted once".into(),
                ..Row::plain(Figure::once(
                    &name(s, "events counted − events acknowledged"),
                    "count",
                    counted as f64 - m.events as f64,
                ))
            });
        }
        let embedded_e2e = embedded.loads[l]
            .end_to_end_secs
            .map_or(f64::NAN, |t| embedded.loads[l].events as f64 / t);
        for s in measured {
            let m = &s.loads[l];
            let Some(secs) = m.end_to_end_secs else {
                continue;
            };
            let rate = m.events as f64 / secs;
            rows.push(Row {
                ratio: match s.setup {
                    Setup::Embedded => String::new(),
                    _ => beside(rate, embedded_e2e),
                },
                ..Row::plain(Figure::once(
                    &name(s, "end to end, first request until count() = acknowledged"),
                    "events/s",
                    rate,
                ))
            });
        }
        for s in measured {
            let m = &s.loads[l];
            rows.push(Row {
                baseline: format!("{:.1} CPU s", m.ingest_cpu),
                ..Row::plain(Figure::once(
                    &name(
                        s,
                        "ingest events/s per core (eddy outside its digest threads)",
                    ),
                    "events/s",
                    per_core(m.events, m.ingest_cpu),
                ))
            });
            rows.push(Row {
                baseline: format!("{:.1} CPU s", m.digest_cpu),
                ..Row::plain(Figure::once(
                    &name(s, "digest events/s per core (its threads)"),
                    "events/s",
                    per_core(m.events, m.digest_cpu),
                ))
            });
            if let Some(cpu) = m.broker_cpu {
                rows.push(Row {
                    baseline: format!("{cpu:.1} CPU s"),
                    ..Row::plain(Figure::once(
                        &name(s, "broker events/s per core"),
                        "events/s",
                        per_core(m.events, cpu),
                    ))
                });
            }
        }
        for s in measured {
            let m = &s.loads[l];
            rows.push(Row {
                baseline: format!(
                    "raw {:.0} bytes per event",
                    m.bytes as f64 / m.events.max(1) as f64
                ),
                ..Row::plain(Figure::once(
                    &name(
                        s,
                        "bytes per event in the store (segments, work in progress, catalogue)",
                    ),
                    "bytes",
                    m.store_bytes as f64 / m.stored_events.max(1) as f64,
                ))
            });
        }
        let m = &embedded.loads[l];
        rows.push(Row::plain(Figure::once(
            &name(
                embedded,
                "bytes per event in the embedded bus (compressed batches)",
            ),
            "bytes",
            m.bus_bytes as f64 / m.stored_events.max(1) as f64,
        )));
    }
    for s in measured {
        if let Some((before, after)) = s.broker_memory {
            rows.push(Row::plain(Figure::once(
                &format!(
                    "both loads — {}: broker's resident memory growth per event held (in memory)",
                    s.setup.label()
                ),
                "bytes",
                after.saturating_sub(before) as f64 / s.broker_events.max(1) as f64,
            )));
        }
    }
    let load_average = match load_average {
        (Some(a), Some(b)) => {
            format!(" The load average (1 min) was {a:.1} at the start and {b:.1} at the end.")
        }
        _ => String::new(),
    };
    Section {
        id: "kafka".into(),
        title: "Ingest through Kafka".into(),
        intro: format!(
            "{mode}: {} of generated access lines (posted raw, `?parser=accesslog`) and as much \
             of JSON application logs (NDJSON), in bodies of about 1 MiB from {} client threads, \
             into (a) one `eddy serve` on the embedded bus, (b) one `eddy serve` with \
             `[bus] kind = \"kafka\"` on a Kafka-protocol broker, (c) three `eddy serve` nodes \
             on one broker, each request to the next node in turn, and (d) as (b) without the \
             one-record batches (below). Repositories of {PARTITIONS} \
             partitions; before each load, {WARM_UP_LINES} lines through every node until \
             counted (topics made, groups formed). End to end: from the first request until \
             a `count()` through the first node (which fans out to the others) finds what the nodes acknowledged. Events/s per core: events \
             ÷ CPU seconds from `/proc` — of the eddy processes outside their `digest-*` \
             threads until the last acknowledgement (doors, parsing, the bus client, \
             librdkafka's threads), of the digest's threads until counted, of the broker \
             until counted.\n\n\
             Everything ran on this machine's loopback with its {} cores shared by the \
             clients, the nodes and the broker.{load_average} The broker is tansu 0.6.0 \
             (`crates/kafka/install-broker.sh`), which keeps its data in memory (nothing \
             on disk, where the embedded bus acknowledges once its log is durable) and runs \
             one broker (replication factor 1). eddy's producer: `acks=all`, `enable.idempotence=true`, \
             `linger.ms=0`, no compression; (b) and (c) add the test configuration's \
             `batch.num.messages=1` and `heartbeat.interval.ms=500`, because tansu answers a \
             partition's end offset wrongly after a batch of several records: every event is \
             a record batch of its own. (d) keeps librdkafka's default batching (up to 10,000 \
             records a batch) to show what the one-record batches cost; its digest reads \
             through tansu's wrong end offsets, and its count shows whether that mattered.{}",
            format_value(opts.bytes as f64, "MB"),
            opts.clients,
            std::thread::available_parallelism().map_or(1, |n| n.get()),
            match cfg!(debug_assertions) {
                true => " A debug build: run it from a release build for figures that mean much.",
                false => "",
            },
        ),
        rows,
        notes: format!(
            "{}{}",
            counting_note(loads, measured, opts.stall),
            sizing_note(measured)
        ),
    }
}

/// A warning for every load whose count differed from what the nodes acknowledged.
fn counting_note(loads: &[Load], measured: &[SetupMeasured], stall: Duration) -> String {
    let mut note = String::new();
    for s in measured {
        for (load, m) in loads.iter().zip(&s.loads) {
            match m.counted {
                counted if counted < m.events => note.push_str(&format!(
                    "**{}, {}: {} acknowledged events were missing from the count** when it \
                     stopped changing ({counted} of {} for {} s).\n\n",
                    s.setup.label(),
                    load.label,
                    m.events - counted,
                    m.events,
                    stall.as_secs()
                )),
                counted if counted > m.events => note.push_str(&format!(
                    "**{}, {}: {} events more than acknowledged were counted** when the count \
                     stopped changing ({counted} of {} for {} s).\n\n",
                    s.setup.label(),
                    load.label,
                    counted - m.events,
                    m.events,
                    stall.as_secs()
                )),
                _ => {}
            }
            if let Some(layers) = layers_note(m) {
                note.push_str(&format!(
                    "{}, {}: {layers}\n\n",
                    s.setup.label(),
                    load.label
                ));
            }
        }
    }
    note
}

/// Where a Kafka load's count went astray, layer by layer: the acknowledged events, the
/// records the topic holds and their distinct event ids (each event gets its id at ingest), and
/// the count. `None` when every layer agrees or the load did not go through Kafka.
fn layers_note(m: &Measured) -> Option<String> {
    let topic = m.in_topic?;
    let records = topic.records.saturating_sub(m.warm_up);
    let ids = topic.distinct_ids.saturating_sub(m.warm_up);
    if records == m.events && ids == m.events && m.counted == m.events {
        return None;
    }
    let mut why = Vec::new();
    if records > ids {
        why.push(format!(
            "{} records repeat an event id (the broker stored a batch twice)",
            records - ids
        ));
    }
    match ids.cmp(&m.events) {
        std::cmp::Ordering::Less => why.push(format!(
            "{} acknowledged events are not in the topic (the broker acknowledged what it did \
             not keep; see \"The test broker's gaps\" in docs/scale-out.md)",
            m.events - ids
        )),
        std::cmp::Ordering::Greater => why.push(format!(
            "{} events beyond those acknowledged are in the topic (stored by requests that were \
             then refused with 503 and posted again)",
            ids - m.events
        )),
        std::cmp::Ordering::Equal => {}
    }
    if m.counted != ids {
        why.push(format!(
            "the count differs from the topic's distinct events by {} (the digest's layer)",
            m.counted as i64 - ids as i64
        ));
    }
    Some(format!(
        "acknowledged {}, in the topic {records} records with {ids} distinct event ids, \
         counted {}: {}.",
        m.events,
        m.counted,
        why.join("; ")
    ))
}

/// One line that turns the figures into a cluster for 1 TB of raw data a day: eddy's side from
/// (d), the Kafka node without one-record batches (from (b) if (d) did not count every event).
fn sizing_note(measured: &[SetupMeasured]) -> String {
    let exact = |s: &&SetupMeasured| s.loads.iter().all(|m| m.counted == m.events);
    let Some(from) = measured
        .iter()
        .filter(exact)
        .find(|s| s.setup == Setup::KafkaBatched)
        .or_else(|| measured.iter().find(|s| s.setup == Setup::Kafka))
    else {
        return String::new();
    };
    let sum = |f: &dyn Fn(&Measured) -> f64| from.loads.iter().map(f).sum::<f64>();
    let (events, bytes) = (sum(&|m| m.events as f64), sum(&|m| m.bytes as f64));
    let raw_per_event = bytes / events.max(1.0);
    let events_per_sec = 1e12 / 86_400.0 / raw_per_event;
    let ingest = per_core(events as u64, sum(&|m| m.ingest_cpu));
    let digest = per_core(events as u64, sum(&|m| m.digest_cpu));
    let stored = sum(&|m| m.store_bytes as f64) / sum(&|m| m.stored_events as f64).max(1.0);
    format!(
        "At {}'s figures over both loads ({raw_per_event:.0} raw bytes per event), 1 TB of raw \
         data a day is {} on average; that is {:.1} cores of ingest and {:.1} of digest \
         (brokers not included) and {:.0} GB of segments a day. docs/scale-out.md turns this \
         into a sizing table.",
        from.setup.short(),
        format_value(events_per_sec, "events/s"),
        events_per_sec / ingest,
        events_per_sec / digest,
        events_per_sec * 86_400.0 * stored / 1e9,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(events: u64, records: u64, ids: u64, counted: u64) -> Measured {
        let warm_up = 200;
        Measured {
            events,
            counted,
            warm_up,
            in_topic: Some(Census {
                records: records + warm_up,
                distinct_ids: ids + warm_up,
            }),
            ..Measured::default()
        }
    }

    #[test]
    fn a_load_whose_layers_agree_has_no_note() {
        assert_eq!(layers_note(&measured(1000, 1000, 1000, 1000)), None);
        let embedded = Measured {
            events: 1000,
            counted: 900,
            ..Measured::default()
        };
        assert_eq!(layers_note(&embedded), None);
    }

    #[test]
    fn acknowledged_events_missing_from_the_topic_are_the_brokers() {
        let note = layers_note(&measured(1000, 900, 900, 900)).unwrap_or_default();
        assert!(
            note.contains("in the topic 900 records with 900 distinct event ids"),
            "{note}"
        );
        assert!(
            note.contains("100 acknowledged events are not in the topic"),
            "{note}"
        );
        assert!(!note.contains("digest"), "{note}");
    }

    #[test]
    fn reposted_events_doubled_records_and_a_short_count_each_name_their_layer() {
        let note = layers_note(&measured(1000, 1150, 1100, 1090)).unwrap_or_default();
        assert!(note.contains("50 records repeat an event id"), "{note}");
        assert!(
            note.contains("100 events beyond those acknowledged"),
            "{note}"
        );
        assert!(
            note.contains("differs from the topic's distinct events by -10"),
            "{note}"
        );
    }
}
