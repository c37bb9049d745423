//! A query node decodes partial answers that came over the network: whatever the bytes, cut
//! short, bit-flipped or with bytes spliced in, decoding gives a partial answer or a typed
//! error, never a panic; and what decodes can be merged and finished without one.
#![allow(clippy::unwrap_used)]

use eddy_event::{Event, Value};
use eddy_query::{prepare, Partial};
use proptest::prelude::*;

/// Queries whose collecting states cover every kind the encoding has.
const QUERIES: &[&str] = &[
    "count()",
    "groupBy(host, function=[count(), sum(ms), avg(ms), min(ms), max(ms)])",
    "groupBy(host, function=[countDistinct(ms), percentile(ms, percentiles=[50, 99])])",
    "groupBy(host, function=[last(ms), first(ms), boxplot(ratio)])",
    "countDistinct(n)",
    "timechart(span=1m, series=host, function=count())",
    "histogram(ratio, buckets=5)",
    "sort(ms, limit=5)",
    "*",
];

fn events(n: i64) -> Vec<Event> {
    (0..n)
        .map(|i| {
            let mut e = Event::new(1_000_000_000 * i);
            e.raw = Some(format!("line {i}"));
            e.tags.insert("type".into(), "t".into());
            e.fields
                .insert("host".into(), Value::Str(format!("h{}", i % 3)));
            e.fields.insert("ms".into(), Value::Int((i * 37) % 100));
            e.fields.insert("n".into(), Value::Int(i));
            e.fields
                .insert("ratio".into(), Value::Float(i as f64 / 7.0 - 3.0));
            e
        })
        .collect()
}

/// The encoded partial answer of query `q` over `n` events.
fn encoded(q: usize, n: i64) -> Vec<u8> {
    let program = prepare(QUERIES[q], 20).unwrap().program;
    let mut partial = Partial::empty(&program);
    for e in events(n) {
        program.feed(&mut partial.state, e);
    }
    partial.warnings.push("a warning".into());
    partial.encode()
}

/// Decodes `bytes` for query `q`; if they decode, merges them twice and finishes.
fn decode_and_use(q: usize, bytes: &[u8]) {
    let program = prepare(QUERIES[q], 20).unwrap().program;
    if let Ok(partial) = Partial::decode(bytes, &program) {
        let mut merged = Partial::empty(&program);
        merged.merge(&program, partial.clone());
        merged.merge(&program, partial);
        let _ = merged.into_answer(&program);
    }
}

#[test]
fn every_encoding_round_trips_and_a_large_distinct_count_crosses_as_a_sketch() {
    for (q, query) in QUERIES.iter().enumerate() {
        let program = prepare(query, 20).unwrap().program;
        let bytes = encoded(q, 3000);
        let decoded = Partial::decode(&bytes, &program).unwrap();
        assert_eq!(decoded.encode().len(), bytes.len(), "{query}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn truncated_encodings_give_errors(q in 0..QUERIES.len(), n in 0i64..40, cut in any::<prop::sample::Index>()) {
        let bytes = encoded(q, n);
        let cut = cut.index(bytes.len());
        let program = prepare(QUERIES[q], 20).unwrap().program;
        prop_assert!(Partial::decode(&bytes[..cut], &program).is_err());
    }

    #[test]
    fn mutated_encodings_never_panic(
        q in 0..QUERIES.len(),
        n in 0i64..40,
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        splice in prop::option::of((any::<prop::sample::Index>(), prop::collection::vec(any::<u8>(), 1..12))),
    ) {
        let mut bytes = encoded(q, n);
        for (at, x) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= x;
        }
        if let Some((at, extra)) = splice {
            let i = at.index(bytes.len());
            bytes.splice(i..i, extra);
        }
        decode_and_use(q, &bytes);
    }

    #[test]
    fn random_bytes_after_the_header_never_panic(q in 0..QUERIES.len(), tail in prop::collection::vec(any::<u8>(), 0..200)) {
        let mut bytes = b"EDQP\x01".to_vec();
        bytes.extend(tail);
        decode_and_use(q, &bytes);
    }
}
