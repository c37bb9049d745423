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
        return (0..n)
            .map(|i| match c.slot(i) {
                Some(s) => passes[codes[s] as usize],
                None => absent,
            })
            .collect();
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

    /// The id of event `i`'s value; `None` when it has none.
    #[inline]
    fn of(&mut self, i: usize) -> Option<u32> {
        let c = self.column?;
        let slot = c.slot(i)?;
        let next = self.keys.len() as u32;
        let (at, key): (usize, fn(&Column, usize) -> Key) = match &c.values {
            Values::Dictionary { codes, .. } => (codes[slot] as usize, |c, slot| {
                Key::of_ref(c.value_at(slot).unwrap_or(ValueRef::Null))
            }),
            Values::Int(values) if !self.direct.is_empty() => {
                ((values[slot] - self.base) as usize, |c, slot| {
                    Key::of_ref(c.value_at(slot).unwrap_or(ValueRef::Null))
                })
            }
            _ => {
                let key = Key::of_ref(c.value_at(slot)?);
                let keys = &mut self.keys;
                return Some(*self.others.entry(key).or_insert_with_key(|k| {
                    keys.push(k.clone());
                    next
                }));
            }
        };
        let id = &mut self.direct[at];
        if *id == u32::MAX {
            *id = next;
            self.keys.push(key(c, slot));
        }
        Some(*id)
    }
}

/// The groups of the events `keep` marks, with their aggregates filled from the columns: each
/// kept event is given its group's number first, then each aggregate reads its column once.
fn aggregate(
    view: &BlockView,
    keep: &[bool],
    grouping: &Grouping,
    aggs: &[&Agg],
) -> std::collections::HashMap<Vec<Key>, Vec<AggState>> {
    // (event, group) for every kept event in a group.
    let mut rows: Vec<(u32, u32)> = Vec::with_capacity(keep.len());
    let kept = keep.iter().enumerate().filter(|(_, &k)| k).map(|(i, _)| i);
    let keys: Vec<Vec<Key>> = match grouping {
        Grouping::All => {
            rows.extend(kept.map(|i| (i as u32, 0)));
            match rows.is_empty() {
                true => Vec::new(),
                false => vec![Vec::new()],
            }
        }
        Grouping::Fields(fields) if fields.len() == 1 => {
            let mut ids = Ids::new(view.column(&fields[0]));
            rows.extend(kept.filter_map(|i| Some((i as u32, ids.of(i)?))));
            ids.keys.into_iter().map(|k| vec![k]).collect()
        }
        Grouping::Fields(fields) => {
            let mut ids: Vec<Ids<'_>> = fields.iter().map(|f| Ids::new(view.column(f))).collect();
            let mut groups: HashMap<Vec<u32>, u32> = HashMap::default();
            let mut tuple = Vec::with_capacity(fields.len());
            for i in kept {
                tuple.clear();
                if !ids
                    .iter_mut()
                    .all(|f| f.of(i).map(|id| tuple.push(id)).is_some())
                {
                    continue;
                }
                let next = groups.len() as u32;
                let group = match groups.get(tuple.as_slice()) {
                    Some(&g) => g,
                    None => *groups.entry(tuple.clone()).or_insert(next),
                };
                rows.push((i as u32, group));
            }
            let mut keys = vec![Vec::new(); groups.len()];
            for (tuple, g) in groups {
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
            let mut groups: HashMap<(i64, u32), u32> = HashMap::default();
            for i in kept {
                let bucket = view.timestamp(i).div_euclid(*span) * span;
                let sid = match series {
                    None => 0,
                    Some(_) => ids.of(i).unwrap_or(u32::MAX),
                };
                let next = groups.len() as u32;
                rows.push((i as u32, *groups.entry((bucket, sid)).or_insert(next)));
            }
            let mut keys = vec![Vec::new(); groups.len()];
            for ((bucket, sid), g) in groups {
                let mut k = vec![Key::Int(bucket)];
                if series.is_some() {
                    k.push(match sid {
                        u32::MAX => Key::Text(String::new()),
                        id => ids.keys[id as usize].clone(),
                    });
                }
                keys[g as usize] = k;
            }
            keys
        }
    };
    let mut states: Vec<Vec<AggState>> = keys
        .iter()
        .map(|_| aggs.iter().map(|a| a.state()).collect())
        .collect();
    for (o, agg) in aggs.iter().enumerate() {
        let column = agg.field().and_then(|f| view.column(f));
        match (agg, column.map(|c| (c, &c.values))) {
            (Agg::Count(None), _) => {
                let mut counts = vec![0u64; keys.len()];
                rows.iter().for_each(|&(_, g)| counts[g as usize] += 1);
                for (s, n) in states.iter_mut().zip(counts) {
                    if let AggState::Count(c) = &mut s[o] {
                        *c += n;
                    }
                }
            }
            // A dense integer column: its numbers without a look-up per event.
            (_, Some((c, Values::Int(values)))) if c.is_dense() => {
                for &(i, g) in &rows {
                    agg.add_value(
                        &mut states[g as usize][o],
                        Some(ValueRef::Int(values[i as usize])),
                    );
                }
            }
            _ => {
                for &(i, g) in &rows {
                    agg.add_value(
                        &mut states[g as usize][o],
                        column.and_then(|c| c.get(i as usize)),
                    );
                }
            }
        }
    }
    keys.into_iter().zip(states).collect()
}
