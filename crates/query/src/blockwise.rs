//! Filters on text decided for a whole block at once: each free-text or regex condition is one
//! search over the block's text (see [`crate::search`]), so no event is built for it; only the
//! events that pass are built, and only with the parts the rest of the query reads.

use eddy_store::{BlockView, Parts, SplitColumns};

use crate::filter::Compiled;
use crate::regex_dfa::RegexDfa;
use crate::search::{self, lowercase};

/// Whether `c` looks only at events' text (free text and regexes under `and`, `or`, `not`).
pub fn text_only(c: &Compiled) -> bool {
    match c {
        Compiled::Text(_) | Compiled::Regex(_) | Compiled::AnyWord(_) => true,
        Compiled::And(items) | Compiled::Or(items) => items.iter().all(text_only),
        Compiled::Not(a) => text_only(a),
        _ => false,
    }
}

/// A block's text lower-cased, made once per block for all its free-text conditions.
#[derive(Default)]
struct Lowered {
    text: String,
    starts: Vec<u32>,
}

impl Lowered {
    fn fill(&mut self, view: &BlockView) {
        let (text, starts) = (view.text(), view.text_starts());
        self.starts.clear();
        self.text.clear();
        if text.is_ascii() {
            // Same lengths, so the events start where they did.
            self.text.push_str(text);
            self.text.make_ascii_lowercase();
            self.starts.extend_from_slice(starts);
            return;
        }
        for w in starts.windows(2) {
            self.starts.push(self.text.len() as u32);
            self.text
                .push_str(&lowercase(&text[w[0] as usize..w[1] as usize - 1]));
            self.text.push('\n');
        }
        self.starts.push(self.text.len() as u32);
    }
}

/// A block's split columns lower-cased, made once per block for all its free-text conditions
/// that a search of the columns can decide.
#[derive(Default)]
struct LoweredColumns {
    bytes: Vec<u8>,
    /// Where each column ends in `bytes`.
    ends: Vec<usize>,
}

impl LoweredColumns {
    fn fill(&mut self, columns: SplitColumns<'_>) {
        self.bytes.clear();
        self.ends.clear();
        let region = columns.region();
        if region.is_ascii() {
            // One pass that the compiler vectorises, where copying then lower-casing is two.
            let lower = |b: u8| b | (u8::from(b.wrapping_sub(b'A') < 26) << 5);
            self.bytes.extend(region.iter().map(|&b| lower(b)));
            let mut end = 0;
            for column in columns.columns() {
                end += column.len();
                self.ends.push(end);
            }
            return;
        }
        // Lower-casing changes lengths but never makes or removes a newline.
        for column in columns.columns() {
            let text = std::str::from_utf8(column).unwrap_or_default();
            self.bytes.extend_from_slice(lowercase(text).as_bytes());
            self.ends.push(self.bytes.len());
        }
    }

    fn columns(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(&self.ends).map(|(s, &e)| &self.bytes[s..e])
    }
}

/// Decides text-only filters (see [`text_only`]) over blocks, keeping its buffers from one
/// block to the next.
#[derive(Default)]
pub struct BlockFilter {
    lowered: Lowered,
    /// Whether `lowered` holds the current block's text.
    lowered_ready: bool,
    lowered_columns: LoweredColumns,
    /// Whether `lowered_columns` holds the current block's columns.
    lowered_columns_ready: bool,
}

impl BlockFilter {
    /// Which of the events of `view` pass `c`, which must be [`text_only`].
    pub fn decide(&mut self, view: &BlockView, c: &Compiled) -> Vec<bool> {
        self.lowered_ready = false;
        self.lowered_columns_ready = false;
        self.matches(view, c)
    }

    fn matches(&mut self, view: &BlockView, c: &Compiled) -> Vec<bool> {
        match c {
            Compiled::And(all) => {
                let mut x = vec![true; view.len()];
                for c in all {
                    // Once nothing passes, the rest need not be searched.
                    if !x.iter().any(|&m| m) {
                        break;
                    }
                    let y = self.matches(view, c);
                    x.iter_mut().zip(y).for_each(|(x, y)| *x &= y);
                }
                x
            }
            Compiled::Or(any) => {
                let mut x = vec![false; view.len()];
                for c in any {
                    // Once everything passes, the rest need not be searched.
                    if x.iter().all(|&m| m) {
                        break;
                    }
                    let y = self.matches(view, c);
                    x.iter_mut().zip(y).for_each(|(x, y)| *x |= y);
                }
                x
            }
            Compiled::Not(a) => self.matches(view, a).into_iter().map(|m| !m).collect(),
            Compiled::Text(words) if words.plain_word().is_some() => {
                if let Some(hits) = template_leaf(view, c, |t| words.is_match(t)) {
                    return hits;
                }
                self.text_leaf(view, c, words)
            }
            // Any-of-words leaves hold single words only.
            Compiled::AnyWord(words) => match template_leaf(view, c, |t| words.is_match(t)) {
                Some(hits) => hits,
                None => self.any_word_leaf(view, c, words),
            },
            Compiled::Text(words) => self.text_leaf(view, c, words),
            Compiled::Regex(r) => {
                if let Some(hits) = r
                    .dfa()
                    .and_then(|dfa| walked_leaf(view, c, dfa, |t| r.is_match(t)))
                {
                    return hits;
                }
                let split = view.split_columns();
                let pieces = split.and_then(|s| Some((s, r.within_pieces(s.separator())?)));
                match (pieces, r.lines()) {
                    (Some((columns, pieces)), _) => columns_leaf(
                        view,
                        c,
                        columns.columns(),
                        columns.counts(),
                        |hay, from| pieces.find_at(hay, from).map(|m| (m.start(), m.end())),
                        |t| r.is_match(t),
                    ),
                    (_, Some(lines)) => search_leaf(
                        view,
                        c,
                        Some((view.text(), view.text_starts())),
                        |hay, from| lines.find_at(hay, from).map(|m| (m.start(), m.end())),
                        |t| r.is_match(t),
                    ),
                    (_, None) => search_leaf(view, c, None, |_, _| None, |t| r.is_match(t)),
                }
            }
            // Not text-only: decided per event.
            other => (0..view.len())
                .map(|i| other.matches(&view.event(i, Parts::ALL)))
                .collect(),
        }
    }
}

impl BlockFilter {
    /// The block's text lower-cased, with where each event starts (made once per block).
    fn lowered_area(&mut self, view: &BlockView) -> (&str, &[u32]) {
        if !self.lowered_ready {
            self.lowered.fill(view);
            self.lowered_ready = true;
        }
        (self.lowered.text.as_str(), self.lowered.starts.as_slice())
    }

    /// A free-text leaf decided by one search over the block's split columns or its text.
    fn text_leaf(
        &mut self,
        view: &BlockView,
        c: &Compiled,
        words: &crate::search::Words,
    ) -> Vec<bool> {
        let split = view.split_columns();
        if let Some(columns) = split.filter(|s| words.within_pieces(s.separator())) {
            if !self.lowered_columns_ready {
                self.lowered_columns.fill(columns);
                self.lowered_columns_ready = true;
            }
            return columns_leaf(
                view,
                c,
                self.lowered_columns.columns(),
                columns.counts(),
                |hay, from| words.find_in_bytes(hay, from),
                |t| words.is_match(t),
            );
        }
        let area = self.lowered_area(view);
        search_leaf(
            view,
            c,
            Some(area),
            |hay, from| words.find_lowered(hay, from),
            |t| words.is_match(t),
        )
    }

    /// An any-of-words leaf decided by one search over the block's text.
    fn any_word_leaf(
        &mut self,
        view: &BlockView,
        c: &Compiled,
        words: &crate::search::AnyWord,
    ) -> Vec<bool> {
        let area = self.lowered_area(view);
        search_leaf(
            view,
            c,
            Some(area),
            |hay, from| words.find_lowered(hay, from),
            |t| words.is_match(t),
        )
    }
}

/// Which events a single-word leaf `c` passes in a block whose texts are templates: each
/// literal and distinct value tested once (see `BlockView::match_template_pieces`), other
/// events one by one; `None` when no text of the block is templated.
fn template_leaf(view: &BlockView, c: &Compiled, test: impl Fn(&str) -> bool) -> Option<Vec<bool>> {
    let decided = view.match_template_pieces(&test)?;
    Some(settle_undecided(view, c, decided, test))
}

/// Which events a regex leaf `c` passes in a block whose texts are templates: `dfa` run over
/// each template's pieces (see `BlockView::walk_templates`), other events one by one; `None`
/// when no text of the block is templated.
fn walked_leaf(
    view: &BlockView,
    c: &Compiled,
    dfa: &RegexDfa,
    test: impl Fn(&str) -> bool,
) -> Option<Vec<bool>> {
    let decided = view.walk_templates(dfa)?;
    Some(settle_undecided(view, c, decided, test))
}

/// The events a template search decided, and the others (`None`) one by one.
fn settle_undecided(
    view: &BlockView,
    c: &Compiled,
    decided: Vec<Option<bool>>,
    test: impl Fn(&str) -> bool,
) -> Vec<bool> {
    decided
        .into_iter()
        .enumerate()
        .map(|(i, hit)| hit.unwrap_or_else(|| one_by_one(view, c, i, &test)))
        .collect()
}

/// Whether event `i` passes `c`: `test` on its text, or `c` on the whole event when it has none.
fn one_by_one(view: &BlockView, c: &Compiled, i: usize, test: impl Fn(&str) -> bool) -> bool {
    match view.raw(i) {
        Some(raw) => test(raw),
        None => c.matches(&view.event(i, Parts::ALL)),
    }
}

/// Which events a free-text or regex leaf `c` passes: one search with `find` over `area` (the
/// block's text, as `find` wants it, with where each event starts), then `test` on the events
/// it left open. Without an area, every line is tested by itself.
fn search_leaf(
    view: &BlockView,
    c: &Compiled,
    area: Option<(&str, &[u32])>,
    find: impl FnMut(&str, usize) -> Option<(usize, usize)>,
    test: impl Fn(&str) -> bool,
) -> Vec<bool> {
    let mut hits = vec![false; view.len()];
    let mut recheck = Vec::new();
    match area {
        Some((text, starts)) => search::mark_lines(
            text,
            starts,
            |i| view.is_line(i),
            find,
            &mut hits,
            &mut recheck,
        ),
        None => recheck.extend((0..view.len()).filter(|&i| view.is_line(i))),
    }
    settle(view, c, &mut hits, recheck, test);
    hits
}

/// Which events a free-text or regex leaf `c` passes, by one search with `find` over each of
/// the block's split `columns` (see [`search::mark_columns`]: `find` must match only within
/// pieces), then `test` on the events that are not lines.
fn columns_leaf<'a>(
    view: &BlockView,
    c: &Compiled,
    columns: impl Iterator<Item = &'a [u8]>,
    counts: &[u8],
    find: impl FnMut(&'a [u8], usize) -> Option<(usize, usize)>,
    test: impl Fn(&str) -> bool,
) -> Vec<bool> {
    let mut lines = vec![false; counts.len()];
    search::mark_columns(columns, counts, find, &mut lines);
    let mut hits = match counts.len() == view.len() {
        true => lines,
        false => {
            let mut hits = vec![false; view.len()];
            for k in (0..lines.len()).filter(|&k| lines[k]) {
                if let Some(hit) = hits.get_mut(view.line_event(k)) {
                    *hit = true;
                }
            }
            hits
        }
    };
    settle(view, c, &mut hits, Vec::new(), test);
    hits
}

/// Decides the events the block-wide search left open: those in `recheck`, and every event
/// that is not a line (a text with line breaks, or no text: then its field values).
fn settle(
    view: &BlockView,
    c: &Compiled,
    hits: &mut [bool],
    recheck: Vec<usize>,
    test: impl Fn(&str) -> bool,
) {
    for i in recheck {
        hits[i] = view.raw(i).is_some_and(&test);
    }
    for (i, hit) in hits.iter_mut().enumerate() {
        if !view.is_line(i) {
            *hit = one_by_one(view, c, i, &test);
        }
    }
}
