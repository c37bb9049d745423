//! A regex over templated texts decompresses only the columns it can touch: a column whose
//! bytes (kept beside it in the block) cannot move the regex's state stays compressed, and the
//! answer is the one a search of the built texts gives (the counter is per process: this binary
//! holds one test so nothing else moves it).
#![allow(clippy::unwrap_used)]

use std::sync::atomic::AtomicBool;

use eddy_event::codec::FieldsRef;
use eddy_event::Parser;
use eddy_query::{prepare, run, Answer, Options};
use eddy_store::view::column_reads;
use eddy_store::{RepoStore, StoreConfig};

fn query(store: &RepoStore, q: &str) -> Answer {
    let prepared = prepare(q, 1000).unwrap();
    run(
        store,
        &prepared,
        &Options::default(),
        &AtomicBool::new(false),
        &|_| {},
    )
}

#[test]
fn a_regex_leaves_the_columns_it_cannot_touch_compressed() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        block_bytes: 16 << 10,
        ..StoreConfig::default()
    };
    let store = RepoStore::open("test", dir.path(), config).unwrap();
    let mut lines = Vec::new();
    for n in 0..3000u64 {
        let line = format!(
            r#"10.0.{}.{} - - [24/Nov/2026:10:{:02}:{:02} +0000] "{} /shop/item/{n}?q={} HTTP/1.1" {} {} "https://example.com/p/{}" "agent/{} (x; y)""#,
            n % 13,
            n % 251,
            n / 60 % 60,
            n % 60,
            ["GET", "POST", "PUT"][n as usize % 3],
            n * 7 % 1000,
            [200, 404, 500, 503, 302][n as usize % 5],
            // Five digits: never a status, so each value has one place in its line.
            10_000 + n * 10 % 7919,
            n % 17,
            n % 5
        );
        let e = Parser::Accesslog
            .parse(&line, 1_795_000_000_000_000_000)
            .unwrap();
        store
            .append(0, n, &e.data_source(), &e, FieldsRef::Map(&e.fields))
            .unwrap();
        lines.push(line);
    }
    store.seal_all().unwrap();

    let cases = [
        r#"/" 5[0-9][0-9] /"#,
        r#"/" 30[0-9] [0-9]+ "https/"#,
        r#"/POST \/shop/"#,
        r#"/agent\/[34] \(/"#,
    ];
    let untouchable = ["client", "timestamp", "url", "bytes"];
    for pattern in cases {
        let regex = regex::Regex::new(pattern.trim_matches('/')).unwrap();
        let want = lines.iter().filter(|l| regex.is_match(l)).count();
        assert!(want > 0, "{pattern} matches nothing");
        let before: Vec<u64> = untouchable.iter().map(|c| column_reads(c)).collect();
        let a = query(&store, &format!("{pattern} | count()"));
        assert_eq!(a.rows[0]["_count"].as_f64(), Some(want as f64), "{pattern}");
        assert!(a.warnings.is_empty(), "{:?}", a.warnings);
        if pattern == cases[0] {
            // Quotes, spaces and 5s: the client, time, URL and byte columns hold none of
            // the bytes that move the states they are entered in.
            let after: Vec<u64> = untouchable.iter().map(|c| column_reads(c)).collect();
            assert_eq!(before, after, "{pattern} decompressed {untouchable:?}");
        }
    }
    // A whole-event query still reads every column.
    let before = column_reads("url");
    let a = query(&store, r#"/" 5[0-9][0-9] / | head(1)"#);
    assert_eq!(a.rows.len(), 1);
    assert!(column_reads("url") > before);
}
