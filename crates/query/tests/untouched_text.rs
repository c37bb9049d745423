//! A query about fields reads the field columns it names and never decompresses the texts
//! (the counter is per process: this binary holds one test so nothing else moves it), and a
//! query over a field that no event has says so, naming the fields that exist.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::AtomicBool;

use eddy_event::codec::FieldsRef;
use eddy_event::Parser;
use eddy_query::{prepare, run, Answer, Options};
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
fn a_query_over_fields_does_not_touch_the_text_and_a_missing_field_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        block_bytes: 4096,
        ..StoreConfig::default()
    };
    let store = RepoStore::open("test", dir.path(), config).unwrap();
    for n in 0..2000u64 {
        let line = format!(
            r#"10.0.0.{} - - [24/Nov/2026:10:00:{:02} +0000] "GET /a/{n} HTTP/1.1" {} {} "-" "curl/8""#,
            n % 7,
            n % 60,
            [200, 404, 500][n as usize % 3],
            n * 10
        );
        let e = Parser::Accesslog
            .parse(&line, 1_795_000_000_000_000_000)
            .unwrap();
        store
            .append(0, n, &e.data_source(), &e, FieldsRef::Map(&e.fields))
            .unwrap();
    }
    store.seal_all().unwrap();

    let before = eddy_store::view::text_reads();
    let a = query(
        &store,
        "status=404 | groupBy(method, function=[count(), sum(bytes)])",
    );
    assert_eq!(a.rows.len(), 1, "{:?}", a.rows);
    assert_eq!(a.rows[0]["_count"].as_f64(), Some(667.0));
    let a = query(&store, "percentile(bytes, percentiles=[50]) ");
    assert_eq!(a.rows.len(), 1);
    assert_eq!(
        eddy_store::view::text_reads(),
        before,
        "a query over fields read the texts"
    );

    // A search of the text does read it.
    let a = query(&store, "curl | count()");
    assert_eq!(a.rows[0]["_count"].as_f64(), Some(2000.0));
    assert!(eddy_store::view::text_reads() > before);

    // `size` is not a field of access logs: the answer says so and names `bytes`.
    let a = query(&store, "sum(size)");
    let warning = a.warnings.iter().find(|w| w.contains("\"size\"")).unwrap();
    assert!(warning.contains("bytes"), "{warning}");
    assert!(query(&store, "sum(bytes)").warnings.is_empty());
}
