//! The crash benchmark: the real `eddy serve` SIGKILLed again and again while clients ingest
//! and its digest seals, commits and (in the long rounds) merges, on one data directory; then
//! every event ever acknowledged must be found by a query exactly once.
//!
//! Each round starts the server, lets clients post NDJSON batches (every event numbered
//! uniquely) for a random stretch of up to `max_round`, sometimes stops them early so the kill
//! finds the digest alone (sealing by age), then SIGKILLs it. Small segments (`segment_size`
//! 64 KiB, `segment_age` 200 ms, 8 KiB blocks) make every round seal and commit. Store
//! maintenance (merges) runs 30 s after a server starts, so `long_rounds` rounds last past that.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

use crate::error::{Error, IoContext, Result};
use crate::report::{Figure, Row, Section};
use crate::serve::{agent, Serve};

const REPOSITORY: &str = "crash";
/// Events per request: small requests go to the bus as records, large ones (a quarter of an
/// 8 KiB block per host and more) as the store's blocks; clients alternate between the two.
const BATCHES: [i64; 2] = [25, 150];
/// How long a server past its last round may take to show every acknowledged event.
const CATCH_UP: Duration = Duration::from_secs(120);
/// Past the server's 30 s maintenance period, so that a long round merges.
const LONG_ROUND: Duration = Duration::from_secs(32);

/// Settings of a crash run.
#[derive(Debug, Clone)]
pub struct CrashOptions {
    /// The `eddy` binary to run as the server.
    pub server: PathBuf,
    /// Scratch directory (emptied first).
    pub dir: PathBuf,
    /// SIGKILLs.
    pub kills: usize,
    /// Client threads posting at once.
    pub clients: usize,
    /// Longest stretch between a start and its kill (short rounds).
    pub max_round: Duration,
    /// Rounds that outlive the maintenance period, spread over the run.
    pub long_rounds: usize,
    /// Seed of the rounds' lengths.
    pub seed: u64,
}

impl CrashOptions {
    /// `kills` kills of rounds up to 400 ms, in `dir`, running `server`.
    pub fn new(server: PathBuf, dir: PathBuf, kills: usize) -> CrashOptions {
        CrashOptions {
            server,
            dir,
            kills,
            clients: 4,
            max_round: Duration::from_millis(400),
            long_rounds: 0,
            seed: 42,
        }
    }
}

/// What a crash run found.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CrashOutcome {
    /// SIGKILLs delivered.
    pub kills: usize,
    /// Client threads that posted.
    pub clients: usize,
    /// Events acknowledged with a 200 over all rounds.
    pub acknowledged: u64,
    /// Of them, not found by the final query.
    pub lost: u64,
    /// Events found more than once.
    pub doubled: u64,
    /// Sealed segments at the end.
    pub segments: u64,
    /// Seconds the whole run took.
    pub seconds: f64,
    /// A few lost event numbers, to look for.
    pub lost_examples: Vec<i64>,
    /// A few doubled event numbers.
    pub doubled_examples: Vec<i64>,
}

impl CrashOutcome {
    /// Nothing lost, nothing doubled.
    pub fn exact(&self) -> bool {
        self.lost == 0 && self.doubled == 0
    }
}

fn line(n: i64) -> String {
    format!(
        "{{\"#host\":\"h{}\",\"n\":{n},\"msg\":\"crash test event {n}\"}}\n",
        n % 5
    )
}

/// Clients post until `stop` or until the server is gone; returns the numbers acknowledged.
fn ingest(url: &str, clients: usize, next: &AtomicI64, stop: &AtomicBool) -> Vec<i64> {
    let url = format!("{url}/api/v1/ingest/{REPOSITORY}");
    std::thread::scope(|s| {
        let senders: Vec<_> = (0..clients)
            .map(|client| {
                let url = &url;
                let batch = BATCHES[client % BATCHES.len()];
                s.spawn(move || {
                    let agent = agent();
                    let mut acked = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let first = next.fetch_add(batch, Ordering::Relaxed);
                        let body: String = (first..first + batch).map(line).collect();
                        match agent
                            .post(url)
                            .header("Content-Type", "application/x-ndjson")
                            .send(body.as_bytes())
                        {
                            Ok(r) if r.status() == 200 => acked.extend(first..first + batch),
                            // Refused for now (back-pressure): not acknowledged, go on.
                            Ok(_) => {}
                            // The server is gone: whatever was in flight is not acknowledged.
                            Err(_) => break,
                        }
                    }
                    acked
                })
            })
            .collect();
        senders
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

/// How often each event number is found by a query of the whole repository.
fn found(url: &str) -> Result<HashMap<i64, u64>> {
    // Millions of events as JSON: longer than a benchmark request's timeout.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(900)))
        .build()
        .into();
    let text = agent
        .get(format!(
            "{url}/api/v1/repositories/{REPOSITORY}/events?limit=1000000000"
        ))
        .call()
        .and_then(|mut r| r.body_mut().with_config().limit(4 << 30).read_to_string())
        .map_err(|e| Error::Invalid(format!("querying {REPOSITORY}: {e}")))?;
    let answer: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::Invalid(format!("the query's answer is not JSON: {e}")))?;
    let mut seen = HashMap::new();
    for e in answer["events"].as_array().into_iter().flatten() {
        if let Some(n) = e["fields"]["n"].as_i64() {
            *seen.entry(n).or_insert(0) += 1;
        }
    }
    Ok(seen)
}

/// Runs `opts.kills` rounds, then checks every acknowledged event.
pub fn run(opts: &CrashOptions, progress: &dyn Fn(&str)) -> Result<CrashOutcome> {
    let began = Instant::now();
    let _ = std::fs::remove_dir_all(&opts.dir);
    std::fs::create_dir_all(&opts.dir).context(|| format!("creating {}", opts.dir.display()))?;
    let config = opts.dir.join("eddy.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[http]\nlisten = \"127.0.0.1:0\"\n\
             [repositories.{REPOSITORY}]\npartitions = 2\nsegment_size = \"64KiB\"\n\
             segment_age = \"200ms\"\nblock_size = \"8KiB\"\n",
            opts.dir.join("data")
        ),
    )
    .context(|| format!("writing {}", config.display()))?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(opts.seed);
    let next = AtomicI64::new(0);
    let mut acked = Vec::new();
    let long_every = (opts.kills / opts.long_rounds.max(1)).max(1);
    for round in 0..opts.kills {
        progress(&format!(
            "round {} of {}: {} events acknowledged",
            round + 1,
            opts.kills,
            acked.len()
        ));
        let server = Serve::start(&opts.server, &config, false, &[])?.0;
        let long = opts.long_rounds > 0 && round % long_every == long_every - 1;
        let max_round = u64::try_from(opts.max_round.as_millis())
            .unwrap_or(u64::MAX)
            .max(2);
        let life = if long {
            LONG_ROUND
        } else {
            Duration::from_millis(rng.random_range(1..max_round))
        };
        // One round in three the clients stop first: the kill finds the digest alone.
        let ingest_for = if round % 3 == 2 { life / 2 } else { life };
        let stop = AtomicBool::new(false);
        let url = server.http.clone();
        let (killed, round_acked) = std::thread::scope(|s| {
            let clients = s.spawn(|| ingest(&url, opts.clients, &next, &stop));
            std::thread::sleep(ingest_for);
            stop.store(true, Ordering::Relaxed);
            std::thread::sleep(life - ingest_for);
            let killed = server.kill();
            (killed, clients.join().unwrap_or_default())
        });
        acked.extend(round_acked);
        killed?;
    }
    progress("checking every acknowledged event");
    let server = Serve::start(&opts.server, &config, false, &[])?.0;
    let deadline = Instant::now() + CATCH_UP;
    let seen = loop {
        let seen = found(&server.http)?;
        if acked.iter().all(|n| seen.contains_key(n)) || Instant::now() > deadline {
            break seen;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    drop(server);
    let lost: Vec<i64> = acked
        .iter()
        .copied()
        .filter(|n| !seen.contains_key(n))
        .collect();
    let mut doubled: Vec<i64> = seen
        .iter()
        .filter(|(_, &c)| c > 1)
        .map(|(&n, _)| n)
        .collect();
    doubled.sort_unstable();
    let segments = std::fs::read_dir(opts.dir.join("data/store").join(REPOSITORY))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.path().extension().is_some_and(|x| x == "seg"))
                .count() as u64
        })
        .unwrap_or(0);
    Ok(CrashOutcome {
        kills: opts.kills,
        clients: opts.clients,
        acknowledged: acked.len() as u64,
        lost: lost.len() as u64,
        doubled: doubled.len() as u64,
        segments,
        seconds: began.elapsed().as_secs_f64(),
        lost_examples: lost.into_iter().take(5).collect(),
        doubled_examples: doubled.into_iter().take(5).collect(),
    })
}

/// The report's section for a crash run.
pub fn section(outcome: &CrashOutcome, mode: &str) -> Section {
    let row = |name: &str, unit: &str, value: f64, goal: &str| Row {
        goal: goal.to_string(),
        ..Row::plain(Figure::once(name, unit, value))
    };
    Section {
        id: "crash".into(),
        title: format!("Crashes: eddy serve SIGKILLed while ingesting and digesting ({mode})"),
        intro: format!(
            "`eddy bench crash`: {} SIGKILLs of the real server on one data directory while \
             {} clients post NDJSON batches (of 25 events, which go to the bus as records, and of \
             150, which go as the store's blocks) and the digest seals 64 KiB segments (200 ms age), \
             commits and merges; then one query looks for every acknowledged event.",
            outcome.kills, outcome.clients
        ),
        rows: vec![
            row("kills", "count", outcome.kills as f64, "≥ 100"),
            row(
                "events acknowledged",
                "count",
                outcome.acknowledged as f64,
                "",
            ),
            row("lost", "count", outcome.lost as f64, "0"),
            row("doubled", "count", outcome.doubled as f64, "0"),
            row("segments at the end", "count", outcome.segments as f64, ""),
            row("time", "s", outcome.seconds, ""),
        ],
        notes: String::new(),
    }
}
