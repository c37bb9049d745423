//! The cluster's shared state on a Kafka bus (a Kafka-protocol broker on loopback): what one
//! node's API creates (a repository with its settings, a token, an alert rule, a pipeline)
//! every node has, what one node removes every node loses, two nodes cannot create the same
//! name, and a node that joins later replays all of it.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::path::Path;

use common::{get, post, wait_for, Server, NDJSON, TOKEN};
use eddy_kafka::testing::Broker;
use serde_json::{json, Value};

fn node(dir: &Path, broker: &Broker, name: &str) -> Server {
    common::kafka_node(
        dir,
        broker,
        2,
        &format!("[cluster]\nnode = \"{name}\"\ntoken = \"{TOKEN}\""),
    )
}

fn admin() -> (&'static str, String) {
    ("Authorization", format!("Bearer {TOKEN}"))
}

fn call(server: &Server, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let (key, value) = admin();
    if method == "GET" {
        return get(server, path, &[(key, &value)]);
    }
    if method == "POST" {
        let body = body.unwrap_or_default().to_string();
        return post(
            server,
            path,
            &[(key, &value), ("Content-Type", "application/json")],
            body.as_bytes(),
        );
    }
    let response = common::agent()
        .delete(&format!("{}{path}", server.url))
        .header(key, &value)
        .call()
        .unwrap();
    (response.status().as_u16(), Value::Null)
}

/// Sends `n` events to repository `repo` through `server` with `token`; the status.
fn ingest(server: &Server, repo: &str, token: &str, n: usize) -> u16 {
    let body: String = (0..n).map(|i| format!("{{\"n\":{i}}}\n")).collect();
    post(
        server,
        &format!("/api/v1/ingest/{repo}"),
        &[("Authorization", &format!("Bearer {token}")), NDJSON],
        body.as_bytes(),
    )
    .0
}

fn names(list: &Value, key: &str) -> Vec<String> {
    list[key]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn what_one_node_creates_or_removes_every_node_has_and_a_late_node_replays_it() {
    let broker = Broker::start();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = node(dir_a.path(), &broker, "a");
    let b = node(dir_b.path(), &broker, "b");

    // A repository made through A, with its settings, opens on B and takes events there.
    let (status, made) = call(
        &a,
        "POST",
        "/api/v1/repositories",
        Some(json!({"name": "web", "partitions": 3, "max_tag_values": 50})),
    );
    assert_eq!(status, 201, "{made}");
    let on_b = wait_for("the repository on node b", || {
        let (status, repo) = call(&b, "GET", "/api/v1/repositories/web", None);
        (status == 200).then_some(repo)
    });
    assert_eq!(on_b["partitions"], 3, "{on_b}");
    assert_eq!(on_b["max_tag_values"], 50, "{on_b}");
    // The same name through B is taken.
    let (status, refused) = call(
        &b,
        "POST",
        "/api/v1/repositories",
        Some(json!({"name": "web"})),
    );
    assert_eq!(status, 409, "{refused}");

    // A token made through A works on B, and stops working there once A revokes it.
    let (status, token) = call(
        &a,
        "POST",
        "/api/v1/tokens",
        Some(json!({"name": "shipper", "scopes": ["ingest:web"]})),
    );
    assert_eq!(status, 201, "{token}");
    let (id, secret) = (
        token["id"].as_str().unwrap().to_string(),
        token["secret"].as_str().unwrap().to_string(),
    );
    wait_for("the token to work on node b", || {
        (ingest(&b, "web", &secret, 10) == 200).then_some(())
    });
    // On Kafka a repository's events are the brokers', whichever node asks.
    let (_, web) = call(&a, "GET", "/api/v1/repositories/web", None);
    assert_eq!(
        (web["bus"].as_str(), web["events"].as_u64()),
        (Some("kafka"), Some(10)),
        "{web}"
    );
    let (status, _) = call(&a, "DELETE", &format!("/api/v1/tokens/{id}"), None);
    assert_eq!(status, 204);
    wait_for("the revoked token to be refused on node b", || {
        (ingest(&b, "web", &secret, 1) == 403).then_some(())
    });

    // An alert rule and a pipeline made through B run on A; removing them through A stops
    // them on B.
    let rule = json!({"name": "many", "from": "web", "query": "count()", "window": "1m",
        "above": 1000000, "every": "1s"});
    let (status, answer) = call(&b, "POST", "/api/v1/alerts", Some(rule));
    assert_eq!(status, 201, "{answer}");
    let (status, answer) = call(
        &b,
        "POST",
        "/api/v1/repositories",
        Some(json!({"name": "copies"})),
    );
    assert_eq!(status, 201, "{answer}");
    let pipeline = json!({"name": "copy", "from": "web", "query": "n>5",
        "sinks": [{"repository": "copies"}]});
    let (status, answer) = call(&b, "POST", "/api/v1/pipelines", Some(pipeline));
    assert_eq!(status, 201, "{answer}");
    wait_for("the rule and the pipeline on node a", || {
        let alerts = names(&call(&a, "GET", "/api/v1/alerts", None).1, "alerts");
        let pipelines = names(&call(&a, "GET", "/api/v1/pipelines", None).1, "pipelines");
        (alerts == ["many"] && pipelines == ["copy"]).then_some(())
    });

    // A node that joins now replays it all: the repositories, the rule, the pipeline, and
    // not the revoked token.
    let dir_c = tempfile::tempdir().unwrap();
    let c = node(dir_c.path(), &broker, "c");
    let repositories = names(
        &call(&c, "GET", "/api/v1/repositories", None).1,
        "repositories",
    );
    for repo in ["copies", "main", "web"] {
        assert!(repositories.contains(&repo.to_string()), "{repositories:?}");
    }
    assert_eq!(
        names(&call(&c, "GET", "/api/v1/alerts", None).1, "alerts"),
        ["many"]
    );
    assert_eq!(ingest(&c, "web", &secret, 1), 403);

    let (status, _) = call(&a, "DELETE", "/api/v1/alerts/many", None);
    assert_eq!(status, 204);
    let (status, _) = call(&a, "DELETE", "/api/v1/pipelines/copy", None);
    assert_eq!(status, 204);
    for server in [&b, &c] {
        wait_for("the rule and the pipeline to stop everywhere", || {
            let alerts = names(&call(server, "GET", "/api/v1/alerts", None).1, "alerts");
            let pipelines = names(
                &call(server, "GET", "/api/v1/pipelines", None).1,
                "pipelines",
            );
            (alerts.is_empty() && pipelines.is_empty()).then_some(())
        });
    }
}
