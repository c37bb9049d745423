//! The ingest benchmark's end-to-end and footprint rows.
//!
//! Generated access logs (posted as raw lines with `?parser=accesslog`) and JSON application
//! logs (NDJSON) go over HTTP into a real `eddy serve` whose digest runs beside ingest. The
//! end-to-end rate runs from the first request until a `count()` over the repository equals
//! what the server acknowledged; beside it, the same load into a server whose repositories do
//! not digest (`digest = false`), timed until the last acknowledgement. The footprint is the
//! whole data directory against the raw bytes, once while the bus window holds the data and
//! once after a shortened window (`bus_retention`, with `segment_age` as short, so that the
//! digest seals and commits) has passed.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, IoContext, Result};
use crate::gen::{self, Kind};
use crate::proc_stat::CpuSample;
use crate::report::{format_value, Figure, Row};
use crate::serve::Serve;

/// Bytes per request body: the size shippers batch to.
const BODY_BYTES: u64 = 4 << 20;

/// Settings of the end-to-end rows.
#[derive(Debug, Clone)]
pub struct E2eOptions {
    /// The `eddy` binary run as the server.
    pub server: PathBuf,
    /// Another `eddy` binary (an older build) measured the same way, side by side.
    pub baseline: Option<PathBuf>,
    /// Scratch directory.
    pub dir: PathBuf,
    /// Raw bytes of each kind (access logs, JSON logs).
    pub bytes: u64,
    /// Client threads posting at once.
    pub clients: usize,
    /// The shortened bus window (and segment age) of the footprint run.
    pub window: Duration,
}

/// One load: a generated file and where and how it is posted.
struct Load {
    kind: Kind,
    repository: &'static str,
    query: &'static str,
    content_type: &'static str,
    file: PathBuf,
    /// Byte ranges of whole lines, about [`BODY_BYTES`] each.
    bodies: Vec<(u64, u64)>,
    raw_bytes: u64,
}

impl Load {
    fn label(&self) -> &'static str {
        match self.kind {
            Kind::Access => "access lines, ?parser=accesslog",
            _ => "JSON events (NDJSON)",
        }
    }
}

/// What one server binary measured.
struct Measured {
    /// Per load: events/s end to end, digest running.
    end_to_end: Vec<f64>,
    /// Per load: events/s until the last acknowledgement, no digest.
    undigested: Vec<f64>,
    /// Bytes in the data directory while the window holds the data, and after it passed.
    held: u64,
    after: u64,
    /// Bus bytes per event while the window holds the data (both repositories).
    bus_per_event: f64,
    /// Per load: the server's CPU µs per event with the digest running, outside the digest's
    /// threads (doors, parsing, the bus) and in them.
    ingest_cpu: Vec<f64>,
    digest_cpu: Vec<f64>,
    /// Per load: the server's CPU µs per event with no digest.
    undigested_cpu: Vec<f64>,
}

/// A running `eddy serve`, stopped (SIGKILL) when dropped.
struct Server {
    serve: Serve,
}

impl Server {
    fn start(exe: &Path, dir: &Path, digest: bool, window: Duration) -> Result<Server> {
        let window = format!("{}s", window.as_secs().max(1));
        let repository = |name: &str| {
            format!(
                "[repositories.{name}]\npartitions = 4\nbus_retention = \"{window}\"\n\
                 segment_age = \"{window}\"\n{}",
                if digest { "" } else { "digest = false\n" }
            )
        };
        let config = Serve::fresh_config(
            dir,
            &format!(
                "[http]\nlisten = \"127.0.0.1:0\"\n{}{}",
                repository("acc"),
                repository("app")
            ),
        )?;
        let (serve, _) = Serve::start(exe, &config, false, &[])?;
        Ok(Server { serve })
    }

    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into()
    }

    /// The events a `count()` over all time finds in `repository`.
    fn count(&self, repository: &str) -> Result<u64> {
        let body = serde_json::json!({
            "query": "count()",
            "start": "1970-01-01T00:00:00Z",
            "end": "2200-01-01T00:00:00Z"
        })
        .to_string();
        let answer: serde_json::Value = Self::agent()
            .post(format!(
                "{}/api/v1/repositories/{repository}/query",
                self.serve.http
            ))
            .header("Content-Type", "application/json")
            .send(body.as_bytes())
            .and_then(|mut r| r.body_mut().read_to_string())
            .map_err(|e| Error::Invalid(format!("counting the events of {repository}: {e}")))
            .and_then(|text| json(&text))?;
        Ok(answer["rows"][0]["_count"].as_u64().unwrap_or(0))
    }

    /// Bytes of `repository`'s bus, from the repositories API.
    fn bus_bytes(&self, repository: &str) -> Result<u64> {
        let answer: serde_json::Value = Self::agent()
            .get(format!(
                "{}/api/v1/repositories/{repository}",
                self.serve.http
            ))
            .call()
            .and_then(|mut r| r.body_mut().read_to_string())
            .map_err(|e| Error::Invalid(format!("describing {repository}: {e}")))
            .and_then(|text| json(&text))?;
        Ok(answer["bus_bytes"].as_u64().unwrap_or(0))
    }
}

/// Generates the loads' data (times ending now, so the window is about arrival) and cuts it
/// into bodies of whole lines.
fn loads(opts: &E2eOptions) -> Result<Vec<Load>> {
    let dir = opts.dir.join("raw");
    std::fs::create_dir_all(&dir).context(|| format!("creating {}", dir.display()))?;
    let mut out = Vec::new();
    for (kind, repository, query, content_type) in [
        (Kind::Access, "acc", "?parser=accesslog", "text/plain"),
        (Kind::Json, "app", "", "application/x-ndjson"),
    ] {
        let file = dir.join(format!("{}.log", kind.name()));
        let start = eddy_event::time::now_ns() - gen::time_span_ns(kind, 42, opts.bytes);
        let mut w = std::io::BufWriter::new(
            std::fs::File::create(&file).context(|| format!("creating {}", file.display()))?,
        );
        let manifest = gen::generate_from(kind, 42, opts.bytes, start, &mut w)?;
        drop(w);
        out.push(Load {
            kind,
            repository,
            query,
            content_type,
            bodies: cut(&file, BODY_BYTES)?,
            file,
            raw_bytes: manifest.bytes,
        });
    }
    Ok(out)
}

/// The byte ranges of `file` cut after a line break every `body_bytes` or so.
pub(crate) fn cut(file: &Path, body_bytes: u64) -> Result<Vec<(u64, u64)>> {
    let bytes = std::fs::read(file).context(|| format!("reading {}", file.display()))?;
    let mut bodies = Vec::new();
    let mut start = 0usize;
    while start < bytes.len() {
        let want = (start + body_bytes as usize).min(bytes.len());
        let end = match bytes[want..].iter().position(|&b| b == b'\n') {
            Some(i) => want + i + 1,
            None => bytes.len(),
        };
        bodies.push((start as u64, end as u64));
        start = end;
    }
    Ok(bodies)
}

/// Posts every body of `load` with `clients` threads; returns the events acknowledged.
fn post_all(server: &Server, load: &Load, clients: usize) -> Result<u64> {
    let url = format!(
        "{}/api/v1/ingest/{}{}",
        server.serve.http, load.repository, load.query
    );
    let next = AtomicUsize::new(0);
    let acked = AtomicU64::new(0);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    let agent = Server::agent();
                    let mut file = std::fs::File::open(&load.file)
                        .context(|| format!("opening {}", load.file.display()))?;
                    let mut body = Vec::new();
                    loop {
                        let Some(&(from, to)) =
                            load.bodies.get(next.fetch_add(1, Ordering::Relaxed))
                        else {
                            return Ok(());
                        };
                        body.resize((to - from) as usize, 0);
                        file.seek(SeekFrom::Start(from))
                            .and_then(|_| file.read_exact(&mut body))
                            .context(|| format!("reading {}", load.file.display()))?;
                        acked.fetch_add(
                            post(&agent, &url, load.content_type, &body)?,
                            Ordering::Relaxed,
                        );
                    }
                })
            })
            .collect();
        crate::serve::joined(handles).collect::<Result<()>>()
    })?;
    Ok(acked.into_inner())
}

/// Posts one body until it is stored (a 429 or 503 is retried after its Retry-After); returns
/// the events the server acknowledged.
pub(crate) fn post(agent: &ureq::Agent, url: &str, content_type: &str, body: &[u8]) -> Result<u64> {
    loop {
        let mut resp = agent
            .post(url)
            .header("Content-Type", content_type)
            .send(body)
            .map_err(|e| Error::Invalid(format!("posting a body: {e}")))?;
        match resp.status().as_u16() {
            200 => {
                let answer = resp
                    .body_mut()
                    .read_to_string()
                    .map_err(|e| Error::Invalid(format!("reading an acknowledgement: {e}")))
                    .and_then(|text| json(&text))?;
                return Ok(answer["events"].as_u64().unwrap_or(0));
            }
            429 | 503 => std::thread::sleep(Duration::from_millis(100)),
            s => {
                let text = resp.body_mut().read_to_string().unwrap_or_default();
                return Err(Error::Invalid(format!(
                    "eddy serve answered {s} to a valid body: {text}"
                )));
            }
        }
    }
}

pub(crate) fn json(text: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text)
        .map_err(|e| Error::Invalid(format!("eddy serve answered {text:?}: {e}")))
}

/// Bytes of the files under `dir`.
fn disk_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => disk_bytes(&e.path()),
            Ok(_) => e.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

/// Waits until a `count()` over `repository` finds `events`.
fn until_counted(server: &Server, repository: &str, events: u64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let counted = server.count(repository)?;
        if counted == events {
            return Ok(());
        }
        if counted > events || Instant::now() > deadline {
            return Err(Error::Mismatch {
                what: format!("events a count() finds in {repository} vs acknowledged"),
                expected: events.to_string(),
                got: counted.to_string(),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn measure(
    exe: &Path,
    opts: &E2eOptions,
    loads: &[Load],
    progress: &dyn Fn(&str),
) -> Result<Measured> {
    let dir = opts.dir.join("server");
    let server = Server::start(exe, &dir, true, opts.window)?;
    let mut end_to_end = Vec::new();
    let (mut ingest_cpu, mut digest_cpu, mut undigested_cpu) = (Vec::new(), Vec::new(), Vec::new());
    let mut events = 0;
    for load in loads {
        progress(&format!(
            "end to end: {} into {}",
            load.label(),
            exe.display()
        ));
        let started = Instant::now();
        let cpu = CpuSample::read(server.serve.pid());
        let acked = post_all(&server, load, opts.clients)?;
        until_counted(&server, load.repository, acked)?;
        end_to_end.push(acked as f64 / started.elapsed().as_secs_f64());
        let now = CpuSample::read(server.serve.pid());
        let per_event = |seconds: f64| seconds * 1e6 / acked.max(1) as f64;
        let digest = now.threads_since(&cpu, |name| name.starts_with("digest-"));
        digest_cpu.push(per_event(digest));
        ingest_cpu.push(per_event(now.total_since(&cpu) - digest));
        events += acked;
    }
    let held = disk_bytes(&dir.join("data"));
    let bus: u64 = loads
        .iter()
        .map(|l| server.bus_bytes(l.repository))
        .sum::<Result<u64>>()?;
    progress(&format!(
        "waiting for the {} s bus window to pass",
        opts.window.as_secs()
    ));
    // Sealing (segment age), then the bus's retention check (every minute): the bus shrinks
    // within a minute or two.
    let deadline = Instant::now() + opts.window * 2 + Duration::from_secs(180);
    let mut bus_left = bus;
    while Instant::now() < deadline && bus_left * 20 > bus {
        std::thread::sleep(Duration::from_secs(2));
        bus_left = loads
            .iter()
            .map(|l| server.bus_bytes(l.repository))
            .sum::<Result<u64>>()?;
    }
    let after = disk_bytes(&dir.join("data"));
    drop(server);

    let server = Server::start(exe, &dir, false, opts.window)?;
    let mut undigested = Vec::new();
    for load in loads {
        progress(&format!(
            "no digest: {} into {}",
            load.label(),
            exe.display()
        ));
        let started = Instant::now();
        let cpu = CpuSample::read(server.serve.pid());
        let acked = post_all(&server, load, opts.clients)?;
        undigested.push(acked as f64 / started.elapsed().as_secs_f64());
        let seconds = CpuSample::read(server.serve.pid()).total_since(&cpu);
        undigested_cpu.push(seconds * 1e6 / acked.max(1) as f64);
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Measured {
        end_to_end,
        undigested,
        held,
        after,
        bus_per_event: bus as f64 / events.max(1) as f64,
        ingest_cpu,
        digest_cpu,
        undigested_cpu,
    })
}

/// Runs the end-to-end and footprint measurements and returns their rows.
pub fn rows(opts: &E2eOptions, progress: &dyn Fn(&str)) -> Result<Vec<Row>> {
    progress("generating the end-to-end data");
    let loads = loads(opts)?;
    let raw: u64 = loads.iter().map(|l| l.raw_bytes).sum();
    let mut binaries = vec![("", opts.server.clone())];
    if let Some(b) = &opts.baseline {
        binaries.push((" (baseline binary)", b.clone()));
    }
    let mut rows = Vec::new();
    for (which, exe) in binaries {
        let m = measure(&exe, opts, &loads, progress)?;
        for (i, load) in loads.iter().enumerate() {
            let rate = m.end_to_end[i];
            rows.push(Row {
                baseline: format!(
                    "{} with the store not digesting (acknowledged)",
                    format_value(m.undigested[i], "events/s")
                ),
                ratio: format!("{:.2}× that rate", rate / m.undigested[i]),
                goal: "≥ 400.0 k events/s (goal 511 k)".into(),
                figure: Figure::once(
                    &format!(
                        "end to end{which}: {}, first request until count() = acknowledged",
                        load.label()
                    ),
                    "events/s",
                    rate,
                ),
            });
        }
        for (i, load) in loads.iter().enumerate() {
            rows.push(Row {
                baseline: format!("{:.2} µs with the store not digesting", m.undigested_cpu[i]),
                ratio: format!(
                    "{:.2} µs outside the digest + {:.2} µs in it",
                    m.ingest_cpu[i], m.digest_cpu[i]
                ),
                goal: "≤ 5 µs: 2 cores at 400 k events/s, the client included".into(),
                figure: Figure::once(
                    &format!("server CPU{which}: {}, digest running", load.label()),
                    "µs per event",
                    m.ingest_cpu[i] + m.digest_cpu[i],
                ),
            });
        }
        rows.push(Row {
            baseline: format!("raw {}", format_value(raw as f64, "MB")),
            ratio: format!("raw ÷ {:.1}", raw as f64 / m.held.max(1) as f64),
            goal: "≤ raw ÷ 4".into(),
            figure: Figure::once(
                &format!("data directory{which} while the bus window holds the data"),
                "MB",
                m.held as f64,
            ),
        });
        rows.push(Row {
            baseline: format!("raw {}", format_value(raw as f64, "MB")),
            ratio: format!("raw ÷ {:.1}", raw as f64 / m.after.max(1) as f64),
            goal: "≤ raw ÷ 8".into(),
            figure: Figure::once(
                &format!(
                    "data directory{which} after a {} s bus window has passed",
                    opts.window.as_secs()
                ),
                "MB",
                m.after as f64,
            ),
        });
        rows.push(Row::plain(Figure::once(
            &format!("bus bytes per event{which} (compressed batches)"),
            "bytes",
            m.bus_per_event,
        )));
    }
    Ok(rows)
}
