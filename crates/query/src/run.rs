//! Running a query over a repository's store: plan (prune segments and blocks by time, tags and
//! tokens before anything is decompressed), read the surviving blocks on several threads, each
//! filling its own collecting state, merge the states, then run the rest of the query.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use eddy_base::sync::lock;
use eddy_event::{Event, Value};
use eddy_store::{
    BlockTask, BlockView, Deferred, Needs, Parts, ReadBuffers, RepoStore, Scan, ScanStats,
    SegmentError,
};
use serde::Serialize;

use crate::blockwise::BlockFilter;
use crate::columnar;
use crate::compile;
use crate::engine::{self, Program, State};
use crate::filter::{self, Compiled, Requirements};
use crate::partial::Partial;
use crate::syntax::{self, Query, QueryError, Stage};

/// Where and how to run a query.
#[derive(Debug, Clone)]
pub struct Options {
    /// Earliest `@timestamp`, ns, inclusive.
    pub start: i64,
    /// Latest `@timestamp`, ns, exclusive.
    pub end: i64,
    /// Events (or rows, where the query does not say) returned at most.
    pub limit: usize,
    /// Threads reading blocks.
    pub threads: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            start: i64::MIN,
            end: i64::MAX,
            limit: engine::DEFAULT_LIMIT,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

/// Progress of a running query (also its final statistics).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// Blocks read so far.
    pub blocks_done: u64,
    /// Blocks to read in all.
    pub blocks_total: u64,
    /// Of the blocks read, those the ranges of their field columns ruled out: only their
    /// core was decompressed (`status=404` over blocks whose statuses are all 200).
    pub blocks_ruled_out: u64,
    /// Events read from blocks (in the time range and tags).
    pub events_scanned: u64,
    /// Compressed bytes read so far.
    pub bytes_read: u64,
    /// What planning pruned.
    pub plan: ScanStats,
}

/// A query's answer.
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    /// Column names in display order.
    pub columns: Vec<String>,
    /// The rows (events have `@timestamp`, `@rawstring`, `#tags` and their fields).
    pub rows: Vec<std::collections::BTreeMap<String, Value>>,
    /// Whether the rows are events (no aggregate in the query).
    pub events: bool,
    /// Problems that did not stop the query (a damaged block, a limit reached).
    pub warnings: Vec<String>,
    /// What was read and skipped.
    pub progress: Progress,
    /// Whether it was cancelled before reading everything.
    pub cancelled: bool,
}

/// A parsed and compiled query, with what it lets the planner prune.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The compiled program.
    pub program: Program,
    /// What every event it keeps must hold.
    pub requirements: Requirements,
    /// How it reads stored blocks.
    blocks: BlockPlan,
}

/// How a query reads a stored block: its leading conditions on text decided for the whole
/// block, then events built with only the parts the rest reads (none at all for a count).
#[derive(Debug, Clone)]
struct BlockPlan {
    text: Option<Compiled>,
    program: Program,
    parts: Parts,
    counts_only: bool,
    /// What of a block with field columns to decompress.
    needs: Needs,
}

impl BlockPlan {
    fn of(program: &Program) -> BlockPlan {
        let (text, program) = program.split_text_filter();
        let parts = program.parts();
        let (bounds, texts) = columnar::bounds(&program);
        BlockPlan {
            // Times and arrivals are loaded per block, when the path it takes needs them.
            needs: Needs {
                text: parts.raw || text.is_some(),
                fields: match parts.fields {
                    true => program.fields_read(),
                    false => Some(Vec::new()),
                },
                times: false,
                arrivals: false,
                bounds,
                texts,
            },
            parts,
            counts_only: program.steps.is_empty() && program.collect.counts_only(),
            text,
            program,
        }
    }

    /// Feeds the block's events that the scan keeps into `state`; returns how many the scan
    /// kept (before the query's own filters). The block's times and arrivals are decompressed
    /// only where the path it takes reads them.
    fn feed(
        &self,
        task: &BlockTask,
        buffers: &ReadBuffers,
        view: &mut BlockView,
        text_filter: &mut BlockFilter,
        state: &mut State,
    ) -> Result<u64, SegmentError> {
        // A block its bounds ruled out only counts what the scan kept: no event can pass.
        let ruled_out = view.ruled_out();
        let columnar = !ruled_out && !self.counts_only && columnar::applies(&self.program, view);
        // A text filter falls back to whole events for events without a text.
        let events = !ruled_out
            && (!self.counts_only && !columnar
                || self.text.is_some() && !view.every_event_has_text());
        if events {
            task.load(buffers, view, Deferred::Arrivals)?;
        }
        if events || !task.within_range() || columnar && columnar::reads_times(&self.program) {
            task.load(buffers, view, Deferred::Times)?;
        }
        let view = &*view;
        let mut keep = view.kept_by(task.scan());
        let scanned = keep.iter().filter(|&&k| k).count() as u64;
        if ruled_out {
            return Ok(scanned);
        }
        if let Some(text) = self.text.as_ref().filter(|_| scanned > 0) {
            let passed = text_filter.decide(view, text);
            // A regex decompresses the columns it touches as it goes.
            task.check_columns(view, false)?;
            keep.iter_mut().zip(passed).for_each(|(k, p)| *k &= p);
        }
        if self.counts_only {
            let n = keep.iter().filter(|&&k| k).count();
            self.program.collect.add_count(state, n as u64);
        } else if columnar {
            columnar::feed(&self.program, view, &mut keep, state);
        } else {
            task.check_columns(view, true)?;
            for (i, _) in keep.iter().enumerate().filter(|(_, &k)| k) {
                self.program.feed(state, view.event(i, self.parts));
            }
        }
        Ok(scanned)
    }
}

/// Parses and compiles `text`.
pub fn prepare(text: &str, limit: usize) -> Result<Prepared, QueryError> {
    let query = syntax::parse(text)?;
    let program = compile::compile(&query, limit)?;
    Ok(Prepared {
        blocks: BlockPlan::of(&program),
        program,
        requirements: requirements(&query),
    })
}

/// What the leading filters require (stages that change fields end what can be known).
fn requirements(q: &Query) -> Requirements {
    Requirements::all(q.stages.iter().map_while(|s| match s {
        Stage::Filter(f) => Some(filter::requirements(f)),
        _ => None,
    }))
}

/// Runs a prepared query over `events` (no store: for the rest of a query after its
/// collecting stage, for live data, and as the reference in tests).
pub fn run_events(
    p: &Program,
    events: impl IntoIterator<Item = Event>,
) -> (Vec<Event>, Vec<String>, Vec<String>) {
    let mut state = p.collect.state();
    for e in events {
        p.feed(&mut state, e);
    }
    finish(p, state)
}

/// Rows, columns and warnings of a filled state, the rest of the query applied.
fn finish(p: &Program, state: State) -> (Vec<Event>, Vec<String>, Vec<String>) {
    let (rows, columns, warning) = p.collect.finish(state);
    let mut warnings: Vec<String> = warning.into_iter().collect();
    match &p.then {
        None => (rows, columns, warnings),
        Some(next) => {
            let (rows, next_columns, more) = run_events(next, rows);
            warnings.extend(more);
            let columns = if next_columns.is_empty() {
                next.steps.iter().fold(columns, engine::Step::columns_after)
            } else {
                next_columns
            };
            (rows, columns, warnings)
        }
    }
}

/// Runs `prepared` over `store`. `cancel` stops it between blocks; `on_progress` is called
/// after each block from the reading threads.
pub fn run(
    store: &RepoStore,
    prepared: &Prepared,
    options: &Options,
    cancel: &AtomicBool,
    on_progress: &(dyn Fn(&Progress) + Sync),
) -> Answer {
    run_with_partials(store, prepared, options, cancel, on_progress, None)
}

/// How often a running query reports its answer so far, and to whom.
pub struct Partials<'a> {
    /// The time between two partial answers.
    pub every: std::time::Duration,
    /// Called with each partial answer, from the thread that called the run.
    pub send: &'a (dyn Fn(Answer) + Sync),
}

/// [`run`], also reporting the answer so far at the interval `partials` asks for: the reading
/// threads' states are cloned (each between two of its blocks) and merged, as at the end.
pub fn run_with_partials(
    store: &RepoStore,
    prepared: &Prepared,
    options: &Options,
    cancel: &AtomicBool,
    on_progress: &(dyn Fn(&Progress) + Sync),
    partials: Option<Partials<'_>>,
) -> Answer {
    collect(store, prepared, options, cancel, on_progress, partials).into_answer(&prepared.program)
}

/// Runs `prepared` over `store` up to its collecting stage: the merged state of the reading
/// threads, not finished, for a query node to merge with other nodes' ([`Partial`]).
pub fn run_partial(
    store: &RepoStore,
    prepared: &Prepared,
    options: &Options,
    cancel: &AtomicBool,
    on_progress: &(dyn Fn(&Progress) + Sync),
) -> Partial {
    let mut partial = collect(store, prepared, options, cancel, on_progress, None);
    prepared.program.collect.trim(&mut partial.state);
    partial
}

/// Reads the blocks `store` plans for `prepared` on several threads and merges their states.
fn collect(
    store: &RepoStore,
    prepared: &Prepared,
    options: &Options,
    cancel: &AtomicBool,
    on_progress: &(dyn Fn(&Progress) + Sync),
    partials: Option<Partials<'_>>,
) -> Partial {
    let scan = Scan {
        start: options.start,
        end: options.end,
        tags: prepared.requirements.tags.clone(),
        tokens: prepared.requirements.tokens.clone(),
    };
    let plan = store.plan(&scan);
    let total = plan.tasks.len() as u64;
    let next = AtomicUsize::new(0);
    let (done, scanned, bytes) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let ruled_out = AtomicU64::new(0);
    let warnings = Mutex::new(plan.stats.warnings.clone());
    let fields = Mutex::new(FieldsSeen::default());
    let program = &prepared.program;
    let snapshot = || Progress {
        blocks_done: done.load(Ordering::Relaxed),
        blocks_total: total,
        blocks_ruled_out: ruled_out.load(Ordering::Relaxed),
        events_scanned: scanned.load(Ordering::Relaxed),
        bytes_read: bytes.load(Ordering::Relaxed),
        plan: plan.stats.clone(),
    };
    let threads = options.threads.clamp(1, 64).min(plan.tasks.len().max(1));
    // One per reading thread, locked by it while it feeds a block (so never contended but
    // by a partial answer's snapshot).
    let states: Vec<Mutex<State>> = (0..threads)
        .map(|_| Mutex::new(program.collect.state()))
        .collect();
    let merged = |states: Vec<State>| {
        let mut states = states.into_iter();
        let mut state = states.next().unwrap_or_else(|| program.collect.state());
        for s in states {
            program.collect.merge(&mut state, s);
        }
        state
    };
    let answer_of = |state: State, cancelled: bool| {
        let warnings = lock(&warnings).clone();
        answer(program, state, warnings, snapshot(), cancelled)
    };
    std::thread::scope(|scope| {
        let (finished_tx, finished) = std::sync::mpsc::channel::<()>();
        for state in &states {
            let finished_tx = finished_tx.clone();
            let (next, done, scanned, bytes) = (&next, &done, &scanned, &bytes);
            let ruled_out = &ruled_out;
            let (plan, warnings, snapshot, fields) = (&plan, &warnings, &snapshot, &fields);
            scope.spawn(move || {
                // Kept from one block to the next.
                let mut buffers = ReadBuffers::default();
                let mut view = BlockView::with_needs(prepared.blocks.needs.clone());
                let mut text_filter = BlockFilter::default();
                let mut seen = FieldsSeen::default();
                while !cancel.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(task) = plan.tasks.get(i) else { break };
                    let fed = task.open_into(&mut buffers, &mut view).and_then(|()| {
                        seen.note(&view);
                        if view.ruled_out() {
                            ruled_out.fetch_add(1, Ordering::Relaxed);
                        }
                        let mut state = lock(state);
                        prepared.blocks.feed(
                            task,
                            &buffers,
                            &mut view,
                            &mut text_filter,
                            &mut state,
                        )
                    });
                    match fed {
                        Ok(n) => {
                            scanned.fetch_add(n, Ordering::Relaxed);
                        }
                        Err(e) => lock(warnings).push(format!("skipped a damaged block: {e}")),
                    }
                    bytes.fetch_add(task.stored_len(), Ordering::Relaxed);
                    done.fetch_add(1, Ordering::Relaxed);
                    on_progress(&snapshot());
                }
                lock(fields).merge(seen);
                let _ = finished_tx.send(());
            });
        }
        drop(finished_tx);
        let Some(partials) = partials else { return };
        let mut running = threads;
        let mut due = std::time::Instant::now() + partials.every;
        while running > 0 {
            let wait = due.saturating_duration_since(std::time::Instant::now());
            match finished.recv_timeout(wait) {
                Ok(()) => running -= 1,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    let copies = states.iter().map(|s| lock(s).clone()).collect();
                    (partials.send)(answer_of(merged(copies), false));
                    due = std::time::Instant::now() + partials.every;
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
    });
    let states = states
        .into_iter()
        .map(|s| s.into_inner().unwrap_or_else(|p| p.into_inner()));
    let seen = fields.into_inner().unwrap_or_else(|p| p.into_inner());
    if let Some(names) = prepared.blocks.program.fields_read() {
        lock(&warnings).extend(seen.missing(&names));
    }
    let warnings = lock(&warnings).clone();
    Partial {
        state: merged(states.collect()),
        warnings,
        progress: snapshot(),
        cancelled: cancel.load(Ordering::Relaxed),
    }
}

/// The fields and tags of the blocks a query read, to say when it names a field none has.
#[derive(Debug, Default)]
struct FieldsSeen {
    names: std::collections::HashSet<String>,
    /// Whether a block without field columns was read (its fields are not known up front).
    unknown: bool,
    blocks: u64,
}

impl FieldsSeen {
    fn note(&mut self, view: &BlockView) {
        self.blocks += 1;
        if !view.has_columns() {
            self.unknown = true;
            return;
        }
        let tags = view.tag_names();
        for name in view
            .column_names()
            .iter()
            .map(|(n, _)| n.as_str())
            .chain(tags)
        {
            if !self.names.contains(name) {
                self.names.insert(name.to_string());
            }
        }
    }

    fn merge(&mut self, other: FieldsSeen) {
        self.names.extend(other.names);
        self.unknown |= other.unknown;
        self.blocks += other.blocks;
    }

    /// A warning for each of `named` that no block read has, with the nearest names that do.
    fn missing(&self, named: &[String]) -> Vec<String> {
        if self.unknown || self.blocks == 0 {
            return Vec::new();
        }
        named
            .iter()
            .filter(|n| !n.starts_with('@') && !self.names.contains(n.trim_start_matches('#')))
            .map(|n| {
                let mut near: Vec<(f64, &String)> = self
                    .names
                    .iter()
                    .map(|h| (strsim::jaro_winkler(&n.to_lowercase(), &h.to_lowercase()), h))
                    .collect();
                near.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
                let near: Vec<&str> = near.iter().take(5).map(|(_, h)| h.as_str()).collect();
                match near.is_empty() {
                    true => format!("no event in the range has a field named {n:?}"),
                    false => format!(
                        "no event in the range has a field named {n:?}; the nearest fields that exist: {}",
                        near.join(", ")
                    ),
                }
            })
            .collect()
    }
}

/// The answer of a state filled by feeding events to `program` (a rollup window's).
pub fn answer_of(program: &Program, state: State) -> Answer {
    answer(program, state, Vec::new(), Progress::default(), false)
}

/// The answer of a filled state: the rest of the query applied, rows as their columns.
pub(crate) fn answer(
    program: &Program,
    state: State,
    mut warnings: Vec<String>,
    progress: Progress,
    cancelled: bool,
) -> Answer {
    let (rows, mut columns, more) = finish(program, state);
    warnings.extend(more);
    // Without a collecting stage written, nothing follows and the rows are events.
    let events = !program.explicit;
    if events || columns.is_empty() {
        // A select() among the steps decides the columns, as it decided the fields.
        columns = program
            .steps
            .iter()
            .fold(engine::event_columns(&rows), engine::Step::columns_after);
    }
    Answer {
        rows: rows
            .iter()
            .map(|r| engine::row_values(r, &columns))
            .collect(),
        columns,
        events,
        warnings,
        progress,
        cancelled,
    }
}
