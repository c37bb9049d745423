//! Live queries on the server. Per repository, a tap reads the bus topic as events are
//! appended, decodes each event once and feeds the views. A view is one running live query,
//! shared by every websocket client that asks for the same query, window and interval (a
//! materialized view: computed once, whatever the number of clients).
//!
//! A view starts complete: it joins the tap first (the tap's batches then only say how far it
//! has read), seeds its window from the store, then reads the bus itself from the store's cut
//! until it has caught up with the tap, the last stretch with the tap held — each event once
//! (see [`eddy_store::Cut`]). On a shared bus (Kafka), where this node's store holds only the
//! partitions it digests, the window's past is read from the bus instead (see `crate::seed`);
//! a stretch of the window the bus's retention already removed is named in every answer's
//! warnings while it is inside the window.
//!
//! Nothing here waits for a client: updates go out through `watch` (the latest answer, so a
//! slow client skips intermediate ones) and `broadcast` channels (pushed events; a client
//! that falls behind starts again from a fresh snapshot).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use eddy_event::{codec, Event};
use eddy_log::now_ns;
use eddy_log::StoredRecord;
use eddy_query::engine;
use eddy_query::{Added, Answer, Live, Prepared, Window};
use eddy_store::{digest, Cut};
use serde_json::json;
use tokio::sync::{broadcast, watch};

use crate::metrics::StreamMetrics;
use crate::seed::{self, Gap, Replayer};
use crate::ReadHandle;
use eddy_base::sync::{lock, read, write};

/// Frames a slow client may fall behind by before it is resynchronised.
const EVENT_BACKLOG: usize = 256;
/// A seed's catch-up with the bus ends (under the view's lock) once this few records remain.
const CATCH_UP_GAP: u64 = 10_000;
/// How long a view with no subscribers lives on (a client reconnecting finds it warm).
const IDLE_GRACE: Duration = Duration::from_secs(5);
/// How often the clock looks at the views.
const TICK: Duration = Duration::from_millis(20);

/// What a websocket client is sent: a JSON text, made once for all of them.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The JSON text.
    pub text: Arc<str>,
    /// The ingest time (ns) of the oldest event it carries or reflects, if any.
    pub oldest_ingest: Option<i64>,
    /// Whether the query stopped with it (nothing follows).
    pub last: bool,
}

impl Frame {
    /// A frame of `value` that carries or reflects events ingested from `oldest_ingest` on.
    pub fn of(value: serde_json::Value, oldest_ingest: Option<i64>) -> Frame {
        Frame {
            text: value.to_string().into(),
            oldest_ingest,
            last: false,
        }
    }
}

/// What identifies a view: two clients asking the same share one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ViewKey {
    /// The repository.
    pub repository: String,
    /// The query text (trimmed).
    pub query: String,
    /// The window, seconds.
    pub window: u64,
    /// The interval between aggregate updates, ms.
    pub interval: u64,
    /// Rows kept at most.
    pub limit: usize,
}

/// One event as the tap read it.
struct Tapped {
    offset: u64,
    key: Option<bytes::Bytes>,
    event: Event,
}

impl Tapped {
    /// The bus record as an event, if it is one.
    fn of(r: StoredRecord) -> Option<Tapped> {
        Some(Tapped {
            event: codec::decode(&r.value).ok()?,
            offset: r.offset,
            key: r.key,
        })
    }

    fn source(&self) -> &str {
        digest::source_of(self.key.as_deref())
    }
}

/// A poll's worth of one partition's events.
struct TapBatch {
    partition: u32,
    events: Vec<Tapped>,
    /// The offset after the batch.
    next: u64,
}

enum Phase {
    /// Seeding: per partition, the offset up to which the tap has offered batches (which the
    /// seed reads from the bus itself).
    Seeding(Vec<u64>),
    /// Fed by the tap; the cut says which events the seed already held.
    Running(Cut),
    /// Stopped (subscribers were told why).
    Stopped,
}

struct ViewState {
    live: Option<Live>,
    phase: Phase,
    next_due: Instant,
    /// The last answer sent (rows and columns), to send only changes.
    last_sent: Option<String>,
    /// The ingest time of the oldest event added since the last update.
    oldest_unsent: Option<i64>,
    /// Stretches of the window the bus no longer held when it was seeded.
    gaps: Vec<Gap>,
}

/// A running live query and its subscribers' channels.
pub struct View {
    /// What it answers.
    pub key: ViewKey,
    events_kind: bool,
    interval: Duration,
    state: Mutex<ViewState>,
    /// The latest answer (aggregates), the seed's (events), or the reason it stopped.
    latest: watch::Sender<Option<Frame>>,
    /// Events pushed as they match.
    pushed: broadcast::Sender<Frame>,
    subscribers: AtomicUsize,
    idle_since: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "View({:?})", self.key)
    }
}

fn window_json(live: &Live, now: i64) -> serde_json::Value {
    let (start, end) = live.window().bounds(now);
    json!({ "start": start, "end": end })
}

/// The answer as sent, with a warning for each gap still inside the window.
fn answer_json(
    kind: &str,
    answer: &Answer,
    live: &Live,
    now: i64,
    gaps: &[Gap],
) -> serde_json::Value {
    let start = live.window().bounds(now).0;
    let warnings: Vec<&String> = gaps
        .iter()
        .filter(|g| start < g.until)
        .map(|g| &g.message)
        .chain(&answer.warnings)
        .collect();
    json!({
        "type": kind,
        "window": window_json(live, now),
        "columns": answer.columns,
        "rows": answer.rows,
        "events": answer.events,
        "warnings": warnings,
    })
}

impl View {
    /// Whether its answer is a list of events, pushed as they come.
    pub fn is_events(&self) -> bool {
        self.events_kind
    }

    /// Feeds a batch from the tap.
    fn feed(&self, batch: &Arc<TapBatch>) {
        let mut state = lock(&self.state);
        let now = now_ns();
        let state = &mut *state;
        let (Phase::Running(cut), Some(live)) = (&state.phase, state.live.as_mut()) else {
            if let Phase::Seeding(offered) = &mut state.phase {
                if let Some(o) = offered.get_mut(batch.partition as usize) {
                    *o = (*o).max(batch.next);
                }
            }
            return;
        };
        let mut pushed = Vec::new();
        let mut oldest = state.oldest_unsent;
        for t in &batch.events {
            if cut.holds(batch.partition, t.offset, t.source()) {
                continue;
            }
            match live.add(&t.event, now) {
                Added::Late | Added::Dropped => continue,
                Added::Pushed(e) => pushed.push(e),
                Added::Kept => {}
            }
            let ingest = t.event.ingest_timestamp;
            oldest = Some(oldest.map_or(ingest, |o: i64| o.min(ingest)));
        }
        if self.events_kind {
            if !pushed.is_empty() {
                let oldest = pushed.iter().map(|e| e.ingest_timestamp).min();
                let columns = engine::event_columns(&pushed);
                let rows: Vec<_> = pushed
                    .iter()
                    .map(|e| engine::row_values(e, &columns))
                    .collect();
                let frame = json!({ "type": "events", "columns": columns, "rows": rows });
                // No subscriber is not an error: one may come.
                let _ = self.pushed.send(Frame::of(frame, oldest));
            }
        } else {
            state.oldest_unsent = oldest;
        }
    }

    /// Slides the window and, when due and changed, publishes the answer; stops the query
    /// past its memory bound. Returns `false` once stopped.
    fn tick(&self, now: i64, metrics: &StreamMetrics) -> bool {
        let mut state = lock(&self.state);
        if Instant::now() < state.next_due {
            return !matches!(state.phase, Phase::Stopped);
        }
        state.next_due = Instant::now() + self.interval;
        let state = &mut *state;
        let (Phase::Running(_), Some(live)) = (&state.phase, state.live.as_mut()) else {
            return !matches!(state.phase, Phase::Stopped);
        };
        if let Err(e) = live.advance(now) {
            metrics.live_stopped.inc();
            self.stop(state, &e.to_string());
            return false;
        }
        if self.events_kind || !live.take_changed() {
            return true;
        }
        let answer = live.answer(now);
        let rows = json!([answer.columns, answer.rows]).to_string();
        if state.last_sent.as_deref() == Some(rows.as_str()) {
            return true;
        }
        state.last_sent = Some(rows);
        let frame = answer_json("update", &answer, live, now, &state.gaps);
        self.latest
            .send_replace(Some(Frame::of(frame, state.oldest_unsent.take())));
        true
    }

    /// Stops the query, telling its subscribers why.
    fn stop(&self, state: &mut ViewState, reason: &str) {
        tracing::warn!(query = %self.key.query, repository = %self.key.repository, "live query {reason}");
        let frame = Frame {
            last: true,
            ..Frame::of(json!({ "type": "stopped", "reason": reason }), None)
        };
        let _ = self.pushed.send(frame.clone());
        self.latest.send_replace(Some(frame));
        state.phase = Phase::Stopped;
        state.live = None;
    }

    /// A new subscriber: the snapshot to send first (or `None` while the view is still
    /// seeding: the first value of `latest` is it), and the channels that follow it.
    pub fn subscribe(self: &Arc<Self>, metrics: &Arc<StreamMetrics>) -> Subscription {
        let state = lock(&self.state);
        // Taken under the lock that feeding holds: no event falls between the two.
        let pushed = self.pushed.subscribe();
        let first = match (&state.phase, &state.live) {
            (Phase::Running(_), Some(live)) if self.events_kind => {
                let now = now_ns();
                let answer = live.answer(now);
                Some(Frame::of(
                    answer_json("snapshot", &answer, live, now, &state.gaps),
                    None,
                ))
            }
            _ => None,
        };
        drop(state);
        self.subscribers.fetch_add(1, Ordering::Relaxed);
        metrics.live_subscribers.inc();
        Subscription {
            view: self.clone(),
            first,
            latest: self.latest.subscribe(),
            pushed,
            metrics: metrics.clone(),
        }
    }
}

/// A client's hold on a view; dropping it lets the view go once nobody holds it.
pub struct Subscription {
    /// The view.
    pub view: Arc<View>,
    /// The snapshot to send first, if the view had one ready.
    pub first: Option<Frame>,
    /// The latest answer or stop.
    pub latest: watch::Receiver<Option<Frame>>,
    /// Pushed events.
    pub pushed: broadcast::Receiver<Frame>,
    metrics: Arc<StreamMetrics>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.metrics.live_subscribers.dec();
        if self.view.subscribers.fetch_sub(1, Ordering::Relaxed) == 1 {
            *lock(&self.view.idle_since) = Some(Instant::now());
        }
    }
}

/// A repository's tap: one thread per partition reading the topic from its end.
struct Tap {
    views: RwLock<Vec<Arc<View>>>,
    /// Per partition, the offset of the next record the tap will feed.
    positions: Vec<AtomicU64>,
    stop: Arc<AtomicBool>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Tap {
    fn start(repo: &Arc<ReadHandle>, stop: Arc<AtomicBool>) -> Result<Arc<Tap>, eddy_log::Error> {
        let ends = repo.end_offsets()?;
        let tap = Arc::new(Tap {
            views: RwLock::new(Vec::new()),
            positions: ends.iter().map(|&end| AtomicU64::new(end)).collect(),
            stop,
            threads: Mutex::new(Vec::new()),
        });
        for p in 0..ends.len() as u32 {
            let (tap2, repo) = (tap.clone(), repo.clone());
            match std::thread::Builder::new()
                .name(format!("tap-{}-{p}", repo.name))
                .spawn(move || tap2.run(&repo, p))
            {
                Ok(t) => lock(&tap.threads).push(t),
                Err(e) => tracing::error!("cannot start a live tap thread: {e}"),
            }
        }
        Ok(tap)
    }

    fn run(&self, repo: &ReadHandle, partition: u32) {
        let from = self.positions[partition as usize].load(Ordering::Relaxed);
        let mut reader = match repo
            .bus
            .reader_skipping_damage(&repo.topic, partition, from)
        {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(repository = %repo.name, partition, "the live tap cannot read: {e}");
                return;
            }
        };
        while !self.stop.load(Ordering::Relaxed) {
            let records = match reader.poll(Duration::from_millis(100)) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(repository = %repo.name, partition, "the live tap failed to read, retrying: {e}");
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            };
            let views = read(&self.views);
            if !views.is_empty() && !records.is_empty() {
                let events = records.into_iter().filter_map(Tapped::of).collect();
                let batch = Arc::new(TapBatch {
                    partition,
                    events,
                    next: reader.position(),
                });
                for v in views.iter() {
                    v.feed(&batch);
                }
            }
            // Under the views' lock: a view joining sees exactly the batches from here on.
            self.positions[partition as usize].store(reader.position(), Ordering::Relaxed);
        }
    }

    /// Adds a seeding `view`: it is told, under the lock the tap feeds under, the offsets from
    /// which the tap offers it batches.
    fn join(&self, view: Arc<View>) {
        let mut views = write(&self.views);
        let from = self
            .positions
            .iter()
            .map(|p| p.load(Ordering::Relaxed))
            .collect();
        lock(&view.state).phase = Phase::Seeding(from);
        views.push(view);
    }

    fn leave(&self, view: &Arc<View>) {
        write(&self.views).retain(|v| !Arc::ptr_eq(v, view));
    }
}

/// A running view and the tap that feeds it.
type Running = (Arc<View>, Arc<Tap>);

/// Every live query and websocket channel of a server.
pub struct Hub {
    metrics: Arc<StreamMetrics>,
    taps: Mutex<HashMap<String, Arc<Tap>>>,
    views: Mutex<HashMap<ViewKey, Running>>,
    channels: Mutex<HashMap<String, broadcast::Sender<Frame>>>,
    stop: Arc<AtomicBool>,
    clock: Mutex<Option<JoinHandle<()>>>,
    memory_limit: usize,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hub({} views)", lock(&self.views).len())
    }
}

impl Hub {
    /// A hub whose live queries hold at most `memory_limit` bytes each; its clock starts.
    pub fn start(metrics: Arc<StreamMetrics>, memory_limit: usize) -> Arc<Hub> {
        let hub = Arc::new(Hub {
            metrics,
            taps: Mutex::new(HashMap::new()),
            views: Mutex::new(HashMap::new()),
            channels: Mutex::new(HashMap::new()),
            stop: Arc::new(AtomicBool::new(false)),
            clock: Mutex::new(None),
            memory_limit,
        });
        let weak = Arc::downgrade(&hub);
        let stop = hub.stop.clone();
        let clock = std::thread::Builder::new()
            .name("live-clock".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    match weak.upgrade() {
                        Some(hub) => hub.tick(),
                        None => return,
                    }
                }
            });
        match clock {
            Ok(t) => *lock(&hub.clock) = Some(t),
            Err(e) => tracing::error!("cannot start the live clock: {e}"),
        }
        hub
    }

    /// Slides every view; drops those stopped or long without subscribers.
    fn tick(&self) {
        let now = now_ns();
        let views: Vec<_> = lock(&self.views)
            .iter()
            .map(|(k, (v, t))| (k.clone(), v.clone(), t.clone()))
            .collect();
        for (key, view, tap) in views {
            let running = view.tick(now, &self.metrics);
            let idle = view.subscribers.load(Ordering::Relaxed) == 0
                && lock(&view.idle_since).is_some_and(|t| t.elapsed() >= IDLE_GRACE);
            if !running || idle {
                let mut views = lock(&self.views);
                // It may have been taken again meanwhile.
                if idle && view.subscribers.load(Ordering::Relaxed) > 0 {
                    continue;
                }
                views.remove(&key);
                tap.leave(&view);
                self.metrics.live_views.dec();
            }
        }
    }

    /// The view answering `key` over `repo`: the running one, or a new one (seeded on its own
    /// thread).
    pub fn view(
        &self,
        repo: &Arc<ReadHandle>,
        key: ViewKey,
        prepared: Prepared,
        window: Window,
    ) -> Arc<View> {
        let mut views = lock(&self.views);
        if let Some((view, _)) = views.get(&key) {
            *lock(&view.idle_since) = None;
            return view.clone();
        }
        let tap = self.tap(repo);
        let live = Live::new(prepared, window, self.memory_limit);
        let view = Arc::new(View {
            events_kind: live.is_events(),
            interval: Duration::from_millis(key.interval),
            key: key.clone(),
            state: Mutex::new(ViewState {
                live: None,
                phase: Phase::Seeding(Vec::new()),
                next_due: Instant::now(),
                last_sent: None,
                oldest_unsent: None,
                gaps: Vec::new(),
            }),
            latest: watch::channel(None).0,
            pushed: broadcast::channel(EVENT_BACKLOG).0,
            subscribers: AtomicUsize::new(0),
            idle_since: Mutex::new(Some(Instant::now())),
        });
        let tap = match tap {
            Ok(tap) => tap,
            Err(e) => {
                // Never registered: its subscribers hear why and it goes with them.
                view.stop(
                    &mut lock(&view.state),
                    &format!("the bus cannot be read: {e}"),
                );
                return view;
            }
        };
        tap.join(view.clone());
        views.insert(key, (view.clone(), tap));
        self.metrics.live_views.inc();
        let (seeding, repo) = (view.clone(), repo.clone());
        let spawned = std::thread::Builder::new()
            .name("live-seed".into())
            .spawn(move || seed(&seeding, &repo, live));
        if let Err(e) = spawned {
            view.stop(
                &mut lock(&view.state),
                &format!("cannot start seeding: {e}"),
            );
        }
        view
    }

    /// The tap of `repo`, started on first use.
    fn tap(&self, repo: &Arc<ReadHandle>) -> Result<Arc<Tap>, eddy_log::Error> {
        let mut taps = lock(&self.taps);
        if let Some(tap) = taps.get(&repo.name) {
            return Ok(tap.clone());
        }
        let tap = Tap::start(repo, self.stop.clone())?;
        taps.insert(repo.name.clone(), tap.clone());
        Ok(tap)
    }

    /// The websocket channel `name` (a pipeline's sink), made on first use.
    pub fn channel(&self, name: &str) -> broadcast::Sender<Frame> {
        lock(&self.channels)
            .entry(name.to_string())
            .or_insert_with(|| broadcast::channel(EVENT_BACKLOG).0)
            .clone()
    }

    /// The metrics it reports to.
    pub fn metrics(&self) -> &Arc<StreamMetrics> {
        &self.metrics
    }

    /// Stops the taps and the clock.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let taps: Vec<_> = lock(&self.taps).drain().map(|(_, t)| t).collect();
        for tap in taps {
            for t in lock(&tap.threads).drain(..) {
                let _ = t.join();
            }
        }
        if let Some(t) = lock(&self.clock).take() {
            let _ = t.join();
        }
    }
}

/// Seeds `live` (from the store, or from the bus on a shared bus), then reads the bus from
/// where the seed left off until it has caught up with what the tap offered the view; the last
/// stretch is read holding the view's lock (the tap waits), and the view starts running.
fn seed(view: &View, repo: &ReadHandle, mut live: Live) {
    let start = match seed::start(repo, &mut live, now_ns()) {
        Ok(start) => start,
        Err(e) => {
            view.stop(
                &mut lock(&view.state),
                &format!("cannot seed its window from the bus: {e}"),
            );
            return;
        }
    };
    for w in &start.warnings {
        tracing::warn!(repository = %repo.name, "live query seed: {w}");
    }
    let offered = |view: &View| match &lock(&view.state).phase {
        Phase::Seeding(offered) => Some(offered.clone()),
        _ => None,
    };
    let mut replayer = Replayer::new(repo);
    let mut read = start.read.clone();
    for _ in 0..100 {
        let Some(upto) = offered(view) else { return };
        let gap: u64 = upto
            .iter()
            .zip(&read)
            .map(|(u, r)| u.saturating_sub(*r))
            .sum();
        if gap <= CATCH_UP_GAP {
            break;
        }
        catch_up(&mut replayer, &start, &mut read, &upto, &mut live);
    }
    let mut state = lock(&view.state);
    let Phase::Seeding(upto) = &state.phase else {
        return;
    };
    let upto = upto.clone();
    catch_up(&mut replayer, &start, &mut read, &upto, &mut live);
    let now = now_ns();
    let answer = live.answer(now);
    let kind = if view.events_kind {
        "snapshot"
    } else {
        "update"
    };
    let frame = Frame::of(answer_json(kind, &answer, &live, now, &start.gaps), None);
    if !view.events_kind {
        state.last_sent = Some(json!([answer.columns, answer.rows]).to_string());
        live.take_changed();
    }
    view.latest.send_replace(Some(frame));
    state.live = Some(live);
    state.gaps = start.gaps;
    state.phase = Phase::Running(start.cut);
}

/// Reads each partition's records from `read` up to `upto` into `live`: those the seed lacks
/// and whose time was inside the window when it was seeded.
fn catch_up(
    replayer: &mut Replayer<'_>,
    start: &seed::Start,
    read: &mut [u64],
    upto: &[u64],
    live: &mut Live,
) {
    for (p, (from, &to)) in read.iter_mut().zip(upto).enumerate() {
        if *from >= to {
            continue;
        }
        let p = p as u32;
        let now = now_ns();
        let replayed = replayer.replay(p, *from, to, |r| {
            if r.timestamp < start.window_start
                || start
                    .cut
                    .holds(p, r.offset, digest::source_of(r.key.as_deref()))
            {
                return;
            }
            if let Some(t) = Tapped::of(r) {
                live.add(&t.event, now);
            }
        });
        if let Err(e) = replayed {
            tracing::warn!(repository = %replayer.repository().name, partition = p, "live query seed: the bus could not be read: {e}");
        }
        *from = to;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_gap_is_warned_about_while_it_is_inside_the_window_and_no_longer() {
        let minute = 60_000_000_000;
        let prepared = eddy_query::prepare("count()", 100).unwrap();
        let window = Window::new(Duration::from_secs(15 * 60)).unwrap();
        let live = Live::new(prepared, window, 1 << 20);
        let now = now_ns();
        let gaps = [Gap {
            message: "incomplete window: partition 3".into(),
            until: now - 10 * minute,
        }];
        let warnings = |at: i64| {
            let answer = live.answer(at);
            answer_json("update", &answer, &live, at, &gaps)["warnings"].clone()
        };
        assert_eq!(warnings(now), json!(["incomplete window: partition 3"]));
        // Six minutes on, the window starts after the gap's end.
        assert_eq!(warnings(now + 6 * minute), json!([]));
    }
}
