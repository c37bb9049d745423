//! Field discovery over a real store (sealed segments and work in progress), against counts
//! made from the events themselves.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};

use eddy_event::codec::FieldsRef;
use eddy_event::{Event, Value};
use eddy_query::discover::{discover, Bounds, Discovery};
use eddy_store::{RepoStore, StoreConfig};

const SECOND: i64 = 1_000_000_000;
const T0: i64 = 1_700_000_000 * SECOND;

/// Event `n`: a few low-cardinality fields, one unique per event, one of two types, one rare.
fn event(n: i64) -> Event {
    let mut e = Event::new(T0 + n * SECOND);
    e.raw = Some(format!("event {n}"));
    e.tags.insert("host".into(), format!("web-{}", n % 2));
    e.fields.insert(
        "method".into(),
        Value::Str(["GET", "POST", "PUT"][(n % 3) as usize].into()),
    );
    e.fields
        .insert("status".into(), Value::Int(200 + (n % 4) * 100));
    e.fields.insert("n".into(), Value::Int(n));
    // An integer for most, a text for some: one field, two types.
    let code = match n % 5 {
        0 => Value::Str(format!("E{}", n % 3)),
        _ => Value::Int(n % 7),
    };
    e.fields.insert("code".into(), code);
    if n % 10 == 0 {
        e.fields.insert("rare".into(), Value::Bool(n % 20 == 0));
    }
    if n % 11 == 0 {
        e.fields.insert("ratio".into(), Value::Float(0.5));
    }
    e
}

/// A store of events `0..count`, three quarters sealed in small blocks, the rest in progress.
fn store(dir: &std::path::Path, count: i64) -> RepoStore {
    let config = StoreConfig {
        block_bytes: 2048,
        ..StoreConfig::default()
    };
    let store = RepoStore::open("test", dir, config).unwrap();
    for n in 0..count {
        let e = event(n);
        store
            .append(0, n as u64, &e.data_source(), &e, FieldsRef::Map(&e.fields))
            .unwrap();
        if n == count * 3 / 4 {
            store.seal_all().unwrap();
        }
    }
    store
}

fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Int(_) => "int",
        Value::Float(_) => "float",
        Value::Str(_) => "string",
    }
}

/// Per field: events, types, and distinct values with their counts, from the events.
type Model = BTreeMap<String, (u64, BTreeMap<String, u64>, HashMap<String, u64>)>;

fn model(events: impl Iterator<Item = Event>) -> Model {
    let mut m = Model::new();
    for e in events {
        let tags = e
            .tags
            .iter()
            .map(|(k, v)| (format!("#{k}"), Value::Str(v.clone())));
        for (name, v) in e.fields.clone().into_iter().chain(tags) {
            let f = m.entry(name).or_default();
            f.0 += 1;
            *f.1.entry(type_of(&v).into()).or_default() += 1;
            *f.2.entry(format!("{v:?}")).or_default() += 1;
        }
    }
    m
}

fn check_against(d: &Discovery, m: &Model, bounds: Bounds) {
    let names: Vec<&str> = d.fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names.len(), m.len(), "{names:?}");
    for f in &d.fields {
        let (events, types, values) = &m[&f.name];
        assert_eq!(f.events, *events, "{}", f.name);
        assert_eq!(&f.types, types, "{}", f.name);
        if values.len() <= bounds.tracked_values {
            assert_eq!(f.distinct, Some(values.len() as u64), "{}", f.name);
            assert_eq!(
                f.top.len(),
                values.len().min(bounds.top_values),
                "{}",
                f.name
            );
            for t in &f.top {
                assert_eq!(values[&format!("{:?}", t.value)], t.count, "{}", f.name);
            }
        } else {
            assert_eq!((f.distinct, f.top.len()), (None, 0), "{}", f.name);
        }
    }
    // Most common first.
    assert!(d.fields.windows(2).all(|w| w[0].events >= w[1].events));
}

#[test]
fn discovery_counts_every_field_of_sealed_and_unsealed_events_in_the_range() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), 1000);
    let (start, end) = (T0 + 100 * SECOND, T0 + 900 * SECOND);
    let d = discover(&s, start, end, Bounds::default());
    assert!(!d.sampled, "{d:?}");
    assert_eq!(d.events, 800);
    assert_eq!((d.oldest, d.newest), (Some(start), Some(end - SECOND)));
    assert!(d.blocks_read > 2, "small blocks: {}", d.blocks_read);
    check_against(&d, &model((100..900).map(event)), Bounds::default());
    let method = d.fields.iter().find(|f| f.name == "method").unwrap();
    assert_eq!(method.top[0].count, 267);
    let code = d.fields.iter().find(|f| f.name == "code").unwrap();
    assert_eq!(code.types.len(), 2, "an int and a string field: {code:?}");
}

#[test]
fn discovery_past_its_bound_reads_the_newest_blocks_and_says_it_sampled() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), 1000);
    let bounds = Bounds {
        events: 100,
        ..Bounds::default()
    };
    let d = discover(&s, i64::MIN, i64::MAX, bounds);
    assert!(d.sampled, "{d:?}");
    assert!(d.events >= 100 && d.events < 1000, "{}", d.events);
    assert!(d.blocks_read < d.blocks_total);
    // The newest event is among those looked at, and the answer covers exactly those.
    assert_eq!(d.newest, Some(T0 + 999 * SECOND));
    let oldest = (d.oldest.unwrap() - T0) / SECOND;
    assert_eq!(d.events, 1000 - oldest as u64, "a contiguous newest run");
    check_against(&d, &model((oldest..1000).map(event)), bounds);
}

#[test]
fn discovery_of_an_empty_range_answers_no_fields() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), 50);
    let d = discover(&s, T0 - 100 * SECOND, T0 - SECOND, Bounds::default());
    assert_eq!((d.events, d.fields.len(), d.sampled), (0, 0, false));
    assert_eq!(d.oldest, None);
}
