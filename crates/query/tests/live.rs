//! Live queries seeded from a real store while its digest is still appending, then fed the
//! bus records the seed did not hold: the answer equals the historic query's over the same
//! window, with events late and out of order, the digest's position lagging, segments sealed
//! and work in progress open.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use eddy_event::codec::FieldsRef;
use eddy_event::{Event, Value};
use eddy_query::live::DEFAULT_MEMORY_LIMIT;
use eddy_query::{prepare, run, Live, Options, Window};
use eddy_store::{RepoStore, StoreConfig};

const SECOND: i64 = 1_000_000_000;
const NOW: i64 = 1_700_000_000 * SECOND;

/// A bus record: partition, offset, data source (its key) and the event.
struct Record {
    partition: u32,
    offset: u64,
    source: String,
    event: Event,
}

/// `count` records over two partitions and three sources, with timestamps up to 200 s old in
/// a shuffled order (some already outside a 2-minute window), a few from the near future.
fn records(count: u64) -> Vec<Record> {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut offsets = [0u64; 2];
    (0..count)
        .map(|n| {
            let r = next();
            let partition = (r % 2) as u32;
            let host = format!("web-{}", (r >> 8) % 3);
            let age = ((r >> 16) % 205) as i64 - 5;
            let mut e = Event::new(NOW - age * SECOND - ((r >> 32) % 1000) as i64);
            e.id = uuid::Uuid::from_u128(u128::from(n) + 1);
            e.tags.insert("host".into(), host.clone());
            let status = [200, 200, 404, 500, 503][((r >> 40) % 5) as usize];
            e.raw = Some(format!("GET /items/{n} status={status}"));
            e.fields.insert("status".into(), Value::Int(status));
            e.fields
                .insert("bytes".into(), Value::Int(((r >> 44) % 10_000) as i64));
            let offset = offsets[partition as usize];
            offsets[partition as usize] += 1;
            Record {
                partition,
                offset,
                source: host,
                event: e,
            }
        })
        .collect()
}

fn append(store: &RepoStore, r: &Record) {
    let e = &r.event;
    store
        .append(
            r.partition,
            r.offset,
            &r.source,
            e,
            FieldsRef::Map(&e.fields),
        )
        .unwrap();
}

const QUERIES: &[&str] = &[
    "status>=500",
    "count()",
    "groupBy(#host, function=[count(), sum(bytes), min(bytes), max(bytes)])",
    "status=404 | timechart(span=10s)",
    "groupBy(status) | sort(_count)",
    "percentile(bytes, percentiles=[50, 95])",
];

#[test]
fn a_live_query_seeded_while_the_digest_runs_equals_the_historic_query() {
    let all = records(3_000);
    let window = Window::new(Duration::from_secs(120)).unwrap();
    for (case, &digested) in [0usize, 700, 1_500, 2_999].iter().enumerate() {
        for q in QUERIES {
            let dir = tempfile::tempdir().unwrap();
            let config = StoreConfig {
                block_bytes: 2048,
                ..StoreConfig::default()
            };
            let store = RepoStore::open("live", dir.path(), config).unwrap();
            // The digest has appended `digested` records; it told the store of fewer (it
            // notes its position once per batch), and sealed some of them.
            for (i, r) in all[..digested].iter().enumerate() {
                append(&store, r);
                if i == digested / 2 {
                    store.seal_all().unwrap();
                }
            }
            for p in 0..2 {
                let noted = all[..digested.saturating_sub(200)]
                    .iter()
                    .filter(|r| r.partition == p)
                    .map(|r| r.offset + 1)
                    .max()
                    .unwrap_or(0);
                store.note_digested(p, noted);
            }
            let prepared = prepare(q, 10_000).unwrap();
            let mut live = Live::new(prepared.clone(), window, DEFAULT_MEMORY_LIMIT);
            let (cut, warnings) = live.seed(&store, NOW);
            assert!(warnings.is_empty(), "{warnings:?}");
            // The bus, from each partition's cut on; the digest goes on meanwhile.
            for r in &all {
                if r.offset >= cut.from(r.partition) && !cut.holds(r.partition, r.offset, &r.source)
                {
                    live.add(&r.event, NOW);
                }
            }
            for r in &all[digested..] {
                append(&store, r);
            }
            let (start, end) = window.bounds(NOW);
            let options = Options {
                start,
                end,
                limit: 10_000,
                ..Options::default()
            };
            let historic = run(
                &store,
                &prepared,
                &options,
                &AtomicBool::new(false),
                &|_| {},
            );
            let mine = live.answer(NOW);
            assert!(!historic.rows.is_empty(), "{q}: nothing to compare");
            assert_eq!(mine.columns, historic.columns, "case {case}, {q}");
            assert_eq!(mine.rows, historic.rows, "case {case}, {q}");
            if digested == 0 {
                assert!(live.late() > 0, "some events are older than the window");
            }
        }
    }
}
