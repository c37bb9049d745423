//! The engine through its public interface: queries over a real store (segments on disk and
//! work in progress) against what is known of the events, and a differential test of random
//! filters against a simple reference evaluator, with pruning on.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;

use eddy_event::codec::FieldsRef;
use eddy_event::{Event, Value};
use eddy_query::{prepare, run, run_with_partials, Answer, Options, Partials};
use eddy_store::{RepoStore, StoreConfig};
use proptest::prelude::*;

const SECOND: i64 = 1_000_000_000;
const T0: i64 = 1_700_000_000 * SECOND;
const WORDS: &[&str] = &[
    "alpha", "beta", "Gamma", "delta", "error", "timeout", "reset",
];
const METHODS: &[&str] = &["GET", "POST", "PUT"];

/// Event `n`: a deterministic mix of words, hosts, methods and numbers.
fn event(n: i64) -> Event {
    let mut e = Event::new(T0 + n * SECOND);
    let w = |k: i64| WORDS[((n * 7 + k * 3) % WORDS.len() as i64) as usize];
    let method = METHODS[(n % 3) as usize];
    // A few texts hold a line break, and a few events have none (free text then searches
    // their field values): a block searched as a whole must still decide them one by one.
    let line_break = if n % 13 == 5 { "\n" } else { " " };
    e.raw = (n % 17 != 3).then(|| {
        format!(
            "{} {method} /api/v{}/items/{n} {}{line_break}{}-{}",
            w(0),
            n % 4,
            w(1),
            w(2),
            w(3)
        )
    });
    e.tags.insert("host".into(), format!("web-{}", n % 2));
    e.fields.insert("method".into(), Value::Str(method.into()));
    e.fields
        .insert("status".into(), Value::Int(200 + (n % 5) * 100));
    e.fields
        .insert("latency".into(), Value::Float((n % 100) as f64 / 4.0));
    e.fields.insert("n".into(), Value::Int(n));
    if n % 10 == 0 {
        e.fields
            .insert("rare".into(), Value::Str(format!("needle{n}")));
    }
    e
}

/// A store holding events `0..count`: most in sealed segments of small blocks, the newest in
/// work in progress.
fn store(dir: &std::path::Path, count: i64) -> RepoStore {
    store_of(dir, (0..count).map(event).collect())
}

/// A store holding `events`: the first three quarters in sealed segments of small blocks,
/// the rest in work in progress.
fn store_of(dir: &std::path::Path, events: Vec<Event>) -> RepoStore {
    let config = StoreConfig {
        block_bytes: 4096,
        ..StoreConfig::default()
    };
    let store = RepoStore::open("test", dir, config).unwrap();
    let count = events.len();
    for (n, e) in events.iter().enumerate() {
        let source = e.data_source();
        let partition = (n % 2) as u32;
        store
            .append(partition, n as u64, &source, e, FieldsRef::Map(&e.fields))
            .unwrap();
        if n == count * 3 / 4 {
            store.seal_all().unwrap();
        }
    }
    store
}

fn query(store: &RepoStore, q: &str) -> Answer {
    let prepared = prepare(q, 100_000).unwrap_or_else(|e| panic!("{}", e.render(q)));
    run(
        store,
        &prepared,
        &Options::default(),
        &AtomicBool::new(false),
        &|_| {},
    )
}

fn numbers(a: &Answer) -> Vec<i64> {
    let mut ns: Vec<i64> = a
        .rows
        .iter()
        .map(|r| match r.get("n") {
            Some(Value::Int(n)) => *n,
            other => panic!("no n in {other:?}"),
        })
        .collect();
    ns.sort_unstable();
    ns
}

fn cell<'a>(row: &'a BTreeMap<String, Value>, name: &str) -> &'a Value {
    row.get(name)
        .unwrap_or_else(|| panic!("no {name} in {row:?}"))
}

#[test]
fn partial_answers_grow_towards_the_final_one() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), 2000);
    let prepared = prepare("groupBy(method)", 100).unwrap();
    let partials = std::sync::Mutex::new(Vec::new());
    let send = |a: Answer| partials.lock().unwrap().push(a);
    // Slow reading (a pause after each block) so that partial answers come before the end.
    let slow = |_: &eddy_query::Progress| std::thread::sleep(std::time::Duration::from_millis(3));
    let options = Options {
        threads: 2,
        ..Options::default()
    };
    let total = |a: &Answer| -> i64 {
        a.rows
            .iter()
            .map(|r| cell(r, "_count").as_f64().unwrap() as i64)
            .sum()
    };
    let last = run_with_partials(
        &s,
        &prepared,
        &options,
        &AtomicBool::new(false),
        &slow,
        Some(Partials {
            every: std::time::Duration::from_millis(5),
            send: &send,
        }),
    );
    assert_eq!(total(&last), 2000);
    let partials = partials.into_inner().unwrap();
    assert!(partials.len() >= 2, "{} partial answers", partials.len());
    let counts: Vec<i64> = partials.iter().map(total).collect();
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
    assert!(counts.iter().all(|&c| c <= 2000), "{counts:?}");
    assert!(partials
        .iter()
        .all(|a| a.columns == last.columns && !a.cancelled));
    let blocks: Vec<u64> = partials.iter().map(|a| a.progress.blocks_done).collect();
    assert!(blocks.windows(2).all(|w| w[0] <= w[1]), "{blocks:?}");
}

#[test]
fn aggregates_over_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), 2000);
    let events: Vec<Event> = (0..2000).map(event).collect();

    let a = query(&s, "count()");
    assert!(!a.events);
    assert_eq!(a.rows.len(), 1);
    assert_eq!(cell(&a.rows[0], "_count"), &Value::Int(2000));

    let a = query(&s, "method=GET | count()");
    assert_eq!(cell(&a.rows[0], "_count"), &Value::Int(667));

    let a = query(
        &s,
        "groupBy(method, function=[count(), avg(latency), max(n)])",
    );
    assert_eq!(a.columns, ["method", "_count", "_avg", "_max"]);
    assert_eq!(a.rows.len(), 3);
    for row in &a.rows {
        let Value::Str(m) = cell(row, "method") else {
            panic!()
        };
        let mine: Vec<&Event> = events
            .iter()
            .filter(|e| e.fields["method"] == Value::Str(m.clone()))
            .collect();
        assert_eq!(cell(row, "_count"), &Value::Int(mine.len() as i64));
        let avg = mine
            .iter()
            .map(|e| e.fields["latency"].as_f64().unwrap())
            .sum::<f64>()
            / mine.len() as f64;
        assert!((cell(row, "_avg").as_f64().unwrap() - avg).abs() < 1e-9);
    }

    let a = query(&s, "stats([count(), sum(status), min(latency)])");
    assert_eq!(a.columns, ["_count", "_sum", "_min"]);
    let sum: i64 = events
        .iter()
        .map(|e| 200 + (e.fields["n"].as_f64().unwrap() as i64 % 5) * 100)
        .sum();
    assert_eq!(cell(&a.rows[0], "_sum"), &Value::Int(sum));

    let a = query(&s, "top(status, limit=2)");
    assert_eq!(a.rows.len(), 2);
    assert_eq!(cell(&a.rows[0], "_count"), &Value::Int(400));

    // Exact up to 1024 values, then a HyperLogLog (1.6 % standard error).
    let a = query(&s, "countDistinct(method)");
    assert_eq!(cell(&a.rows[0], "_count"), &Value::Int(3));
    let a = query(&s, "countDistinct(n)");
    let distinct = cell(&a.rows[0], "_count").as_f64().unwrap();
    assert!((distinct - 2000.0).abs() < 100.0, "{distinct}");

    let a = query(&s, "percentile(n, percentiles=[50, 99])");
    let p50 = cell(&a.rows[0], "_50").as_f64().unwrap();
    assert!((p50 - 1000.0).abs() <= 0.01 * 1000.0 + 1.0, "{p50}");

    let a = query(&s, "timechart(span=100s, function=count())");
    assert_eq!(a.rows.len(), 20);
    assert_eq!(cell(&a.rows[0], "_count"), &Value::Int(100));
    let a = query(&s, "timechart(span=1000s, series=method)");
    assert_eq!(a.columns, ["_bucket", "GET", "POST", "PUT"]);
    assert_eq!(a.rows.len(), 2);
    let a = query(&s, "bucket(span=1000s, field=method)");
    assert_eq!(a.rows.len(), 6);

    let a = query(&s, "groupBy(n, limit=10)");
    assert_eq!(a.rows.len(), 10);
    assert!(
        a.warnings.iter().any(|w| w.contains("more than 10 groups")),
        "{:?}",
        a.warnings
    );
}

#[test]
fn events_rows_and_steps() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), 1000);

    let a = query(&s, "rare=needle420");
    assert!(a.events);
    assert_eq!(numbers(&a), [420]);
    assert!(a
        .columns
        .starts_with(&["@timestamp".to_string(), "@rawstring".to_string()]));
    assert_eq!(cell(&a.rows[0], "#host"), &Value::Str("web-0".into()));
    // The needle's token skips most blocks.
    let p = &a.progress.plan;
    assert!(p.blocks_skipped * 2 > p.blocks, "{p:?}");

    let a = query(&s, "method=GET | head(3)");
    assert_eq!(numbers(&a), [0, 3, 6]);
    let a = query(&s, "tail(2)");
    assert_eq!(numbers(&a), [998, 999]);
    let a = query(
        &s,
        "sort(latency, order=asc, limit=3) | select([n, latency])",
    );
    assert_eq!(a.columns, ["n", "latency"]);
    assert!(a.rows.iter().all(|r| r["latency"].as_f64() == Some(0.0)));

    let a = query(&s, "n<3 | double := n * 2 | eval(label = concat(method, \"-\", n)) | table([n, double, label])");
    assert_eq!(a.columns, ["n", "double", "label"]);
    assert_eq!(a.rows.len(), 3);
    let row = a.rows.iter().find(|r| r["n"] == Value::Int(2)).unwrap();
    assert_eq!(row["double"], Value::Int(4));
    assert_eq!(row["label"], Value::Str("PUT-2".into()));

    let a = query(
        &s,
        r#"n>=5 n<10 | regex("items/(?<item>\d+)") | rename(field=item, as=thing) | drop([latency]) | table([thing, latency])"#,
    );
    assert_eq!(a.rows.len(), 5);
    assert!(a
        .rows
        .iter()
        .all(|r| r.contains_key("thing") && !r.contains_key("latency")));

    let a = query(&s, "#host=web-1 | count()");
    assert_eq!(cell(&a.rows[0], "_count"), &Value::Int(500));
    let a = query(&s, "groupBy(method) | sort(_count, order=desc, limit=1)");
    assert_eq!(a.rows.len(), 1);
}

#[test]
fn parsing_formatting_and_distributions() {
    let dir = tempfile::tempdir().unwrap();
    let events = (0..200)
        .map(|n: i64| {
            let mut e = Event::new(T0 + n * SECOND);
            e.raw = Some(match n % 2 {
                0 => format!(
                    r#"{{"req":{{"ms":{n},"path":"/a/{n}"}},"user":"u{}"}}"#,
                    n % 3
                ),
                _ => format!("user=u{} ms={n} path=/b", n % 3),
            });
            e
        })
        .collect();
    let s = store_of(dir.path(), events);

    let a = query(
        &s,
        "parseJson() | req.ms < 10 | table([req.ms, req.path, user])",
    );
    assert_eq!(a.rows.len(), 5);
    assert!(a
        .rows
        .iter()
        .all(|r| r["req.path"].to_text().starts_with("/a/")));
    let a = query(&s, "parseJson(prefix=j.) | j.user=u1 | count()");
    assert_eq!(cell(&a.rows[0], "_count"), &Value::Int(33));
    let a = query(
        &s,
        "kvParse() | ms>=190 | sort(ms, order=asc) | select([ms, path])",
    );
    let ms: Vec<String> = a.rows.iter().map(|r| r["ms"].to_text()).collect();
    assert_eq!(ms, ["191", "193", "195", "197", "199"]);

    let a = query(
        &s,
        r#"kvParse() | ms<4 | format("%s took %5.1f ms", field=[user, ms], as=line) | table([line])"#,
    );
    let lines: Vec<String> = a.rows.iter().map(|r| r["line"].to_text()).collect();
    assert_eq!(lines, ["u0 took   3.0 ms", "u1 took   1.0 ms"]);
    let a = query(
        &s,
        r#"day := formatTime("%Y-%m-%d %H:%M") | iso := formatTime("%Y-%m-%dT%H:%M:%SZ", @timestamp) | back := parseTime(iso) | head(1) | select([day, back])"#,
    );
    assert_eq!(
        cell(&a.rows[0], "day"),
        &Value::Str("2023-11-14 22:13".into())
    );
    assert_eq!(cell(&a.rows[0], "back"), &Value::Int(T0));

    // The JSON events hold req.ms = 0, 2, …, 198.
    let a = query(&s, "parseJson() | histogram(req.ms, buckets=4)");
    assert_eq!(a.columns, ["_lower", "_upper", "_count"]);
    let counts: Vec<i64> = a
        .rows
        .iter()
        .map(|r| r["_count"].as_f64().unwrap() as i64)
        .collect();
    assert_eq!(counts.iter().sum::<i64>(), 100);
    // Equal widths over 0..198: 25 even values per bucket, give or take the sketch's 1 %.
    assert!(counts.iter().all(|c| (23..=27).contains(c)), "{counts:?}");
    let a = query(&s, "kvParse() | histogram(ms, buckets=2, min=0, max=100)");
    let counts: Vec<i64> = a
        .rows
        .iter()
        .map(|r| r["_count"].as_f64().unwrap() as i64)
        .collect();
    assert_eq!(counts.iter().sum::<i64>(), 50);

    let a = query(&s, "kvParse() | groupBy(user, function=boxplot(ms))");
    assert_eq!(
        a.columns,
        [
            "user",
            "_q1",
            "_median",
            "_q3",
            "_low_whisker",
            "_high_whisker",
            "_outliers",
            "_min",
            "_max"
        ]
    );
    let all = query(&s, "kvParse() | boxplot(ms, as=b)");
    let row = &all.rows[0];
    let near = |name: &str, want: f64| {
        let got = row[name].as_f64().unwrap();
        assert!(
            (got - want).abs() <= want * 0.02 + 2.0,
            "{name}: {got} against {want}"
        );
    };
    near("b_q1", 51.0);
    near("b_median", 101.0);
    near("b_q3", 151.0);
    assert_eq!(row["b_outliers"], Value::Int(0));
    assert_eq!(row["b_min"], Value::Int(1));
    assert_eq!(row["b_max"], Value::Int(199));

    for (q, says) in [
        ("format(\"%q\", field=[a])", "unknown placeholder %q"),
        (
            "format(\"%s %s\", field=[a])",
            "2 placeholders but 1 fields",
        ),
        ("t := formatTime(\"%Y-%\")", "not a time format"),
        ("histogram(ms, buckets=0)", "at least 1"),
        ("boxplt(ms)", "did you mean boxplot?"),
    ] {
        let e = prepare(q, 10).unwrap_err();
        let text = format!("{} {}", e.message, e.hint.unwrap_or_default());
        assert!(text.contains(says), "{q}: {text}");
    }
}

#[test]
fn bad_queries_say_where_and_suggest() {
    let q = "error | cuont()";
    let e = prepare(q, 10).unwrap_err();
    assert_eq!(e.hint.as_deref(), Some("did you mean count?"));
    let rendered = e.render(q);
    assert!(
        rendered.contains("line 1, column 9: unknown function cuont"),
        "{rendered}"
    );
    assert!(rendered.contains("          ^^^^^"), "{rendered}");
    assert!(prepare("groupBy(x, limt=3)", 10)
        .unwrap_err()
        .message
        .contains("no parameter limt"));
    assert!(prepare("groupBy(x, limit=0)", 10).is_err());
    assert!(prepare("timechart(span=soon)", 10)
        .unwrap_err()
        .message
        .contains("not a span"));
    assert!(prepare("x := lowr(y)", 10)
        .unwrap_err()
        .hint
        .unwrap()
        .contains("lower"));
    assert!(prepare("percentile(x, percentiles=[101])", 10).is_err());
}

/// A random filter, as query text.
fn filter_text() -> impl Strategy<Value = String> {
    let word = prop::sample::select(
        WORDS
            .iter()
            .map(|w| w.to_string())
            .chain(["get", "api", "items", "v2", "nothing"].map(String::from))
            .collect::<Vec<_>>(),
    );
    let leaf = prop_oneof![
        word.clone(),
        word.clone().prop_map(|w| format!("{}*", &w[..2])),
        (word.clone(), word.clone()).prop_map(|(a, b)| format!("\"{a}-{b}\"")),
        prop::sample::select(METHODS.to_vec()).prop_map(|m| format!("method={m}")),
        prop::sample::select(METHODS.to_vec()).prop_map(|m| format!("method!={m}")),
        (0..1000i64).prop_map(|n| format!("n={n}")),
        (0..1000i64).prop_map(|n| format!("rare=needle{}", n - n % 10)),
        (0..1000i64).prop_map(|n| format!("n>{n}")),
        (0..25i64).prop_map(|n| format!("latency<={n}")),
        (0..2i64).prop_map(|h| format!("#host=web-{h}")),
        Just("host=web-*".to_string()),
        Just("/v[12]\\/items/".to_string()),
        Just("/GAMMA/i".to_string()),
        Just("in(status, values=[200, 4*])".to_string()),
        Just("rare=*".to_string()),
    ];
    leaf.prop_recursive(3, 12, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} and {b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} or {b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} {b}")),
            inner.prop_map(|a| format!("not {a}")),
        ]
    })
}

/// The reference: the documented semantics written as plainly as possible.
mod reference {
    use super::*;

    fn is_word(c: char) -> bool {
        c.is_alphanumeric()
    }

    /// Whether `needle` occurs in `hay` (ASCII, case-insensitive) at a place where it does not
    /// cut a word at either end (when that end is a word character); `*` is any run.
    pub fn text(hay: &str, needle: &str) -> bool {
        let hay = hay.to_lowercase();
        let needle = needle.to_lowercase();
        let starts_word = needle.starts_with(is_word);
        let ends_word = needle.ends_with(is_word);
        let parts: Vec<&str> = needle.split('*').collect();
        (0..=hay.len()).any(|start| {
            if starts_word && start > 0 && hay[..start].ends_with(is_word) {
                return false;
            }
            // Match the parts in order from `start`, trying every end.
            fn rest(hay: &str, at: usize, parts: &[&str], ends_word: bool) -> bool {
                match parts {
                    [] => !ends_word || !hay[at..].starts_with(is_word),
                    [first, others @ ..] => {
                        if others.len() < parts.len() - 1 {
                            unreachable!()
                        }
                        if !hay[at..].starts_with(first) {
                            return false;
                        }
                        let after = at + first.len();
                        if others.is_empty() {
                            return rest(hay, after, &[], ends_word);
                        }
                        (after..=hay.len()).any(|next| rest(hay, next, others, ends_word))
                    }
                }
            }
            rest(&hay, start, &parts, ends_word)
        })
    }

    pub fn value(e: &Event, field: &str) -> Option<String> {
        if let Some(t) = field.strip_prefix('#') {
            return e.tags.get(t).cloned();
        }
        e.fields
            .get(field)
            .map(Value::to_text)
            .or_else(|| e.tags.get(field).cloned())
    }
}

/// Evaluates a filter by the reference semantics, re-parsing the text with a tiny parser of
/// the generated shapes.
fn reference_matches(q: &str, e: &Event) -> bool {
    fn parse(tokens: &[String], at: &mut usize, e: &Event) -> bool {
        // or-level
        let mut v = and(tokens, at, e);
        while tokens.get(*at).map(String::as_str) == Some("or") {
            *at += 1;
            let r = and(tokens, at, e);
            v = v || r;
        }
        v
    }
    fn and(tokens: &[String], at: &mut usize, e: &Event) -> bool {
        let mut v = unary(tokens, at, e);
        while let Some(t) = tokens.get(*at) {
            if t == "or" || t == ")" {
                break;
            }
            if t == "and" {
                *at += 1;
            }
            let r = unary(tokens, at, e);
            v = v && r;
        }
        v
    }
    fn unary(tokens: &[String], at: &mut usize, e: &Event) -> bool {
        let t = tokens[*at].clone();
        *at += 1;
        match t.as_str() {
            "not" => !unary(tokens, at, e),
            "(" => {
                let v = parse(tokens, at, e);
                *at += 1; // ")"
                v
            }
            _ => leaf(&t, e),
        }
    }
    fn leaf(t: &str, e: &Event) -> bool {
        // The text searched: the raw string, or without one each field value.
        let texts: Vec<String> = match &e.raw {
            Some(raw) => vec![raw.clone()],
            None => e.fields.values().map(Value::to_text).collect(),
        };
        let any = |test: &dyn Fn(&str) -> bool| texts.iter().any(|t| test(t));
        if let Some(phrase) = t.strip_prefix('"') {
            return any(&|raw| reference::text(raw, phrase.trim_end_matches('"')));
        }
        if t == "/v[12]\\/items/" {
            return any(&|raw| raw.contains("v1/items") || raw.contains("v2/items"));
        }
        if t == "/GAMMA/i" {
            return any(&|raw| raw.to_lowercase().contains("gamma"));
        }
        if t == "in(status, values=[200, 4*])" {
            return reference::value(e, "status").is_some_and(|s| s == "200" || s.starts_with('4'));
        }
        for (op, test) in [
            ("!=", (|a: &str, b: &str| a != b) as fn(&str, &str) -> bool),
            ("<=", |a, b| {
                a.parse::<f64>().unwrap() <= b.parse::<f64>().unwrap()
            }),
            (">", |a, b| {
                a.parse::<f64>().unwrap() > b.parse::<f64>().unwrap()
            }),
            ("=", |a, b| {
                if b == "*" {
                    true
                } else if let Some(prefix) = b.strip_suffix('*') {
                    a.starts_with(prefix)
                } else {
                    a == b
                }
            }),
        ] {
            if let Some((field, want)) = t.split_once(op) {
                return match reference::value(e, field) {
                    Some(have) => test(&have, want),
                    None => op == "!=",
                };
            }
        }
        any(&|raw| reference::text(raw, t))
    }
    // Tokenise the generated text: parentheses, quoted phrases, and other runs.
    let mut tokens = Vec::new();
    let mut chars = q.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            ' ' => {
                chars.next();
            }
            '(' | ')' => {
                tokens.push(c.to_string());
                chars.next();
            }
            '"' => {
                let mut s = String::from('"');
                chars.next();
                for c in chars.by_ref() {
                    s.push(c);
                    if c == '"' {
                        break;
                    }
                }
                tokens.push(s);
            }
            _ => {
                let mut s = String::new();
                let in_call = q[q.len() - chars.clone().count()..].starts_with("in(");
                let mut depth = 0;
                while let Some(&c) = chars.peek() {
                    if in_call {
                        if c == '(' {
                            depth += 1;
                        }
                        if c == ')' {
                            depth -= 1;
                            s.push(c);
                            chars.next();
                            if depth == 0 {
                                break;
                            }
                            continue;
                        }
                    } else if c == ' ' || c == '(' || c == ')' {
                        break;
                    }
                    s.push(c);
                    chars.next();
                }
                tokens.push(s);
            }
        }
    }
    let mut at = 0;
    parse(&tokens, &mut at, e)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn pruning_never_changes_an_answer(filters in prop::collection::vec(filter_text(), 1..40)) {
        // One store per case is slow; one store for the whole run, made lazily.
        static STORE: std::sync::OnceLock<(tempfile::TempDir, RepoStore)> = std::sync::OnceLock::new();
        let (_, s) = STORE.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let s = store(dir.path(), 1000);
            (dir, s)
        });
        let events: Vec<Event> = (0..1000).map(event).collect();
        for f in filters {
            let a = query(s, &f);
            let want: Vec<i64> = events
                .iter()
                .filter(|e| reference_matches(&f, e))
                .map(|e| e.fields["n"].as_f64().unwrap() as i64)
                .collect();
            prop_assert_eq!(numbers(&a), want, "filter {}", f);
        }
    }
}

/// Event of a `last()`/`first()` case: time `t` s (often shared), id `id`, group `g`, and a value
/// of one of three types, or none.
fn picked_event(t: i64, id: u128, g: u8, v: Option<u8>) -> Event {
    let mut e = Event::new(T0 + t * SECOND);
    e.timestamp = T0 + t * SECOND;
    e.id = uuid::Uuid::from_u128(id);
    e.raw = Some(format!("g={g} event {id}"));
    e.fields.insert("g".into(), Value::Str(format!("g{g}")));
    if let Some(v) = v {
        let value = match v % 3 {
            0 => Value::Int(i64::from(v)),
            1 => Value::Str(format!("s{v}")),
            _ => Value::Bool(v % 2 == 0),
        };
        e.fields.insert("v".into(), value);
    }
    e
}

/// The plain model: per group, the value of the event latest (`latest`) or earliest by time,
/// ties by the larger or smaller id; events without the value do not count.
fn picked_by_model(events: &[Event], latest: bool) -> BTreeMap<String, Value> {
    let mut best: BTreeMap<String, (i64, u128, Value)> = BTreeMap::new();
    for e in events {
        let (Some(Value::Str(g)), Some(v)) = (e.fields.get("g"), e.fields.get("v")) else {
            continue;
        };
        let at = (e.timestamp, e.id.as_u128());
        let better = match best.get(g) {
            None => true,
            Some((t, id, _)) if latest => at > (*t, *id),
            Some((t, id, _)) => at < (*t, *id),
        };
        if better {
            best.insert(g.clone(), (at.0, at.1, v.clone()));
        }
    }
    best.into_iter().map(|(g, (_, _, v))| (g, v)).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Random events (many sharing a time), stored in sealed segments of small blocks and in
    /// work in progress, read on three threads: `last()` and `first()` per group equal the
    /// plain model whatever the order blocks are read and states merged in.
    #[test]
    fn last_and_first_pick_the_latest_and_earliest_event_across_threads_and_blocks(
        rows in prop::collection::vec((0i64..40, 0u8..4, prop::option::of(0u8..30)), 20..400),
    ) {
        let mut ids: Vec<u128> = (0..rows.len() as u128).map(|i| (i * 7919) % 100_003).collect();
        ids.dedup();
        let events: Vec<Event> = rows
            .iter()
            .zip(&ids)
            .map(|(&(t, g, v), &id)| picked_event(t, id, g, v))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let s = store_of(dir.path(), events.clone());
        let prepared = prepare("groupBy(g, function=[last(v), first(v, as=earliest)])", 1000).unwrap();
        let options = Options { threads: 3, ..Options::default() };
        let a = run(&s, &prepared, &options, &AtomicBool::new(false), &|_| {});
        prop_assert_eq!(&a.columns, &["g", "_last", "earliest"].map(String::from).to_vec());
        let (last, first) = (picked_by_model(&events, true), picked_by_model(&events, false));
        let groups: std::collections::BTreeSet<u8> = rows.iter().map(|r| r.1).collect();
        prop_assert_eq!(a.rows.len(), groups.len());
        for r in &a.rows {
            let Some(Value::Str(g)) = r.get("g") else { panic!("{r:?}") };
            // A group none of whose events has the value answers null.
            prop_assert_eq!(&r["_last"], last.get(g).unwrap_or(&Value::Null), "group {}", g);
            prop_assert_eq!(&r["earliest"], first.get(g).unwrap_or(&Value::Null), "group {}", g);
        }
    }
}

#[test]
fn last_of_a_field_no_event_has_is_null_and_first_takes_a_field() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), 300);
    let a = query(&s, "last(n)");
    assert_eq!(a.rows[0]["_last"], Value::Int(299));
    let a = query(&s, "first(rare)");
    assert_eq!(a.rows[0]["_first"], Value::Str("needle0".into()));
    let a = query(&s, "stats([last(nothing)])");
    assert_eq!(a.rows[0]["_last"], Value::Null, "{a:?}");
    let e = prepare("last()", 10).unwrap_err();
    assert!(e.message.contains("field"), "{}", e.message);
}

#[test]
fn a_step_that_changes_fields_leaves_the_event_without_its_parser() {
    let parsed = || {
        eddy_event::Parser::Kv
            .parse("level=error user=ann", 1)
            .unwrap()
    };
    let out = |q: &str| {
        let prepared = prepare(q, 10).unwrap();
        eddy_query::run::run_events(&prepared.program, [parsed()]).0
    };
    // A filter keeps the fields as the parser made them; eval and drop do not.
    assert_eq!(
        out("level=error")[0].parsed_by,
        Some(eddy_event::Parser::Kv)
    );
    assert_eq!(out("x := 1")[0].parsed_by, None);
    assert_eq!(out("drop([user])")[0].parsed_by, None);
}
