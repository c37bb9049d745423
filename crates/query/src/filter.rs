//! Filters compiled for matching, and what they tell the planner.
//!
//! Free text matches **whole words**, case-insensitively: `error` matches "Error: disk" but not
//! "errors" (write `error*` for that). A quoted phrase matches its words in sequence with
//! exactly the characters between them, case-insensitively, and word boundaries at its ends.
//! This is what lets a block's bloom filter of words skip blocks without ever changing an
//! answer: an event that matches holds every word of the phrase. Text is the `@rawstring`, or,
//! for an event without one, any of its field values.
//!
//! `field=value` compares the value's text exactly (case-sensitive); `*` in a bare value is a
//! wildcard; `field=*` means the field exists; `!=` is its negation (an event without the field
//! passes); `<`, `<=`, `>`, `>=` compare numbers (an event whose value is not a number fails).

use std::collections::HashSet;

use regex::Regex;

use eddy_event::{Event, Value};
use eddy_store::{text_tokens, Parts};

use crate::fields;
use crate::search::{self, AnyWord, TextRegex, Words};
use crate::syntax::{CompareOp, Filter, Pattern, QueryError, RegexLit, Span};

/// A value matcher.
#[derive(Debug, Clone)]
pub enum Matcher {
    /// Equal text.
    Exact(String),
    /// A compiled wildcard or regex.
    Regex(Regex),
    /// Anything (`field=*`).
    Any,
}

impl Matcher {
    fn of(p: &Pattern, span: Span) -> Result<Matcher, QueryError> {
        Ok(match p {
            Pattern::Exact(s) => Matcher::Exact(s.clone()),
            Pattern::Wildcard(w) if w == "*" => Matcher::Any,
            Pattern::Wildcard(w) => Matcher::Regex(wildcard_regex(w, true)),
            Pattern::Regex(r) => Matcher::Regex(compile_regex(r, span)?),
        })
    }

    /// Whether `text` matches.
    pub fn matches(&self, text: &str) -> bool {
        match self {
            Matcher::Exact(s) => s == text,
            Matcher::Regex(r) => r.is_match(text),
            Matcher::Any => true,
        }
    }
}

/// A compiled filter.
#[derive(Debug, Clone)]
pub enum Compiled {
    /// Words or a phrase in the event's text.
    Text(Box<Words>),
    /// A regex over the event's text.
    Regex(Box<TextRegex>),
    /// `field = / != matcher`.
    Match {
        /// The field.
        field: String,
        /// What its text must match.
        matcher: Matcher,
        /// `!=`
        negated: bool,
    },
    /// A numeric comparison.
    Number {
        /// The field.
        field: String,
        /// `<`, `<=`, `>`, `>=`.
        op: CompareOp,
        /// The number.
        value: f64,
    },
    /// `in(field, values=[...])`, and `field=v1 or field=v2 or …`.
    In {
        /// The field.
        field: String,
        /// Any of these texts exactly (hashed: thousands of values cost one look-up).
        exact: HashSet<String>,
        /// Or any of these wildcards and regexes.
        patterns: Vec<Matcher>,
    },
    /// Any of several single words in the event's text (an `or` of them).
    AnyWord(AnyWord),
    /// All of these.
    And(Vec<Compiled>),
    /// Any of these.
    Or(Vec<Compiled>),
    /// Not this.
    Not(Box<Compiled>),
}

/// Whether `text` is one of `exact` or matches one of `patterns` (an `in()`).
pub(crate) fn in_matches(exact: &HashSet<String>, patterns: &[Matcher], text: &str) -> bool {
    exact.contains(text) || patterns.iter().any(|m| m.matches(text))
}

/// Compiles a filter, checking its regexes and numbers.
pub fn compile(f: &Filter) -> Result<Compiled, QueryError> {
    Ok(match f {
        Filter::Text { text, wildcard, .. } => {
            Compiled::Text(Box::new(Words::new(text, *wildcard)))
        }
        Filter::Regex { regex, span } => Compiled::Regex(Box::new(
            TextRegex::new(&inline_flags(regex)).map_err(|e| regex_error(&e, *span))?,
        )),
        Filter::Compare {
            field,
            op,
            value,
            span,
        } => match op {
            CompareOp::Eq | CompareOp::Ne => Compiled::Match {
                field: field.clone(),
                matcher: Matcher::of(value, *span)?,
                negated: *op == CompareOp::Ne,
            },
            _ => {
                let Pattern::Exact(text) = value else {
                    return Err(QueryError::new(
                        "<, <=, > and >= compare with a number",
                        *span,
                    ));
                };
                let Ok(number) = text.trim().parse::<f64>() else {
                    return Err(QueryError::new(
                        format!("{text:?} is not a number; <, <=, > and >= compare numbers"),
                        *span,
                    ));
                };
                Compiled::Number {
                    field: field.clone(),
                    op: *op,
                    value: number,
                }
            }
        },
        Filter::In {
            field,
            values,
            span,
        } => {
            let mut exact = HashSet::new();
            let mut patterns = Vec::new();
            for v in values {
                match Matcher::of(v, *span)? {
                    Matcher::Exact(text) => {
                        exact.insert(text);
                    }
                    other => patterns.push(other),
                }
            }
            Compiled::In {
                field: field.clone(),
                exact,
                patterns,
            }
        }
        Filter::And(all) => Compiled::And(compile_distinct(all)?),
        Filter::Or(any) => Compiled::Or(merge_alternatives(compile_distinct(any)?)),
        Filter::Not(a) => Compiled::Not(Box::new(compile(a)?)),
    })
}

/// The filters compiled, each written the same way more than once kept once (`a or a or …`
/// would otherwise search the text once per copy).
fn compile_distinct(filters: &[Filter]) -> Result<Vec<Compiled>, QueryError> {
    let mut seen = HashSet::new();
    filters
        .iter()
        .filter(|f| seen.insert(Unspanned(f)))
        .map(compile)
        .collect()
}

/// Alternatives of `or` with the comparisons of one field to exact texts merged into one
/// `in` (a hashed look-up per event, where each would compare the field's text again), and
/// single plain words into one search for any of them.
fn merge_alternatives(any: Vec<Compiled>) -> Vec<Compiled> {
    let mut out = Vec::new();
    let mut by_field: Vec<(String, HashSet<String>, Vec<Matcher>, usize)> = Vec::new();
    let mut words = HashSet::new();
    for c in any {
        let (field, exact, patterns) = match c {
            Compiled::Match {
                field,
                matcher: Matcher::Exact(text),
                negated: false,
            } => (field, HashSet::from([text]), Vec::new()),
            Compiled::In {
                field,
                exact,
                patterns,
            } => (field, exact, patterns),
            Compiled::Text(w) if w.plain_word().is_some() => {
                words.extend(w.plain_word().map(str::to_string));
                continue;
            }
            other => {
                out.push(other);
                continue;
            }
        };
        match by_field.iter_mut().find(|(f, ..)| *f == field) {
            Some((_, e, p, n)) => {
                e.extend(exact);
                p.extend(patterns);
                *n += 1;
            }
            None => by_field.push((field, exact, patterns, 1)),
        }
    }
    for (field, exact, patterns, n) in by_field {
        match (n, exact.len(), patterns.is_empty()) {
            (1, 1, true) => out.push(Compiled::Match {
                field,
                matcher: Matcher::Exact(exact.into_iter().next().unwrap_or_default()),
                negated: false,
            }),
            _ => out.push(Compiled::In {
                field,
                exact,
                patterns,
            }),
        }
    }
    match words.len() {
        0 => {}
        1 => out.extend(
            words
                .into_iter()
                .map(|w| Compiled::Text(Box::new(Words::new(&w, false)))),
        ),
        _ => out.push(Compiled::AnyWord(AnyWord::new(words))),
    }
    out
}

/// A filter compared and hashed without its spans (where it was written).
struct Unspanned<'a>(&'a Filter);

impl PartialEq for Unspanned<'_> {
    fn eq(&self, other: &Self) -> bool {
        same_filter(self.0, other.0)
    }
}

impl Eq for Unspanned<'_> {}

impl std::hash::Hash for Unspanned<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Only the leaf's kind and text: equal filters hash alike, which is all a hash needs.
        std::mem::discriminant(self.0).hash(state);
        match self.0 {
            Filter::Text { text, .. } => text.hash(state),
            Filter::Compare { field, .. } | Filter::In { field, .. } => field.hash(state),
            Filter::Regex { regex, .. } => regex.pattern.hash(state),
            Filter::And(v) | Filter::Or(v) => v.len().hash(state),
            Filter::Not(_) => {}
        }
    }
}

/// Whether two filters are written alike, wherever they are.
fn same_filter(a: &Filter, b: &Filter) -> bool {
    match (a, b) {
        (
            Filter::Text {
                text: t1,
                wildcard: w1,
                ..
            },
            Filter::Text {
                text: t2,
                wildcard: w2,
                ..
            },
        ) => t1 == t2 && w1 == w2,
        (Filter::Regex { regex: r1, .. }, Filter::Regex { regex: r2, .. }) => r1 == r2,
        (
            Filter::Compare {
                field: f1,
                op: o1,
                value: v1,
                ..
            },
            Filter::Compare {
                field: f2,
                op: o2,
                value: v2,
                ..
            },
        ) => f1 == f2 && o1 == o2 && v1 == v2,
        (
            Filter::In {
                field: f1,
                values: v1,
                ..
            },
            Filter::In {
                field: f2,
                values: v2,
                ..
            },
        ) => f1 == f2 && v1 == v2,
        (Filter::And(x), Filter::And(y)) | (Filter::Or(x), Filter::Or(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_filter(a, b))
        }
        (Filter::Not(x), Filter::Not(y)) => same_filter(x, y),
        _ => false,
    }
}

impl Compiled {
    /// Whether `event` passes.
    pub fn matches(&self, event: &Event) -> bool {
        match self {
            Compiled::Text(w) => text_matches(event, |t| w.is_match(t)),
            Compiled::Regex(r) => text_matches(event, |t| r.is_match(t)),
            Compiled::Match {
                field,
                matcher,
                negated,
            } => fields::text(event, field).is_some_and(|t| matcher.matches(&t)) != *negated,
            Compiled::Number { field, op, value } => fields::get(event, field)
                .and_then(|v| v.as_f64())
                .is_some_and(|x| op.holds(x, *value)),
            Compiled::In {
                field,
                exact,
                patterns,
            } => fields::text(event, field).is_some_and(|t| in_matches(exact, patterns, &t)),
            Compiled::AnyWord(words) => text_matches(event, |t| words.is_match(t)),
            Compiled::And(all) => all.iter().all(|c| c.matches(event)),
            Compiled::Or(any) => any.iter().any(|c| c.matches(event)),
            Compiled::Not(a) => !a.matches(event),
        }
    }
}

impl Compiled {
    /// The parts of `and` at the top: each must hold.
    pub fn conjuncts(&self) -> Vec<&Compiled> {
        match self {
            Compiled::And(all) => all.iter().flat_map(Compiled::conjuncts).collect(),
            other => vec![other],
        }
    }

    /// Notes in `parts` what deciding the filter reads (free text reads the fields of an event
    /// without a `@rawstring`).
    /// Adds the fields it compares to `names` (text conditions read the text, not a field).
    pub fn fields_read(&self, names: &mut Vec<String>) {
        match self {
            Compiled::Text(_) | Compiled::Regex(_) | Compiled::AnyWord(_) => {}
            Compiled::Match { field, .. }
            | Compiled::Number { field, .. }
            | Compiled::In { field, .. } => names.push(field.clone()),
            Compiled::And(items) | Compiled::Or(items) => {
                items.iter().for_each(|c| c.fields_read(names));
            }
            Compiled::Not(a) => a.fields_read(names),
        }
    }

    /// Notes in `parts` what deciding it reads of a stored event.
    pub fn note_reads(&self, parts: &mut Parts) {
        match self {
            Compiled::Text(_) | Compiled::Regex(_) | Compiled::AnyWord(_) => {
                parts.raw = true;
                parts.fields = true;
            }
            Compiled::Match { field, .. }
            | Compiled::Number { field, .. }
            | Compiled::In { field, .. } => fields::note_read(parts, field),
            Compiled::And(items) | Compiled::Or(items) => {
                items.iter().for_each(|c| c.note_reads(parts));
            }
            Compiled::Not(a) => a.note_reads(parts),
        }
    }
}

/// What a filter requires of every event it keeps, for pruning: tokens (lower-cased words or
/// whole values, see `eddy_store`'s tokens) and exact tags.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Requirements {
    /// Tokens every kept event holds.
    pub tokens: Vec<String>,
    /// Tags every kept event has.
    pub tags: Vec<(String, String)>,
}

impl Requirements {
    /// What both require.
    pub fn and(self, other: Requirements) -> Requirements {
        Requirements::all([self, other])
    }

    /// What all of `each` require, each token and tag once, in the order first seen (hashed:
    /// a chain of thousands of words costs a pass, not a pass per word).
    pub fn all(each: impl IntoIterator<Item = Requirements>) -> Requirements {
        let mut out = Requirements::default();
        let mut tokens = HashSet::new();
        let mut tags = HashSet::new();
        for r in each {
            for t in r.tokens {
                if tokens.insert(t.clone()) {
                    out.tokens.push(t);
                }
            }
            for t in r.tags {
                if tags.insert(t.clone()) {
                    out.tags.push(t);
                }
            }
        }
        out
    }

    fn or(self, other: Requirements) -> Requirements {
        let tokens: HashSet<String> = other.tokens.into_iter().collect();
        let tags: HashSet<(String, String)> = other.tags.into_iter().collect();
        Requirements {
            tokens: self
                .tokens
                .into_iter()
                .filter(|t| tokens.contains(t))
                .collect(),
            tags: self.tags.into_iter().filter(|t| tags.contains(t)).collect(),
        }
    }
}

/// What every event that passes `f` must hold (an under-approximation: never more than is true).
pub fn requirements(f: &Filter) -> Requirements {
    match f {
        Filter::Text {
            text,
            wildcard: false,
            ..
        } => words_of(text),
        Filter::Text { text, .. } => {
            // Words cut by a wildcard may be longer in the event: only the others count.
            let mut r = Requirements::default();
            let pieces: Vec<&str> = text.split('*').collect();
            for (i, piece) in pieces.iter().enumerate() {
                let mut words = Vec::new();
                text_tokens(piece, |w| words.push(w.to_string()));
                let open_start = i > 0 && piece.starts_with(char::is_alphanumeric);
                let open_end = i + 1 < pieces.len() && piece.ends_with(char::is_alphanumeric);
                let n = words.len();
                for (j, w) in words.into_iter().enumerate() {
                    if !(j == 0 && open_start || j + 1 == n && open_end) {
                        r.tokens.push(w);
                    }
                }
            }
            r
        }
        Filter::Compare {
            field,
            op: CompareOp::Eq,
            value: Pattern::Exact(v),
            ..
        } => {
            if let Some(tag) = field.strip_prefix('#') {
                return Requirements {
                    tokens: Vec::new(),
                    tags: vec![(tag.to_string(), v.clone())],
                };
            }
            // Field values count whole (lower-cased) in a block's tokens; `@` fields do not.
            let mut r = Requirements::default();
            if !field.starts_with('@') && eddy_store::is_whole_token(v) && v != "null" {
                r.tokens.push(v.to_lowercase());
            }
            r
        }
        Filter::And(all) => Requirements::all(all.iter().map(requirements)),
        Filter::Or(any) => any
            .iter()
            .map(requirements)
            .reduce(Requirements::or)
            .unwrap_or_default(),
        _ => Requirements::default(),
    }
}

fn words_of(text: &str) -> Requirements {
    let mut r = Requirements::default();
    let mut seen = HashSet::new();
    text_tokens(text, |w| {
        if seen.insert(w.to_string()) {
            r.tokens.push(w.to_string());
        }
    });
    r
}

/// Whether the event's text passes `test`: `@rawstring`, or without one any field value.
fn text_matches(event: &Event, mut test: impl FnMut(&str) -> bool) -> bool {
    match &event.raw {
        Some(raw) => test(raw),
        None => event.fields.values().any(|v| match v {
            Value::Str(s) => test(s),
            Value::Null => false,
            other => test(&other.to_text()),
        }),
    }
}

/// An anchored wildcard (`web-*`), case-sensitive.
fn wildcard_regex(w: &str, anchored: bool) -> Regex {
    let pieces: Vec<String> = w.split('*').map(regex::escape).collect();
    let body = pieces.join(".*");
    let pattern = if anchored {
        format!("(?s)^{body}$")
    } else {
        body
    };
    Regex::new(&pattern).unwrap_or_else(|_| search::never())
}

/// Compiles `/pattern/flags`, reporting a bad pattern at `span`.
pub fn compile_regex(r: &RegexLit, span: Span) -> Result<Regex, QueryError> {
    regex::RegexBuilder::new(&inline_flags(r))
        .size_limit(10 << 20)
        .build()
        .map_err(|e| regex_error(&e, span))
}

/// The pattern with its flags written inline.
fn inline_flags(r: &RegexLit) -> String {
    if r.flags.is_empty() {
        r.pattern.clone()
    } else {
        format!("(?{}){}", r.flags, r.pattern)
    }
}

fn regex_error(e: &regex::Error, span: Span) -> QueryError {
    let detail = e.to_string();
    let last = detail.lines().last().unwrap_or("").trim().to_string();
    QueryError::new(format!("invalid regex: {last}"), span)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax::first_filter as filter;

    fn event(raw: &str, fields: &[(&str, Value)]) -> Event {
        let mut e = Event::new(1);
        e.raw = Some(raw.into());
        for (k, v) in fields {
            e.fields.insert((*k).into(), v.clone());
        }
        e.tags.insert("host".into(), "web-1".into());
        e
    }

    fn passes(q: &str, e: &Event) -> bool {
        compile(&filter(q)).unwrap().matches(e)
    }

    #[test]
    fn free_text_is_whole_words_case_insensitive() {
        let e = event(
            "GET /api/v2/orders 500 Error: connection reset by peer",
            &[],
        );
        assert!(passes("error", &e));
        assert!(passes("ERROR", &e));
        assert!(!passes("erro", &e));
        assert!(passes("erro*", &e));
        assert!(passes("\"connection reset\"", &e));
        assert!(!passes("\"connection rese\"", &e));
        assert!(passes("\"/api/v2\"", &e));
        assert!(passes("api v2", &e));
        assert!(passes("/conn.*reset/", &e));
        assert!(!passes("/CONN/", &e));
        assert!(passes("/CONN/i", &e));
    }

    #[test]
    fn comparisons_and_logic() {
        let e = event(
            "x",
            &[
                ("status", Value::Int(503)),
                ("method", Value::Str("GET".into())),
                ("url", Value::Str("/api/v2/x".into())),
            ],
        );
        assert!(passes("status>=500", &e));
        assert!(!passes("status<500", &e));
        assert!(passes("status=503", &e));
        assert!(passes("method=GET", &e));
        assert!(!passes("method=get", &e));
        assert!(passes("method=G*", &e));
        assert!(passes(r"url=/\/api\/v\d+/", &e));
        assert!(passes("method!=POST", &e));
        assert!(passes("missing!=1", &e));
        assert!(!passes("missing=*", &e));
        assert!(passes("method=*", &e));
        assert!(passes("#host=web-1", &e));
        assert!(passes("#host=web-*", &e));
        assert!(passes("host=web-1", &e));
        assert!(passes("in(method, values=[POST, GET])", &e));
        assert!(!passes("in(method, values=[POST, PUT])", &e));
        assert!(passes("method=POST or status=503", &e));
        assert!(!passes("method=POST and status=503", &e));
        assert!(passes("not method=POST", &e));
    }

    #[test]
    fn long_ors_compile_to_one_lookup_and_repeats_to_one_leaf() {
        let ors =
            |leaf: &dyn Fn(usize) -> String| (0..1_000).map(leaf).collect::<Vec<_>>().join(" or ");
        let c = compile(&filter(&ors(&|_| "a".into()))).unwrap();
        assert!(matches!(c, Compiled::Or(v) if v.len() == 1));
        let c = compile(&filter(&ors(&|i| format!("n={i}")))).unwrap();
        assert!(
            matches!(&c, Compiled::Or(v) if matches!(&v[..], [Compiled::In { exact, .. }] if exact.len() == 1_000))
        );
        let c = compile(&filter(&(ors(&|i| format!("w{i}")) + " or \"a b\""))).unwrap();
        assert!(
            matches!(&c, Compiled::Or(v) if v.len() == 2 && matches!(v[1], Compiled::AnyWord(_)))
        );
        let e = event("GET w999 done", &[("n", Value::Int(7))]);
        assert!(passes(&ors(&|i| format!("n={i}")), &e));
        assert!(passes(&ors(&|i| format!("w{i}")), &e));
        assert!(!passes(&ors(&|i| format!("w{}", i + 1_000)), &e));
        assert!(!passes("w99 or w9 or w9999", &e));
        assert!(passes("n=8 or n=* or n=9", &e));
        assert!(passes("in(n, values=[1, 7*])", &e));
    }

    #[test]
    fn bad_filters_are_errors_with_positions() {
        let e = compile(&filter("status>abc")).unwrap_err();
        assert!(e.message.contains("not a number"), "{e}");
        let e = compile(&filter("x=/a(/")).unwrap_err();
        assert!(e.message.starts_with("invalid regex"), "{e}");
        assert_eq!((e.span.start, e.span.end), (0, 6));
    }

    #[test]
    fn requirements_never_claim_more_than_true() {
        let r = requirements(&filter("\"Connection reset\" method=GET #host=web-1"));
        assert_eq!(r.tokens, ["connection", "reset", "get"]);
        assert_eq!(r.tags, [("host".to_string(), "web-1".to_string())]);
        assert_eq!(requirements(&filter("a or b")).tokens, Vec::<String>::new());
        assert_eq!(requirements(&filter("(a b) or (a c)")).tokens, ["a"]);
        assert_eq!(requirements(&filter("not a")).tokens, Vec::<String>::new());
        assert_eq!(requirements(&filter("foo* bar*baz qux")).tokens, ["qux"]);
        assert_eq!(requirements(&filter("a-b*")).tokens, ["a"]);
        assert_eq!(
            requirements(&filter("url=\"a b\"")).tokens,
            Vec::<String>::new()
        );
    }
}
