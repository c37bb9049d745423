//! Pipelines: a repository's events, through a query, to sinks. Each pipeline is a consumer
//! group (`pipeline.<name>`) of the repository's topic on its own thread, so it resumes from
//! its committed offsets after a restart and runs exactly as long as the server.
//!
//! Delivery is at least once: offsets are committed only after every sink has taken what came
//! from them (and, for a rollup, after the windows they fed have closed). What a restart
//! delivers again carries the same ids: an event keeps its own; a window's row gets one made
//! from the pipeline, the window and the row's group. Repository sinks drop such repeats
//! within the de-duplication window; webhooks get them in `@id` and `Idempotency-Key`.
//!
//! The Eventoverse units: filter and transform (`eval`) are the query's steps; aggregate and
//! rollup are an aggregating query over tumbling `window`s whose last `keep` results stay in a
//! ring buffer; split is `split` with each sink's `on`; buffer is each sink's
//! `buffer_events`/`buffer_time`; rebroadcast is a `topic` or `websocket` sink.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use eddy_event::{codec, Event, Value};
use eddy_log::{now_ns, PartitionChoice, PartitionReader, Record, TopicConfig};
use eddy_query::engine::{self, Program, State};
use eddy_query::Prepared;
use serde_json::json;

use crate::config::{PipelineConfig, SinkConfig};
use crate::ingest::{Repository, StoreError};
use crate::live::Frame;
use crate::metrics::{Door, PipelineLabel};
use crate::AppState;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded state stays consistent between calls: a panic elsewhere does not spoil it.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn duration(text: Option<&str>, default: Duration) -> Duration {
    text.and_then(|t| humantime::parse_duration(t).ok())
        .unwrap_or(default)
}

/// What a running pipeline reports.
#[derive(Debug, Default)]
pub struct Status {
    /// Events read from the repository.
    pub read: AtomicU64,
    /// Events delivered (once per sink).
    pub delivered: AtomicU64,
    /// Failed delivery attempts (each retried).
    pub failures: AtomicU64,
    /// Events too late for a window that had closed.
    pub late: AtomicU64,
    /// The last failure, if the pipeline is failing now.
    pub error: Mutex<Option<String>>,
    /// The last closed windows of a rollup, oldest first.
    pub windows: Mutex<VecDeque<serde_json::Value>>,
}

impl Status {
    /// The status as JSON.
    pub fn json(&self, with_windows: bool) -> serde_json::Value {
        let mut v = json!({
            "read": self.read.load(Ordering::Relaxed),
            "delivered": self.delivered.load(Ordering::Relaxed),
            "failures": self.failures.load(Ordering::Relaxed),
            "late": self.late.load(Ordering::Relaxed),
            "error": *lock(&self.error),
        });
        if with_windows {
            v["windows"] = json!(lock(&self.windows).iter().collect::<Vec<_>>());
        }
        v
    }
}

/// A pipeline running on its thread.
struct Running {
    config: PipelineConfig,
    status: Arc<Status>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Every pipeline of a server.
#[derive(Default)]
pub struct Pipelines {
    running: Mutex<BTreeMap<String, Running>>,
}

impl std::fmt::Debug for Pipelines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pipelines({})", lock(&self.running).len())
    }
}

impl Pipelines {
    /// Starts pipeline `name` (replacing none: the caller checks it is new).
    pub fn start(&self, state: &Arc<AppState>, name: &str, config: PipelineConfig) {
        let status = Arc::new(Status::default());
        let stop = Arc::new(AtomicBool::new(false));
        let runner = Runner {
            name: name.to_string(),
            config: config.clone(),
            state: state.clone(),
            status: status.clone(),
            stop: stop.clone(),
            http: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(10)))
                .build()
                .into(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("pipeline-{name}"))
            .spawn(move || runner.run());
        let thread = match thread {
            Ok(t) => Some(t),
            Err(e) => {
                *lock(&status.error) = Some(format!("cannot start its thread: {e}"));
                None
            }
        };
        lock(&self.running).insert(
            name.to_string(),
            Running {
                config,
                status,
                stop,
                thread,
            },
        );
    }

    /// Stops pipeline `name` (what it has not delivered is read again when it starts again).
    pub fn stop(&self, name: &str) -> bool {
        let Some(mut r) = lock(&self.running).remove(name) else {
            return false;
        };
        r.stop.store(true, Ordering::Relaxed);
        if let Some(t) = r.thread.take() {
            let _ = t.join();
        }
        true
    }

    /// Stops them all.
    pub fn stop_all(&self) {
        let names: Vec<String> = lock(&self.running).keys().cloned().collect();
        for name in names {
            self.stop(&name);
        }
    }

    /// Whether `name` runs.
    pub fn contains(&self, name: &str) -> bool {
        lock(&self.running).contains_key(name)
    }

    /// Each pipeline's configuration and status.
    pub fn describe(&self, only: Option<&str>) -> Vec<serde_json::Value> {
        lock(&self.running)
            .iter()
            .filter(|(name, _)| only.is_none_or(|o| o == name.as_str()))
            .map(|(name, r)| {
                json!({
                    "name": name,
                    "config": r.config,
                    "status": r.status.json(only.is_some()),
                })
            })
            .collect()
    }
}

/// Events waiting for one sink.
struct Pending {
    sink: SinkConfig,
    events: Vec<Event>,
    since: Option<Instant>,
    max_events: usize,
    max_wait: Duration,
}

impl Pending {
    fn due(&self) -> bool {
        self.events.len() >= self.max_events
            || self.since.is_some_and(|s| s.elapsed() >= self.max_wait)
    }
}

/// A rollup's open windows: per window start, its state and the first offset per partition
/// that fed it (what must be read again if the pipeline restarts before it closes).
#[derive(Default)]
struct Rollup {
    width: i64,
    lateness: i64,
    open: BTreeMap<i64, (State, HashMap<u32, u64>)>,
    /// Windows starting before this were delivered (kept on disk: after a restart, the events
    /// read again for them are not made into a partial window).
    closed_upto: i64,
}

/// Where a rollup keeps how far its windows were delivered.
fn closed_file(state: &AppState, name: &str) -> std::path::PathBuf {
    state
        .config
        .data_dir
        .join("pipelines")
        .join(format!("{name}.closed"))
}

fn load_closed(path: &std::path::Path) -> i64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(i64::MIN)
}

fn save_closed(path: &std::path::Path, upto: i64) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    crate::api::replace_file(path, upto.to_string().as_bytes())
}

/// A pipeline's work, on its thread.
struct Runner {
    name: String,
    config: PipelineConfig,
    state: Arc<AppState>,
    status: Arc<Status>,
    stop: Arc<AtomicBool>,
    /// For webhooks (kept: connections are reused between deliveries).
    http: ureq::Agent,
}

/// Why a step of the loop failed (the loop starts again after a pause).
type Failure = String;

impl Runner {
    fn label(&self) -> PipelineLabel {
        PipelineLabel {
            pipeline: self.name.clone(),
        }
    }

    fn fail(&self, why: String) {
        // Logged when it changes: a pipeline retrying every second must not flood the log.
        if lock(&self.status.error).as_deref() != Some(why.as_str()) {
            tracing::warn!(pipeline = %self.name, "{why}");
        }
        self.status.failures.fetch_add(1, Ordering::Relaxed);
        self.state
            .ingest
            .metrics
            .pipeline_failures
            .get_or_create(&self.label())
            .inc();
        *lock(&self.status.error) = Some(why);
    }

    /// Runs until stopped; a failure pauses it, then it starts again from its committed offsets.
    fn run(self) {
        while !self.stop.load(Ordering::Relaxed) {
            match self.round() {
                Ok(()) => return,
                Err(why) => {
                    self.fail(why);
                    self.pause(Duration::from_secs(1));
                }
            }
        }
    }

    /// Sleeps up to `d`, waking early when stopped; `false` if stopped.
    fn pause(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        while Instant::now() < until {
            if self.stop.load(Ordering::Relaxed) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20).min(until - Instant::now()));
        }
        !self.stop.load(Ordering::Relaxed)
    }

    fn group(&self) -> String {
        format!("pipeline.{}", self.name)
    }

    fn round(&self) -> Result<(), Failure> {
        let repo = self
            .state
            .repository(&self.config.from)
            .ok_or_else(|| format!("repository {:?} does not exist", self.config.from))?;
        let prepared = eddy_query::prepare(&self.config.query, 100_000)
            .map_err(|e| format!("query: {}", e.render(&self.config.query)))?;
        let topic = &repo.topic;
        let groups = self.state.log.groups();
        let mut readers: Vec<PartitionReader> = Vec::new();
        for p in topic.partitions() {
            let committed = groups.committed(&self.group(), topic.name(), p.id());
            let from = committed.unwrap_or(match self.config.start.as_str() {
                "beginning" => p.start_offset(),
                _ => p.end_offset(),
            });
            readers.push(
                topic
                    .reader(p.id(), from.max(p.start_offset()))
                    .map_err(|e| e.to_string())?
                    .skipping_damage(),
            );
        }
        let mut committed = Vec::new();
        self.commit(&repo, &readers, None, &mut committed)?;
        let mut pending: Vec<Pending> = self
            .config
            .sinks
            .iter()
            .map(|s| Pending {
                sink: s.clone(),
                events: Vec::new(),
                since: None,
                max_events: s.buffer_events.unwrap_or(500),
                max_wait: duration(s.buffer_time.as_deref(), Duration::from_millis(200)),
            })
            .collect();
        let mut rollup = self.config.window.as_ref().map(|w| Rollup {
            width: duration(Some(w), Duration::from_secs(60)).as_nanos() as i64,
            lateness: duration(Some(&self.config.lateness), Duration::from_secs(5)).as_nanos()
                as i64,
            open: BTreeMap::new(),
            closed_upto: load_closed(&closed_file(&self.state, &self.name)),
        });
        let mut delivered_upto = None;
        let program = &prepared.program;
        while !self.stop.load(Ordering::Relaxed) {
            let mut read = 0;
            for reader in &mut readers {
                let partition = reader.partition().id();
                let records = reader.poll().map_err(|e| e.to_string())?;
                read += records.len();
                for r in records {
                    let Ok(event) = codec::decode(&r.value) else {
                        continue;
                    };
                    match &mut rollup {
                        Some(rollup) => self.roll(rollup, &prepared, &event, partition, r.offset),
                        None => {
                            if let Some(out) = program.process(&event) {
                                self.route(&mut pending, out);
                            }
                        }
                    }
                }
            }
            self.status.read.fetch_add(read as u64, Ordering::Relaxed);
            self.state
                .ingest
                .metrics
                .pipeline_events
                .get_or_create(&self.label())
                .inc_by(read as u64);
            if let Some(rollup) = &mut rollup {
                let closed = self.close_windows(rollup, program);
                if !closed.is_empty() {
                    delivered_upto = Some(rollup.closed_upto);
                }
                for out in closed {
                    self.route(&mut pending, out);
                }
            }
            let idle = read == 0 && pending.iter().all(|p| p.events.is_empty());
            if idle || pending.iter().any(Pending::due) {
                if !self.flush(&mut pending) {
                    return Ok(());
                }
                if let Some(upto) = delivered_upto.take() {
                    let path = closed_file(&self.state, &self.name);
                    save_closed(&path, upto)
                        .map_err(|e| format!("writing {}: {e}", path.display()))?;
                }
                self.commit(&repo, &readers, rollup.as_ref(), &mut committed)?;
                *lock(&self.status.error) = None;
            }
            if read == 0 {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Ok(())
    }

    /// Commits what every sink has taken: the readers' positions, held back to the first
    /// offset of each open window.
    fn commit(
        &self,
        repo: &Repository,
        readers: &[PartitionReader],
        rollup: Option<&Rollup>,
        last: &mut Vec<u64>,
    ) -> Result<(), Failure> {
        let offsets: Vec<u64> = readers
            .iter()
            .map(|r| {
                let p = r.partition().id();
                let held = rollup
                    .into_iter()
                    .flat_map(|w| w.open.values())
                    .filter_map(|(_, firsts)| firsts.get(&p).copied())
                    .min();
                held.map_or(r.position(), |h| h.min(r.position()))
            })
            .collect();
        if *last == offsets {
            return Ok(());
        }
        let name = repo.topic.name();
        let commits: Vec<(&str, u32, u64)> = readers
            .iter()
            .zip(&offsets)
            .map(|(r, &o)| (name, r.partition().id(), o))
            .collect();
        self.state
            .log
            .groups()
            .commit(&self.group(), &commits)
            .map_err(|e| format!("committing offsets: {e}"))?;
        *last = offsets;
        Ok(())
    }

    fn roll(
        &self,
        rollup: &mut Rollup,
        prepared: &Prepared,
        e: &Event,
        partition: u32,
        offset: u64,
    ) {
        let start = e.timestamp.div_euclid(rollup.width) * rollup.width;
        // Windows close in order, so an event is late exactly when a window at or after its
        // own has closed. (Events read again after a restart for windows not yet delivered
        // are not late, however old.)
        if start < rollup.closed_upto {
            self.status.late.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let Some(kept) = prepared.program.process(e) else {
            return;
        };
        let collect = &prepared.program.collect;
        let (state, firsts) = rollup
            .open
            .entry(start)
            .or_insert_with(|| (collect.state(), HashMap::new()));
        firsts.entry(partition).or_insert(offset);
        collect.add(state, kept);
    }

    /// The rows of the windows whose end (and lateness) has passed, as events; each window
    /// also goes to the ring buffer.
    fn close_windows(&self, rollup: &mut Rollup, program: &Program) -> Vec<Event> {
        let now = now_ns();
        let mut out = Vec::new();
        while let Some(entry) = rollup.open.first_entry() {
            let start = *entry.key();
            if start + rollup.width + rollup.lateness > now {
                break;
            }
            let (state, _) = entry.remove();
            let end = start + rollup.width;
            rollup.closed_upto = rollup.closed_upto.max(end);
            let answer = eddy_query::run::answer_of(program, state);
            {
                let mut ring = lock(&self.status.windows);
                ring.push_back(json!({ "start": start, "end": end, "columns": answer.columns, "rows": answer.rows }));
                while ring.len() > self.config.keep {
                    ring.pop_front();
                }
            }
            for row in answer.rows {
                let mut e = Event::new(now);
                e.timestamp = start;
                let key = serde_json::to_string(&row).unwrap_or_default();
                let id = xxhash_rust::xxh3::xxh3_128(
                    format!("{}\0{start}\0{key}", self.name).as_bytes(),
                );
                e.id = uuid::Uuid::from_u128(id);
                e.fields = row
                    .into_iter()
                    .filter(|(k, _)| !k.starts_with('@'))
                    .collect();
                e.fields.insert("_window_start".into(), Value::Int(start));
                e.fields.insert("_window_end".into(), Value::Int(end));
                out.push(e);
            }
        }
        out
    }

    /// Puts `e` in the buffers of the sinks that take it.
    fn route(&self, pending: &mut [Pending], mut e: Event) {
        // Its id is what lets a sink recognise it when it comes again.
        e.id_from_client = true;
        e.tags.insert("pipeline".into(), self.name.clone());
        let split = self
            .config
            .split
            .as_ref()
            .map(|f| eddy_query::fields::get(&e, f).map_or(String::new(), |v| v.to_text()));
        for p in pending.iter_mut() {
            if let (Some(on), Some(value)) = (&p.sink.on, &split) {
                if on != value {
                    continue;
                }
            }
            p.since.get_or_insert_with(Instant::now);
            p.events.push(e.clone());
        }
    }

    /// Delivers every buffer, retrying each with back-off until it succeeds; `false` if the
    /// pipeline was stopped first.
    fn flush(&self, pending: &mut [Pending]) -> bool {
        for p in pending.iter_mut().filter(|p| !p.events.is_empty()) {
            let max_backoff = duration(p.sink.max_backoff.as_deref(), Duration::from_secs(30));
            let mut backoff = Duration::from_millis(100);
            loop {
                match self.deliver(&p.sink, &p.events) {
                    Ok(()) => break,
                    Err(why) => {
                        self.fail(why);
                        if !self.pause(backoff) {
                            return false;
                        }
                        backoff = (backoff * 2).min(max_backoff);
                    }
                }
            }
            let n = p.events.len() as u64;
            self.status.delivered.fetch_add(n, Ordering::Relaxed);
            self.state
                .ingest
                .metrics
                .pipeline_delivered
                .get_or_create(&self.label())
                .inc_by(n);
            p.events.clear();
            p.since = None;
        }
        true
    }

    fn deliver(&self, sink: &SinkConfig, events: &[Event]) -> Result<(), Failure> {
        if let Some(name) = &sink.repository {
            let repo = self
                .state
                .repository(name)
                .ok_or_else(|| format!("sink repository {name:?} does not exist"))?;
            let now = now_ns();
            let events: Vec<Event> = events
                .iter()
                .map(|e| Event {
                    ingest_timestamp: now,
                    ..e.clone()
                })
                .collect();
            let bytes = events.iter().map(engine::approx_event_bytes).sum();
            return match self.state.ingest.store(
                Door::Pipeline,
                &repo,
                events,
                bytes,
                Instant::now(),
            ) {
                Ok(_) => Ok(()),
                Err(StoreError::Busy(why)) => Err(format!("repository {name:?} is busy: {why}")),
                Err(e) => Err(format!("repository {name:?}: {e}")),
            };
        }
        if let Some(name) = &sink.topic {
            let topic = self
                .state
                .log
                .topic_or_create(name, TopicConfig::default())
                .map_err(|e| format!("topic {name:?}: {e}"))?;
            let records = events
                .iter()
                .map(|e| {
                    Record::new(codec::encode(e))
                        .with_key(e.data_source())
                        .with_timestamp(e.timestamp)
                })
                .collect();
            return topic
                .produce(records, PartitionChoice::ByKey)
                .map(|_| ())
                .map_err(|e| format!("topic {name:?}: {e}"));
        }
        let rows = rows_json(events);
        if let Some(url) = &sink.webhook {
            let ids: String = events.iter().map(|e| e.id.simple().to_string()).collect();
            let key = format!("{:032x}", xxhash_rust::xxh3::xxh3_128(ids.as_bytes()));
            let response = self
                .http
                .post(url)
                .header("Content-Type", "application/json")
                .header("Idempotency-Key", &key)
                .send(rows.to_string().as_bytes())
                .map_err(|e| format!("webhook {url}: {e}"))?;
            let status = response.status().as_u16();
            return if (200..300).contains(&status) {
                Ok(())
            } else {
                Err(format!("webhook {url} answered {status}"))
            };
        }
        if let Some(name) = &sink.websocket {
            let oldest = events.iter().map(|e| e.ingest_timestamp).min();
            let frame = json!({ "type": "events", "pipeline": self.name, "rows": rows });
            // A channel is live only: nobody listening is not a failure.
            let _ = self.state.live.channel(name).send(Frame::of(frame, oldest));
        }
        Ok(())
    }
}

/// Events as JSON rows, each with its `@id`.
fn rows_json(events: &[Event]) -> serde_json::Value {
    let columns = engine::event_columns(events);
    events
        .iter()
        .map(|e| {
            let mut row = serde_json::to_value(engine::row_values(e, &columns))
                .unwrap_or(serde_json::Value::Null);
            row["@id"] = json!(e.id.to_string());
            row
        })
        .collect()
}
