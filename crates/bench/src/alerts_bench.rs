//! The alerting benchmark: the real `eddy serve` with many alert rules on one repository,
//! under a steady HTTP ingest, against the same load with no rules.
//!
//! - Rules: rule `i` counts `#service=svc-<i mod 50> level=critical region=r<i / 50>` over a
//!   2 s window and fires above 0, with `for = 0s`, evaluated every second, its webhook at a
//!   receiver this benchmark runs on loopback. The load never has `level=critical`, so every
//!   event is looked at by the rules of its service and fires none.
//! - Alert latency: a probe thread makes one rule after another cross its threshold by
//!   posting one `level=critical` event for it, and notes when the request's 200 came back;
//!   the receiver notes when that rule's `firing` webhook arrives. The figure is arrival minus
//!   acknowledgement (minus the rule's `for`, which is 0).
//! - Ingest cost: the rate acknowledged under the paced load with the rules and with none.
//! - Memory per rule: the server's resident memory with the rules minus without, divided by
//!   the number of rules: idle (the rules seeded and evaluated, before the load) and at the
//!   end of the load.
//! - The machine's load average beside the figures: the machine may be shared.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eddy_base::sync::lock;

use crate::error::{Error, IoContext, Result};
use crate::report::{Figure, Row, Section};
use crate::serve::{agent, paced_load, post_ndjson, Serve};

/// Data sources (`#service` values) the load and the rules spread over.
const SERVICES: usize = 50;
/// Events per request.
const BATCH: usize = 1000;
/// Paced client threads.
const CLIENTS: usize = 4;
/// Between two probes.
const PROBE_EVERY: Duration = Duration::from_millis(250);

/// Settings of an alerting benchmark run.
#[derive(Debug, Clone)]
pub struct AlertsBenchOptions {
    /// The `eddy` binary to run as the server.
    pub server: PathBuf,
    /// Scratch directory.
    pub dir: PathBuf,
    /// Runs per figure.
    pub runs: usize,
    /// Seconds of each load.
    pub seconds: u64,
    /// Alert rules.
    pub rules: usize,
    /// Events per second offered.
    pub rate: u64,
}

/// What the webhook receiver got: per path, when the first `firing` notice arrived.
#[derive(Default)]
struct Arrivals {
    firing: Mutex<HashMap<String, Instant>>,
    notices: std::sync::atomic::AtomicU64,
}

/// An HTTP receiver on loopback that answers every request `200` and notes `firing` notices;
/// its base URL.
fn receiver(arrivals: Arc<Arrivals>) -> Result<String> {
    let listener =
        TcpListener::bind("127.0.0.1:0").context(|| "binding the webhook receiver".into())?;
    let url = format!(
        "http://{}",
        listener
            .local_addr()
            .context(|| "the receiver's address".into())?
    );
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let arrivals = arrivals.clone();
            std::thread::spawn(move || serve_connection(conn, &arrivals));
        }
    });
    Ok(url)
}

/// Reads requests from `conn` until it closes (keep-alive), answering each.
fn serve_connection(conn: TcpStream, arrivals: &Arrivals) {
    let Ok(mut writer) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split(' ').nth(1).unwrap_or_default().to_string();
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let at = Instant::now();
        arrivals.notices.fetch_add(1, Ordering::Relaxed);
        if let Ok(notice) = serde_json::from_slice::<serde_json::Value>(&body) {
            if notice["status"] == "firing" {
                lock(&arrivals.firing).entry(path).or_insert(at);
            }
        }
        if writer
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .is_err()
        {
            return;
        }
    }
}

/// The configuration of `rules` rules posting to `hook`.
fn rules_config(rules: usize, hook: &str) -> String {
    let mut out = String::new();
    for i in 0..rules {
        out.push_str(&format!(
            "[alerts.r{i}]\nfrom = \"bench\"\nquery = \"#service=svc-{} level=critical region=r{} | count()\"\n\
             window = \"2s\"\nabove = 0\nfor = \"0s\"\nevery = \"1s\"\nwebhook = \"{hook}/r{i}\"\n",
            i % SERVICES,
            i / SERVICES
        ));
    }
    out
}

/// The probe that makes rule `i` cross its threshold.
fn probe(i: usize) -> String {
    format!(
        "{{\"#service\":\"svc-{}\",\"level\":\"critical\",\"region\":\"r{}\",\"msg\":\"probe\"}}\n",
        i % SERVICES,
        i / SERVICES
    )
}

/// One NDJSON body of `BATCH` events of about 200 bytes, none of them critical.
fn body(client: usize, batch: usize) -> Vec<u8> {
    let levels = ["info", "info", "info", "warn", "debug", "error"];
    let mut out = Vec::with_capacity(BATCH * 200);
    for i in 0..BATCH {
        let n = batch * BATCH + i;
        out.extend_from_slice(
            format!(
                "{{\"#service\":\"svc-{}\",\"level\":\"{}\",\"region\":\"r{}\",\"status\":{},\"latency_ms\":{},\
                 \"user\":\"u{:05}\",\"msg\":\"order placed\",\"c\":{client},\"n\":{n},\"pad\":\"{}\"}}\n",
                n % SERVICES,
                levels[n % levels.len()],
                n % 20,
                [200, 200, 200, 404, 500][n % 5],
                n % 997,
                n % 50_000,
                "x".repeat(40),
            )
            .as_bytes(),
        );
    }
    out
}

/// The resident memory of process `pid`, bytes.
fn rss(pid: u32) -> Result<f64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).context(|| format!("reading {path}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb * 1024.0)
        .ok_or_else(|| Error::Invalid(format!("no VmRSS in {path}")))
}

/// The machine's 1-minute load average, if it can be read.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// What one run measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunFigures {
    /// Events/s acknowledged under the paced load.
    pub rate: f64,
    /// The server's resident memory before the load (the rules seeded), bytes.
    pub rss_idle: f64,
    /// The server's resident memory at the end of the load, bytes.
    pub rss: f64,
    /// The machine's 1-minute load average as the load started and as it ended.
    pub load_average: (Option<f64>, Option<f64>),
    /// Per crossing, webhook arrival minus acknowledgement of the probe, µs.
    pub latencies: Vec<u64>,
    /// Probes posted.
    pub probes: usize,
    /// Webhook requests received.
    pub notices: u64,
}

/// Waits until every rule has been evaluated once (they are seeded and running).
fn wait_for_rules(http: &str, rules: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    let agent = agent();
    loop {
        let text = agent
            .get(format!("{http}/api/v1/alerts"))
            .call()
            .and_then(|mut r| r.body_mut().with_config().limit(1 << 30).read_to_string())
            .map_err(|e| Error::Invalid(format!("listing the rules: {e}")))?;
        let answer: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::Invalid(format!("listing the rules: {e}")))?;
        let running = answer["alerts"].as_array().map_or(0, |a| {
            a.iter()
                .filter(|r| r["status"]["evaluations"].as_u64() > Some(0))
                .count()
        });
        if running >= rules {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Invalid(format!(
                "only {running} of {rules} rules were evaluated within 300 s"
            )));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// One run with `rules` rules (0: the baseline).
fn run_once(opts: &AlertsBenchOptions, rules: usize) -> Result<RunFigures> {
    let arrivals = Arc::new(Arrivals::default());
    let hook = receiver(arrivals.clone())?;
    let dir = opts.dir.join(if rules == 0 { "none" } else { "rules" });
    let config = Serve::fresh_config(
        &dir,
        &format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n[repositories.bench]\npartitions = 4\n{}",
            rules_config(rules, &hook)
        ),
    )?;
    let (serve, _) = Serve::start(&opts.server, &config, false, &[])?;
    if rules > 0 {
        wait_for_rules(&serve.http, rules)?;
    }
    // Settled, as the rules run settles by the time they have all been evaluated.
    std::thread::sleep(Duration::from_secs(1));
    let rss_idle = rss(serve.pid())?;
    let load_before = load_average();
    let url = format!("{}/api/v1/ingest/bench", serve.http);
    let stop = AtomicBool::new(false);
    let (rate, acked, rss_now) = std::thread::scope(|s| -> Result<_> {
        let started = Instant::now();
        let load = s.spawn(|| paced_load(&url, opts.rate, CLIENTS, BATCH, body, &stop));
        let probes = s.spawn(|| -> Result<Vec<(usize, Instant)>> {
            let mut acked = Vec::new();
            if rules == 0 {
                return Ok(acked);
            }
            let agent = agent();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                post_ndjson(&agent, &url, probe(i % rules).as_bytes())?;
                acked.push((i % rules, Instant::now()));
                i += 1;
                std::thread::sleep(PROBE_EVERY);
            }
            Ok(acked)
        });
        std::thread::sleep(Duration::from_secs(opts.seconds));
        let rss_now = rss(serve.pid())?;
        let load_after = load_average();
        stop.store(true, Ordering::Relaxed);
        let events = load
            .join()
            .unwrap_or_else(|_| Err(Error::Invalid("the load panicked".into())))?;
        let rate = events as f64 / started.elapsed().as_secs_f64();
        let acked = probes
            .join()
            .unwrap_or_else(|_| Err(Error::Invalid("the probe panicked".into())))?;
        Ok((rate, acked, (rss_now, load_after)))
    })?;
    let (rss_now, load_after) = rss_now;
    // A rule probed twice (more probes than rules) fires once while its window holds both.
    let mut first: HashMap<usize, Instant> = HashMap::new();
    for (i, at) in &acked {
        first.entry(*i).or_insert(*at);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while lock(&arrivals.firing).len() < first.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let firing = lock(&arrivals.firing).clone();
    let latencies = first
        .iter()
        .filter_map(|(i, acked)| {
            let at = firing.get(&format!("/r{i}"))?;
            Some(at.saturating_duration_since(*acked).as_micros() as u64)
        })
        .collect();
    drop(serve);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(RunFigures {
        rate,
        rss_idle,
        rss: rss_now,
        load_average: (load_before, load_after),
        latencies,
        probes: first.len(),
        notices: arrivals.notices.load(Ordering::Relaxed),
    })
}

/// The `q` quantile of `values` (µs) in ms; NaN if there are none.
fn quantile_ms(values: &[u64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_unstable();
    let at = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
    v[at] as f64 / 1e3
}

/// Runs the benchmark and makes the report's section.
pub fn run(opts: &AlertsBenchOptions, mode: &str, progress: &dyn Fn(&str)) -> Result<Section> {
    let runs = opts.runs.max(1);
    let mut pairs = Vec::new();
    for run in 0..runs {
        progress(&format!("no rules, run {}/{runs}", run + 1));
        let none = run_once(opts, 0)?;
        progress(&format!(
            "{} rules (seeding, then load), run {}/{runs}",
            opts.rules,
            run + 1
        ));
        let with = run_once(opts, opts.rules)?;
        pairs.push((none, with));
    }
    let _ = std::fs::remove_dir_all(&opts.dir);
    Ok(section(opts, mode, &pairs))
}

/// The report's section from each run's figures without and with the rules.
pub fn section(
    opts: &AlertsBenchOptions,
    mode: &str,
    pairs: &[(RunFigures, RunFigures)],
) -> Section {
    let rules = opts.rules;
    let mut rate_none = Figure::new(
        &format!(
            "HTTP ingest at {} k events/s offered, no rules",
            opts.rate / 1000
        ),
        "events/s",
    );
    let mut rate_rules = Figure::new(
        &format!(
            "HTTP ingest at {} k events/s offered, {rules} rules",
            opts.rate / 1000
        ),
        "events/s",
    );
    let mut p50 = Figure::new("ingest acknowledged → webhook, p50 (minus `for` = 0)", "ms");
    let mut p99 = Figure::new("ingest acknowledged → webhook, p99 (minus `for` = 0)", "ms");
    let mut per_rule_idle = Figure::new("resident memory per rule, before the load", "KB");
    let mut per_rule = Figure::new("resident memory per rule, end of the load", "KB");
    let mut crossings = Figure::new("threshold crossings measured / probed", "ratio");
    for (none, with) in pairs {
        rate_none.runs.push(none.rate);
        rate_rules.runs.push(with.rate);
        p50.runs.push(quantile_ms(&with.latencies, 0.50));
        p99.runs.push(quantile_ms(&with.latencies, 0.99));
        per_rule_idle
            .runs
            .push((with.rss_idle - none.rss_idle) / rules.max(1) as f64 / 1e3);
        per_rule
            .runs
            .push((with.rss - none.rss) / rules.max(1) as f64 / 1e3);
        crossings
            .runs
            .push(with.latencies.len() as f64 / with.probes.max(1) as f64);
    }
    let lost = 100.0 * (1.0 - rate_rules.median() / rate_none.median());
    let loads: Vec<String> = pairs
        .iter()
        .flat_map(|(none, with)| [none, with])
        .map(|r| {
            let show = |l: Option<f64>| l.map_or("?".to_string(), |l| format!("{l:.2}"));
            format!("{} → {}", show(r.load_average.0), show(r.load_average.1))
        })
        .collect();
    let rows = vec![
        Row::plain(rate_none),
        Row {
            baseline: "the same load, no rules (row above)".into(),
            ratio: format!("{lost:.1} % lost"),
            goal: "≤ 10 % lost".into(),
            figure: rate_rules,
        },
        Row {
            baseline: String::new(),
            ratio: String::new(),
            goal: "≤ 1000 ms (1 s + `for`)".into(),
            figure: p99,
        },
        Row::plain(p50),
        Row {
            baseline: "server RSS with the rules minus without, ÷ rules".into(),
            ratio: String::new(),
            goal: "printed".into(),
            figure: per_rule_idle,
        },
        Row {
            baseline: "the same, under the load".into(),
            ratio: String::new(),
            goal: "printed".into(),
            figure: per_rule,
        },
        Row::plain(crossings),
    ];
    Section {
        id: "alerts".into(),
        title: "Alerting (eddy serve, rules on live windows)".into(),
        intro: format!(
            "{}\n\nThe real `eddy serve` on loopback with {rules} alert rules on one repository (4 partitions). \
             Rule i counts `#service=svc-<i mod {SERVICES}> level=critical region=r<i / {SERVICES}>` over a 2 s \
             window, fires above 0 with `for = 0s`, is evaluated every second and posts to a webhook receiver \
             the benchmark runs on loopback. {CLIENTS} client threads post NDJSON batches of {BATCH} ~200-byte \
             events paced to {} events/s for {} s; none is critical, so each event is looked at by the rules of \
             its service and fires nothing. A probe thread makes one rule after another cross its threshold \
             every {} ms with one critical event; latency is the `firing` webhook's arrival minus the probe's \
             HTTP 200. The same load without rules is the baseline; memory is the server's RSS once the rules \
             are seeded (before the load) and at the end of the load. Regenerate with `cargo run --release -p eddy -- bench alerts`.",
            crate::report::provenance(mode, pairs.len()),
            opts.rate,
            opts.seconds,
            PROBE_EVERY.as_millis(),
        ),
        rows,
        notes: format!(
            "The rules of a repository share one evaluation thread that reads the bus once and hands each \
             event only to the rules whose query requires one of its tags (here its service), so the cost \
             is per event and matching rule, not per rule; writing the rules' state and delivering their \
             notices share a small thread pool. Load generator, receiver and server share the machine's \
             cores. The machine's 1-minute load average as each load started → ended (no rules, then \
             rules, per run): {}.",
            loads.join("; ")
        ),
    }
}

impl AlertsBenchOptions {
    /// The quick run's sizes in `dir` with `server`.
    pub fn quick(server: &Path, dir: &Path) -> AlertsBenchOptions {
        AlertsBenchOptions {
            server: server.to_path_buf(),
            dir: dir.to_path_buf(),
            runs: 1,
            seconds: 10,
            rules: 100,
            rate: 100_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_puts_the_rules_beside_the_same_load_without_them() {
        let opts = AlertsBenchOptions {
            rules: 1000,
            ..AlertsBenchOptions::quick(Path::new("eddy"), Path::new("x"))
        };
        let none = RunFigures {
            rate: 100_000.0,
            rss_idle: 50e6,
            rss: 100e6,
            load_average: (Some(1.5), Some(2.0)),
            ..RunFigures::default()
        };
        let with = RunFigures {
            rate: 95_000.0,
            rss_idle: 60e6,
            rss: 150e6,
            load_average: (Some(2.0), None),
            latencies: (1..=100).map(|ms| ms * 1000).collect(),
            probes: 100,
            notices: 200,
        };
        let s = section(&opts, "quick", &[(none, with)]);
        assert_eq!(s.id, "alerts");
        assert_eq!(s.rows[1].ratio, "5.0 % lost");
        assert_eq!(s.rows[2].figure.runs, vec![99.0]);
        assert_eq!(s.rows[3].figure.runs, vec![50.0]);
        // (60 MB - 50 MB) / 1000 rules = 10 KB before the load, 50 KB at its end.
        assert_eq!(s.rows[4].figure.runs, vec![10.0]);
        assert_eq!(s.rows[5].figure.runs, vec![50.0]);
        assert_eq!(s.rows[6].figure.runs, vec![1.0]);
        assert!(s.notes.contains("1.50 → 2.00; 2.00 → ?"), "{}", s.notes);
    }

    #[test]
    fn each_rule_has_its_own_probe_and_no_load_event_crosses_a_threshold() {
        let config = rules_config(120, "http://127.0.0.1:1");
        assert!(config.contains("[alerts.r119]"));
        assert!(config.contains("region=r2 | count()"));
        assert!(probe(119).contains("\"svc-19\"") && probe(119).contains("\"r2\""));
        let load = String::from_utf8(body(0, 0)).unwrap();
        assert_eq!(load.lines().count(), BATCH);
        assert!(!load.contains("critical"));
    }
}
