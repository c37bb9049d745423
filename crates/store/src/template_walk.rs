//! Runs an automaton (a query's regex as a DFA) over templated texts piece by piece, without
//! building them: a template's literals are run as they are, each hole's value straight from
//! its column.
//!
//! Building a block's texts from its templates costs more than searching them, so this path is
//! what makes a regex over parsed events fast. Two memories make it cheaper still:
//! - a dictionary entry is run once per state it is entered in, not once per event;
//! - where a state is left only by a few bytes (the DFA's accelerated states), a plain column
//!   is searched once for those bytes, and every value without one keeps the state unread.
//!
//! A column is decompressed only when the walk reads one of its values, or when its section's
//! summary (a text column's bytes, a number's range) cannot show that none moves the state it
//! is entered in: a regex reads only the columns it can touch.
//!
//! The answer is the one a search of the built text gives: values are read as
//! [`hole_text`] writes them, and a line break inside a value is read as the space the built
//! text holds there.

use std::borrow::Cow;

use crate::columns::{Column, Values};
use crate::template::{hole_text, Template};
use crate::view::BlockView;
use eddy_event::ValueRef;

/// Where running some bytes left an automaton.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<S> {
    /// Still undecided, in this state.
    At(S),
    /// The text matches (`true`) or can no longer match (`false`), whatever follows.
    Decided(bool),
    /// The automaton cannot tell (it gave up on a byte): search the built text instead.
    Unsure,
}

/// An automaton that can be run over a text in pieces.
pub trait Automaton {
    /// A state between pieces.
    type State: Copy + Eq;

    /// The state at the start of a text.
    fn start(&self) -> Self::State;

    /// Runs `bytes` from `state`.
    fn run(&self, state: Self::State, bytes: &[u8]) -> Step<Self::State>;

    /// The few bytes that move `state`, where every other byte keeps it; `None` when more
    /// bytes move it.
    fn movers(&self, state: Self::State) -> Option<&[u8]>;

    /// Whether every text that has reached `state` matches, whatever follows (an automaton
    /// that reports a match only on the next byte is in such a state after the last byte of
    /// its match). May be slow: the walk remembers it per state.
    fn matched(&self, state: Self::State) -> bool;

    /// Whether a text ending in `state` matches; `None` when the automaton cannot tell.
    fn end(&self, state: Self::State) -> Option<bool>;
}

/// States remembered per column before it is run value by value.
const MAX_STATES: usize = 8;

/// The widest range of an integer column whose values are remembered one by one.
const MAX_REMEMBERED_INTS: u64 = 4096;

/// What is known of one hole column, entered in one state.
struct Known<S> {
    state: S,
    /// Whether no value of the column moves `state` (known once asked).
    keeps_all: Option<bool>,
    /// Per distinct value (dictionary entry, or narrow integer), where running it from
    /// `state` leads.
    entries: Vec<Option<Step<S>>>,
    /// Per slot, whether the value holds a byte that moves `state` (made on first use;
    /// `None` inside where the state has no movers).
    moved: Option<Option<Vec<bool>>>,
}

/// What is known of one hole column: per state it was entered in.
struct ColumnMemo<S> {
    known: Vec<Known<S>>,
    /// Its values' shape, once it is decompressed.
    shape: Option<Shape>,
}

impl<S> Default for ColumnMemo<S> {
    fn default() -> ColumnMemo<S> {
        ColumnMemo {
            known: Vec::new(),
            shape: None,
        }
    }
}

/// What the walk needs of a decompressed column's values.
#[derive(Debug, Clone, Copy)]
struct Shape {
    /// Whether a text value holds a line break (the built text holds a space there).
    has_newline: bool,
    /// How many distinct values are remembered: the dictionary's entries, or the integers of
    /// a narrow range from `base`.
    distinct: usize,
    base: i64,
}

impl Shape {
    fn of(column: &Column) -> Shape {
        let newline = |text: &str| memchr::memchr(b'\n', text.as_bytes()).is_some();
        let (has_newline, distinct, base) = match (&column.values, column.int_bounds()) {
            (Values::Plain { text, .. }, _) => (newline(text), 0, 0),
            (Values::Dictionary { entries, .. }, _) => (newline(entries.text()), entries.len(), 0),
            (Values::Int(_), Some((lo, hi))) if hi.abs_diff(lo) < MAX_REMEMBERED_INTS => {
                (false, (hi.abs_diff(lo) + 1) as usize, lo)
            }
            _ => (false, 0, 0),
        };
        Shape {
            has_newline,
            distinct,
            base,
        }
    }
}

impl BlockView {
    /// For each event, whether `a` matches its text: `Some` for templated texts it decided,
    /// `None` for the others (not templated, or the automaton gave up). `None` when no text is
    /// templated.
    pub fn walk_templates<A: Automaton>(&self, a: &A) -> Option<Vec<Option<bool>>> {
        let (templates, holes) = self.templates.as_ref()?;
        let mut memos: Vec<ColumnMemo<A::State>> = (0..self.column_count())
            .map(|_| ColumnMemo::default())
            .collect();
        let mut leaps: Vec<LeapMemo<A::State>> = templates
            .templates
            .iter()
            .map(|t| vec![None; t.holes.len() + 1])
            .collect();
        let mut walk = Walk {
            a,
            holes,
            memos: &mut memos,
            matched: Vec::new(),
        };
        let mut out = vec![None; self.len()];
        for (i, code) in self.templated_events() {
            if let (Some(t), Some(leaps)) = (templates.templates.get(code), leaps.get_mut(code)) {
                out[i] = self.walk_one(&mut walk, t, i, leaps);
            }
        }
        Some(out)
    }

    fn walk_one<A: Automaton>(
        &self,
        w: &mut Walk<'_, A>,
        t: &Template,
        i: usize,
        leaps: &mut LeapMemo<A::State>,
    ) -> Option<bool> {
        let (mut at, mut state) = (0, w.a.start());
        loop {
            let leap = match leaps.get(at).copied().flatten() {
                Some((from, leap)) if from == state => leap,
                _ => {
                    let leap = self.leap(w, t, at, state);
                    if let Some(memo) = leaps.get_mut(at) {
                        *memo = Some((state, leap));
                    }
                    leap
                }
            };
            let (hole, from) = match leap {
                Leap::Done(answer) => return answer,
                Leap::Hole(hole, from) => (hole, from),
            };
            state = from;
            let column = t.holes.get(hole).and_then(|&(name, _)| {
                let c = w.holes.get(name as usize).copied().flatten()?;
                Some((self.column_at(c)?, w.memos.get_mut(c)?))
            });
            if let Some((column, memo)) = column {
                if let Some(slot) = column.slot(i) {
                    match run_value(w.a, state, column, slot, memo) {
                        Step::At(s) => state = s,
                        Step::Decided(d) => return Some(d),
                        Step::Unsure => return None,
                    }
                }
            }
            at = hole + 1;
        }
    }

    /// Where the walk of `t` goes from before literal `at` (0 is the first; literal `k` follows
    /// hole `k - 1`) in `state`, whatever the event: through the literals and the holes whose
    /// column keeps the state, to the next hole whose value matters or the end.
    fn leap<A: Automaton>(
        &self,
        w: &mut Walk<'_, A>,
        t: &Template,
        at: usize,
        mut state: A::State,
    ) -> Leap<A::State> {
        let a = w.a;
        for k in at..=t.holes.len() {
            let literal = match k {
                0 => t.first.as_str(),
                _ => t.holes[k - 1].1.as_str(),
            };
            match a.run(state, literal.as_bytes()) {
                Step::At(s) => state = s,
                Step::Decided(d) => return Leap::Done(Some(d)),
                Step::Unsure => return Leap::Done(None),
            }
            let Some(&(name, _)) = t.holes.get(k) else {
                return Leap::Done(a.end(state));
            };
            let column = w.holes.get(name as usize).copied().flatten();
            if let Some((c, memo)) = column.and_then(|c| Some((c, w.memos.get_mut(c)?))) {
                if !self.keeps_all(a, state, c, memo) {
                    return match w.matched(state) {
                        true => Leap::Done(Some(true)),
                        false => Leap::Hole(k, state),
                    };
                }
            }
        }
        Leap::Done(a.end(state))
    }

    /// Whether no value of column `c` moves `state`: from the column's summary while it is
    /// compressed, else from its values.
    fn keeps_all<A: Automaton>(
        &self,
        a: &A,
        state: A::State,
        c: usize,
        memo: &mut ColumnMemo<A::State>,
    ) -> bool {
        let Some(known) = known_for(memo, state) else {
            return false;
        };
        *known.keeps_all.get_or_insert_with(|| {
            let Some(movers) = a.movers(state) else {
                return false;
            };
            let holds = self.column_may_hold(c, movers).unwrap_or_else(|| {
                self.column_at(c).is_some_and(|column| {
                    column_holds_any(column, movers, Shape::of(column).has_newline)
                })
            });
            !holds
        })
    }
}

/// What one walk over a block's templated texts keeps from one event to the next.
struct Walk<'w, A: Automaton> {
    a: &'w A,
    /// Per hole name, its column.
    holes: &'w [Option<usize>],
    /// Per column.
    memos: &'w mut [ColumnMemo<A::State>],
    /// The states asked whether they have matched, with the answer.
    matched: Vec<(A::State, bool)>,
}

impl<A: Automaton> Walk<'_, A> {
    fn matched(&mut self, state: A::State) -> bool {
        if let Some(&(_, m)) = self.matched.iter().find(|(s, _)| *s == state) {
            return m;
        }
        let m = self.a.matched(state);
        self.matched.push((state, m));
        m
    }
}

/// Where a template's walk goes from a position, whatever the event.
#[derive(Debug, Clone, Copy)]
enum Leap<S> {
    /// Hole number `.0` must be run, entered in this state.
    Hole(usize, S),
    /// The walk ends with this answer (`None`: the automaton cannot tell).
    Done(Option<bool>),
}

/// Per position of a template, the state it was last entered in and where that led: a
/// position is mostly entered in the same state, so its literals are mostly run once per block.
type LeapMemo<S> = Vec<Option<(S, Leap<S>)>>;

/// Runs the value at `slot` of `column` from `state`, using and filling what `memo` knows.
/// (The leap that led here found that some value of the column may move `state`.)
fn run_value<A: Automaton>(
    a: &A,
    state: A::State,
    column: &Column,
    slot: usize,
    memo: &mut ColumnMemo<A::State>,
) -> Step<A::State> {
    let shape = *memo.shape.get_or_insert_with(|| Shape::of(column));
    let (has_newline, base) = (shape.has_newline, shape.base);
    let Some(known) = known_for(memo, state) else {
        return run_text(a, state, column, slot);
    };
    if known.entries.len() != shape.distinct {
        known.entries = vec![None; shape.distinct];
    }
    match &column.values {
        Values::Dictionary { entries, codes } => {
            let Some(&code) = codes.get(slot) else {
                return Step::At(state);
            };
            remembered(known, code as usize, || match has_newline {
                true => run_text(a, state, column, slot),
                false => a.run(
                    state,
                    entries.get(code as usize).unwrap_or_default().as_bytes(),
                ),
            })
        }
        Values::Int(values) if !known.entries.is_empty() => {
            let offset = values.get(slot).map_or(0, |v| v.abs_diff(base) as usize);
            remembered(known, offset, || run_text(a, state, column, slot))
        }
        Values::Plain { text, ends } if !has_newline => {
            let moved = known.moved.get_or_insert_with(|| {
                a.movers(state)
                    .map(|m| slots_holding(text.as_bytes(), ends, m))
            });
            if moved.as_ref().and_then(|m| m.get(slot)) == Some(&false) {
                return Step::At(state);
            }
            // Without line breaks, the value is its text as written.
            match column.value_at(slot) {
                Some(ValueRef::Str(v)) => a.run(state, v.as_bytes()),
                _ => Step::At(state),
            }
        }
        _ => run_text(a, state, column, slot),
    }
}

/// Whether any value of `column`, as the built text holds it, has one of `bytes`.
fn column_holds_any(column: &Column, bytes: &[u8], has_newline: bool) -> bool {
    let in_text = |text: &str| {
        slots_holding(text.as_bytes(), &[text.len() as u32], bytes)[0]
            || has_newline && bytes.contains(&b' ')
    };
    match &column.values {
        Values::Null => false,
        // Numbers are written with digits, '-' and '.' only.
        Values::Int(_) | Values::Float(_) => bytes
            .iter()
            .any(|b| b.is_ascii_digit() || b"-.".contains(b)),
        Values::Bool(_) => bytes.iter().any(|b| b"truefals".contains(b)),
        Values::Dictionary { entries, .. } => in_text(entries.text()),
        Values::Plain { text, .. } => in_text(text),
        Values::Mixed(_) => true,
    }
}

/// The step of the `entry`-th distinct value, from `known`, or from `run` (then remembered).
fn remembered<S: Copy>(
    known: &mut Known<S>,
    entry: usize,
    run: impl FnOnce() -> Step<S>,
) -> Step<S> {
    match known.entries.get(entry).copied().flatten() {
        Some(step) => step,
        None => {
            let step = run();
            if let Some(e) = known.entries.get_mut(entry) {
                *e = Some(step);
            }
            step
        }
    }
}

/// What is known of a column entered in `state`, added if there is room.
fn known_for<S: Copy + Eq>(memo: &mut ColumnMemo<S>, state: S) -> Option<&mut Known<S>> {
    let at = match memo.known.iter().position(|k| k.state == state) {
        Some(at) => at,
        None if memo.known.len() < MAX_STATES => {
            memo.known.push(Known {
                state,
                keeps_all: None,
                entries: Vec::new(),
                moved: None,
            });
            memo.known.len() - 1
        }
        None => return None,
    };
    memo.known.get_mut(at)
}

/// Runs the text of the value at `slot`, as the built text holds it.
fn run_text<A: Automaton>(a: &A, state: A::State, column: &Column, slot: usize) -> Step<A::State> {
    let mut digits = itoa::Buffer::new();
    let Some(text) = column
        .value_at(slot)
        .and_then(|v| hole_text(v, &mut digits))
    else {
        return Step::At(state);
    };
    // The built text holds a space for a line break inside a value.
    let text = match memchr::memchr(b'\n', text.as_bytes()) {
        Some(_) => Cow::Owned(text.replace('\n', " ")),
        None => text,
    };
    a.run(state, text.as_bytes())
}

/// For each value of a plain column (`text`, cut at `ends`), whether it holds one of `bytes`:
/// one search per value that holds one, resumed at the next value.
fn slots_holding(text: &[u8], ends: &[u32], bytes: &[u8]) -> Vec<bool> {
    let find = |from: usize| -> Option<usize> {
        let hay = text.get(from..)?;
        let found = match *bytes {
            [] => None,
            [a] => memchr::memchr(a, hay),
            [a, b] => memchr::memchr2(a, b, hay),
            [a, b, c] => memchr::memchr3(a, b, c, hay),
            _ => hay.iter().position(|b| bytes.contains(b)),
        };
        found.map(|at| from + at)
    };
    let mut holding = vec![false; ends.len()];
    let (mut slot, mut from) = (0, 0);
    while let Some(at) = find(from) {
        while ends.get(slot).is_some_and(|&e| (e as usize) <= at) {
            slot += 1;
        }
        let (Some(h), Some(&end)) = (holding.get_mut(slot), ends.get(slot)) else {
            break;
        };
        *h = true;
        from = end as usize;
    }
    holding
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_holding_a_byte_are_found_by_slot() {
        let text = b"ab\"cdef\"gh";
        let ends = [2, 3, 7, 7, 10];
        assert_eq!(
            slots_holding(text, &ends, b"\""),
            vec![false, true, false, false, true]
        );
        assert_eq!(
            slots_holding(text, &ends, b"ae"),
            vec![true, false, true, false, false]
        );
        assert_eq!(slots_holding(text, &ends, b""), vec![false; 5]);
    }

    proptest::proptest! {
        #[test]
        fn values_holding_a_byte_are_those_a_plain_search_finds(
            values in proptest::collection::vec("[ab\"x]{0,5}", 0..20),
            bytes in proptest::sample::subsequence(b"ab\"".to_vec(), 0..=3),
        ) {
            let text = values.concat();
            let ends: Vec<u32> = values
                .iter()
                .scan(0, |end, v| {
                    *end += v.len() as u32;
                    Some(*end)
                })
                .collect();
            let want: Vec<bool> = values
                .iter()
                .map(|v| v.bytes().any(|b| bytes.contains(&b)))
                .collect();
            proptest::prop_assert_eq!(slots_holding(text.as_bytes(), &ends, &bytes), want);
        }
    }
}
