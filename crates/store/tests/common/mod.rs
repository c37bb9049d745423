//! What the store's tests share: their events carry their number in field `n`.
#![allow(clippy::unwrap_used, dead_code)]

use eddy_event::Event;
use eddy_store::{RepoStore, Scan};

/// The numbers of the events `scan` finds in `store`, sorted; a scan warning fails the test.
pub fn numbers(store: &RepoStore, scan: &Scan) -> Vec<i64> {
    let (events, stats) = store.collect(scan);
    assert!(stats.warnings.is_empty(), "{:?}", stats.warnings);
    let mut n: Vec<i64> = events.iter().map(field_n).collect();
    n.sort_unstable();
    n
}

/// Event `e`'s number.
pub fn field_n(e: &Event) -> i64 {
    match e.fields.get("n") {
        Some(eddy_event::Value::Int(n)) => *n,
        other => panic!("no n in {e:?}: {other:?}"),
    }
}
