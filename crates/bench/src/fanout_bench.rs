//! The fan-out benchmark: the same queries over the same generated JSON logs, once on a
//! single `eddy serve` holding every event, once on a query node that holds a third and fans
//! the query out to two peers holding the other thirds (`[cluster] peers`), all on this
//! machine's loopback. Three nodes on one machine share its cores and disk, so the figures
//! show the fan-out's overhead (requests, encoding, merging), not a speed-up; what they prove
//! is that the answers are the same (a difference is reported in the notes, not a figure).
//!
//! For each query it also reports the size of one peer's partial answer on the wire (the
//! binary encoding of `eddy_query::partial`) beside the size of the finished JSON answer.

use std::io::BufRead;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::error::IoContext;
use crate::gen::{self, Kind};
use crate::report::{Figure, Row, Section};
use crate::serve::{self, Serve};
use crate::{Error, Result};

/// Settings of the fan-out benchmark.
#[derive(Debug, Clone)]
pub struct FanoutBenchOptions {
    /// The `eddy` binary to start the nodes from.
    pub exe: PathBuf,
    /// Scratch directory (the nodes' data, emptied first).
    pub dir: PathBuf,
    /// Where generated data is kept.
    pub data_dir: PathBuf,
    /// Generator seed.
    pub seed: u64,
    /// Bytes of raw JSON application-log data.
    pub bytes: u64,
    /// Timed runs per figure (the median is reported).
    pub runs: usize,
}

/// The benchmark's queries: a count, a search, the aggregates of the query benchmark.
const QUERIES: &[(&str, &str)] = &[
    ("count", "count()"),
    ("field filter, count", "level=ERROR | count()"),
    (
        "groupBy service and level, count",
        "groupBy([service, level], function=count())",
    ),
    (
        "percentiles of latency_ms",
        "percentile(latency_ms, percentiles=[50, 95, 99])",
    ),
    ("distinct users", "countDistinct(user_id)"),
    (
        "timechart, 1 min buckets, series per level",
        "timechart(span=1m, series=level)",
    ),
    ("top services", "top(service)"),
    ("newest 200 errors", "level=ERROR"),
];

const REPOSITORY: &str = "bench";
/// Events per ingest request.
const BATCH_LINES: usize = 5_000;

fn node_config(name: &str, peers: &[String]) -> String {
    let peers: Vec<String> = peers.iter().map(|p| format!("{p:?}")).collect();
    format!(
        "[http]\nlisten = \"127.0.0.1:0\"\nmax_body_bytes = 67108864\n\
         [repositories.{REPOSITORY}]\npartitions = 2\n\
         [cluster]\nnode = \"{name}\"\npeers = [{}]\npeer_timeout = \"10m\"\n",
        peers.join(", ")
    )
}

/// Posts a query over all time; its answer and how long it took.
fn query(agent: &ureq::Agent, node: &Serve, text: &str) -> Result<(serde_json::Value, Duration)> {
    let url = format!("{}/api/v1/repositories/{REPOSITORY}/query", node.http);
    let body = serde_json::json!({
        "query": text,
        "start": "1970-01-01T00:00:00Z",
        "end": "2200-01-01T00:00:00Z",
    });
    let started = Instant::now();
    let mut resp = agent
        .post(&url)
        .header("Content-Type", "application/json")
        .send(body.to_string().as_bytes())
        .map_err(|e| Error::Invalid(format!("querying {url}: {e}")))?;
    let text_body = resp
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_string()
        .map_err(|e| Error::Invalid(format!("reading the answer of {url}: {e}")))?;
    let took = started.elapsed();
    if resp.status() != 200 {
        return Err(Error::Invalid(format!(
            "{url} answered {}: {text_body}",
            resp.status()
        )));
    }
    let answer = serde_json::from_str(&text_body)
        .map_err(|e| Error::Invalid(format!("the answer of {url} is not JSON: {e}")))?;
    Ok((answer, took))
}

/// The bytes of `node`'s partial answer to `text`.
fn partial_size(agent: &ureq::Agent, node: &Serve, text: &str) -> Result<usize> {
    let url = format!(
        "{}/api/v1/repositories/{REPOSITORY}/query/partial",
        node.http
    );
    let body = serde_json::json!({ "query": text, "start": 0, "end": i64::MAX, "limit": 200 });
    let mut resp = agent
        .post(&url)
        .header("Content-Type", "application/json")
        .send(body.to_string().as_bytes())
        .map_err(|e| Error::Invalid(format!("asking {url}: {e}")))?;
    let bytes = resp
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_vec()
        .map_err(|e| Error::Invalid(format!("reading {url}: {e}")))?;
    Ok(bytes.len())
}

/// Waits until `node` counts `events` (the digest makes them searchable within moments).
fn wait_for_count(agent: &ureq::Agent, node: &Serve, events: u64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let (answer, _) = query(agent, node, "count()")?;
        let n = answer["rows"][0]["_count"].as_u64().unwrap_or(0);
        if n == events {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Invalid(format!(
                "{} counts {n} events, not {events}, after 10 minutes",
                node.http
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs the benchmark.
pub fn run(opts: &FanoutBenchOptions, mode: &str, progress: &dyn Fn(&str)) -> Result<Section> {
    progress("generating JSON logs");
    let (data, manifest) = gen::generate_file(&opts.data_dir, Kind::Json, opts.seed, opts.bytes)?;
    progress("starting four nodes");
    let start = |name: &str, peers: &[String]| -> Result<Serve> {
        let dir = opts.dir.join(name);
        let config = Serve::fresh_config(&dir, &node_config(name, peers))?;
        Ok(Serve::start(&opts.exe, &config, false, &[])?.0)
    };
    let single = start("single", &[])?;
    let b = start("b", &[])?;
    let c = start("c", &[])?;
    let a = start("a", &[b.http.clone(), c.http.clone()])?;
    // Ingest and queries of a large store may take longer than the usual minute.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(600)))
        .build()
        .into();
    progress("ingesting: every event into one node, a third into each of three");
    let file = std::fs::File::open(&data).context(|| format!("opening {}", data.display()))?;
    let mut lines = std::io::BufReader::with_capacity(1 << 20, file).lines();
    let shards = [&a, &b, &c];
    let mut batch_no = 0usize;
    loop {
        let mut body = Vec::with_capacity(BATCH_LINES * 300);
        for line in lines.by_ref().take(BATCH_LINES) {
            body.extend_from_slice(
                line.context(|| format!("reading {}", data.display()))?
                    .as_bytes(),
            );
            body.push(b'\n');
        }
        if body.is_empty() {
            break;
        }
        let url = |n: &Serve| format!("{}/api/v1/ingest/{REPOSITORY}", n.http);
        serve::post_ndjson(&agent, &url(&single), &body)?;
        serve::post_ndjson(&agent, &url(shards[batch_no % 3]), &body)?;
        batch_no += 1;
    }
    progress("waiting until every event is searchable");
    wait_for_count(&agent, &single, manifest.lines)?;
    wait_for_count(&agent, &a, manifest.lines)?;

    let mut rows = Vec::new();
    let mut differences = Vec::new();
    for (name, text) in QUERIES {
        progress(&format!("query: {name}"));
        // Once each before timing: the page cache and the peers' connections are warm.
        let (want, _) = query(&agent, &single, text)?;
        let (got, _) = query(&agent, &a, text)?;
        if got["rows"] != want["rows"] || got["columns"] != want["columns"] {
            differences.push(name.to_string());
        }
        let mut one = Figure::new(&format!("{name}: one node"), "ms");
        let mut three = Figure::new(&format!("{name}: three nodes fanned out"), "ms");
        for _ in 0..opts.runs.max(1) {
            one.runs
                .push(query(&agent, &single, text)?.1.as_secs_f64() * 1e3);
            three
                .runs
                .push(query(&agent, &a, text)?.1.as_secs_f64() * 1e3);
        }
        let ratio = three.median() / one.median();
        rows.push(Row::plain(one));
        rows.push(Row {
            ratio: format!("{ratio:.2}× one node"),
            ..Row::plain(three)
        });
        let partial = partial_size(&agent, &b, text)?;
        let json = serde_json::to_vec(&got).map_or(0, |v| v.len());
        rows.push(Row {
            baseline: format!("finished JSON answer: {json} bytes"),
            ..Row::plain(Figure::once(
                &format!("{name}: one peer's partial answer, bytes"),
                "count",
                partial as f64,
            ))
        });
    }
    let notes = match differences.is_empty() {
        true => {
            "Every fanned-out answer equalled the single node's (columns and rows).".to_string()
        }
        false => format!(
            "The fanned-out answers DIFFERED from the single node's for: {}.",
            differences.join(", ")
        ),
    };
    for node in [a, b, c, single] {
        node.kill()?;
    }
    Ok(Section {
        id: "fanout".into(),
        title: "Queries across nodes".into(),
        intro: format!(
            "{mode}: {} JSON log events ({} MB), all on one `eddy serve` beside a third on each \
             of three nodes on this machine's loopback, the query node fanning out to the other \
             two. Times are of the whole HTTP request, {} runs each, after one untimed run. \
             Three nodes on one machine share its {} cores: this is the fan-out's overhead, not \
             a speed-up.{}",
            manifest.lines,
            manifest.bytes / 1_000_000,
            opts.runs.max(1),
            std::thread::available_parallelism().map_or(1, |n| n.get()),
            match cfg!(debug_assertions) {
                true => " A debug build: run it from a release build for figures that mean much.",
                false => "",
            },
        ),
        rows,
        notes,
    })
}
