//! `eddy alert test`: a rule evaluated over a past range, as if it had run live then. The
//! range's events (and a window before it) are read from the store once, in time order, into
//! the same live window the running rule keeps, and the clock steps by the rule's `every`; each
//! step goes through the running rule's own evaluation, so the notices are those the rule would
//! have made (without silences, inhibition or throttling, which depend on the moment).

use eddy_query::Live;
use eddy_store::{BlockView, ReadBuffers, RepoStore, Scan};

use super::{evaluate, AlertConfig, Failure, Kept, Notice, Samples};

/// Events read at most: the range's events are held in memory to be put in time order.
pub const MAX_EVENTS: usize = 5_000_000;

/// What a rule would have done over a range.
#[derive(Debug, Clone, Default)]
pub struct Replayed {
    /// The evaluations made.
    pub evaluations: u64,
    /// The events read (the range and the window before it).
    pub events: u64,
    /// The notices it would have made, in order.
    pub notices: Vec<Notice>,
    /// Blocks that could not be read.
    pub warnings: Vec<String>,
}

/// Evaluates rule `name` over `[start, end)` (ns) of `store`, every `every` from `start`.
pub fn replay(
    name: &str,
    config: &AlertConfig,
    store: &RepoStore,
    start: i64,
    end: i64,
) -> Result<Replayed, Failure> {
    let plan = config.plan(name).map_err(Failure::Invalid)?;
    let scan = Scan {
        start: start.saturating_sub(plan.window.span()),
        end,
        tags: plan.prepared.requirements.tags.clone(),
        tokens: plan.prepared.requirements.tokens.clone(),
    };
    let planned = store.plan(&scan);
    let mut out = Replayed {
        warnings: planned.stats.warnings.clone(),
        ..Replayed::default()
    };
    let parts = plan.prepared.program.parts();
    let (mut buffers, mut view) = (ReadBuffers::default(), BlockView::default());
    let mut events = Vec::new();
    for task in &planned.tasks {
        if let Err(e) = task.open_into(&mut buffers, &mut view) {
            out.warnings.push(format!("skipped a damaged block: {e}"));
            continue;
        }
        let keep = view.kept_by(task.scan());
        for (i, _) in keep.iter().enumerate().filter(|(_, &k)| k) {
            events.push(view.event(i, parts));
        }
        if events.len() > MAX_EVENTS {
            return Err(Failure::Invalid(vec![format!(
                "alert {name:?}: the range holds more than {MAX_EVENTS} events; test a shorter range"
            )]));
        }
    }
    events.sort_by_key(|e| (e.timestamp, e.id));
    out.events = events.len() as u64;
    let mut live = Live::new(
        plan.prepared.clone(),
        plan.window,
        eddy_query::live::DEFAULT_MEMORY_LIMIT,
    );
    let step = i64::try_from(plan.every.as_nanos())
        .unwrap_or(i64::MAX)
        .max(1);
    let (mut kept, mut samples) = (Kept::default(), Samples::default());
    let mut next = 0;
    let mut now = start;
    while now < end {
        while let Some(e) = events.get(next).filter(|e| e.timestamp <= now) {
            if live.add(e, now) == eddy_query::Added::Kept {
                samples.offer(&plan, e);
            }
            next += 1;
        }
        live.advance(now)?;
        let answer = live.answer(now);
        out.notices
            .extend(evaluate(name, &plan, &answer, now, &mut kept, &samples));
        samples.retain(&kept);
        out.evaluations += 1;
        now = now.saturating_add(step);
    }
    Ok(out)
}
