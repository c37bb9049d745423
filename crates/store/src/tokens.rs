//! The searchable tokens of an event: lower-cased words of its text and its field values.
//!
//! A word is a maximal run of alphanumeric characters (Unicode), lower-cased: `GET
//! /api/v2/orders/7919 HTTP/1.1` gives `get api v2 orders 7919 http 1 1`. A block can hold a
//! substring match of a literal only if it holds the literal's inner words (its first and last
//! word may be cut by the match; for a whole-word search, all of them), so blocks whose filter
//! lacks one are skipped. Field values also count whole (lower-cased) when short, so `url="/api/v2/orders"`
//! can be pruned on the exact value too.

use std::fmt::Write;

use eddy_event::codec::FieldsRef;
use eddy_event::{Event, ValueRef};

/// Longest field value that is also a token as a whole (longer ones count by their words).
pub const MAX_WHOLE_VALUE: usize = 64;

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of `x` (ASCII bytes only) that is at least `lo`.
const fn at_least(x: u64, lo: u8) -> u64 {
    // No byte carries into the next: x ≤ 0x7f and 0x80 − lo ≤ 0x80.
    x.wrapping_add((0x80 - lo as u64) * ONES) & HIGH
}

/// The high bit of each byte of `x` (ASCII bytes only) that is at most `hi`.
const fn at_most(x: u64, hi: u8) -> u64 {
    // No byte borrows from the next: 0x80 + hi ≥ 0x80 > x.
    ((0x80 + hi as u64) * ONES).wrapping_sub(x) & HIGH
}

/// Masks of the word bytes and the capitals among eight ASCII bytes, one bit per byte.
fn classify8(bytes: [u8; 8]) -> (u64, u64) {
    let x = u64::from_le_bytes(bytes);
    let digit = at_least(x, b'0') & at_most(x, b'9');
    let folded = x | (0x20 * ONES);
    let letter = at_least(folded, b'a') & at_most(folded, b'z');
    let upper = at_least(x, b'A') & at_most(x, b'Z');
    (gather_high_bits(digit | letter), gather_high_bits(upper))
}

/// The high bits of the eight bytes of `m` as the low eight bits.
fn gather_high_bits(m: u64) -> u64 {
    ((m >> 7).wrapping_mul(0x0102_0408_1020_4080)) >> 56
}

/// Calls `f` with each word of `text`, lower-cased (words may repeat).
pub fn text_tokens(text: &str, mut f: impl FnMut(&str)) {
    if text.is_ascii() {
        // The words of ASCII text are ASCII, which is UTF-8.
        byte_words(text.as_bytes(), |w| {
            f(std::str::from_utf8(w).unwrap_or_default())
        });
    } else {
        unicode_words(text, &mut f);
    }
}

/// [`text_tokens`] of any text, character by character.
fn unicode_words(text: &str, f: &mut dyn FnMut(&str)) {
    let mut word = String::new();
    for c in text.chars() {
        if c.is_alphanumeric() {
            word.extend(c.to_lowercase());
        } else if !word.is_empty() {
            f(&word);
            word.clear();
        }
    }
    if !word.is_empty() {
        f(&word);
    }
}

/// Calls `f` with each word of `text` (lower-cased, as bytes), where the text need not be
/// checked as UTF-8 first: ASCII text is taken apart as bytes, other text must be UTF-8 (else
/// it has no words).
pub fn byte_words(text: &[u8], mut f: impl FnMut(&[u8])) {
    if text.is_ascii() {
        let mut lower = Vec::new();
        ascii_word_spans(text, |start, end, upper| {
            let word = &text[start..end];
            if upper {
                lower.clear();
                lower.extend_from_slice(word);
                lower.make_ascii_lowercase();
                f(&lower);
            } else {
                f(word);
            }
        });
    } else if let Ok(text) = std::str::from_utf8(text) {
        unicode_words(text, &mut |w| f(w.as_bytes()));
    }
}

/// Calls `emit(start, end, has_capitals)` for each word of ASCII `bytes`, 64 bytes at a time:
/// a mask of the word bytes is built eight bytes per step without branches, and words are
/// found from its edges (branching per byte mispredicted at every word boundary, which made
/// the byte loop the digest's largest cost).
fn ascii_word_spans(bytes: &[u8], mut emit: impl FnMut(usize, usize, bool)) {
    // The word open at the end of the previous chunk: its start, and whether it has capitals.
    let mut open: Option<(usize, bool)> = None;
    for (chunk_index, chunk) in bytes.chunks(64).enumerate() {
        let base = chunk_index * 64;
        let (mut word, mut upper) = (0u64, 0u64);
        for (j, eight) in chunk.chunks(8).enumerate() {
            let mut padded = [0u8; 8];
            padded[..eight.len()].copy_from_slice(eight);
            let (w, u) = classify8(padded);
            word |= w << (8 * j);
            upper |= u << (8 * j);
        }
        // Bits where a word starts or ends (the bit after its last byte).
        let mut edges = word ^ ((word << 1) | u64::from(open.is_some()));
        while edges != 0 {
            let at = edges.trailing_zeros() as usize;
            edges &= edges - 1;
            match open.take() {
                None => open = Some((base + at, false)),
                Some((start, caps)) => {
                    let from = start.saturating_sub(base);
                    let inside = upper & (u64::MAX << from) & !(u64::MAX << at);
                    emit(start, base + at, caps || inside != 0);
                }
            }
        }
        if let Some((start, caps)) = &mut open {
            // The word runs on into the next chunk.
            let from = start.saturating_sub(base);
            *caps |= upper >> from != 0;
        }
    }
    if let Some((start, caps)) = open {
        emit(start, bytes.len(), caps);
    }
}

/// Calls `add` with each token of `event` (tokens may repeat): its tags' and [`content_tokens`].
pub fn event_tokens(event: &Event, mut add: impl FnMut(&str)) {
    for v in event.tags.values() {
        tag_tokens(v, &mut add);
    }
    content_tokens(event, add);
}

/// The tokens of a tag value: its words and itself whole.
pub fn tag_tokens(value: &str, mut add: impl FnMut(&str)) {
    value_tokens(ValueRef::Str(value), true, &mut String::new(), &mut add);
}

/// The tokens of an event's `@rawstring` and fields:
///
/// - the words of `@rawstring`;
/// - each field value whole, lower-cased, when it is at most [`MAX_WHOLE_VALUE`] bytes without
///   white space (identifiers, paths, hosts, numbers: what `field=value` searches name);
/// - the words of field values, unless a parser made the fields from `@rawstring` (their words
///   are the raw text's words then; a search for words matches `@rawstring`).
pub fn content_tokens(event: &Event, add: impl FnMut(&str)) {
    content_tokens_of(
        event.raw.as_deref(),
        event.parsed_by.is_some(),
        FieldsRef::Map(&event.fields),
        add,
    );
}

/// [`content_tokens`] of an event given by parts (its fields may still be encoded).
pub fn content_tokens_of(
    raw: Option<&str>,
    parsed: bool,
    fields: FieldsRef<'_>,
    mut add: impl FnMut(&str),
) {
    if let Some(raw) = raw {
        text_tokens(raw, &mut add);
    }
    field_tokens(fields, !parsed || raw.is_none(), add);
}

/// The tokens of field values: each whole when short, and its words if `words`.
pub fn field_tokens(fields: FieldsRef<'_>, words: bool, mut add: impl FnMut(&str)) {
    let mut scratch = String::new();
    for v in fields.values() {
        value_tokens(v, words, &mut scratch, &mut add);
    }
}

/// Whether `value` is also a token whole.
pub fn is_whole_token(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_WHOLE_VALUE
        && !value.bytes().any(|b| b.is_ascii_whitespace())
}

/// A value's words (if `words`), and the value whole when short and without white space;
/// `scratch` holds a decimal's text.
pub(crate) fn value_tokens(
    v: ValueRef<'_>,
    words: bool,
    scratch: &mut String,
    add: &mut impl FnMut(&str),
) {
    let mut digits = itoa::Buffer::new();
    let text = match v {
        ValueRef::Str(s) => s,
        ValueRef::Int(i) => digits.format(i),
        ValueRef::Float(f) => {
            scratch.clear();
            let _ = write!(scratch, "{f}");
            scratch
        }
        ValueRef::Bool(b) => {
            if b {
                "true"
            } else {
                "false"
            }
        }
        ValueRef::Null => return,
    };
    if words {
        text_tokens(text, &mut *add);
    }
    if text.is_empty() || text.len() > MAX_WHOLE_VALUE {
        return;
    }
    if !text.is_ascii() {
        if is_whole_token(text) {
            add(&text.to_lowercase());
        }
        return;
    }
    let (space, upper) = spaces_and_capitals(text.as_bytes());
    if space {
        return;
    }
    if upper {
        let mut lower = [0u8; MAX_WHOLE_VALUE];
        let lower = &mut lower[..text.len()];
        lower.copy_from_slice(text.as_bytes());
        lower.make_ascii_lowercase();
        // ASCII stays ASCII.
        if let Ok(lower) = std::str::from_utf8(lower) {
            add(lower);
        }
    } else {
        add(text);
    }
}

/// Whether ASCII `text` holds white space, and whether it holds capitals: eight bytes per step.
fn spaces_and_capitals(text: &[u8]) -> (bool, bool) {
    let (mut space, mut upper) = (0u64, 0u64);
    for eight in text.chunks(8) {
        // Padding with a lower-case letter adds neither.
        let mut padded = [b'a'; 8];
        padded[..eight.len()].copy_from_slice(eight);
        let x = u64::from_le_bytes(padded);
        // What `is_ascii_whitespace` counts: \t \n \x0c \r and the space (not \x0b).
        space |= (at_least(x, b'\t') & at_most(x, b'\n'))
            | (at_least(x, 0x0c) & at_most(x, b'\r'))
            | (at_least(x, b' ') & at_most(x, b' '));
        upper |= at_least(x, b'A') & at_most(x, b'Z');
    }
    (space != 0, upper != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    fn words(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        text_tokens(text, |w| out.push(w.to_string()));
        out
    }

    #[test]
    fn words_are_alphanumeric_runs_lower_cased() {
        assert_eq!(
            words("GET /api/v2/Orders/7919 HTTP/1.1"),
            ["get", "api", "v2", "orders", "7919", "http", "1", "1"]
        );
        assert_eq!(words("needle-7f3a9c"), ["needle", "7f3a9c"]);
        assert_eq!(words("Ünïcode ÄBC"), ["ünïcode", "äbc"]);
        assert!(words(" -- ").is_empty());
    }

    #[test]
    fn events_give_raw_words_tag_and_field_values() {
        let e = eddy_event::Parser::Accesslog
            .parse(
                r#"10.0.0.1 - frank [24/Nov/2026:10:00:00 +0000] "GET /api/v2/orders HTTP/1.1" 503 12 "-" "curl/8""#,
                0,
            )
            .unwrap();
        let mut tokens = HashSet::new();
        event_tokens(&e, |t| {
            tokens.insert(t.to_string());
        });
        for t in ["frank", "get", "orders", "503", "curl", "/api/v2/orders"] {
            assert!(tokens.contains(t), "{t} missing from {tokens:?}");
        }
    }

    proptest! {
        #[test]
        fn a_value_is_a_whole_token_exactly_when_is_whole_token_says(
            value in "[a-zA-Z0-9 \t\n\x0b\x0c\r./é-]{0,70}",
        ) {
            let mut got = Vec::new();
            value_tokens(ValueRef::Str(&value), false, &mut String::new(), &mut |t: &str| {
                got.push(t.to_string())
            });
            let expected = if is_whole_token(&value) { vec![value.to_lowercase()] } else { vec![] };
            prop_assert_eq!(got, expected);
        }

        #[test]
        fn byte_words_are_the_text_tokens(text in ".{0,100}") {
            let mut bytes = Vec::new();
            byte_words(text.as_bytes(), |w| bytes.push(w.to_vec()));
            let expected: Vec<Vec<u8>> = words(&text).into_iter().map(String::into_bytes).collect();
            prop_assert_eq!(bytes, expected);
        }

        #[test]
        fn ascii_words_match_the_simple_definition(text in "[a-zA-Z0-9 ./-]{0,300}") {
            let expected: Vec<String> = text
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .map(str::to_lowercase)
                .collect();
            prop_assert_eq!(words(&text), expected);
        }

        #[test]
        fn every_word_of_a_literal_in_the_text_is_a_token_of_the_text(
            text in ".{0,80}", start in 0usize..80, len in 0usize..20,
        ) {
            // What pruning relies on: a substring's words are among the text's tokens, except
            // its first and last word, which may be cut.
            let chars: Vec<char> = text.chars().collect();
            let start = start.min(chars.len());
            let end = (start + len).min(chars.len());
            let literal: String = chars[start..end].iter().collect();
            let all: HashSet<String> = words(&text).into_iter().collect();
            let inner = words(&literal);
            if inner.len() > 2 {
                for w in &inner[1..inner.len() - 1] {
                    prop_assert!(all.contains(w), "{w:?} of {literal:?} not in tokens of {text:?}");
                }
            }
        }
    }
}
