//! Field discovery: which fields a repository's events have in a time range, with their types,
//! how many events have each, and the most frequent values of fields with few distinct values.
//!
//! It reads what a search reads (the store's plan of sealed segments and work in progress, each
//! block's events kept by the time range), so it sees every event a search would. A block whose
//! fields are columns is summed column by column without building events; an older block's
//! events are built with their fields only. The work is bounded so that a click in a UI never
//! scans a terabyte: blocks are read newest first (work in progress, then the segments sealed
//! last) until [`Bounds::events`] events were looked at or [`Bounds::blocks`] blocks read, and
//! the answer says whether that left blocks unread (`sampled`) and the time span it covers.
//!
//! The rule for values: each field's distinct values are counted exactly up to
//! [`Bounds::tracked_values`]; a field with at most that many distinct values in the events
//! looked at answers its `distinct` count and its [`Bounds::top_values`] most frequent values
//! (ties by value), a field with more answers neither.

use std::collections::{BTreeMap, HashMap};

use eddy_event::{Event, Value, ValueRef};
use eddy_store::columns::{Column, Values};
use eddy_store::{BlockView, Needs, Parts, ReadBuffers, RepoStore, Scan};
use serde::{Deserialize, Serialize};

/// How much work one discovery may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Stop reading blocks once this many events were looked at (100,000 by default).
    pub events: u64,
    /// Read at most this many blocks (256 by default).
    pub blocks: usize,
    /// Distinct values counted exactly per field (100 by default).
    pub tracked_values: usize,
    /// Most frequent values answered per field with few distinct values (10 by default).
    pub top_values: usize,
    /// Fields described at most (1,000 by default); further names are left out with a warning.
    pub fields: usize,
}

impl Default for Bounds {
    fn default() -> Bounds {
        Bounds {
            events: 100_000,
            blocks: 256,
            tracked_values: 100,
            top_values: 10,
            fields: 1_000,
        }
    }
}

/// What discovery found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Discovery {
    /// Events looked at (in the range, from the blocks read).
    pub events: u64,
    /// Whether blocks in the range were left unread for the bounds: the answer describes the
    /// newest events only.
    pub sampled: bool,
    /// Blocks read (a block that two windows overlap, such as one still being filled, is read
    /// by each).
    pub blocks_read: u64,
    /// Blocks in the range (after pruning by time).
    pub blocks_total: u64,
    /// The earliest `@timestamp` looked at, ns (none when no event was).
    pub oldest: Option<i64>,
    /// The latest `@timestamp` looked at, ns.
    pub newest: Option<i64>,
    /// The fields (tags as `#name`), those most events have first, then by name.
    pub fields: Vec<FieldSummary>,
    /// Problems that did not stop it (a damaged block, fields left out).
    pub warnings: Vec<String>,
}

/// One field's description.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldSummary {
    /// The field's name (a tag's starts with `#`).
    pub name: String,
    /// Events that have it.
    pub events: u64,
    /// Per type (`string`, `int`, `float`, `bool`, `null`), how many events have a value of it.
    pub types: BTreeMap<String, u64>,
    /// Distinct values, when at most [`Bounds::tracked_values`] (else none: many).
    pub distinct: Option<u64>,
    /// The most frequent values with their counts, when `distinct` is known.
    pub top: Vec<TopValue>,
}

/// A value and how many events have it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopValue {
    /// The value, typed.
    pub value: Value,
    /// Events with it.
    pub count: u64,
}

/// A value as a counting key (floats by their bits).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ValueKey {
    Null,
    Bool(bool),
    Int(i64),
    Float(u64),
    Str(String),
}

impl ValueKey {
    fn of(v: ValueRef<'_>) -> ValueKey {
        match v {
            ValueRef::Null => ValueKey::Null,
            ValueRef::Bool(b) => ValueKey::Bool(b),
            ValueRef::Int(i) => ValueKey::Int(i),
            ValueRef::Float(x) => ValueKey::Float(x.to_bits()),
            ValueRef::Str(s) => ValueKey::Str(s.to_string()),
        }
    }

    fn value(&self) -> Value {
        match self {
            ValueKey::Null => Value::Null,
            ValueKey::Bool(b) => Value::Bool(*b),
            ValueKey::Int(i) => Value::Int(*i),
            ValueKey::Float(bits) => Value::Float(f64::from_bits(*bits)),
            ValueKey::Str(s) => Value::Str(s.clone()),
        }
    }
}

/// The name of a value's type in the answer.
fn type_name(v: ValueRef<'_>) -> &'static str {
    match v {
        ValueRef::Null => "null",
        ValueRef::Bool(_) => "bool",
        ValueRef::Int(_) => "int",
        ValueRef::Float(_) => "float",
        ValueRef::Str(_) => "string",
    }
}

/// One field's counts so far.
#[derive(Debug, Default)]
struct Tally {
    events: u64,
    types: BTreeMap<&'static str, u64>,
    /// Per distinct value, its events; `None` once there were more than tracked.
    values: Option<HashMap<ValueKey, u64>>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            values: Some(HashMap::new()),
            ..Tally::default()
        }
    }

    /// Adds `n` events with the value `v`.
    fn add(&mut self, v: ValueRef<'_>, n: u64, tracked: usize) {
        self.events += n;
        *self.types.entry(type_name(v)).or_default() += n;
        let Some(values) = &mut self.values else {
            return;
        };
        let key = ValueKey::of(v);
        if let Some(count) = values.get_mut(&key) {
            *count += n;
        } else if values.len() >= tracked {
            self.values = None;
        } else {
            values.insert(key, n);
        }
    }

    fn summary(self, name: String, top: usize) -> FieldSummary {
        let (distinct, top) = match self.values {
            None => (None, Vec::new()),
            Some(values) => {
                let distinct = values.len() as u64;
                let mut all: Vec<(ValueKey, u64)> = values.into_iter().collect();
                all.sort_by(|(a, x), (b, y)| {
                    y.cmp(x)
                        .then_with(|| a.value().to_text().cmp(&b.value().to_text()))
                });
                let top = all
                    .into_iter()
                    .take(top)
                    .map(|(k, count)| TopValue {
                        value: k.value(),
                        count,
                    })
                    .collect();
                (Some(distinct), top)
            }
        };
        FieldSummary {
            name,
            events: self.events,
            types: self
                .types
                .into_iter()
                .map(|(t, n)| (t.to_string(), n))
                .collect(),
            distinct,
            top,
        }
    }
}

/// The counts of every field seen so far, within the bounds.
struct Tallies {
    bounds: Bounds,
    fields: HashMap<String, Tally>,
    /// Names not described for the bound on fields.
    left_out: u64,
}

impl Tallies {
    fn field(&mut self, name: &str) -> Option<&mut Tally> {
        if !self.fields.contains_key(name) {
            if self.fields.len() >= self.bounds.fields {
                self.left_out += 1;
                return None;
            }
            self.fields.insert(name.to_string(), Tally::new());
        }
        self.fields.get_mut(name)
    }

    fn add(&mut self, name: &str, v: ValueRef<'_>, n: u64) {
        let tracked = self.bounds.tracked_values;
        if let Some(t) = self.field(name) {
            t.add(v, n, tracked);
        }
    }

    /// The kept events of a column: a dictionary's entries are counted per code first.
    fn column(&mut self, c: &Column, keep: &[bool]) {
        let kept = || keep.iter().enumerate().filter(|(_, &k)| k).map(|(i, _)| i);
        if let Values::Dictionary { entries, codes } = &c.values {
            let mut counts = vec![0u64; entries.len()];
            for slot in kept().filter_map(|i| c.slot(i)) {
                if let Some(n) = codes
                    .get(slot)
                    .and_then(|&code| counts.get_mut(code as usize))
                {
                    *n += 1;
                }
            }
            for (entry, n) in entries.iter().zip(counts).filter(|(_, n)| *n > 0) {
                self.add(&c.name, ValueRef::Str(entry), n);
            }
            return;
        }
        for v in kept().filter_map(|i| c.get(i)) {
            self.add(&c.name, v, 1);
        }
    }

    /// The fields of an event built from a block without columns.
    fn event(&mut self, e: &Event) {
        for (name, v) in e.fields.iter().filter(|(n, _)| !n.starts_with('@')) {
            self.add(name, v.into(), 1);
        }
    }
}

/// Describes the fields of `store`'s events in `[start, end)`, within `bounds`.
pub fn discover(store: &RepoStore, start: i64, end: i64, bounds: Bounds) -> Discovery {
    // The whole range's plan, for what it holds; nothing is decompressed yet.
    let plan = store.plan(&range(start, end));
    let mut reader = Reader {
        bounds,
        tallies: Tallies {
            bounds,
            fields: HashMap::new(),
            left_out: 0,
        },
        events: 0,
        blocks_read: 0,
        oldest: None,
        newest: None,
        warnings: plan.stats.warnings.clone(),
        buffers: ReadBuffers::default(),
        // Every field column, no text: a templated text is not needed to know its fields.
        view: BlockView::with_needs(Needs {
            text: false,
            ..Needs::ALL
        }),
    };
    // Windows back in time from the newest event, each planned on its own, so that the
    // events looked at are the newest of the range whatever the order of data sources.
    let mut sampled = false;
    if let Some((first, last)) = store.time_bounds() {
        let (lo, mut hi) = (start.max(first), end.min(last.saturating_add(1)));
        // A few windows at most: every window reads the blocks still being filled again.
        let mut width = ((hi.saturating_sub(lo)) / 64).max(1_000_000);
        while hi > lo && !reader.spent() {
            let from = hi.saturating_sub(width).max(lo);
            let before = reader.events;
            let cut_short = !reader.window(store, from, hi);
            hi = from;
            // The next window holds about what the budget has left, at the density seen
            // (growing at most 16-fold: the bound on blocks stops a denser past).
            let seen = reader.events - before;
            let left = bounds.events.saturating_sub(reader.events);
            width = match seen {
                0 => width.saturating_mul(4),
                _ => (width as f64 * left as f64 / seen as f64).clamp(1e6, width as f64 * 16.0)
                    as i64,
            };
            if cut_short {
                sampled = true;
                break;
            }
        }
        // Older events of the range were left unread.
        sampled |= hi > lo;
    }
    let Reader {
        tallies,
        events,
        blocks_read,
        oldest,
        newest,
        mut warnings,
        ..
    } = reader;
    if tallies.left_out > 0 {
        warnings.push(format!(
            "more than {} fields: the answer describes the first {} met (newest first)",
            bounds.fields, bounds.fields
        ));
    }
    let mut fields: Vec<FieldSummary> = tallies
        .fields
        .into_iter()
        .map(|(name, t)| t.summary(name, bounds.top_values))
        .collect();
    fields.sort_by(|a, b| b.events.cmp(&a.events).then_with(|| a.name.cmp(&b.name)));
    Discovery {
        events,
        sampled,
        blocks_read,
        blocks_total: plan.tasks.len() as u64,
        oldest,
        newest,
        fields,
        warnings,
    }
}

fn range(start: i64, end: i64) -> Scan {
    Scan {
        start,
        end,
        ..Scan::default()
    }
}

/// The state of one discovery while it reads windows of blocks.
struct Reader {
    bounds: Bounds,
    tallies: Tallies,
    events: u64,
    blocks_read: u64,
    oldest: Option<i64>,
    newest: Option<i64>,
    warnings: Vec<String>,
    buffers: ReadBuffers,
    view: BlockView,
}

impl Reader {
    /// Whether the bounds are reached.
    fn spent(&self) -> bool {
        self.events >= self.bounds.events || self.blocks_read >= self.bounds.blocks as u64
    }

    /// Reads the events of `[from, to)`; `false` if the bound on blocks cut it short.
    fn window(&mut self, store: &RepoStore, from: i64, to: i64) -> bool {
        let plan = store.plan(&range(from, to));
        let fields_only = Parts {
            raw: false,
            tags: false,
            fields: true,
        };
        for task in &plan.tasks {
            if self.blocks_read >= self.bounds.blocks as u64 {
                return false;
            }
            self.blocks_read += 1;
            if let Err(e) = task.open_into(&mut self.buffers, &mut self.view) {
                self.warnings.push(format!("skipped a damaged block: {e}"));
                continue;
            }
            let view = &self.view;
            let keep = view.kept_by(task.scan());
            let kept: Vec<usize> = (0..keep.len()).filter(|&i| keep[i]).collect();
            if kept.is_empty() {
                continue;
            }
            self.events += kept.len() as u64;
            for &i in &kept {
                let t = view.timestamp(i);
                self.oldest = Some(self.oldest.map_or(t, |o| o.min(t)));
                self.newest = Some(self.newest.map_or(t, |n| n.max(t)));
                for (k, v) in view.tags(i) {
                    self.tallies.add(&format!("#{k}"), ValueRef::Str(v), 1);
                }
            }
            if view.has_columns() {
                for (name, _) in view
                    .column_names()
                    .iter()
                    .filter(|(n, _)| !n.starts_with('@'))
                {
                    if let Some(c) = view.column(name) {
                        self.tallies.column(c, &keep);
                    }
                }
            } else {
                for &i in &kept {
                    self.tallies.event(&view.event(i, fields_only));
                }
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_with_many_values_answers_no_top_values() {
        let mut t = Tally::new();
        for i in 0..5 {
            t.add(ValueRef::Int(i), 1, 3);
        }
        let s = t.summary("n".into(), 10);
        assert_eq!((s.events, s.distinct, s.top.len()), (5, None, 0));
        assert_eq!(s.types.get("int"), Some(&5));
    }

    #[test]
    fn top_values_are_the_most_frequent_first_ties_by_value() {
        let mut t = Tally::new();
        t.add(ValueRef::Str("b"), 2, 100);
        t.add(ValueRef::Str("a"), 2, 100);
        t.add(ValueRef::Str("c"), 5, 100);
        t.add(ValueRef::Int(7), 1, 100);
        let s = t.summary("f".into(), 2);
        assert_eq!(s.distinct, Some(4));
        let top: Vec<(Value, u64)> = s.top.into_iter().map(|v| (v.value, v.count)).collect();
        assert_eq!(
            top,
            vec![(Value::Str("c".into()), 5), (Value::Str("a".into()), 2)]
        );
        assert_eq!(s.types.get("string"), Some(&9));
        assert_eq!(s.types.get("int"), Some(&1));
    }
}
