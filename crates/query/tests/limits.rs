//! Queries of death: deeply nested and very long queries of every construct get an error that
//! says where, or an answer, on a thread with the stack the server runs queries on; and the
//! parser never panics on any text.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::AtomicBool;

use eddy_event::codec::FieldsRef;
use eddy_event::{Event, Value};
use eddy_query::syntax::{MAX_NESTING, MAX_QUERY_BYTES};
use eddy_query::{parse, prepare, run, Options};
use eddy_store::{RepoStore, StoreConfig};
use proptest::prelude::*;

/// The stack of every thread a query runs on in `eddy serve`: tokio's workers (parsing) and
/// blocking pool (running), as `crates/cli/src/serve.rs` builds the runtime without
/// `thread_stack_size`, and the query's own reading threads (`std::thread::scope`, the
/// standard library's default): 2 MiB each.
const SERVER_STACK: usize = 2 * 1024 * 1024;

/// Runs `f` on a thread with the server's stack: a stack overflow aborts the test process.
fn on_server_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(SERVER_STACK)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap();
}

fn store(dir: &std::path::Path) -> RepoStore {
    let config = StoreConfig {
        block_bytes: 4096,
        ..StoreConfig::default()
    };
    let store = RepoStore::open("test", dir, config).unwrap();
    for n in 0..200i64 {
        let mut e = Event::new(1_700_000_000_000_000_000 + n);
        e.raw = Some(format!("a GET /api/{n} status {} x y", 200 + n % 5));
        e.fields.insert("n".into(), Value::Int(n));
        e.fields.insert("x".into(), Value::Int(n % 7));
        store
            .append(0, n as u64, &e.data_source(), &e, FieldsRef::Map(&e.fields))
            .unwrap();
        if n == 150 {
            store.seal_all().unwrap();
        }
    }
    store
}

/// A query of `n` repetitions of one construct: nested (parentheses, `!`, `not`, unary minus,
/// calls, lists, parentheses in `eval`) or chained (words, `or`, `and`, `+1`, `*2`, `+"t"`,
/// stages).
fn construct(kind: usize, n: usize) -> String {
    let r = |s: &str| s.repeat(n);
    match kind {
        0 => format!("{}a{}", r("("), r(")")),
        1 => format!("{}a", r("!")),
        2 => format!("{}a", r("not ")),
        3 => format!("x := {}1", r("-")),
        4 => format!("eval(x = {}1{})", r("("), r(")")),
        5 => format!("x := {}1{}", r("abs("), r(")")),
        6 => format!("in(x, values={}1{})", r("["), r("]")),
        7 => r("a ").to_string(),
        8 => format!("a{}", r(" or a")),
        9 => format!("a{}", r(" and y")),
        10 => format!("x := 1{}", r("+1")),
        11 => format!("x := 1{}", r("*2")),
        12 => format!("x := \"s\"{}", r("+\"t\"")),
        13 => format!("count(){}", r(" | count()")),
        14 => format!("a{}", r(" | x>1")),
        15 => format!("x := 1{}", r("-(1")) + &r(")"),
        16 => format!("groupBy(x, function={}count(){})", r("["), r("]")),
        17 => format!("{}a", r("!(")) + &r(")"),
        18 => (0..n)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" or "),
        _ => (0..n)
            .map(|i| format!("n={i}"))
            .collect::<Vec<_>>()
            .join(" or "),
    }
}

/// An error at a position within the text, or an answer.
fn error_or_answer(store: &RepoStore, q: &str) {
    match prepare(q, 100) {
        Err(e) => {
            assert!(e.span.start <= q.len(), "{} at {}", e.message, e.span);
            assert!(q.is_char_boundary(e.span.start));
            let (line, column) = e.line_column(q);
            assert!(line >= 1 && column >= 1);
        }
        Ok(p) => {
            run(
                store,
                &p,
                &Options::default(),
                &AtomicBool::new(false),
                &|_| {},
            );
        }
    }
}

#[test]
fn deep_and_long_queries_of_every_construct_get_an_error_or_an_answer() {
    on_server_stack(|| {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
            cases: 96,
            failure_persistence: None,
            ..ProptestConfig::default()
        });
        // Around the nesting limit, and far past it up to the size limit.
        let sizes = prop_oneof![
            MAX_NESTING - 2..MAX_NESTING + 2,
            1..2_000usize,
            2_000..12_000usize,
        ];
        runner
            .run(&(0..20usize, sizes), |(kind, n)| {
                error_or_answer(&store, &construct(kind, n));
                Ok(())
            })
            .unwrap();
        // Every construct at its largest that fits the size limit, once each.
        for kind in 0..20 {
            let n = (1..)
                .map(|k| k * 1_000)
                .take_while(|&n| construct(kind, n).len() <= MAX_QUERY_BYTES)
                .last()
                .unwrap_or(1);
            error_or_answer(&store, &construct(kind, n));
        }
    });
}

#[test]
fn chains_that_are_legitimate_just_work() {
    on_server_stack(|| {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        for q in [
            "a ".repeat(2_000),
            format!("a{}", " or a".repeat(1_000)),
            format!("x := 1{} | x > 1", "+1".repeat(10_000)),
        ] {
            let p = prepare(&q, 1_000).unwrap_or_else(|e| panic!("{}", e.render(&q)));
            let a = run(
                &store,
                &p,
                &Options::default(),
                &AtomicBool::new(false),
                &|_| {},
            );
            assert_eq!(a.rows.len(), 200);
        }
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_parser_never_panics_and_errors_point_into_the_text(
        text in prop_oneof![
            any::<String>(),
            "[a-z0-9 ()!|=<>\\[\\],:*/+%\"#@.-]{0,200}",
            prop::collection::vec(
                prop::sample::select(vec!["(", ")", "!", "not ", "-", "a", " or ", "+", "[", "]", "f(", ",", "x:=", "\"", "/", "|", "in(", "values=", "=", "1"]),
                0..300,
            ).prop_map(|v| v.concat()),
        ]
    ) {
        if let Err(e) = parse(&text) {
            prop_assert!(e.span.start <= text.len(), "{} at {}", e.message, e.span);
            prop_assert!(text.is_char_boundary(e.span.start));
            let _ = e.render(&text);
        }
    }
}

#[test]
fn head_of_large_events_is_cut_at_the_answer_budget_with_a_warning() {
    let p = prepare("head(100000)", 200).unwrap();
    let big = "x".repeat(1 << 20);
    let events = (0..48i64).map(|n| {
        let mut e = Event::new(n);
        e.raw = Some(big.clone());
        e
    });
    let (rows, _, warnings) = eddy_query::run::run_events(&p.program, events);
    assert!(rows.len() < 48 && rows.len() >= 16, "{}", rows.len());
    let bytes: usize = rows
        .iter()
        .map(eddy_query::engine::approx_event_bytes)
        .sum();
    assert!(bytes <= eddy_query::engine::MAX_ANSWER_BYTES);
    assert!(
        warnings.iter().any(|w| w.contains("memory budget")),
        "{warnings:?}"
    );
}
