//! Queries answered from field columns give the answers of the event path: random events with
//! random field types and absences (parsed JSON, whose texts become templates, and events sent
//! with fields), stored in sealed segments and work in progress, against the same program fed
//! the events one by one. Filters, groupBy, top, countDistinct, timechart and numeric
//! aggregates, and free text over texts rebuilt from templates; pruning by dictionaries and
//! ranges must never change an answer.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::AtomicBool;

use eddy_event::codec::FieldsRef;
use eddy_event::{Event, Parser};
use eddy_query::{prepare, run, Answer, Options};
use eddy_store::{RepoStore, StoreConfig};
use proptest::prelude::*;

const SECOND: i64 = 1_000_000_000;
const T0: i64 = 1_700_000_000 * SECOND;
const LEVELS: &[&str] = &["INFO", "WARN", "ERROR", "debug"];

/// One event's fields, each possibly absent, of varying types.
#[derive(Debug, Clone)]
struct Spec {
    level: Option<usize>,
    status: Option<i64>,
    /// Half-units, so sums are exact in any order.
    ms: Option<i64>,
    ms_as_text: bool,
    user: Option<u32>,
    ok: Option<bool>,
    path: bool,
    parsed: bool,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        proptest::option::weighted(0.9, 0usize..LEVELS.len()),
        proptest::option::weighted(
            0.8,
            prop_oneof![200i64..205, Just(404), Just(500), Just(503)],
        ),
        proptest::option::weighted(0.8, -4i64..400),
        proptest::bool::weighted(0.1),
        proptest::option::weighted(0.7, 0u32..50),
        proptest::option::weighted(0.5, any::<bool>()),
        proptest::bool::weighted(0.7),
        proptest::bool::weighted(0.8),
    )
        .prop_map(
            |(level, status, ms, ms_as_text, user, ok, path, parsed)| Spec {
                level,
                status,
                ms,
                ms_as_text,
                user,
                ok,
                path,
                parsed,
            },
        )
}

fn event(n: usize, s: &Spec) -> Event {
    let mut parts = Vec::new();
    if let Some(l) = s.level {
        parts.push(format!(r#""level":"{}""#, LEVELS[l]));
    }
    if let Some(st) = s.status {
        parts.push(format!(r#""status":{st}"#));
    }
    if let Some(ms) = s.ms {
        let x = ms as f64 / 2.0;
        parts.push(match s.ms_as_text {
            true => format!(r#""ms":"{x}""#),
            false => format!(r#""ms":{x}"#),
        });
    }
    if let Some(u) = s.user {
        parts.push(format!(r#""user":"u{u}""#));
    }
    if let Some(ok) = s.ok {
        parts.push(format!(r#""ok":{ok}"#));
    }
    if s.path {
        // A value per event, so a plain column rather than a dictionary.
        parts.push(format!(r#""path":"/a/{n} b""#));
    }
    let line = format!("{{{}}}", parts.join(","));
    let time = T0 + n as i64 * 7 * SECOND;
    let mut e = Parser::Json.parse(&line, time).unwrap();
    e.timestamp = time;
    if !s.parsed {
        // Sent with fields and no parser: its text is stored as text.
        e.parsed_by = None;
        e.raw = Some(format!("event {n}"));
    }
    e.tags.insert("host".into(), format!("web-{}", n % 2));
    e
}

fn store_of(dir: &std::path::Path, events: &[Event]) -> RepoStore {
    let config = StoreConfig {
        block_bytes: 2048,
        ..StoreConfig::default()
    };
    let store = RepoStore::open("test", dir, config).unwrap();
    for (n, e) in events.iter().enumerate() {
        store
            .append(
                (n % 2) as u32,
                n as u64,
                &e.data_source(),
                e,
                FieldsRef::Map(&e.fields),
            )
            .unwrap();
        if n == events.len() * 3 / 4 {
            store.seal_all().unwrap();
        }
    }
    store
}

fn filter() -> impl Strategy<Value = String> {
    let level = prop::sample::select(LEVELS.to_vec());
    let leaf = prop_oneof![
        level.clone().prop_map(|l| format!("level={l}")),
        level.clone().prop_map(|l| format!("level!={l}")),
        Just("level=*R*".to_string()),
        Just("level=/^[A-Z]+$/".to_string()),
        prop_oneof![Just(200), Just(404), Just(500), Just(999)].prop_map(|s| format!("status={s}")),
        (200i64..505).prop_map(|s| format!("status>={s}")),
        (-2i64..200).prop_map(|m| format!("ms<{m}")),
        (0u32..60).prop_map(|u| format!("user=u{u}")),
        Just("user=u1*".to_string()),
        Just("ok=true".to_string()),
        Just("ok!=false".to_string()),
        Just("in(level, values=[INFO, debug])".to_string()),
        Just("in(status, values=[404, 50*])".to_string()),
        // Bounds that rule blocks out by their ranges, or by a field none of their events has.
        Just("in(status, values=[200, 404])".to_string()),
        (0i64..300).prop_map(|m| format!("ms>{m}")),
        Just("nothing=5".to_string()),
        Just("nothing>3".to_string()),
        Just("nothing=here".to_string()),
        Just("nothing!=here".to_string()),
        // Free text over templated texts: words in literals and in holes, a regex across both.
        prop::sample::select(vec![
            "info", "ERROR", "u1", "u12", "404", "true", "level", "status", "event", "ms", "5"
        ])
        .prop_map(str::to_string),
        Just(r#"/"ms":1/"#.to_string()),
        // Regexes run piece by piece over templates: across literals and holes, anchored at
        // either end, at word boundaries, ignoring case, and over dictionary and plain values.
        prop::sample::select(vec![
            r#"/"status":50[0-9],/"#,
            r#"/^\{"level":"(INFO|WARN)"/"#,
            r#"/true\}$/"#,
            r#"/\bu1\b/"#,
            r#"/(?i)"LEVEL":"e/"#,
            r#"/u[0-9]+"/"#,
            r#"/ms":-?[0-9]+\.5/"#,
            r#"/^event [0-9]*7$/"#,
            r#"/INFO.*u2/"#,
            r#"/a\/[0-9]*3 b"/"#,
            r#"/"path":"\/a\/1[0-9] /"#,
            r#"/ b"\}$/"#,
            // Values that hold none of the bytes that move the state are skipped unread.
            r#"/\}$/"#,
            r#"/:true/"#,
        ])
        .prop_map(str::to_string),
        Just("\"u1\"".to_string()),
    ];
    let tree = leaf.prop_recursive(2, 8, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} and {b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} or {b})")),
            inner.prop_map(|a| format!("not {a}")),
        ]
    });
    proptest::option::of(tree).prop_map(|f| f.map(|f| format!("{f} | ")).unwrap_or_default())
}

fn aggregate() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "count()",
        "count(ms)",
        "groupBy(level)",
        "groupBy(status)",
        "groupBy(ok)",
        "groupBy(ms)",
        "groupBy([level, ok], function=[count(), sum(ms)])",
        "groupBy(level, function=[avg(status), min(ms), max(ms), count(user)])",
        "top(user, limit=5)",
        "countDistinct(user)",
        "sum(ms)",
        "avg(ms)",
        "percentile(ms, percentiles=[50, 95, 99])",
        "boxplot(status)",
        "histogram(ms, buckets=5)",
        "timechart(span=1m)",
        "timechart(span=1m, series=level)",
        "groupBy(nothing)",
        "sum(nothing)",
    ])
}

fn stored(store: &RepoStore, q: &str, (start, end): (i64, i64)) -> Answer {
    let prepared = prepare(q, 100_000).unwrap_or_else(|e| panic!("{}", e.render(q)));
    run(
        store,
        &prepared,
        &Options {
            start,
            end,
            ..Options::default()
        },
        &AtomicBool::new(false),
        &|_| {},
    )
}

/// The same program fed the events one at a time (the event path).
fn reference(events: &[Event], q: &str) -> Answer {
    let prepared = prepare(q, 100_000).unwrap();
    let program = &prepared.program;
    let mut state = program.collect.state();
    for e in events {
        program.feed(&mut state, e.clone());
    }
    eddy_query::run::answer_of(program, state)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn answers_from_columns_are_the_answers_from_events(
        specs in prop::collection::vec(spec(), 1..300),
        queries in prop::collection::vec((filter(), aggregate()), 1..8),
        cut in prop::option::of((0usize..300, 0usize..300)),
    ) {
        let events: Vec<Event> = specs.iter().enumerate().map(|(n, s)| event(n, s)).collect();
        let dir = tempfile::tempdir().unwrap();
        let store = store_of(dir.path(), &events);
        // All time, or a range that cuts blocks (whose times must then be read).
        let range = match cut {
            None => (Options::default().start, Options::default().end),
            Some((a, b)) => (
                T0 + a.min(b) as i64 * 7 * SECOND,
                T0 + a.max(b) as i64 * 7 * SECOND + 1,
            ),
        };
        let inside: Vec<Event> = events
            .iter()
            .filter(|e| e.timestamp >= range.0 && e.timestamp < range.1)
            .cloned()
            .collect();
        for (f, agg) in queries {
            let q = format!("{f}{agg}");
            let got = stored(&store, &q, range);
            let want = reference(&inside, &q);
            prop_assert_eq!(&got.columns, &want.columns, "{}", q);
            prop_assert_eq!(&got.rows, &want.rows, "{}", q);
        }
    }
}

#[test]
fn stored_events_come_back_whole_with_their_exact_text() {
    let specs: Vec<Spec> = (0..200)
        .map(|n| Spec {
            level: Some(n % 4),
            status: (n % 5 != 0).then_some(200 + (n % 3) as i64),
            ms: Some(n as i64),
            ms_as_text: n % 7 == 0,
            user: Some(n as u32),
            ok: (n % 2 == 0).then_some(n % 4 == 0),
            path: n % 3 == 0,
            parsed: n % 9 != 0,
        })
        .collect();
    let events: Vec<Event> = specs.iter().enumerate().map(|(n, s)| event(n, s)).collect();
    let dir = tempfile::tempdir().unwrap();
    let store = store_of(dir.path(), &events);
    let a = stored(&store, "head(1000)", (i64::MIN, i64::MAX));
    assert_eq!(a.rows.len(), events.len());
    let want = reference(&events, "head(1000)");
    assert_eq!(a.rows, want.rows);
}

#[test]
fn blocks_whose_ranges_cannot_hold_the_value_are_ruled_out_and_the_answer_stays() {
    // Statuses in runs, so that blocks hold 200s only, 200s up to a 404, 404s only, 404s up to
    // 500s, and 500s only: ranges that end exactly at the value must not be ruled out.
    let specs: Vec<Spec> = (0..300)
        .map(|n| Spec {
            level: Some(n % 4),
            status: Some([200, 404, 500][n / 100]),
            ms: None,
            ms_as_text: false,
            user: None,
            ok: None,
            path: false,
            parsed: true,
        })
        .collect();
    let events: Vec<Event> = specs.iter().enumerate().map(|(n, s)| event(n, s)).collect();
    let dir = tempfile::tempdir().unwrap();
    let store = store_of(dir.path(), &events);
    let all = (i64::MIN, i64::MAX);
    for q in [
        "status=404 | count()",
        "status>=404 | count()",
        "status<=404 | count()",
        "in(status, values=[404, 500]) | groupBy(status)",
        "status=404 | groupBy(level)",
    ] {
        let got = stored(&store, q, all);
        let want = reference(&events, q);
        assert_eq!(got.rows, want.rows, "{q}");
    }
    // Which blocks the bound of `status=404` rules out: exactly those without a 404.
    let needs = eddy_store::Needs {
        bounds: vec![eddy_store::Bound {
            field: "status".into(),
            lo: 404.0,
            hi: 404.0,
        }],
        ..eddy_store::Needs::ALL
    };
    let plan = store.plan(&eddy_store::Scan::all());
    let (mut ruled_out, mut holding) = (0, 0);
    for task in &plan.tasks {
        let mut view = eddy_store::BlockView::with_needs(needs.clone());
        task.open_into(&mut eddy_store::ReadBuffers::default(), &mut view)
            .unwrap();
        let has_404 = task
            .read()
            .unwrap()
            .iter()
            .any(|e| e.fields.get("status") == Some(&eddy_event::Value::Int(404)));
        assert_eq!(view.ruled_out(), !has_404);
        ruled_out += usize::from(view.ruled_out());
        holding += usize::from(has_404);
    }
    assert!(
        ruled_out > 0 && holding > 0,
        "{ruled_out} ruled out, {holding} holding"
    );
    // The query's statistics count them (a range: `status=404` lets the bloom filters skip
    // most such blocks before they are read).
    let answer = stored(&store, "status>=500 | count()", all);
    assert_eq!(
        answer.rows,
        reference(&events, "status>=500 | count()").rows
    );
    assert!(
        answer.progress.blocks_ruled_out > 0,
        "{:?}",
        answer.progress
    );
}

#[test]
fn blocks_whose_dictionary_cannot_hold_the_text_are_ruled_out_and_the_answer_stays() {
    // Levels in runs, so that most blocks' dictionaries hold one or two of them.
    let specs: Vec<Spec> = (0..300)
        .map(|n| Spec {
            level: Some(n / 75),
            status: Some([200, 404, 500][n % 3]),
            ms: None,
            ms_as_text: false,
            user: None,
            ok: None,
            path: false,
            parsed: true,
        })
        .collect();
    let events: Vec<Event> = specs.iter().enumerate().map(|(n, s)| event(n, s)).collect();
    let dir = tempfile::tempdir().unwrap();
    let store = store_of(dir.path(), &events);
    let all = (i64::MIN, i64::MAX);
    let level = LEVELS[2];
    for q in [
        format!("level={level} | count()"),
        format!("level={level} | groupBy(status)"),
        format!("in(level, values=[{level}, nothing]) | count()"),
        format!("level={level} status=404 | count()"),
        "level=nothing | count()".to_string(),
    ] {
        let got = stored(&store, &q, all);
        let want = reference(&events, &q);
        assert_eq!(got.rows, want.rows, "{q}");
    }
    // (`level=ERROR` alone lets the bloom filters skip most such blocks before they are read.)
    let answer = stored(&store, "in(level, values=[WARN, ERROR]) | count()", all);
    assert!(
        answer.progress.blocks_ruled_out > 0,
        "{:?}",
        answer.progress
    );
}

#[test]
fn a_regex_over_templated_texts_gives_the_answer_of_the_built_texts() {
    // JSON events with a value per event (a plain column) and access lines (dictionaries,
    // narrow integers and plain values): each regex is run over the templates' pieces.
    let mut events: Vec<Event> = (0..400)
        .map(|n| {
            let spec = Spec {
                level: Some(n % 4),
                status: Some([200, 404, 503][n % 3]),
                ms: Some(n as i64),
                ms_as_text: false,
                user: Some((n % 50) as u32),
                ok: Some(n % 2 == 0),
                path: n % 5 != 0,
                parsed: true,
            };
            event(n, &spec)
        })
        .collect();
    for n in 0..400 {
        let line = format!(
            r#"10.0.{}.{} - - [01/Nov/2026:10:00:{:02} +0000] "GET /api/v{}/orders/{} HTTP/1.1" {} {} "-" "agent/{}""#,
            n % 7,
            n % 13,
            n % 60,
            n % 3,
            n,
            [200, 404, 503, 500][n % 4],
            n * 17 % 5000,
            n % 9
        );
        let time = T0 + (400 + n) as i64 * 7 * SECOND;
        let mut e = Parser::Accesslog.parse(&line, time).unwrap();
        e.timestamp = time;
        events.push(e);
    }
    let dir = tempfile::tempdir().unwrap();
    let store = store_of(dir.path(), &events);
    let all = (i64::MIN, i64::MAX);
    for pattern in [
        r#"" 5[0-9][0-9] "#,
        r"api\/v[0-9]+\/orders\/[0-9]*7 ",
        r#"a\/[0-9]*3 b""#,
        r#""path":"\/a\/1[0-9] "#,
        r"\}$",
        r"agent\/[3-5]",
        r"^10\.0\.3\.",
        r#"(?i)"level":"error""#,
        r"\b404\b",
        r"ms.:3[0-9]?,",
    ] {
        let q = format!("/{pattern}/ | count()");
        let got = stored(&store, &q, all);
        let want = reference(&events, &q);
        assert_eq!(got.rows, want.rows, "{q}");
        assert!(
            want.rows[0]["_count"] != eddy_event::Value::Int(0),
            "{q} should match some events"
        );
    }
}
