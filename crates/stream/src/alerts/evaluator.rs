//! The shared evaluation of alert rules: one thread per watched repository, whatever the
//! number of rules on it.
//!
//! - The **starter** thread seeds a new rule's live window (from the store, or from the bus
//!   on a shared bus: `crate::seed`) and reads the bus from where the seed left off up to
//!   where the repository's driver has got, off the evaluation path; a rule that cannot start yet (its repository does not exist, its state cannot be
//!   read, its window outgrew its memory bound) is tried again every second.
//! - A repository's **driver** thread reads each partition of the bus once, decodes each
//!   record once, and offers the event to the rules it may concern: an index by the tags a
//!   rule's query requires (`#service=checkout …`) skips the rules of other data sources
//!   without looking at them, so the work grows with events times the rules that want them,
//!   not with threads or with every rule. Each rule is evaluated at its own `every` on the
//!   same thread, in memory only: writing a rule's state and delivering its notices happen on
//!   the rule's own worker ([`super::Rule`]), so a slow disk or a hanging channel holds back
//!   no other rule.
//!
//! A threshold rule is also evaluated as soon as its query keeps a new event (at most every
//! [`EAGER_GAP`]), not only at its `every`: the alert that an event starts is told without
//! waiting for the next tick. Rules on a series of values (`change`, `anomaly`) and absence
//! keep to their `every`, which is their sampling.
//!
//! A joining rule is handed over with the bus offsets it has read up to; the driver reads the
//! rest (what arrived while it was seeded) before feeding it with the others, so each event
//! reaches each rule once.
//!
//! On a shared bus every node that has a rule keeps its window, but only the node holding the
//! rule's duty ([`crate::alerts::duty`]) evaluates it: a cause is notified once per cluster.
//! That node holds the duty only once it has taken the rule's memory over from the bus
//! ([`crate::alerts::memory`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use eddy_base::sync::lock;
use eddy_event::{codec, Event};
use eddy_log::now_ns;
use eddy_query::{Added, Live};
use eddy_store::{digest, Cut};

use super::{Failure, Rule, Samples};
use crate::seed::{self, Replayer};
use crate::ReadHandle;

/// How long a rule that could not start waits before it is tried again.
const RETRY: Duration = Duration::from_secs(1);
/// How long a driver with nothing to read waits before it looks again.
const IDLE: Duration = Duration::from_millis(10);
/// The least time between two evaluations of a rule prompted by new events.
pub(crate) const EAGER_GAP: Duration = Duration::from_millis(100);

/// A rule as its driver runs it: its window, where the seed left off, its samples.
struct Slot {
    rule: Arc<Rule>,
    live: Live,
    cut: Cut,
    /// Per partition, the bus's end once the seed was made: the cut holds no record at or
    /// past it, so the driver asks the cut only about records before it.
    cut_below: Vec<u64>,
    /// The window's start when it was seeded: the catch-up skips records before it.
    window_start: i64,
    samples: Samples,
    every: Duration,
    /// When it is due at the latest.
    next: Instant,
    /// Evaluated early when its query keeps a new event (threshold rules).
    eager: bool,
    /// Its query kept an event since its last evaluation.
    touched: bool,
    /// Its last evaluation.
    last: Instant,
}

/// A seeded rule on its way to its driver, with the offsets it has read the bus up to.
struct Joining {
    slot: Slot,
    read: Vec<u64>,
}

/// The starter and the drivers of a server's rules.
#[derive(Default)]
pub(crate) struct Evaluator {
    inner: Arc<Inner>,
    starter: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Default)]
struct Inner {
    /// Rules to start, with when to try.
    waiting: Mutex<Vec<(Arc<Rule>, Instant)>>,
    /// One driver per repository watched.
    drivers: Mutex<BTreeMap<String, Arc<Driver>>>,
    stop: AtomicBool,
}

impl Evaluator {
    /// Starts `rule` (the starter thread starts with the first).
    pub(crate) fn add(&self, rule: Arc<Rule>) {
        lock(&self.inner.waiting).push((rule, Instant::now()));
        let mut starter = lock(&self.starter);
        if starter.is_none() {
            let inner = self.inner.clone();
            match std::thread::Builder::new()
                .name("alert-starter".into())
                .spawn(move || inner.run_starter())
            {
                Ok(t) => *starter = Some(t),
                Err(e) => tracing::error!("cannot start the alert rules' starter: {e}"),
            }
        }
    }

    /// Stops the starter and every driver, and waits for them.
    pub(crate) fn stop(&self) {
        self.inner.stop.store(true, Ordering::Relaxed);
        if let Some(t) = lock(&self.starter).take() {
            let _ = t.join();
        }
        let drivers: Vec<_> = std::mem::take(&mut *lock(&self.inner.drivers))
            .into_values()
            .collect();
        for d in drivers {
            d.stop.store(true, Ordering::Relaxed);
            if let Some(t) = lock(&d.thread).take() {
                let _ = t.join();
            }
        }
    }
}

impl Drop for Evaluator {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Inner {
    fn run_starter(self: Arc<Self>) {
        while !self.stop.load(Ordering::Relaxed) {
            let due: Vec<Arc<Rule>> = {
                let mut waiting = lock(&self.waiting);
                let now = Instant::now();
                let (due, later) = std::mem::take(&mut *waiting)
                    .into_iter()
                    .partition(|(_, at)| *at <= now);
                *waiting = later;
                due.into_iter().map(|(r, _)| r).collect()
            };
            for rule in due {
                if rule.stopped() || self.stop.load(Ordering::Relaxed) {
                    continue;
                }
                match self.start(&rule) {
                    Ok(()) => *lock(&rule.status.error) = None,
                    Err(Failure::Invalid(p)) => rule.fail(Failure::Invalid(p).to_string()),
                    Err(Failure::Channel(p)) => rule.fail(Failure::Channel(p).to_string()),
                    Err(e) => {
                        rule.fail(e.to_string());
                        self.retry(rule);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn retry(&self, rule: Arc<Rule>) {
        lock(&self.waiting).push((rule, Instant::now() + RETRY));
    }

    /// Seeds `rule`'s window and hands it to its repository's driver.
    fn start(self: &Arc<Self>, rule: &Arc<Rule>) -> Result<(), Failure> {
        let plan = rule
            .plan
            .as_ref()
            .map_err(|p| Failure::Invalid(p.clone()))?;
        rule.channels
            .as_ref()
            .map_err(|p| Failure::Channel(p.clone()))?;
        let repo = rule
            .context
            .repositories
            .repository(&rule.config.from)
            .map(|r| ReadHandle::from(&*r))
            .ok_or_else(|| Failure::NoRepository(rule.config.from.clone()))?;
        rule.load_memory()?;
        let driver = self.driver(&repo)?;
        let mut live = Live::new(
            plan.prepared.clone(),
            plan.window,
            eddy_query::live::DEFAULT_MEMORY_LIMIT,
        );
        let mut samples = Samples::default();
        let start = seed::start(&repo, &mut live, now_ns())?;
        for w in &start.warnings {
            tracing::warn!(alert = %rule.name, "seeding the window: {w}");
        }
        // Every record the cut holds was on the bus when the seed was planned.
        let cut_below = repo.end_offsets()?;
        let mut read = start.read.clone();
        // Most of the way here; the driver reads the last stretch.
        let upto = driver.positions();
        let window_start = start.window_start;
        let cut = start.cut;
        let mut replayer = Replayer::new(&repo);
        catch_up(
            &mut replayer,
            rule,
            (&cut, window_start),
            &mut read,
            &upto,
            &mut live,
            &mut samples,
        )?;
        lock(&driver.joining).push(Joining {
            slot: Slot {
                every: plan.every,
                eager: matches!(
                    plan.condition,
                    super::rule::Condition::Above(_) | super::rule::Condition::Below(_)
                ),
                rule: rule.clone(),
                live,
                cut,
                cut_below,
                window_start,
                samples,
                next: Instant::now(),
                touched: false,
                last: Instant::now(),
            },
            read,
        });
        Ok(())
    }

    /// The driver of `repo`, started on first use.
    fn driver(self: &Arc<Self>, repo: &ReadHandle) -> Result<Arc<Driver>, Failure> {
        let mut drivers = lock(&self.drivers);
        if let Some(d) = drivers.get(&repo.name) {
            return Ok(d.clone());
        }
        let driver = Arc::new(Driver {
            repo: repo.clone(),
            joining: Mutex::new(Vec::new()),
            positions: repo
                .end_offsets()?
                .into_iter()
                .map(AtomicU64::new)
                .collect(),
            stop: AtomicBool::new(false),
            thread: Mutex::new(None),
        });
        let (d, inner) = (driver.clone(), self.clone());
        match std::thread::Builder::new()
            .name(format!("alerts-{}", repo.name))
            .spawn(move || d.run(&inner))
        {
            Ok(t) => *lock(&driver.thread) = Some(t),
            Err(e) => {
                tracing::error!(repository = %repo.name, "cannot start the alert rules' evaluator: {e}")
            }
        }
        drivers.insert(repo.name.clone(), driver.clone());
        Ok(driver)
    }
}

/// The rules of one repository, fed and evaluated on one thread.
struct Driver {
    repo: ReadHandle,
    joining: Mutex<Vec<Joining>>,
    /// Per partition, the offset of the next record it reads.
    positions: Vec<AtomicU64>,
    stop: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// Which rules an event may concern: by a tag each requires, or every event.
#[derive(Default)]
struct Index {
    by_tag: HashMap<String, HashMap<String, Vec<usize>>>,
    every_event: Vec<usize>,
}

impl Index {
    fn of(slots: &[Slot]) -> Index {
        let mut index = Index::default();
        for (i, s) in slots.iter().enumerate() {
            let required = s
                .rule
                .plan
                .as_ref()
                .ok()
                .and_then(|p| p.prepared.requirements.tags.first());
            match required {
                Some((k, v)) => index
                    .by_tag
                    .entry(k.clone())
                    .or_default()
                    .entry(v.clone())
                    .or_default()
                    .push(i),
                None => index.every_event.push(i),
            }
        }
        index
    }

    /// Puts into `out` the rules `event` may concern, known from its tags (before its fields
    /// are decoded or derived).
    fn select(&self, event: &Event, out: &mut Vec<usize>) {
        out.clear();
        out.extend_from_slice(&self.every_event);
        if self.by_tag.is_empty() {
            return;
        }
        for (k, v) in &event.tags {
            if let Some(rules) = self.by_tag.get(k).and_then(|values| values.get(v)) {
                out.extend_from_slice(rules);
            }
        }
    }
}

impl Driver {
    fn positions(&self) -> Vec<u64> {
        self.positions
            .iter()
            .map(|p| p.load(Ordering::Acquire))
            .collect()
    }

    fn run(&self, inner: &Arc<Inner>) {
        let repo = &self.repo;
        let mut readers = Vec::new();
        for (p, from) in self.positions().into_iter().enumerate() {
            loop {
                match repo.bus.reader_skipping_damage(&repo.topic, p as u32, from) {
                    Ok(r) => {
                        readers.push(r);
                        break;
                    }
                    Err(e) => {
                        tracing::error!(repository = %repo.name, partition = p, "the alert rules cannot read the bus, retrying: {e}");
                        if self.pause() {
                            return;
                        }
                    }
                }
            }
        }
        let mut slots: Vec<Slot> = Vec::new();
        let mut index = Index::default();
        let mut concerned = Vec::new();
        while !self.stop.load(Ordering::Relaxed) {
            let joining = std::mem::take(&mut *lock(&self.joining));
            let mut changed = false;
            for mut j in joining {
                let upto = self.positions();
                let s = &mut j.slot;
                match catch_up(
                    &mut Replayer::new(repo),
                    &s.rule,
                    (&s.cut, s.window_start),
                    &mut j.read,
                    &upto,
                    &mut s.live,
                    &mut s.samples,
                ) {
                    Ok(()) => {
                        slots.push(j.slot);
                        changed = true;
                    }
                    Err(e) => {
                        j.slot.rule.fail(e.to_string());
                        inner.retry(j.slot.rule);
                    }
                }
            }
            let before = slots.len();
            slots.retain(|s| !s.rule.stopped());
            if changed || slots.len() != before {
                index = Index::of(&slots);
            }
            let mut read = 0;
            for reader in &mut readers {
                let partition = reader.partition();
                let records = match reader.poll(Duration::ZERO) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(repository = %repo.name, partition, "the alert rules failed to read the bus, retrying: {e}");
                        continue;
                    }
                };
                read += records.len();
                let now = now_ns();
                for r in records {
                    // Fields are derived (a parse) only for an event some rule may want.
                    let Ok((event, fields)) = codec::decode_lazily(&r.value) else {
                        continue;
                    };
                    index.select(&event, &mut concerned);
                    if concerned.is_empty() {
                        continue;
                    }
                    let Ok(event) = codec::with_fields(event, fields) else {
                        continue;
                    };
                    let source = digest::source_of(r.key.as_deref());
                    for &i in &concerned {
                        let s = &mut slots[i];
                        let held = s
                            .cut_below
                            .get(partition as usize)
                            .is_some_and(|&below| r.offset < below)
                            && s.cut.holds(partition, r.offset, source);
                        if held {
                            sample_held(&s.rule, &mut s.samples, &event, now);
                        } else if offer(&s.rule, &mut s.live, &mut s.samples, &event, now) {
                            s.touched = true;
                        }
                    }
                }
                self.positions[partition as usize].store(reader.position(), Ordering::Release);
            }
            let mut failed = Vec::new();
            let now = Instant::now();
            for (i, s) in slots.iter_mut().enumerate() {
                // A node without the rule's duty keeps its window warm and evaluates nothing.
                if !s.rule.duty.held() {
                    continue;
                }
                let early = s.eager && s.touched && now >= s.last + EAGER_GAP;
                if now < s.next && !early {
                    continue;
                }
                s.next = now + s.every;
                s.last = now;
                s.touched = false;
                if let Err(e) = s.rule.evaluate(&mut s.live, &mut s.samples) {
                    s.rule.fail(e.to_string());
                    failed.push(i);
                }
            }
            // A rule whose window failed starts again from a fresh seed.
            if !failed.is_empty() {
                for i in failed.into_iter().rev() {
                    inner.retry(slots.remove(i).rule);
                }
                index = Index::of(&slots);
            }
            if read == 0 {
                std::thread::sleep(IDLE);
            }
        }
    }

    /// Waits a retry's pause; whether it was told to stop meanwhile.
    fn pause(&self) -> bool {
        let until = Instant::now() + RETRY;
        while Instant::now() < until {
            if self.stop.load(Ordering::Relaxed) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stop.load(Ordering::Relaxed)
    }
}

/// Adds `event` to `rule`'s window, and to its samples if its query keeps it; whether it did.
fn offer(rule: &Rule, live: &mut Live, samples: &mut Samples, event: &Event, now: i64) -> bool {
    match live.add(event, now) {
        Added::Kept => {
            if let Ok(plan) = &rule.plan {
                samples.offer(plan, event);
            }
            true
        }
        Added::Late => {
            rule.count_late();
            false
        }
        Added::Dropped | Added::Pushed(_) => false,
    }
}

/// Keeps in `rule`'s samples an event its seed holds (the seed fills the window, not the
/// samples), if it is inside the window: the events that cross the threshold as the rule starts
/// are then shown in its first notice.
fn sample_held(rule: &Rule, samples: &mut Samples, event: &Event, now: i64) {
    if let Ok(plan) = &rule.plan {
        if event.timestamp >= plan.window.bounds(now).0 {
            samples.offer(plan, event);
        }
    }
}

/// Reads each partition's records from `read` up to `upto` into `live` (those the seed lacks;
/// those it holds only into the samples; none from before the window's start at seeding).
fn catch_up(
    replayer: &mut Replayer<'_>,
    rule: &Rule,
    (cut, window_start): (&Cut, i64),
    read: &mut [u64],
    upto: &[u64],
    live: &mut Live,
    samples: &mut Samples,
) -> Result<(), Failure> {
    for (p, (from, &to)) in read.iter_mut().zip(upto).enumerate() {
        if *from >= to {
            continue;
        }
        let p = p as u32;
        let now = now_ns();
        replayer.replay(p, *from, to, |r| {
            if r.timestamp < window_start {
                return;
            }
            let Ok(event) = codec::decode(&r.value) else {
                return;
            };
            if cut.holds(p, r.offset, digest::source_of(r.key.as_deref())) {
                sample_held(rule, samples, &event, now);
            } else {
                offer(rule, live, samples, &event, now);
            }
        })?;
        *from = to;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_reaches_the_rules_of_its_tags_and_those_without_one() {
        let mut index = Index::default();
        index
            .by_tag
            .entry("service".into())
            .or_default()
            .insert("checkout".into(), vec![0, 2]);
        index
            .by_tag
            .entry("service".into())
            .or_default()
            .insert("search".into(), vec![1]);
        index.every_event.push(3);
        let mut event = Event::new(0);
        event.tags.insert("service".into(), "checkout".into());
        event.tags.insert("host".into(), "web-1".into());
        let mut got = vec![9];
        index.select(&event, &mut got);
        got.sort_unstable();
        assert_eq!(got, vec![0, 2, 3]);
    }
}
