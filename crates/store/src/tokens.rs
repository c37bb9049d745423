//! The searchable tokens of an event: lower-cased words of its text and its field values.
//!
//! A word is a maximal run of alphanumeric characters (Unicode), lower-cased: `GET
//! /api/v2/orders/7919 HTTP/1.1` gives `get api v2 orders 7919 http 1 1`. A block can hold a
//! substring match of a literal only if it holds the literal's inner words (its first and last
//! word may be cut by the match; for a whole-word search, all of them), so blocks whose filter
//! lacks one are skipped. Field values also count whole (lower-cased) when short, so `url="/api/v2/orders"`
//! can be pruned on the exact value too.

use std::fmt::Write;

use eddy_event::{Event, Value};

/// Longest field value that is also a token as a whole (longer ones count by their words).
pub const MAX_WHOLE_VALUE: usize = 64;

/// Calls `f` with each word of `text`, lower-cased (words may repeat).
pub fn text_tokens(text: &str, mut f: impl FnMut(&str)) {
    if text.is_ascii() {
        // The common case, byte by byte: words are slices when already lower case.
        let bytes = text.as_bytes();
        let mut lower = String::new();
        let mut i = 0;
        while i < bytes.len() {
            while i < bytes.len() && !bytes[i].is_ascii_alphanumeric() {
                i += 1;
            }
            let start = i;
            let mut upper = false;
            while i < bytes.len() && bytes[i].is_ascii_alphanumeric() {
                upper |= bytes[i].is_ascii_uppercase();
                i += 1;
            }
            if start < i {
                let word = &text[start..i];
                if upper {
                    lower.clear();
                    lower.push_str(word);
                    lower.make_ascii_lowercase();
                    f(&lower);
                } else {
                    f(word);
                }
            }
        }
        return;
    }
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

/// Calls `add` with each token of `event` (tokens may repeat): its tags' and [`content_tokens`].
pub fn event_tokens(event: &Event, mut add: impl FnMut(&str)) {
    for v in event.tags.values() {
        tag_tokens(v, &mut add);
    }
    content_tokens(event, add);
}

/// The tokens of a tag value: its words and itself whole.
pub fn tag_tokens(value: &str, mut add: impl FnMut(&str)) {
    value_tokens(value, true, &mut add);
}

/// The tokens of an event's `@rawstring` and fields:
///
/// - the words of `@rawstring`;
/// - each field value whole, lower-cased, when it is at most [`MAX_WHOLE_VALUE`] bytes without
///   white space (identifiers, paths, hosts, numbers: what `field=value` searches name);
/// - the words of field values, unless a parser made the fields from `@rawstring` (their words
///   are the raw text's words then; a search for words matches `@rawstring`).
pub fn content_tokens(event: &Event, mut add: impl FnMut(&str)) {
    if let Some(raw) = &event.raw {
        text_tokens(raw, &mut add);
    }
    let words = event.parsed_by.is_none() || event.raw.is_none();
    let mut number = String::new();
    for v in event.fields.values() {
        match v {
            Value::Str(s) => value_tokens(s, words, &mut add),
            Value::Int(i) => {
                number.clear();
                let _ = write!(number, "{i}");
                value_tokens(&number, words, &mut add)
            }
            Value::Float(f) => {
                number.clear();
                let _ = write!(number, "{f}");
                value_tokens(&number, words, &mut add)
            }
            Value::Bool(b) => value_tokens(if *b { "true" } else { "false" }, words, &mut add),
            Value::Null => {}
        }
    }
}

/// Whether `value` is also a token whole.
pub fn is_whole_token(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_WHOLE_VALUE
        && !value.bytes().any(|b| b.is_ascii_whitespace())
}

/// A value's words (if `words`), and the value whole when short and without white space.
fn value_tokens(text: &str, words: bool, add: &mut impl FnMut(&str)) {
    if words {
        text_tokens(text, &mut *add);
    }
    if is_whole_token(text) {
        if text.is_ascii() && !text.bytes().any(|b| b.is_ascii_uppercase()) {
            add(text);
        } else {
            add(&text.to_lowercase());
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
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
