//! Live queries: a query over a sliding time window, seeded from the store and then fed event
//! by event from the bus, whose answer equals the historic query's over the same window.
//!
//! The window is cut into slices of equal width, each with its own collecting state; sliding
//! drops whole slices, and an answer merges copies of the slices inside the window (states
//! merge across threads already, so across slices too). A window always starts and ends on a
//! slice boundary, so the historic query over `[start, end)` reads exactly the same events.
//! A late or out-of-order event goes to its own slice as long as that is still in the window.

use std::collections::BTreeMap;
use std::time::Duration;

use eddy_event::Event;
use eddy_store::{BlockView, Cut, ReadBuffers, RepoStore, Scan};

use crate::engine::State;
use crate::run::{answer, Answer, Prepared, Progress};

/// Slices a window is cut into, at least (when its span allows).
const MAX_SLICES: i64 = 60;

/// Why a live query cannot start or had to stop.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LiveError {
    /// The window asked for is not one a live query can keep.
    #[error("window {0:?}: a live window is between 1s and 31d, in whole seconds")]
    Window(Duration),
    /// The query's state grew past its memory bound.
    #[error("stopped: the live query holds about {used} bytes, over its bound of {limit} bytes; narrow the window, filter first or group by fewer values")]
    MemoryBound {
        /// Bytes held, roughly.
        used: usize,
        /// The bound.
        limit: usize,
    },
}

/// A sliding window: its width and the width of the slices it is cut into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    span: i64,
    slice: i64,
}

impl Window {
    /// A window `span` wide, cut into at most 60 slices of whole seconds.
    pub fn new(span: Duration) -> Result<Window, LiveError> {
        let secs = span.as_secs() as i64;
        if span.subsec_nanos() != 0 || !(1..=31 * 86_400).contains(&secs) {
            return Err(LiveError::Window(span));
        }
        // The widest whole-second slice that cuts the span into at least 60 (or one per
        // second).
        let slice = (1..=secs / MAX_SLICES.min(secs))
            .rev()
            .find(|d| secs % d == 0)
            .unwrap_or(1);
        Ok(Window {
            span: secs * 1_000_000_000,
            slice: slice * 1_000_000_000,
        })
    }

    /// Its width, ns.
    pub fn span(&self) -> i64 {
        self.span
    }

    /// Its slices' width, ns.
    pub fn slice(&self) -> i64 {
        self.slice
    }

    /// The window at wall-clock time `now`: `[start, end)`, ns, ending with the slice that
    /// holds `now`.
    pub fn bounds(&self, now: i64) -> (i64, i64) {
        let end = (now.div_euclid(self.slice) + 1).saturating_mul(self.slice);
        (end.saturating_sub(self.span), end)
    }
}

/// A running live query's state.
#[derive(Debug)]
pub struct Live {
    prepared: Prepared,
    window: Window,
    /// Per slice start, its state. Slices past the window's end hold events from the future.
    slices: BTreeMap<i64, State>,
    memory_limit: usize,
    /// Whether an event was added or a non-empty slice dropped since the last answer.
    changed: bool,
    /// Events too old for the window when they came.
    late: u64,
}

/// What [`Live::add`] did with an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Added {
    /// Its time had left the window.
    Late,
    /// The query's steps dropped it.
    Dropped,
    /// It is in the window's state.
    Kept,
    /// It is in the window's state and, the answer being a list of events, to be pushed as
    /// the steps left it.
    Pushed(Event),
}

impl Live {
    /// A live query running `prepared` over `window`, stopped once it holds more than
    /// `memory_limit` bytes.
    pub fn new(prepared: Prepared, window: Window, memory_limit: usize) -> Live {
        Live {
            prepared,
            window,
            slices: BTreeMap::new(),
            memory_limit,
            changed: true,
            late: 0,
        }
    }

    /// Its window.
    pub fn window(&self) -> Window {
        self.window
    }

    /// Whether its answer is a list of events (no aggregate): those are pushed one by one.
    pub fn is_events(&self) -> bool {
        !self.prepared.program.explicit
    }

    /// Events that came too late for the window.
    pub fn late(&self) -> u64 {
        self.late
    }

    /// The scan that seeds the window at `now` from the store: the window's start onwards
    /// (events from the future too, since the window will reach them).
    fn seed_scan(&self, now: i64) -> Scan {
        Scan {
            start: self.window.bounds(now).0,
            end: i64::MAX,
            tags: self.prepared.requirements.tags.clone(),
            tokens: self.prepared.requirements.tokens.clone(),
        }
    }

    /// Seeds the window at `now` from `store`; returns where reading the bus takes over, and
    /// warnings for blocks that could not be read.
    pub fn seed(&mut self, store: &RepoStore, now: i64) -> (Cut, Vec<String>) {
        let (plan, cut) = store.plan_with_cut(&self.seed_scan(now));
        let mut warnings = plan.stats.warnings.clone();
        let parts = self.prepared.program.parts();
        let (mut buffers, mut view) = (ReadBuffers::default(), BlockView::default());
        for task in &plan.tasks {
            if let Err(e) = task.open_into(&mut buffers, &mut view) {
                warnings.push(format!("skipped a damaged block: {e}"));
                continue;
            }
            let keep = view.kept_by(task.scan());
            for (i, _) in keep.iter().enumerate().filter(|(_, &k)| k) {
                self.add(&view.event(i, parts), now);
            }
        }
        (cut, warnings)
    }

    /// Adds an event that arrived at wall-clock time `now`.
    pub fn add(&mut self, e: &Event, now: i64) -> Added {
        let (start, end) = self.window.bounds(now);
        if e.timestamp < start {
            self.late += 1;
            return Added::Late;
        }
        let Some(kept) = self.prepared.program.process(e) else {
            return Added::Dropped;
        };
        let slice = e.timestamp.div_euclid(self.window.slice) * self.window.slice;
        self.changed |= e.timestamp < end;
        let added = match self.is_events() && e.timestamp < end {
            true => Added::Pushed(kept.clone()),
            false => Added::Kept,
        };
        let collect = &self.prepared.program.collect;
        let state = self.slices.entry(slice).or_insert_with(|| collect.state());
        collect.add(state, kept);
        added
    }

    /// Slides the window to `now`, dropping slices that left it; stops the query (an error)
    /// once its state is past the memory bound.
    pub fn advance(&mut self, now: i64) -> Result<(), LiveError> {
        let (start, _) = self.window.bounds(now);
        let kept = self.slices.split_off(&start);
        self.changed |= !self.slices.is_empty();
        self.slices = kept;
        let used = self.approx_bytes();
        if used > self.memory_limit {
            return Err(LiveError::MemoryBound {
                used,
                limit: self.memory_limit,
            });
        }
        Ok(())
    }

    /// Roughly the bytes its state holds.
    pub fn approx_bytes(&self) -> usize {
        self.slices.values().map(|s| 64 + s.approx_bytes()).sum()
    }

    /// Whether the answer may have changed since it was last taken (and forgets it).
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// The answer over the window at `now` (the slices inside it merged), as the historic
    /// query over the window's bounds would give it.
    pub fn answer(&self, now: i64) -> Answer {
        let (start, end) = self.window.bounds(now);
        let collect = &self.prepared.program.collect;
        let mut state = collect.state();
        for s in self.slices.range(start..end).map(|(_, s)| s) {
            collect.merge(&mut state, s.clone());
        }
        let mut warnings = Vec::new();
        if self.late > 0 {
            warnings.push(format!(
                "{} events came after their time had left the window",
                self.late
            ));
        }
        answer(
            &self.prepared.program,
            state,
            warnings,
            Progress::default(),
            false,
        )
    }
}

/// The default bound of a live query's state.
pub const DEFAULT_MEMORY_LIMIT: usize = 64 << 20;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::{prepare, run_events};
    use proptest::prelude::*;

    const SEC: i64 = 1_000_000_000;

    fn event(ts: i64, host: u8, status: u16, bytes: u32) -> Event {
        let mut e = Event::new(ts);
        e.timestamp = ts;
        // Ids in time order keep ties between equal timestamps stable in both answers.
        e.id = uuid::Uuid::from_u128(((ts as u128) << 32) | u128::from(bytes));
        e.raw = Some(format!("host=h{host} status={status} bytes={bytes}"));
        e.fields
            .insert("host".into(), eddy_event::Value::Str(format!("h{host}")));
        e.fields
            .insert("status".into(), eddy_event::Value::Int(status.into()));
        e.fields
            .insert("bytes".into(), eddy_event::Value::Int(bytes.into()));
        e
    }

    const QUERIES: &[&str] = &[
        "status>=500",
        "status>=400 | head(5)",
        "count()",
        "groupBy(host, function=[count(), sum(bytes), max(bytes)])",
        "status>=300 | timechart(span=10s, function=count())",
        "timechart(host, span=20s)",
        "groupBy(status) | sort(_count, limit=3)",
        "percentile(bytes, percentiles=[50, 99])",
        "count(host, distinct=true)",
        "eval(double=bytes*2) | groupBy(host, function=avg(double))",
        "groupBy(host, function=[last(bytes), first(status)])",
    ];

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// Events arrive out of order (and some after their time has left the window) while
        /// the clock moves on; at every step the live answer equals the historic query over
        /// the window's bounds, run on every event that has arrived.
        #[test]
        fn live_answers_equal_historic_answers(
            query in 0..QUERIES.len(),
            window_secs in prop::sample::select(vec![30u64, 60, 90, 600]),
            arrivals in prop::collection::vec(
                (0i64..240, 0u8..6, prop::sample::select(vec![200u16, 301, 404, 500, 503]), 0u32..100_000, 0i64..5),
                1..300,
            ),
        ) {
            let prepared = prepare(QUERIES[query], 100).unwrap();
            let window = Window::new(Duration::from_secs(window_secs)).unwrap();
            let mut live = Live::new(prepared.clone(), window, DEFAULT_MEMORY_LIMIT);
            let base = 1_700_000_000 * SEC;
            let mut arrived: Vec<Event> = Vec::new();
            let mut now = base;
            for (i, (age, host, status, bytes, step)) in arrivals.into_iter().enumerate() {
                // The clock moves forward by 0–4 s per event; the event is up to 240 s old.
                now += step * SEC;
                let e = event(now - age * SEC + (bytes as i64 % 1000), host, status, bytes);
                live.add(&e, now);
                arrived.push(e);
                live.advance(now).unwrap();
                if i % 17 == 0 {
                    let (start, end) = window.bounds(now);
                    let historic: Vec<Event> = arrived
                        .iter()
                        .filter(|e| (start..end).contains(&e.timestamp))
                        .cloned()
                        .collect();
                    let (rows, _, _) = run_events(&prepared.program, historic);
                    let mine = live.answer(now);
                    let expected: Vec<_> = rows
                        .iter()
                        .map(|r| crate::engine::row_values(r, &mine.columns))
                        .collect();
                    prop_assert_eq!(&mine.rows, &expected, "query {} at {}", QUERIES[query], i);
                }
            }
        }
    }

    #[test]
    fn windows_are_cut_into_whole_second_slices() {
        let w = Window::new(Duration::from_secs(900)).unwrap();
        assert_eq!(w.slice(), 15 * SEC);
        let w = Window::new(Duration::from_secs(7)).unwrap();
        assert_eq!(w.slice(), SEC);
        let w = Window::new(Duration::from_secs(61)).unwrap();
        assert_eq!(w.slice(), SEC);
        let (start, end) = w.bounds(100 * SEC + 5);
        assert_eq!((start, end), (40 * SEC, 101 * SEC));
        assert!(Window::new(Duration::from_millis(1500)).is_err());
        assert!(Window::new(Duration::from_secs(0)).is_err());
    }

    #[test]
    fn a_query_past_its_memory_bound_is_stopped_with_the_reason() {
        let prepared = prepare("groupBy(bytes)", 100_000).unwrap();
        let mut live = Live::new(
            prepared,
            Window::new(Duration::from_secs(60)).unwrap(),
            100_000,
        );
        let now = 1_700_000_000 * SEC;
        for b in 0..5_000 {
            live.add(&event(now, 1, 200, b), now);
        }
        let err = live.advance(now).unwrap_err();
        assert!(
            matches!(err, LiveError::MemoryBound { limit: 100_000, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("narrow the window"));
    }

    #[test]
    fn slices_leave_the_window_and_late_events_are_counted() {
        let prepared = prepare("count()", 100).unwrap();
        let mut live = Live::new(
            prepared,
            Window::new(Duration::from_secs(60)).unwrap(),
            DEFAULT_MEMORY_LIMIT,
        );
        let now = 1_700_000_000 * SEC;
        live.add(&event(now - 50 * SEC, 1, 200, 1), now);
        live.add(&event(now, 1, 200, 2), now);
        live.add(&event(now - 61 * SEC, 1, 200, 3), now);
        assert_eq!(live.late(), 1);
        assert!(live.take_changed());
        assert_eq!(
            live.answer(now).rows[0]["_count"],
            eddy_event::Value::Int(2)
        );
        let later = now + 20 * SEC;
        live.advance(later).unwrap();
        assert!(live.take_changed(), "a slice left the window");
        assert_eq!(
            live.answer(later).rows[0]["_count"],
            eddy_event::Value::Int(1)
        );
        assert!(!live.take_changed());
    }
}
