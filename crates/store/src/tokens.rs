//! The searchable tokens of an event: lower-cased words of its text and its field values.
//!
//! A word is a maximal run of alphanumeric characters (Unicode), lower-cased: `GET
//! /api/v2/orders/7919 HTTP/1.1` gives `get api v2 orders 7919 http 1 1`. A block can hold a
//! substring match of a literal only if it holds the literal's inner words (its first and last
//! word may be cut by the match; for a whole-word search, all of them), so blocks whose filter
//! lacks one are skipped. Field values also count whole (lower-cased) when short, so `url="/api/v2/orders"`
//! can be pruned on the exact value too.

use std::collections::HashSet;

use eddy_event::{Event, Value};

/// Longest field value that is also a token as a whole (longer ones count by their words).
pub const MAX_WHOLE_VALUE: usize = 64;

/// Calls `f` with each word of `text`, lower-cased (words may repeat).
pub fn text_tokens(text: &str, mut f: impl FnMut(&str)) {
    let mut word = String::new();
    for c in text.chars() {
        if c.is_alphanumeric() {
            if c.is_ascii() {
                word.push(c.to_ascii_lowercase());
            } else {
                word.extend(c.to_lowercase());
            }
        } else if !word.is_empty() {
            f(&word);
            word.clear();
        }
    }
    if !word.is_empty() {
        f(&word);
    }
}

/// Adds the tokens of `event` to `out`: the words of `@rawstring`, of tag values and of field
/// values, and short field and tag values whole.
pub fn event_tokens(event: &Event, out: &mut HashSet<String>) {
    let mut add = |t: &str| {
        if !out.contains(t) {
            out.insert(t.to_string());
        }
    };
    if let Some(raw) = &event.raw {
        text_tokens(raw, &mut add);
    }
    for v in event.tags.values() {
        value_tokens(v, &mut add);
    }
    for v in event.fields.values() {
        match v {
            Value::Str(s) => value_tokens(s, &mut add),
            Value::Int(_) | Value::Float(_) | Value::Bool(_) => {
                value_tokens(&v.to_text(), &mut add)
            }
            Value::Null => {}
        }
    }
}

/// A value's words, and the value whole when short.
fn value_tokens(text: &str, add: &mut impl FnMut(&str)) {
    text_tokens(text, &mut *add);
    if !text.is_empty() && text.len() <= MAX_WHOLE_VALUE {
        add(&text.to_lowercase());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
        event_tokens(&e, &mut tokens);
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
