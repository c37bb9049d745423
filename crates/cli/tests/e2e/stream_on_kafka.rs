//! Live queries, alert rules and pipelines on nodes whose bus is Kafka (a Kafka-protocol broker
//! on loopback): a view opened on one node counts every event acknowledged through another,
//! those sent before it opened included; a rule fires for events sent through another node,
//! and once per cluster when several nodes have it, the duty moving to another node when the
//! one on duty is killed, which continues from the rule's memory on the bus (no second
//! `firing`, and the `resolved`); a pipeline resumes from the group's committed offsets after
//! a restart.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    agent, alert_rule, get, notices, post, receiver, wait_for, wait_for_or, Server, NDJSON, TOKEN,
};
use eddy_kafka::testing::Broker;
use eddy_kafka::KafkaBus;
use eddy_log::Bus;
use serde_json::Value;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

type Socket = WebSocket<MaybeTlsStream<TcpStream>>;

/// A node with the repository `main` in 4 partitions on the broker, and `extra` config.
fn node(dir: &Path, broker: &Broker, extra: &str) -> Server {
    common::kafka_node(dir, broker, 4, extra)
}

/// Posts events `from..to` (`{"n": i, "status": …}`, every other one a 500) through `server`.
fn send(server: &Server, from: i64, to: i64) {
    let body: String = (from..to)
        .map(|n| {
            format!(
                "{{\"n\":{n},\"status\":{}}}\n",
                if n % 2 == 0 { 500 } else { 200 }
            )
        })
        .collect();
    let (status, answer) = post(
        server,
        "/api/v1/ingest/main",
        &[("Authorization", &format!("Bearer {TOKEN}")), NDJSON],
        body.as_bytes(),
    );
    assert_eq!(status, 200, "{answer}");
}

fn subscribe(server: &Server, query: &str) -> Socket {
    let url = format!(
        "{}/api/v1/repositories/main/live?query={}&token={TOKEN}&window=15m&interval=100ms",
        server.url.replace("http://", "ws://"),
        form_urlencoded::byte_serialize(query.as_bytes()).collect::<String>()
    );
    let (socket, _) = tungstenite::connect(url).unwrap();
    if let MaybeTlsStream::Plain(s) = socket.get_ref() {
        // Seeding reads every partition from the broker: give it time on a busy machine.
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    }
    socket
}

fn next(socket: &mut Socket) -> Value {
    loop {
        match socket.read().unwrap() {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Close(c) => panic!("closed: {c:?}"),
            _ => {}
        }
    }
}

fn count(message: &Value) -> i64 {
    message["rows"][0]["_count"].as_i64().unwrap_or(0)
}

#[test]
fn a_live_query_on_one_node_counts_every_event_acknowledged_through_another() {
    let broker = Broker::start();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = node(dir_a.path(), &broker, "");
    let b = node(dir_b.path(), &broker, "");
    // Before the view opens: inside its window, so its seed must hold them, read from the bus
    // (node B digests only some partitions, if any).
    send(&a, 0, 300);
    let mut view = subscribe(&b, "count()");
    let first = next(&mut view);
    assert_eq!(first["type"], "snapshot", "{first}");
    assert_eq!(count(&first), 300, "seeded from every partition: {first}");
    assert_eq!(first["warnings"], serde_json::json!([]), "{first}");
    // After: fed by node B's tap of every partition.
    send(&a, 300, 500);
    send(&b, 500, 600);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = first;
    while count(&last) < 600 {
        assert!(Instant::now() < deadline, "the view stopped at {last}");
        last = next(&mut view);
    }
    assert_eq!(count(&last), 600, "each acknowledged event once: {last}");
    drop(view);
    a.stop();
    b.stop();
}

/// The alert rule `name` on `main`: any status 500 in the last minute, to `{hook}/{name}`.
fn rule(name: &str, hook: &str) -> String {
    rule_over(name, hook, "1m")
}

/// The alert rule `name` on `main`: any status 500 in the last `window`, to `{hook}/{name}`.
fn rule_over(name: &str, hook: &str, window: &str) -> String {
    format!(
        "[alerts.{name}]\nfrom = \"main\"\nquery = \"status>=500 | count()\"\nwindow = \"{window}\"\n\
         above = 0\nevery = \"100ms\"\nwebhook = \"{hook}/{name}\"\n"
    )
}

/// Whether rule `name` on `server` says this node holds its duty.
fn on_duty(server: &Server, name: &str) -> bool {
    alert_rule(server, name)["status"]["on_duty"] == true
}

/// Waits until exactly one of `a` and `b` holds `rule`'s duty, the same one many times in a
/// row (so that the group's rebalance on the second node's join is behind), and says
/// whether it is `a`.
fn settled_duty(a: &Server, b: &Server, rule: &str) -> bool {
    let mut seen = (None, 0);
    wait_for_or(
        "one node on duty",
        || {
            let (on_a, on_b) = (on_duty(a, rule), on_duty(b, rule));
            seen = match seen {
                (Some(held), n) if on_a != on_b && held == on_a => (Some(held), n + 1),
                _ if on_a != on_b => (Some(on_a), 1),
                _ => (None, 0),
            };
            (seen.1 >= 40).then_some(on_a)
        },
        || format!("{}\n{}", alert_rule(a, rule), alert_rule(b, rule)),
    )
}

#[test]
fn a_rule_fires_for_events_sent_through_another_node_and_once_when_two_nodes_have_it() {
    let broker = Broker::start();
    let (hook, got) = receiver();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Both nodes have `errors`; only B has `b_only`.
    let a = node(dir_a.path(), &broker, &rule("errors", &hook));
    let b = node(
        dir_b.path(),
        &broker,
        &format!("{}{}", rule("errors", &hook), rule("b_only", &hook)),
    );
    // The duty of `errors` settles on exactly one node; B holds `b_only`'s alone.
    let a_on_duty = settled_duty(&a, &b, "errors");
    wait_for("node B on duty for b_only, its only node", || {
        on_duty(&b, "b_only").then_some(())
    });
    // Which node holds the duty once it settled; the other evaluates nothing from here on
    // (it may have held the duty for a moment while the group formed, before any cause).
    let (duty, standby) = if a_on_duty { (&a, &b) } else { (&b, &a) };
    let evaluated = |s: &Server| {
        alert_rule(s, "errors")["status"]["evaluations"]
            .as_u64()
            .unwrap_or(0)
    };
    let standby_evaluations = evaluated(standby);

    send(&a, 0, 10);
    wait_for("b_only firing on node B for events sent through A", || {
        (notices(&got, "/b_only", "firing").len() == 1).then_some(())
    });
    wait_for("errors firing", || {
        (!notices(&got, "/errors", "firing").is_empty()).then_some(())
    });
    // The node on duty goes on evaluating; the other does not, so it notifies nothing: one
    // notice for the one cause.
    let now = evaluated(duty);
    wait_for("more evaluations on the node on duty", || {
        (evaluated(duty) >= now + 5).then_some(())
    });
    assert!(on_duty(duty, "errors") && !on_duty(standby, "errors"));
    assert_eq!(
        evaluated(standby),
        standby_evaluations,
        "{}",
        alert_rule(standby, "errors")
    );
    assert_eq!(notices(&got, "/errors", "firing").len(), 1);
    assert_eq!(notices(&got, "/b_only", "firing").len(), 1);
    a.stop();
    b.stop();
}

#[test]
fn a_pipeline_on_kafka_resumes_from_its_committed_offsets_after_a_restart() {
    let broker = Broker::start();
    let (hook, got) = receiver();
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[pipelines.errors]\nfrom = \"main\"\nquery = \"status>=500\"\nstart = \"beginning\"\n\
         [[pipelines.errors.sinks]]\nwebhook = \"{hook}/errors\"\nbuffer_events = 10\n"
    );
    let delivered = || -> BTreeMap<i64, usize> {
        let mut seen = BTreeMap::new();
        for r in got.lock().unwrap().iter() {
            for row in r.json().as_array().unwrap() {
                let n = row["n"]
                    .as_i64()
                    .or_else(|| row["n"].as_str()?.parse().ok());
                *seen.entry(n.unwrap()).or_default() += 1;
            }
        }
        seen
    };
    let server = node(dir.path(), &broker, &config);
    send(&server, 0, 100);
    wait_for("the first run's errors", || {
        (delivered().len() == 50).then_some(())
    });
    // Everything read is committed before the restart (the pipeline commits once idle).
    let bus = KafkaBus::connect(broker.config()).unwrap();
    let committed = |bus: &KafkaBus| -> Option<Vec<u64>> {
        (0..4)
            .map(|p| {
                bus.committed("pipeline.errors", "repo.main", p)
                    .ok()
                    .flatten()
            })
            .collect()
    };
    let ends: Vec<u64> = (0..4)
        .map(|p| bus.offsets("repo.main", p).unwrap().1)
        .collect();
    wait_for_or(
        "the group's offsets committed up to the end",
        || (committed(&bus).as_ref() == Some(&ends)).then_some(()),
        || format!("committed {:?}, ends {ends:?}", committed(&bus)),
    );
    server.stop();

    let server = node(dir.path(), &broker, &config);
    send(&server, 100, 200);
    wait_for_or(
        "the second run's errors",
        || (delivered().len() == 100).then_some(()),
        || format!("{:?}", delivered().keys().collect::<Vec<_>>()),
    );
    let repeated: Vec<_> = delivered().into_iter().filter(|(_, c)| *c > 1).collect();
    assert!(
        repeated.is_empty(),
        "read again after the restart: {repeated:?}"
    );
    let (_, pipelines) = get(
        &server,
        "/api/v1/pipelines/errors",
        &[("Authorization", &format!("Bearer {TOKEN}"))],
    );
    assert!(
        pipelines.to_string().contains("\"error\":null"),
        "{pipelines}"
    );
    server.stop();
}

/// Posts one `{"status":500}` to `main` through a node every 200 ms until dropped: a cause
/// that lasts as long as it runs.
struct Errors {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Errors {
    fn start(server: &Server) -> Errors {
        let stop = Arc::new(AtomicBool::new(false));
        let (target, stop2) = (format!("{}/api/v1/ingest/main", server.url), stop.clone());
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                let _ = agent()
                    .post(&target)
                    .header("Authorization", &format!("Bearer {TOKEN}"))
                    .header(NDJSON.0, NDJSON.1)
                    .send(&b"{\"status\":500}\n"[..]);
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        Errors {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Errors {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The records of rule `rule` in the alert memory topic, oldest first.
fn published_memories(bus: &KafkaBus, rule: &str) -> Vec<Value> {
    let topic = "_alert_memory";
    let Ok((first, end)) = bus.offsets(topic, 0) else {
        return Vec::new();
    };
    let mut all = Vec::new();
    eddy_log::read_range(bus, topic, 0, first, end, &mut |r| {
        if r.key.as_deref() == Some(rule.as_bytes()) {
            all.push(serde_json::from_slice::<Value>(&r.value).unwrap());
        }
        true
    })
    .unwrap();
    all
}

/// The latest record of rule `rule` in the alert memory topic, if any.
fn published_memory(bus: &KafkaBus, rule: &str) -> Option<Value> {
    published_memories(bus, rule).pop()
}

#[test]
fn the_node_taking_over_a_killed_nodes_duty_continues_its_memory_without_a_second_firing() {
    // SIGKILL: the node says nothing more; the group's session timeout moves the duty.
    failover_continues_the_memory(Server::kill);
}

#[test]
fn the_node_taking_over_a_stopped_nodes_duty_continues_its_memory_without_a_second_firing() {
    // SIGTERM: the node publishes its last memory and leaves the group, which moves the duty
    // at once.
    failover_continues_the_memory(Server::stop);
}

/// A rule fires on the node on duty, which then goes away by `leave`; the other node takes
/// the duty over and neither notifies the cause again nor misses its end.
fn failover_continues_the_memory(leave: fn(Server)) {
    let broker = Broker::start();
    let (hook, got) = receiver();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // A short window, so that the cause ends soon after the errors stop.
    let config = rule_over("errors", &hook, "5s");
    let a = node(dir_a.path(), &broker, &config);
    let b = node(dir_b.path(), &broker, &config);
    let a_on_duty = settled_duty(&a, &b, "errors");
    let (duty, standby) = if a_on_duty { (a, b) } else { (b, a) };
    let errors = Errors::start(&standby);
    let fired = wait_for("errors firing", || {
        notices(&got, "/errors", "firing").into_iter().next()
    });
    // Once the notice is out, the node on duty publishes the memory it continues from: the
    // group firing, nothing left to deliver.
    let bus = KafkaBus::connect(broker.config()).unwrap();
    let settled = |m: &Value| {
        let firing = m["memory"]["groups"]
            .as_object()
            .is_some_and(|g| g.values().any(|g| g["state"]["state"] == "firing"));
        firing && m["memory"]["outbox"] == serde_json::json!([])
    };
    let memory = wait_for_or(
        "the firing group's memory published",
        || published_memory(&bus, "errors").filter(settled),
        || format!("{:?}", published_memory(&bus, "errors")),
    );
    assert_eq!(memory["version"], 1, "{memory}");
    assert_eq!(memory["rule"], "errors", "{memory}");

    leave(duty);
    wait_for("the other node on duty", || {
        on_duty(&standby, "errors").then_some(())
    });
    // It evaluates on while the errors go on, from the memory it took over: the group is the
    // one the killed node fired, and it is not notified again.
    let evaluated = || {
        alert_rule(&standby, "errors")["status"]["evaluations"]
            .as_u64()
            .unwrap_or(0)
    };
    let (now, published) = (evaluated(), published_memories(&bus, "errors").len());
    wait_for("evaluations on the node now on duty", || {
        (evaluated() >= now + 20).then_some(())
    });
    // A firing group whose condition still holds changes nothing worth publishing.
    assert_eq!(published_memories(&bus, "errors").len(), published);
    assert_eq!(
        notices(&got, "/errors", "firing").len(),
        1,
        "notified again after the failover: {:?}",
        notices(&got, "/errors", "firing")
    );
    let group = alert_rule(&standby, "errors")["status"]["groups"][0].clone();
    assert_eq!(group["state"], "firing", "{group}");
    assert_eq!(group["since"], fired["since"], "{group}");
    assert_eq!(group["fired"], 1, "{group}");

    // The cause ends: the node now on duty tells the end of the firing the killed one told.
    drop(errors);
    let resolved = wait_for("errors resolved", || {
        notices(&got, "/errors", "resolved").into_iter().next()
    });
    assert_eq!(resolved["since"], fired["since"], "{resolved}");
    assert_eq!(notices(&got, "/errors", "firing").len(), 1);
    assert_eq!(notices(&got, "/errors", "resolved").len(), 1);
    standby.stop();
}
