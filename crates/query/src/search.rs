//! Searching text for free-text words and regexes, in one event's text or in a whole block's
//! text at once: one pass of a substring or regex searcher over the block finds the events
//! that match, where calling a regex per event costs its setup every time.
//!
//! Free text is matched on lower-cased text (each character by `char::to_lowercase`, as the
//! store's tokens are made), so what a block's bloom filter says it lacks is never a match.

use std::borrow::Cow;
use std::sync::OnceLock;

use memchr::memmem;
use regex::{Regex, RegexBuilder};
use regex_syntax::hir::{Class, Hir, HirKind, Look};

use crate::regex_dfa::RegexDfa;

/// What is not a word character, apart from the line break (see the store's tokens: a word is
/// alphanumeric). Line starts and ends are boundaries through `^` and `$` in multi-line mode,
/// so that no match ever takes in a line break and each belongs to one event.
const NOT_WORD: &str = r"[^\p{Alphabetic}\p{N}\n]";

/// `text` lower-cased character by character (borrowed when it has no capitals).
pub fn lowercase(text: &str) -> Cow<'_, str> {
    if text.is_ascii() {
        if text.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(text.to_ascii_lowercase())
        } else {
            Cow::Borrowed(text)
        }
    } else {
        Cow::Owned(text.chars().flat_map(char::to_lowercase).collect())
    }
}

/// Free text: a word, a phrase, or a pattern with `*` wildcards, matched case-insensitively
/// with word boundaries where it starts or ends with a word character.
#[derive(Debug, Clone)]
pub struct Words {
    needle: String,
    finder: memmem::Finder<'static>,
    bounded_start: bool,
    bounded_end: bool,
    /// For wildcards: the whole pattern, boundaries included, over lower-cased text.
    wildcard: Option<Regex>,
}

impl Words {
    /// The matcher for `text` (with `*` as a wildcard if `wildcard`).
    pub fn new(text: &str, wildcard: bool) -> Words {
        let needle = lowercase(text).into_owned();
        let bounded_start = text.starts_with(char::is_alphanumeric);
        let bounded_end = text.ends_with(char::is_alphanumeric);
        let wildcard = wildcard.then(|| {
            let pieces: Vec<String> = needle.split('*').map(regex::escape).collect();
            let mut pattern = String::new();
            if bounded_start {
                pattern.push_str(&format!("(?:^|{NOT_WORD})"));
            }
            pattern.push_str(&pieces.join(".*"));
            if bounded_end {
                pattern.push_str(&format!("(?:$|{NOT_WORD})"));
            }
            // Escaped literals always compile; the fallback matches nothing.
            RegexBuilder::new(&pattern)
                .multi_line(true)
                .build()
                .unwrap_or_else(|_| never())
        });
        Words {
            finder: memmem::Finder::new(needle.as_bytes()).into_owned(),
            needle,
            bounded_start,
            bounded_end,
            wildcard,
        }
    }

    /// Whether `text` holds the words.
    pub fn is_match(&self, text: &str) -> bool {
        self.find_lowered(&lowercase(text), 0).is_some()
    }

    /// The first match in lower-cased `hay` that starts at or after `from`.
    pub fn find_lowered(&self, hay: &str, from: usize) -> Option<(usize, usize)> {
        match &self.wildcard {
            Some(r) => r.find_at(hay, from).map(|m| (m.start(), m.end())),
            None => self.find_in_bytes(hay.as_bytes(), from),
        }
    }

    /// Whether every match lies within one piece of a line split at `separator`: then a search
    /// of the split columns finds the same lines as a search of the lines (see
    /// [`mark_columns`]). A word character is never a separator, so boundaries agree.
    pub fn within_pieces(&self, separator: u8) -> bool {
        self.wildcard.is_none()
            && !self.needle.is_empty()
            && !self.needle.bytes().any(|b| b == separator || b == b'\n')
    }

    /// [`Words::find_lowered`] without wildcards, over lower-cased UTF-8 as bytes.
    pub fn find_in_bytes(&self, hay: &[u8], from: usize) -> Option<(usize, usize)> {
        let mut at = from;
        while at <= hay.len() {
            let start = at + self.finder.find(hay.get(at..)?)?;
            let end = start + self.needle.len();
            // A match of UTF-8 text in UTF-8 text starts and ends at character boundaries.
            let before_ok = !self.bounded_start || !char_before(hay, start).is_some_and(is_word);
            let after_ok = !self.bounded_end || !char_after(hay, end).is_some_and(is_word);
            if before_ok && after_ok {
                return Some((start, end));
            }
            // Overlapping occurrences are tried too: "a a" in "xa a a" is at 3, not 1.
            at = start + char_after(hay, start).map_or(1, char::len_utf8);
        }
        None
    }
}

impl Words {
    /// The word, when this is one plain word (letters and digits only, no wildcard): it
    /// matches exactly where a word of the text equals it.
    pub fn plain_word(&self) -> Option<&str> {
        (self.wildcard.is_none()
            && !self.needle.is_empty()
            && self.needle.chars().all(char::is_alphanumeric))
        .then_some(self.needle.as_str())
    }
}

/// Any of a set of plain words (see [`Words::plain_word`]): one pass over the text's words,
/// each looked up in the set, however many words are asked for.
#[derive(Debug, Clone)]
pub struct AnyWord {
    words: std::collections::HashSet<String>,
}

impl AnyWord {
    /// The matcher for any of `words` (lower-cased plain words).
    pub fn new(words: std::collections::HashSet<String>) -> AnyWord {
        AnyWord { words }
    }

    /// Whether `text` holds any of the words.
    pub fn is_match(&self, text: &str) -> bool {
        self.find_lowered(&lowercase(text), 0).is_some()
    }

    /// The first of the words in lower-cased `hay` that starts at or after `from` (a word
    /// cut by `from` does not count).
    pub fn find_lowered(&self, hay: &str, from: usize) -> Option<(usize, usize)> {
        let mut start = None;
        let rest = hay.get(from..)?;
        for (i, c) in rest
            .char_indices()
            .chain(std::iter::once((rest.len(), ' ')))
        {
            match (is_word(c), start) {
                (true, None) => start = Some(i),
                (false, Some(s)) => {
                    let at = from + s;
                    let cut = s == 0 && char_before(hay.as_bytes(), from).is_some_and(is_word);
                    if !cut && self.words.contains(&hay[at..from + i]) {
                        return Some((at, from + i));
                    }
                    start = None;
                }
                _ => {}
            }
        }
        None
    }
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric()
}

/// The character of UTF-8 `text` that ends at byte `at`.
fn char_before(text: &[u8], at: usize) -> Option<char> {
    let before = text.get(..at)?;
    let start = (at.saturating_sub(4)..at)
        .rev()
        .find(|&i| before[i] & 0xC0 != 0x80)?;
    std::str::from_utf8(&before[start..]).ok()?.chars().next()
}

/// The character of UTF-8 `text` that starts at byte `at`.
fn char_after(text: &[u8], at: usize) -> Option<char> {
    let rest = text.get(at..)?;
    let width = match rest.first()? {
        b if *b < 0x80 => return Some(char::from(*b)),
        b if *b >= 0xF0 => 4,
        b if *b >= 0xE0 => 3,
        _ => 2,
    };
    std::str::from_utf8(rest.get(..width)?).ok()?.chars().next()
}

/// A regex over the text, with the same regex in multi-line mode for searching a whole block's
/// lines at once.
#[derive(Debug, Clone)]
pub struct TextRegex {
    event: Regex,
    /// Absent when the pattern anchors at the very start or end of the text (`\A`, `\z`),
    /// which a block of many lines cannot express.
    lines: Option<Regex>,
    /// The same regex over bytes, for split columns, with the separators no match can hold
    /// (see [`TextRegex::within_pieces`]).
    pieces: Option<(regex::bytes::Regex, Vec<u8>)>,
    /// The pattern as a DFA for templated texts, built on first use (see [`TextRegex::dfa`]).
    dfa: OnceLock<Option<RegexDfa>>,
    pattern: String,
}

impl TextRegex {
    /// Compiles `pattern` (flags already inline); the error is the regex crate's.
    pub fn new(pattern: &str) -> Result<TextRegex, regex::Error> {
        let build = |multi_line| {
            RegexBuilder::new(pattern)
                .multi_line(multi_line)
                .size_limit(10 << 20)
                .build()
        };
        let event = build(false)?;
        // Parsed as the block form is: `^` and `$` then anchor at lines, `\A` and `\z` do not.
        let parsed = regex_syntax::ParserBuilder::new()
            .multi_line(true)
            .build()
            .parse(pattern);
        let (anchored, separators) = match &parsed {
            Ok(hir) => {
                let looks = hir.properties().look_set();
                let anchored = looks.contains(Look::Start) || looks.contains(Look::End);
                let only_words = looks.iter().all(is_word_look);
                let never_holds =
                    |b: u8| only_words && never_holds(hir, b) && never_holds(hir, b'\n');
                (
                    anchored,
                    [b' ', b',']
                        .into_iter()
                        .filter(|&b| never_holds(b))
                        .collect(),
                )
            }
            Err(_) => (true, Vec::new()),
        };
        let lines = match anchored {
            true => None,
            false => Some(build(true)?),
        };
        let pieces = match separators.is_empty() {
            true => None,
            false => Some((
                regex::bytes::RegexBuilder::new(pattern)
                    .size_limit(10 << 20)
                    .build()?,
                separators,
            )),
        };
        Ok(TextRegex {
            event,
            lines,
            pieces,
            dfa: OnceLock::new(),
            pattern: pattern.to_string(),
        })
    }

    /// The regex over bytes when no match can hold `separator` or a line break and it looks
    /// only at word boundaries: then each match lies within one piece of a line split at
    /// `separator`, and a search of the split columns finds the same lines (see
    /// [`mark_columns`]).
    pub fn within_pieces(&self, separator: u8) -> Option<&regex::bytes::Regex> {
        self.pieces
            .as_ref()
            .filter(|(_, separators)| separators.contains(&separator))
            .map(|(r, _)| r)
    }

    /// Whether `text` matches.
    pub fn is_match(&self, text: &str) -> bool {
        self.event.is_match(text)
    }

    /// The regex as a DFA that runs over templated texts without building them; `None` when
    /// the pattern's DFA would be too large.
    pub fn dfa(&self) -> Option<&RegexDfa> {
        self.dfa
            .get_or_init(|| RegexDfa::new(&self.pattern))
            .as_ref()
    }

    /// The regex for whole blocks, if the pattern allows one.
    pub fn lines(&self) -> Option<&Regex> {
        self.lines.as_ref()
    }

    /// The regex for one text.
    pub fn regex(&self) -> &Regex {
        &self.event
    }
}

/// Whether `look` is a word boundary of some kind: a separator and a line break are both
/// non-word characters, so such a boundary holds in a piece exactly where it holds in its line.
fn is_word_look(look: Look) -> bool {
    !matches!(
        look,
        Look::Start | Look::End | Look::StartLF | Look::EndLF | Look::StartCRLF | Look::EndCRLF
    )
}

/// Whether no match of `hir` can hold the byte `b` (an ASCII character).
fn never_holds(hir: &Hir, b: u8) -> bool {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => true,
        HirKind::Literal(l) => !l.0.contains(&b),
        HirKind::Class(Class::Unicode(c)) => !c
            .ranges()
            .iter()
            .any(|r| r.start() <= char::from(b) && char::from(b) <= r.end()),
        HirKind::Class(Class::Bytes(c)) => {
            !c.ranges().iter().any(|r| r.start() <= b && b <= r.end())
        }
        HirKind::Repetition(r) => never_holds(&r.sub, b),
        HirKind::Capture(c) => never_holds(&c.sub, b),
        HirKind::Concat(all) | HirKind::Alternation(all) => all.iter().all(|h| never_holds(h, b)),
    }
}

/// A regex that matches nothing.
pub fn never() -> Regex {
    #[allow(clippy::unwrap_used)]
    Regex::new(r"[^\s\S]").unwrap()
}

/// Marks in `hits` the events whose text in `area` (each event's text followed by a newline,
/// event `i`'s starting at `starts[i]`) `find` finds a match in. `find(area, from)` returns
/// the first match at or after `from`. A match within one event that `is_line` (a text
/// without line breaks) is exact; events touched by a match that spans more than one event
/// are pushed onto `recheck`, and events that are not lines are left to the caller.
pub fn mark_lines(
    area: &str,
    starts: &[u32],
    is_line: impl Fn(usize) -> bool,
    mut find: impl FnMut(&str, usize) -> Option<(usize, usize)>,
    hits: &mut [bool],
    recheck: &mut Vec<usize>,
) {
    // Matches come in order: the event of each is found by walking on from the last one.
    let mut cursor = 0;
    let mut event_at = |offset: usize| {
        while starts
            .get(cursor + 1)
            .is_some_and(|&s| s as usize <= offset)
        {
            cursor += 1;
        }
        cursor
    };
    let mut from = 0;
    while from < area.len() {
        let Some((start, end)) = find(area, from) else {
            break;
        };
        if start >= area.len() {
            break;
        }
        let first = event_at(start);
        // Within the event's text, short of its newline: the match is the event's own.
        if end < starts[first + 1] as usize {
            if is_line(first) {
                hits[first] = true;
            }
            from = starts[first + 1] as usize;
            continue;
        }
        let last = event_at(end - 1).min(starts.len() - 2);
        recheck.extend((first..=last).filter(|&i| is_line(i)));
        // The next search starts after the last event touched: each is decided.
        from = starts[last + 1] as usize;
    }
}

/// Marks in `hits` (one per line) the lines whose split pieces `find` finds a match in, given
/// the split `columns` (column `c` holds piece `c` of each line with more than `c` pieces, each
/// followed by a newline) and each line's number of pieces in `counts`. Exact when no match
/// can hold the separator or a newline ([`Words::within_pieces`], [`TextRegex::within_pieces`]).
pub fn mark_columns<'a>(
    columns: impl Iterator<Item = &'a [u8]>,
    counts: &[u8],
    mut find: impl FnMut(&'a [u8], usize) -> Option<(usize, usize)>,
    hits: &mut [bool],
) {
    let mut lines_of = Vec::new();
    for (c, column) in columns.enumerate() {
        // Which line each piece of the column belongs to, unless every line has one.
        let every_line = counts.iter().all(|&n| usize::from(n) > c);
        if !every_line {
            lines_of.clear();
            lines_of.extend((0..counts.len()).filter(|&k| usize::from(counts[k]) > c));
        }
        let (mut at, mut piece) = (0, 0);
        while let Some((start, _)) = find(column, at) {
            if start >= column.len() {
                break;
            }
            piece += eddy_store::split::count_newlines(&column[at..start]);
            let line = match every_line {
                true => Some(piece),
                false => lines_of.get(piece).copied(),
            };
            if let Some(hit) = line.and_then(|k| hits.get_mut(k)) {
                *hit = true;
            }
            // On to the next piece: the match is within this one.
            match memchr::memchr(b'\n', &column[start..]) {
                Some(k) => at = start + k + 1,
                None => break,
            }
            piece += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn words_need_boundaries_and_ignore_case() {
        let w = Words::new("Error", false);
        assert!(w.is_match("an ERROR: x"));
        assert!(w.is_match("error"));
        assert!(!w.is_match("errors"));
        assert!(!w.is_match("xerror"));
        assert!(w.is_match("errors and error"));
        let phrase = Words::new("a a", false);
        assert!(phrase.is_match("xa a a"));
        assert!(Words::new("/api/v2", false).is_match("GET /api/v2/x"));
        assert!(Words::new("erro*", true).is_match("Errors"));
        assert!(!Words::new("erro*", true).is_match("terrors"));
        assert!(Words::new("ärger", false).is_match("Großer ÄRGER!"));
    }

    #[test]
    fn anchored_regexes_have_no_block_form() {
        assert!(TextRegex::new(r"\Aabc").unwrap().lines().is_none());
        assert!(TextRegex::new(r"^abc$").unwrap().lines().is_some());
        assert!(TextRegex::new(r"\\Aabc").unwrap().lines().is_some());
    }

    fn texts() -> impl Strategy<Value = Vec<String>> {
        proptest::collection::vec("[aAb \\-\n.É]{0,12}", 0..12)
    }

    /// The events a block-wide search marks (with rechecks) are those a per-text match takes.
    fn block_agrees(
        texts: &[String],
        find: impl Fn(&str, usize) -> Option<(usize, usize)>,
        each: impl Fn(&str) -> bool,
        lowered: bool,
    ) {
        let mut area = String::new();
        let mut starts = Vec::new();
        for t in texts {
            starts.push(area.len() as u32);
            if lowered {
                area.push_str(&lowercase(t));
            } else {
                area.push_str(t);
            }
            area.push('\n');
        }
        starts.push(area.len() as u32);
        let is_line = |i: usize| !texts[i].contains('\n');
        let mut hits = vec![false; texts.len()];
        let mut recheck = Vec::new();
        mark_lines(&area, &starts, is_line, &find, &mut hits, &mut recheck);
        for i in recheck {
            hits[i] = each(&texts[i]);
        }
        for (i, t) in texts.iter().enumerate() {
            if is_line(i) {
                assert_eq!(hits[i], each(t), "text {t:?} in {texts:?}");
            }
        }
    }

    #[test]
    fn only_matches_within_pieces_search_columns() {
        let r = |p: &str| TextRegex::new(p).unwrap();
        assert!(r("time ?out").within_pieces(b',').is_some());
        assert!(r("time ?out").within_pieces(b' ').is_none());
        assert!(r(r"(?i)\bE\d+").within_pieces(b' ').is_some());
        assert!(r("a.b").within_pieces(b',').is_none());
        assert!(r("^a").within_pieces(b',').is_none());
        assert!(r("[^x]").within_pieces(b',').is_none());
        assert!(Words::new("GET", false).within_pieces(b' '));
        assert!(!Words::new("a b", false).within_pieces(b' '));
        assert!(!Words::new("ge*", true).within_pieces(b' '));
    }

    /// `lines` cut at each `separator` into at most `max` pieces, as columns (each piece
    /// followed by a newline, lower-cased if `lowered`) and piece counts.
    fn columns_of(
        lines: &[String],
        separator: char,
        max: usize,
        lowered: bool,
    ) -> (Vec<Vec<u8>>, Vec<u8>) {
        let mut columns = vec![Vec::new(); max];
        let mut counts = Vec::new();
        for line in lines {
            let pieces: Vec<&str> = line.splitn(max, separator).collect();
            for (c, piece) in pieces.iter().enumerate() {
                let piece = if lowered {
                    lowercase(piece)
                } else {
                    Cow::Borrowed(*piece)
                };
                columns[c].extend_from_slice(piece.as_bytes());
                columns[c].push(b'\n');
            }
            counts.push(pieces.len() as u8);
        }
        (columns, counts)
    }

    fn lines() -> impl Strategy<Value = Vec<String>> {
        proptest::collection::vec("[aAb ,\\-.É]{0,12}", 0..12)
    }

    proptest! {
        #[test]
        fn column_search_agrees_with_per_line_words(
            lines in lines(),
            needle in "[aAb ,\\-É]{1,4}",
            comma in any::<bool>(),
            max in 1usize..5,
        ) {
            let separator = if comma { ',' } else { ' ' };
            let w = Words::new(&needle, false);
            prop_assume!(w.within_pieces(separator as u8));
            let (columns, counts) = columns_of(&lines, separator, max, true);
            let mut hits = vec![false; lines.len()];
            mark_columns(columns.iter().map(Vec::as_slice), &counts, |h, f| w.find_in_bytes(h, f), &mut hits);
            let want: Vec<bool> = lines.iter().map(|l| w.is_match(l)).collect();
            prop_assert_eq!(hits, want);
        }

        #[test]
        fn column_search_agrees_with_per_line_regexes(
            lines in lines(),
            pattern in "(\\(\\?i\\)|)(\\\\b|)(a|b|\\.|\\s|A|É|\\\\w|\\[\\^,\\]|a b)(\\*|\\+|)",
            comma in any::<bool>(),
            max in 1usize..5,
        ) {
            let separator = if comma { ',' } else { ' ' };
            let r = TextRegex::new(&pattern).unwrap();
            let Some(pieces) = r.within_pieces(separator as u8) else {
                return Ok(());
            };
            let (columns, counts) = columns_of(&lines, separator, max, false);
            let mut hits = vec![false; lines.len()];
            mark_columns(
                columns.iter().map(Vec::as_slice),
                &counts,
                |h, f| pieces.find_at(h, f).map(|m| (m.start(), m.end())),
                &mut hits,
            );
            let want: Vec<bool> = lines.iter().map(|l| r.is_match(l)).collect();
            prop_assert_eq!(hits, want, "pattern {:?}", pattern);
        }

        #[test]
        fn block_search_agrees_with_per_text_words(texts in texts(), needle in "[aAb \\-*É]{1,4}") {
            let w = Words::new(&needle, needle.contains('*'));
            block_agrees(&texts, |a, f| w.find_lowered(a, f), |t| w.is_match(t), true);
        }

        #[test]
        fn block_search_agrees_with_per_text_regexes(texts in texts(), pattern in "(\\^|)(a|b|\\.|\\s|A)(\\*|\\+|)(\\$|)") {
            let r = TextRegex::new(&pattern).unwrap();
            let lines = r.lines().unwrap();
            block_agrees(&texts, |a, f| lines.find_at(a, f).map(|m| (m.start(), m.end())), |t| r.is_match(t), false);
        }
    }
}
