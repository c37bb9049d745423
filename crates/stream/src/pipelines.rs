//! Pipelines: a repository's events, through a query, to sinks. Each pipeline is a member of
//! the consumer group `pipeline.<name>` of the repository's topic on its own thread, so it
//! resumes from its committed offsets after a restart and runs exactly as long as the server.
//! On a shared bus the nodes running the same pipeline share the partitions: the bus gives
//! each partition to one of them and moves it when a node comes or goes; the member then
//! delivers and commits what it has, and starts again from the group's committed offsets.
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

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eddy_base::io::{IoContext, IoError};
use eddy_event::{codec, Event, Value};
use eddy_ingest::{Door, Ingest, StoreError};
use eddy_log::{now_ns, Bus, BusReader, GroupMember, PartitionChoice, Record, TopicConfig};
use eddy_query::engine::{self, Program, State};
use eddy_query::Prepared;
use serde_json::json;

use crate::alerts::duty::AlertDuty;
use crate::config::{PipelineConfig, PipelinePlan, Start};
use crate::live::{Frame, Hub};
use crate::metrics::{PipelineLabel, StreamMetrics};
use crate::sink::{Sink, SinkPlan};
use crate::workers::Workers;
use crate::ReadHandle;
use eddy_base::sync::lock;

/// The repositories a pipeline may read from and write into, by name.
pub trait Repositories: Send + Sync {
    /// The repository `name`, if it exists.
    fn repository(&self, name: &str) -> Option<Arc<eddy_ingest::Repository>>;
}

/// What pipelines and alert rules run against: the bus, the doors (for repository sinks), the
/// live hub (for websocket sinks), their metrics, where rollups keep their progress, and the
/// alert rules' duties.
pub struct Context {
    /// The repositories' bus: consumer groups and rebroadcast topics.
    pub bus: Arc<dyn Bus>,
    /// Repository sinks store through the doors' own path.
    pub ingest: Arc<Ingest>,
    /// The repositories by name.
    pub repositories: Arc<dyn Repositories>,
    /// Websocket sinks push to its channels.
    pub live: Arc<Hub>,
    /// Self-metrics.
    pub metrics: Arc<StreamMetrics>,
    /// The server's data directory (rollups keep `pipelines/<name>.closed` there).
    pub data_dir: PathBuf,
    /// Decides which of this node's alert rules it evaluates (see [`AlertDuty`]).
    pub alert_duty: Arc<AlertDuty>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

/// Why a step of a pipeline failed (it starts again after a pause, from its committed
/// offsets).
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Its configuration does not check (it was changed on disk, or never checked).
    #[error("{}", .0.join("; "))]
    Invalid(Vec<String>),
    /// The repository it reads does not exist.
    #[error("repository {0:?} does not exist")]
    NoRepository(String),
    /// The query does not compile.
    #[error("query: {0}")]
    Query(String),
    /// The bus could not be read.
    #[error("{0}")]
    Read(#[from] eddy_log::Error),
    /// The consumer group's offsets could not be committed.
    #[error("committing offsets: {0}")]
    Commit(eddy_log::Error),
    /// A rollup's progress could not be kept.
    #[error("keeping its progress: {0}")]
    KeepProgress(IoError),
    /// A repository sink's repository does not exist.
    #[error("sink repository {0:?} does not exist")]
    NoSinkRepository(String),
    /// A repository sink's repository is storing an event with the same id.
    #[error("repository {name:?} is busy: {id}")]
    Busy {
        /// The repository.
        name: String,
        /// The event id.
        id: uuid::Uuid,
    },
    /// A repository sink could not store.
    #[error("repository {name:?}: {error}")]
    Store {
        /// The repository.
        name: String,
        /// Why.
        error: StoreError,
    },
    /// A topic sink could not append.
    #[error("topic {name:?}: {error}")]
    Topic {
        /// The topic.
        name: String,
        /// Why.
        error: eddy_log::Error,
    },
    /// A webhook could not be reached.
    #[error("webhook {url}: {error}")]
    Unreachable {
        /// The URL.
        url: String,
        /// Why.
        error: Box<ureq::Error>,
    },
    /// A webhook answered other than 2xx.
    #[error("webhook {url} answered {status}")]
    Refused {
        /// The URL.
        url: String,
        /// Its status code.
        status: u16,
    },
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

/// Every pipeline of a server.
#[derive(Default)]
pub struct Pipelines {
    running: Workers<PipelineConfig, Status>,
}

impl std::fmt::Debug for Pipelines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pipelines({})", self.running.len())
    }
}

impl Pipelines {
    /// Starts pipeline `name` (replacing none: the caller checks it is new).
    pub fn start(&self, context: &Arc<Context>, name: &str, config: PipelineConfig) {
        let status = Arc::new(Status::default());
        let stop = Arc::new(AtomicBool::new(false));
        let runner = Runner {
            name: name.to_string(),
            plan: config.plan(name),
            config: config.clone(),
            context: context.clone(),
            status: status.clone(),
            stop: stop.clone(),
            http: crate::sink::webhook_agent(),
            topics: Mutex::new(HashSet::new()),
        };
        let started = self.running.start(
            name,
            format!("pipeline-{name}"),
            config,
            status.clone(),
            stop,
            move || runner.run(),
        );
        if let Err(e) = started {
            *lock(&status.error) = Some(format!("cannot start its thread: {e}"));
        }
    }

    /// Stops pipeline `name` (what it has not delivered is read again when it starts again).
    pub fn stop(&self, name: &str) -> bool {
        self.running.stop(name)
    }

    /// Stops them all.
    pub fn stop_all(&self) {
        self.running.stop_all();
    }

    /// Whether `name` runs.
    pub fn contains(&self, name: &str) -> bool {
        self.running.contains(name)
    }

    /// Each pipeline's configuration and status.
    pub fn describe(&self, only: Option<&str>) -> Vec<serde_json::Value> {
        self.running.describe(only, |name, r| {
            json!({
                "name": name,
                "config": r.config,
                "status": r.status.json(only.is_some()),
            })
        })
    }
}

/// Events waiting for one sink.
struct Pending {
    sink: SinkPlan,
    events: Vec<Event>,
    since: Option<Instant>,
}

impl Pending {
    fn due(&self) -> bool {
        self.events.len() >= self.sink.buffer_events
            || self
                .since
                .is_some_and(|s| s.elapsed() >= self.sink.buffer_time)
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
fn closed_file(context: &Context, name: &str) -> PathBuf {
    context
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

fn save_closed(path: &std::path::Path, upto: i64) -> Result<(), IoError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
    }
    eddy_base::fs::replace_file(path, upto.to_string().as_bytes())
}

/// A pipeline's work, on its thread.
struct Runner {
    name: String,
    config: PipelineConfig,
    plan: Result<PipelinePlan, Vec<String>>,
    context: Arc<Context>,
    status: Arc<Status>,
    stop: Arc<AtomicBool>,
    /// For webhooks (kept: connections are reused between deliveries).
    http: ureq::Agent,
    /// Topic sinks known to exist.
    topics: Mutex<HashSet<String>>,
}

/// This node's place in a pipeline's consumer group.
struct Membership {
    member: Box<dyn GroupMember>,
    /// Set when partitions move: the round ends and the next starts from committed offsets.
    moved: Arc<AtomicBool>,
}

/// How a round ended without failing.
enum Ended {
    /// The pipeline was stopped.
    Stopped,
    /// Partitions moved to or from this node.
    Moved,
}

impl Runner {
    fn label(&self) -> PipelineLabel {
        PipelineLabel {
            pipeline: self.name.clone(),
        }
    }

    fn fail(&self, why: Failure) {
        let why = why.to_string();
        // Logged when it changes: a pipeline retrying every second must not flood the log.
        if lock(&self.status.error).as_deref() != Some(why.as_str()) {
            tracing::warn!(pipeline = %self.name, "{why}");
        }
        self.status.failures.fetch_add(1, Ordering::Relaxed);
        self.context
            .metrics
            .pipeline_failures
            .get_or_create(&self.label())
            .inc();
        *lock(&self.status.error) = Some(why);
    }

    /// Runs until stopped; a failure pauses it, then it starts again from its committed offsets.
    fn run(self) {
        let mut membership = None;
        while !self.stop.load(Ordering::Relaxed) {
            match self.round(&mut membership) {
                Ok(Ended::Stopped) => return,
                Ok(Ended::Moved) => {}
                Err(why) => {
                    // Read or commit failures may be the membership's: join again.
                    if matches!(why, Failure::Read(_) | Failure::Commit(_)) {
                        membership = None;
                    }
                    self.fail(why);
                    self.pause(Duration::from_secs(1));
                }
            }
        }
    }

    /// This node's member of the pipeline's group on `repo`'s topic, joined on first use.
    fn member<'m>(
        &self,
        repo: &ReadHandle,
        membership: &'m mut Option<Membership>,
    ) -> Result<&'m mut Membership, Failure> {
        if let Some(m) = membership {
            return Ok(m);
        }
        let moved = Arc::new(AtomicBool::new(false));
        let heard = moved.clone();
        let member = repo.bus.join(
            &self.group(),
            &repo.topic,
            Box::new(move |_| heard.store(true, Ordering::Release)),
        )?;
        Ok(membership.insert(Membership { member, moved }))
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

    fn round(&self, membership: &mut Option<Membership>) -> Result<Ended, Failure> {
        let plan = self
            .plan
            .as_ref()
            .map_err(|p| Failure::Invalid(p.clone()))?;
        let repo = self
            .context
            .repositories
            .repository(&self.config.from)
            .map(|r| ReadHandle::from(&*r))
            .ok_or_else(|| Failure::NoRepository(self.config.from.clone()))?;
        let prepared = eddy_query::prepare(&self.config.query, 100_000)
            .map_err(|e| Failure::Query(e.render(&self.config.query)))?;
        let membership = self.member(&repo, membership)?;
        // Partitions come with the first polls (at once on the embedded bus; after the
        // group's rebalance on Kafka). A member given none waits as a standby.
        membership.moved.store(false, Ordering::Release);
        membership.member.poll(Duration::ZERO)?;
        while membership.member.owned().is_empty() {
            if self.stop.load(Ordering::Relaxed) {
                return Ok(Ended::Stopped);
            }
            membership.member.poll(Duration::from_millis(100))?;
        }
        membership.moved.store(false, Ordering::Release);
        let (bus, topic) = (&repo.bus, repo.topic.as_str());
        let mut readers: Vec<Box<dyn BusReader>> = Vec::new();
        for p in membership.member.owned() {
            let committed = bus.committed(&self.group(), topic, p)?;
            let (first, next) = bus.offsets(topic, p)?;
            let from = committed.unwrap_or(match plan.start {
                Start::Beginning => first,
                Start::End => next,
            });
            readers.push(bus.reader_skipping_damage(topic, p, from.max(first))?);
        }
        let mut committed = Vec::new();
        self.commit(&repo, &readers, None, &mut committed)?;
        let mut pending: Vec<Pending> = plan
            .sinks
            .iter()
            .map(|s| Pending {
                sink: s.clone(),
                events: Vec::new(),
                since: None,
            })
            .collect();
        let mut rollup = plan.window.map(|width| Rollup {
            width: i64::try_from(width.as_nanos()).unwrap_or(i64::MAX),
            lateness: i64::try_from(plan.lateness.as_nanos()).unwrap_or(i64::MAX),
            open: BTreeMap::new(),
            closed_upto: load_closed(&closed_file(&self.context, &self.name)),
        });
        let mut delivered_upto = None;
        let program = &prepared.program;
        while !self.stop.load(Ordering::Relaxed) {
            membership.member.poll(Duration::ZERO)?;
            let moved = membership.moved.load(Ordering::Acquire);
            let mut read = 0;
            for reader in readers.iter_mut().filter(|_| !moved) {
                let partition = reader.partition();
                let records = reader.poll(Duration::ZERO)?;
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
            self.context
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
            if moved || idle || pending.iter().any(Pending::due) {
                if !self.flush(&mut pending) {
                    return Ok(Ended::Stopped);
                }
                if let Some(upto) = delivered_upto.take() {
                    let path = closed_file(&self.context, &self.name);
                    save_closed(&path, upto).map_err(Failure::KeepProgress)?;
                }
                let committing = self.commit(&repo, &readers, rollup.as_ref(), &mut committed);
                if moved {
                    // Partitions that moved may refuse the commit: their next owner reads
                    // again from the last one that went through (at least once).
                    if let Err(e) = committing {
                        tracing::info!(pipeline = %self.name, "partitions moved: {e}");
                    }
                    return Ok(Ended::Moved);
                }
                committing?;
                *lock(&self.status.error) = None;
            }
            if read == 0 {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Ok(Ended::Stopped)
    }

    /// Commits what every sink has taken: the readers' positions, held back to the first
    /// offset of each open window.
    fn commit(
        &self,
        repo: &ReadHandle,
        readers: &[Box<dyn BusReader>],
        rollup: Option<&Rollup>,
        last: &mut Vec<u64>,
    ) -> Result<(), Failure> {
        let offsets: Vec<u64> = readers
            .iter()
            .map(|r| {
                let p = r.partition();
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
        let commits: Vec<(u32, u64)> = readers
            .iter()
            .zip(&offsets)
            .map(|(r, &o)| (r.partition(), o))
            .collect();
        repo.bus
            .commit(&self.group(), &repo.topic, &commits)
            .map_err(Failure::Commit)?;
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
            let max_backoff = p.sink.max_backoff;
            let mut backoff = Duration::from_millis(100);
            loop {
                match self.deliver(&p.sink.sink, &p.events) {
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
            self.context
                .metrics
                .pipeline_delivered
                .get_or_create(&self.label())
                .inc_by(n);
            p.events.clear();
            p.since = None;
        }
        true
    }

    fn deliver(&self, sink: &Sink, events: &[Event]) -> Result<(), Failure> {
        match sink {
            Sink::Repository(name) => self.store(name, events),
            Sink::Topic(name) => {
                let failed = |error| Failure::Topic {
                    name: name.clone(),
                    error,
                };
                if !lock(&self.topics).contains(name) {
                    self.context
                        .bus
                        .ensure_topic(name, &TopicConfig::default())
                        .map_err(failed)?;
                    lock(&self.topics).insert(name.clone());
                }
                let records = events
                    .iter()
                    .map(|e| {
                        Record::new(codec::encode(e))
                            .with_key(e.data_source())
                            .with_timestamp(e.timestamp)
                    })
                    .collect();
                self.context
                    .bus
                    .produce(name, records, PartitionChoice::ByKey)
                    .map(|_| ())
                    .map_err(failed)
            }
            Sink::Webhook(url) => {
                let ids: String = events.iter().map(|e| e.id.simple().to_string()).collect();
                let key = format!("{:032x}", xxhash_rust::xxh3::xxh3_128(ids.as_bytes()));
                let response = self
                    .http
                    .post(url)
                    .header("Content-Type", "application/json")
                    .header("Idempotency-Key", &key)
                    .send(rows_json(events).to_string().as_bytes())
                    .map_err(|e| Failure::Unreachable {
                        url: url.clone(),
                        error: Box::new(e),
                    })?;
                let status = response.status().as_u16();
                if (200..300).contains(&status) {
                    Ok(())
                } else {
                    Err(Failure::Refused {
                        url: url.clone(),
                        status,
                    })
                }
            }
            Sink::Websocket(name) => {
                let oldest = events.iter().map(|e| e.ingest_timestamp).min();
                let frame =
                    json!({ "type": "events", "pipeline": self.name, "rows": rows_json(events) });
                // A channel is live only: nobody listening is not a failure.
                let _ = self
                    .context
                    .live
                    .channel(name)
                    .send(Frame::of(frame, oldest));
                Ok(())
            }
        }
    }

    /// A repository sink: the events, stamped as ingested now, through the doors' store.
    fn store(&self, name: &str, events: &[Event]) -> Result<(), Failure> {
        let repo = self
            .context
            .repositories
            .repository(name)
            .ok_or_else(|| Failure::NoSinkRepository(name.to_string()))?;
        let now = now_ns();
        let events: Vec<Event> = events
            .iter()
            .map(|e| Event {
                ingest_timestamp: now,
                ..e.clone()
            })
            .collect();
        let bytes = events.iter().map(engine::approx_event_bytes).sum();
        match self
            .context
            .ingest
            .store(Door::Pipeline, &repo, events, bytes, Instant::now())
        {
            Ok(_) => Ok(()),
            Err(StoreError::Busy(id)) => Err(Failure::Busy {
                name: name.to_string(),
                id,
            }),
            Err(error) => Err(Failure::Store {
                name: name.to_string(),
                error,
            }),
        }
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
            // A client's own `@id` (a field) is kept as sent.
            if row.get("@id").is_none() {
                row["@id"] = json!(e.id.to_string());
            }
            row
        })
        .collect()
}
