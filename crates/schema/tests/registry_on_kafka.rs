//! The registry as a cluster's: several nodes' registries on one journal in a Kafka-protocol
//! broker on loopback (through librdkafka), writing at once. Every node ends with the same
//! subjects, versions and ids, one id per schema, and a node started later replays the same.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy_kafka::testing::Broker;
use eddy_kafka::KafkaBus;
use eddy_log::Bus;
use eddy_schema::{Registry, SchemaType};

/// How long anything that waits on the broker may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(120);

fn node(broker: &Broker) -> Arc<Registry> {
    let bus: Arc<dyn Bus> = Arc::new(KafkaBus::connect(broker.config()).unwrap());
    let registry = Arc::new(Registry::open(bus).unwrap());
    registry.follow();
    registry
}

/// A record schema named `name` with fields `f0..fields`, each after the first with a default
/// (so that each is a compatible next version of the one before).
fn record(name: &str, fields: usize) -> String {
    let fields: Vec<String> = (0..fields)
        .map(|i| match i {
            0 => r#"{"name": "f0", "type": "long"}"#.to_string(),
            i => format!(r#"{{"name": "f{i}", "type": "long", "default": 0}}"#),
        })
        .collect();
    format!(
        r#"{{"type": "record", "name": "{name}", "fields": [{}]}}"#,
        fields.join(", ")
    )
}

/// What a registry says of every subject: (subject, version, id), in order.
fn everything(r: &Registry) -> Vec<(String, u32, u32)> {
    let mut all = Vec::new();
    for subject in r.subjects() {
        for v in r.versions(&subject).unwrap() {
            let version = r.version(&subject, &v.to_string()).unwrap();
            all.push((subject.clone(), version.version, version.id));
        }
    }
    all
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn nodes_writing_at_once_agree_on_every_id_and_version() {
    let broker = Broker::start();
    let (a, b) = (node(&broker), node(&broker));

    // What one node registers, the other follows.
    let first = a
        .register("orders-value", SchemaType::Avro, &record("Order", 1))
        .unwrap();
    wait_until("node B follows node A's registration", || {
        b.version("orders-value", "1").is_ok()
    });
    assert_eq!(b.version("orders-value", "1").unwrap().id, first.id);

    // Both write at once: new schemas under their own subjects (each choosing "the next id"
    // from what it has read) and new versions of one shared subject.
    let writers: Vec<_> = [(a.clone(), "a"), (b.clone(), "b")]
        .into_iter()
        .map(|(r, who)| {
            std::thread::spawn(move || {
                let mut registered = Vec::new();
                for i in 0..6 {
                    let own = r
                        .register(
                            &format!("{who}-{i}"),
                            SchemaType::Avro,
                            &record(&format!("{who}{i}"), 1),
                        )
                        .unwrap();
                    registered.push((format!("{who}-{i}"), own.id));
                    let shared = r
                        .register(
                            "orders-value",
                            SchemaType::Avro,
                            &record("Order", 2 + i * 2 + usize::from(who == "b")),
                        )
                        .unwrap();
                    registered.push(("orders-value".to_string(), shared.id));
                }
                registered
            })
        })
        .collect();
    let registered: Vec<(String, u32)> = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();

    wait_until("both nodes have applied the same journal", || {
        everything(&a) == everything(&b)
    });
    let all = everything(&a);
    // 12 own subjects of one version, and the shared subject's first version and 12 more.
    assert_eq!(all.len(), 12 + 13, "{all:?}");
    // What each writer was told is what every node knows.
    for (subject, id) in &registered {
        assert!(
            all.iter().any(|(s, _, i)| s == subject && i == id),
            "{subject} with id {id} is not in {all:?}"
        );
    }
    // One id per schema: 12 own schemas, and 13 versions of the shared one, all different.
    let mut ids: Vec<u32> = all.iter().map(|(_, _, id)| *id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 25, "{all:?}");
    // The shared subject's versions count 1, 2, … 13 with none lost or doubled.
    let versions: Vec<u32> = all
        .iter()
        .filter(|(s, _, _)| s == "orders-value")
        .map(|(_, v, _)| *v)
        .collect();
    assert_eq!(versions, (1..=13).collect::<Vec<_>>());

    // A node started afterwards replays the journal to the same registry.
    let c = node(&broker);
    assert_eq!(everything(&c), all);
}
