//! Queries answered from a block's field columns, without building events: field filters are
//! decided once per distinct value (a dictionary entry, an integer), `groupBy`, `top`,
//! `countDistinct` and `timechart` group on small ids that are turned into keys once per block,
//! and numeric aggregates read the column's numbers.
//!
//! A block takes this path when its fields are columns (see `eddy_store::columns`) and the query
//! is filters on fields and one aggregate or histogram over fields; anything else (a field that
//! may be a tag, `@` fields, text conditions mixed with field conditions, per-event steps) takes
//! the event path, with the same answer.

use eddy_event::ValueRef;
use eddy_store::columns::{Column, Values};
use eddy_store::{BlockView, Bound, TextBound};
use foldhash::HashMap;

use crate::engine::{with_text, Agg, AggState, Collect, Grouping, Key, Program, State, Step};
use crate::filter::{in_matches, Compiled, Matcher};
use crate::sketch::Quantiles;
use crate::syntax::CompareOp;

/// The bounds that every event passing the program's leading filters meets: numeric ones (a
/// block whose column ranges fall outside one is ruled out before its columns are
/// decompressed), and texts a field equals (a block whose dictionary of the field holds none
/// is ruled out once that column is).
pub fn bounds(program: &Program) -> (Vec<Bound>, Vec<TextBound>) {
    let mut out = (Vec::new(), Vec::new());
    for step in &program.steps {
        match step {
            Step::Filter(c) => bounds_of(c, &mut out),
            _ => break,
        }
    }
    out
}

fn bounds_of(c: &Compiled, out: &mut (Vec<Bound>, Vec<TextBound>)) {
    let plain = |f: &str| !f.is_empty() && !f.starts_with('@') && !f.starts_with('#');
    let (numbers, texts) = out;
    let mut bound = |field: &str, lo: f64, hi: f64| {
        numbers.push(Bound {
            field: field.to_string(),
            lo,
            hi,
        })
    };
    match c {
        Compiled::Match {
            field,
            matcher: Matcher::Exact(s),
            negated: false,
        } if plain(field) => {
            if let Some(x) = canonical_int(s) {
                bound(field, x as f64, x as f64);
            }
            texts.push(TextBound {
                field: field.clone(),
                texts: vec![s.clone()],
            });
        }
        Compiled::Number { field, op, value } if plain(field) => match op {
            CompareOp::Eq => bound(field, *value, *value),
            CompareOp::Lt | CompareOp::Le => bound(field, f64::NEG_INFINITY, *value),
            CompareOp::Gt | CompareOp::Ge => bound(field, *value, f64::INFINITY),
            CompareOp::Ne => {}
        },
        Compiled::In {
            field,
            exact,
            patterns,
        } if plain(field) && patterns.is_empty() && !exact.is_empty() => {
            let numbers: Option<Vec<i64>> = exact.iter().map(|s| canonical_int(s)).collect();
            if let Some(xs) = numbers {
                let (lo, hi) = xs
                    .iter()
                    .fold((i64::MAX, i64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
                bound(field, lo as f64, hi as f64);
            }
            texts.push(TextBound {
                field: field.clone(),
                texts: exact.iter().cloned().collect(),
            });
        }
        Compiled::And(all) => all.iter().for_each(|c| bounds_of(c, out)),
        _ => {}
    }
}

/// `s` as an integer when it is exactly how that integer is written (only such texts equal an
/// integer value's text).
fn canonical_int(s: &str) -> Option<i64> {
    s.parse::<i64>().ok().filter(|i| i.to_string() == s)
}

/// Whether the block and the program allow answering from the columns.
pub fn applies(program: &Program, view: &BlockView) -> bool {
    view.has_columns() && eligible(program, view)
}

/// Whether the columnar path reads the events' times (a time grouping).
pub fn reads_times(program: &Program) -> bool {
    matches!(
        program.collect,
        Collect::Aggregate {
            grouping: Grouping::Time { .. },
            ..
        }
    )
}

/// Feeds the events of `view` that `keep` marks into `state` from the columns, for a block and
/// program that [`applies`] holds for.
pub fn feed(program: &Program, view: &BlockView, keep: &mut [bool], state: &mut State) {
    for step in &program.steps {
        if let Step::Filter(c) = step {
            // `eligible` holds: every filter is on fields.
            let passed = decide(c, view).unwrap_or_else(|| vec![false; keep.len()]);
            keep.iter_mut().zip(passed).for_each(|(k, p)| *k &= p);
        }
    }
    match &program.collect {
        Collect::Aggregate {
            grouping, outputs, ..
        } => {
            let aggs: Vec<&Agg> = outputs.iter().map(|o| &o.agg).collect();
            let groups = aggregate(view, keep, grouping, &aggs);
            program.collect.merge_groups(state, groups);
        }
        Collect::Histogram { field, .. } => {
            let mut q = Quantiles::default();
            if let Some(c) = view.column(field) {
                for (i, _) in keep.iter().enumerate().filter(|(_, &k)| k) {
                    if let Some(x) = c.get(i).and_then(ValueRef::as_f64) {
                        q.add(x);
                    }
                }
            }
            program.collect.merge_values(state, q);
        }
        Collect::Rows { .. } => {}
    }
}

/// Whether every field the program reads is a plain field that no tag of the block shadows
/// for events without it, and every step is a filter on fields.
fn eligible(program: &Program, view: &BlockView) -> bool {
    let mut names: Vec<&str> = Vec::new();
    for step in &program.steps {
        match step {
            Step::Filter(c) if filter_fields(c, &mut names) => {}
            _ => return false,
        }
    }
    match &program.collect {
        Collect::Aggregate {
            grouping, outputs, ..
        } => {
            match grouping {
                Grouping::All => {}
                Grouping::Fields(fs) => names.extend(fs.iter().map(String::as_str)),
                Grouping::Time { series, .. } => names.extend(series.as_deref()),
            }
            // last() and first() compare events' times and ids: the event path keeps those.
            if outputs.iter().any(|o| o.agg.needs_event()) {
                return false;
            }
            names.extend(outputs.iter().filter_map(|o| o.agg.field()));
        }
        Collect::Histogram { field, .. } => names.push(field),
        Collect::Rows { .. } => return false,
    }
    names
        .iter()
        .all(|n| !n.is_empty() && !n.starts_with('@') && !n.starts_with('#') && !view.has_tag(n))
}

/// Adds the fields `c` reads to `names`; `false` if it reads anything but fields.
fn filter_fields<'a>(c: &'a Compiled, names: &mut Vec<&'a str>) -> bool {
    match c {
        Compiled::Match { field, .. }
        | Compiled::Number { field, .. }
        | Compiled::In { field, .. } => {
            names.push(field);
            true
        }
        Compiled::And(all) | Compiled::Or(all) => all.iter().all(|c| filter_fields(c, names)),
        Compiled::Not(a) => filter_fields(a, names),
        Compiled::Text(_) | Compiled::Regex(_) | Compiled::AnyWord(_) => false,
    }
}

/// Which events pass `c`, decided on the columns.
fn decide(c: &Compiled, view: &BlockView) -> Option<Vec<bool>> {
    let n = view.len();
    Some(match c {
        Compiled::Match {
            field,
            matcher,
            negated,
        } => {
            let exact_int = match matcher {
                Matcher::Exact(s) => Some(canonical_int(s)),
                _ => None,
            };
            each_value(view.column(field), n, *negated, |v| {
                let hit = match (v, &exact_int) {
                    // Integers compared as numbers: no text per event.
                    (ValueRef::Int(i), Some(want)) => Some(i) == *want,
                    _ => with_text(v, |t| matcher.matches(t)),
                };
                hit != *negated
            })
        }
        Compiled::Number { field, op, value } => each_value(view.column(field), n, false, |v| {
            v.as_f64().is_some_and(|x| op.holds(x, *value))
        }),
        Compiled::In {
            field,
            exact,
            patterns,
        } => each_value(view.column(field), n, false, |v| {
            with_text(v, |t| in_matches(exact, patterns, t))
        }),
        Compiled::And(all) => {
            let mut x = vec![true; n];
            for c in all {
                let y = decide(c, view)?;
                x.iter_mut().zip(y).for_each(|(x, y)| *x &= y);
            }
            x
        }
        Compiled::Or(any) => {
            let mut x = vec![false; n];
            for c in any {
                let y = decide(c, view)?;
                x.iter_mut().zip(y).for_each(|(x, y)| *x |= y);
            }
            x
        }
        Compiled::Not(a) => decide(a, view)?.into_iter().map(|m| !m).collect(),
        Compiled::Text(_) | Compiled::Regex(_) | Compiled::AnyWord(_) => return None,
    })
}

/// `test` of each event's value of `column`, and `absent` for events without one; a dictionary
/// column's entries are tested once each.
fn each_value(
    column: Option<&Column>,
    n: usize,
    absent: bool,
    mut test: impl FnMut(ValueRef<'_>) -> bool,
) -> Vec<bool> {
    let Some(c) = column else {
        return vec![absent; n];
    };
    if let Values::Dictionary { entries, codes } = &c.values {
        let passes: Vec<bool> = entries.iter().map(|e| test(ValueRef::Str(e))).collect();
        if c.is_dense() {
            return codes.iter().map(|&code| passes[code as usize]).collect();
        }
        return (0..n)
            .map(|i| match c.slot(i) {
                Some(s) => passes[codes[s] as usize],
                None => absent,
            })
            .collect();
    }
    // A narrow integer column: each distinct number is tested once, when first met.
    if let (Values::Int(values), Some((lo, hi))) = (&c.values, c.int_bounds()) {
        if let Some(width) = hi.checked_sub(lo).filter(|&w| w < NARROW) {
            const UNKNOWN: u8 = 2;
            let mut memo = vec![UNKNOWN; width as usize + 1];
            let mut pass = |x: i64| {
                let m = &mut memo[(x - lo) as usize];
                if *m == UNKNOWN {
                    *m = u8::from(test(ValueRef::Int(x)));
                }
                *m == 1
            };
            if c.is_dense() {
                return values.iter().map(|&x| pass(x)).collect();
            }
            return (0..n)
                .map(|i| c.slot(i).map_or(absent, |s| pass(values[s])))
                .collect();
        }
    }
    (0..n)
        .map(|i| match c.get(i) {
            Some(v) => test(v),
            None => absent,
        })
        .collect()
}

/// Gives each distinct value of one field in a block a small id, and keeps its key.
struct Ids<'c> {
    column: Option<&'c Column>,
    /// Per dictionary entry, or per integer from `base` (a narrow integer column), its id
    /// (`u32::MAX`: not seen yet).
    direct: Vec<u32>,
    base: i64,
    others: HashMap<Key, u32>,
    keys: Vec<Key>,
}

/// Integer columns whose values span at most this many get ids by position, not by hashing.
const NARROW: i64 = 1 << 16;

impl<'c> Ids<'c> {
    fn new(column: Option<&'c Column>) -> Ids<'c> {
        let (direct, base) = match column.map(|c| &c.values) {
            Some(Values::Dictionary { entries, .. }) => (vec![u32::MAX; entries.len()], 0),
            Some(Values::Int(_)) => {
                let (lo, hi) = column.and_then(Column::int_bounds).unwrap_or((0, i64::MAX));
                match hi.checked_sub(lo).filter(|&w| w < NARROW) {
                    Some(w) => (vec![u32::MAX; w as usize + 1], lo),
                    None => (Vec::new(), 0),
                }
            }
            _ => (Vec::new(), 0),
        };
        Ids {
            column,
            direct,
            base,
            others: HashMap::default(),
            keys: Vec::new(),
        }
    }

    /// Writes the id of each kept event's value into `out` (events without a value keep
    /// [`NO_GROUP`]). Dense dictionary and narrow integer columns, the common case, take a loop
    /// without a look-up per event.
    fn assign(&mut self, keep: &[bool], out: &mut [u32]) {
        let Some(c) = self.column else {
            return;
        };
        let dense = c.is_dense();
        match &c.values {
            Values::Dictionary { codes, .. } if dense => {
                for (i, (o, &code)) in out.iter_mut().zip(codes).enumerate() {
                    if keep[i] {
                        *o = self.direct_id(code as usize, c, i);
                    }
                }
            }
            Values::Int(values) if dense && !self.direct.is_empty() => {
                for (i, (o, &x)) in out.iter_mut().zip(values).enumerate() {
                    if keep[i] {
                        *o = self.direct_id((x - self.base) as usize, c, i);
                    }
                }
            }
            _ => {
                for (i, o) in out.iter_mut().enumerate() {
                    if keep[i] {
                        *o = self.of(i).unwrap_or(NO_GROUP);
                    }
                }
            }
        }
    }

    /// The id of the value at `slot` of `c`, whose place in `direct` is `at`.
    #[inline]
    fn direct_id(&mut self, at: usize, c: &Column, slot: usize) -> u32 {
        let id = &mut self.direct[at];
        if *id == NO_GROUP {
            *id = self.keys.len() as u32;
            self.keys
                .push(Key::of_ref(c.value_at(slot).unwrap_or(ValueRef::Null)));
        }
        *id
    }

    /// The id of event `i`'s value; `None` when it has none.
    fn of(&mut self, i: usize) -> Option<u32> {
        let c = self.column?;
        let slot = c.slot(i)?;
        let at = match &c.values {
            Values::Dictionary { codes, .. } => codes[slot] as usize,
            Values::Int(values) if !self.direct.is_empty() => (values[slot] - self.base) as usize,
            _ => {
                let key = Key::of_ref(c.value_at(slot)?);
                let next = self.keys.len() as u32;
                let keys = &mut self.keys;
                return Some(*self.others.entry(key).or_insert_with_key(|k| {
                    keys.push(k.clone());
                    next
                }));
            }
        };
        Some(self.direct_id(at, c, slot))
    }
}

/// The group of an event that is in none (not kept, or without a grouping field).
const NO_GROUP: u32 = u32::MAX;

/// Time buckets × series of a block that get their group by position rather than by hashing.
const DIRECT_CELLS: i64 = 1 << 16;

/// The groups of the events `keep` marks, with their aggregates filled from the columns: each
/// kept event is given its group's number first, then each aggregate reads its column once.
fn aggregate(
    view: &BlockView,
    keep: &[bool],
    grouping: &Grouping,
    aggs: &[&Agg],
) -> std::collections::HashMap<Vec<Key>, Vec<AggState>> {
    let n = keep.len();
    let mut groups = vec![NO_GROUP; n];
    let keys: Vec<Vec<Key>> = match grouping {
        Grouping::All => {
            for (g, &k) in groups.iter_mut().zip(keep) {
                if k {
                    *g = 0;
                }
            }
            match keep.contains(&true) {
                true => vec![Vec::new()],
                false => Vec::new(),
            }
        }
        Grouping::Fields(fields) if fields.len() == 1 => {
            let mut ids = Ids::new(view.column(&fields[0]));
            ids.assign(keep, &mut groups);
            ids.keys.into_iter().map(|k| vec![k]).collect()
        }
        Grouping::Fields(fields) => {
            let mut ids: Vec<Ids<'_>> = fields.iter().map(|f| Ids::new(view.column(f))).collect();
            let per_field: Vec<Vec<u32>> = ids
                .iter_mut()
                .map(|f| {
                    let mut out = vec![NO_GROUP; n];
                    f.assign(keep, &mut out);
                    out
                })
                .collect();
            let mut tuples: HashMap<Vec<u32>, u32> = HashMap::default();
            let mut tuple = Vec::with_capacity(fields.len());
            for (i, g) in groups.iter_mut().enumerate().filter(|&(i, _)| keep[i]) {
                tuple.clear();
                tuple.extend(per_field.iter().map(|f| f[i]));
                if tuple.contains(&NO_GROUP) {
                    continue;
                }
                let next = tuples.len() as u32;
                *g = match tuples.get(tuple.as_slice()) {
                    Some(&g) => g,
                    None => *tuples.entry(tuple.clone()).or_insert(next),
                };
            }
            let mut keys = vec![Vec::new(); tuples.len()];
            for (tuple, g) in tuples {
                keys[g as usize] = tuple
                    .iter()
                    .zip(&ids)
                    .map(|(&id, f)| f.keys[id as usize].clone())
                    .collect();
            }
            keys
        }
        Grouping::Time { span, series, .. } => {
            let mut ids = Ids::new(series.as_deref().and_then(|s| view.column(s)));
            // Events without the series field form the series "" (NO_GROUP here).
            let mut sids = vec![NO_GROUP; n];
            if series.is_some() {
                ids.assign(keep, &mut sids);
            }
            let found = time_groups(view, keep, *span, &sids, ids.keys.len(), &mut groups);
            found
                .into_iter()
                .map(|(bucket, sid)| {
                    let mut k = vec![Key::Int(bucket * span)];
                    if series.is_some() {
                        k.push(match sid {
                            NO_GROUP => Key::Text(String::new()),
                            id => ids.keys[id as usize].clone(),
                        });
                    }
                    k
                })
                .collect()
        }
    };
    let mut states: Vec<Vec<AggState>> = keys
        .iter()
        .map(|_| aggs.iter().map(|a| a.state()).collect())
        .collect();
    let grouped = || {
        groups
            .iter()
            .enumerate()
            .filter(|(_, &g)| g != NO_GROUP)
            .map(|(i, &g)| (i, g as usize))
    };
    for (o, agg) in aggs.iter().enumerate() {
        let column = agg.field().and_then(|f| view.column(f));
        match (agg, column.map(|c| (c, &c.values))) {
            (Agg::Count(None), _) => {
                // One slot past the groups takes the events in none, without a branch.
                let mut counts = vec![0u64; keys.len() + 1];
                for &g in &groups {
                    counts[(g as usize).min(keys.len())] += 1;
                }
                for (s, n) in states.iter_mut().zip(counts) {
                    if let AggState::Count(c) = &mut s[o] {
                        *c += n;
                    }
                }
            }
            // A dense integer column: its numbers without a look-up per event.
            (_, Some((c, Values::Int(values)))) if c.is_dense() => {
                for (i, g) in grouped() {
                    agg.add_value(&mut states[g][o], Some(ValueRef::Int(values[i])));
                }
            }
            _ => {
                for (i, g) in grouped() {
                    agg.add_value(&mut states[g][o], column.and_then(|c| c.get(i)));
                }
            }
        }
    }
    keys.into_iter().zip(states).collect()
}

/// Gives each kept event the group of its time bucket (`span` ns) and series id, writing it into
/// `groups`, and returns each group's (bucket number, series id). A block spans few buckets and
/// series, so the groups are found by position in a table while that stays small, and by
/// hashing otherwise.
fn time_groups(
    view: &BlockView,
    keep: &[bool],
    span: i64,
    sids: &[u32],
    series: usize,
    groups: &mut [u32],
) -> Vec<(i64, u32)> {
    let (first, last) = (0..keep.len())
        .filter(|&i| keep[i])
        .map(|i| view.timestamp(i))
        .fold((i64::MAX, i64::MIN), |(lo, hi), t| (lo.min(t), hi.max(t)));
    let mut found: Vec<(i64, u32)> = Vec::new();
    if first > last {
        return found;
    }
    let (lo, hi) = (first.div_euclid(span), last.div_euclid(span));
    // Most blocks lie inside one bucket: then no event needs a division.
    let bucket = |i: usize| match lo == hi {
        true => lo,
        false => view.timestamp(i).div_euclid(span),
    };
    // Series id + 1 per column, 0 for "no series value".
    let width = series as i64 + 1;
    let cells = (hi - lo)
        .checked_add(1)
        .and_then(|b| b.checked_mul(width))
        .filter(|&c| c <= DIRECT_CELLS);
    let column = |sid: u32| match sid {
        NO_GROUP => 0,
        id => i64::from(id) + 1,
    };
    match cells {
        Some(cells) => {
            let mut table = vec![NO_GROUP; cells as usize];
            for (i, g) in groups.iter_mut().enumerate() {
                if keep[i] {
                    let (b, sid) = (bucket(i), sids[i]);
                    let cell = &mut table[((b - lo) * width + column(sid)) as usize];
                    if *cell == NO_GROUP {
                        *cell = found.len() as u32;
                        found.push((b, sid));
                    }
                    *g = *cell;
                }
            }
        }
        None => {
            let mut table: HashMap<(i64, u32), u32> = HashMap::default();
            for (i, g) in groups.iter_mut().enumerate() {
                if keep[i] {
                    let key = (bucket(i), sids[i]);
                    *g = *table.entry(key).or_insert_with(|| {
                        found.push(key);
                        found.len() as u32 - 1
                    });
                }
            }
        }
    }
    found
}
