//! End-to-end tests of the schema registry and the gatekeeper in `eddy serve`: Confluent's own
//! Python client against the REST API, restarts, and events through the doors of a repository
//! bound to a subject (JSON over HTTP and TCP, binary Avro in the three framings).
#![allow(clippy::unwrap_used)]

use crate::common;

use std::io::Write;
use std::process::Command;

use common::*;
use eddy_event::Value;
use eddy_schema::{framing, AvroSchema};
use serde_json::json;

const REGISTRY: &str = "/api/v1/registry";
const AUTH: (&str, &str) = ("Authorization", "Bearer test-token-0123456789");
const SR: (&str, &str) = ("Content-Type", "application/vnd.schemaregistry.v1+json");

const ORDER_V1: &str = r#"{"type": "record", "name": "Order", "fields": [
    {"name": "id", "type": "long"}, {"name": "total", "type": "double"}]}"#;
const ORDER_V2: &str = r#"{"type": "record", "name": "Order", "fields": [
    {"name": "id", "type": "long"}, {"name": "total", "type": "double"},
    {"name": "currency", "type": "string", "default": "EUR"}]}"#;

fn register(server: &Server, subject: &str, schema: &str) -> (u16, serde_json::Value) {
    let body = json!({ "schema": schema }).to_string();
    post(
        server,
        &format!("{REGISTRY}/subjects/{subject}/versions"),
        &[AUTH, SR],
        body.as_bytes(),
    )
}

#[test]
fn confluents_python_client_works_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/confluent_registry.py"
    );
    // Debian's python3-confluent-kafka lives with the system interpreter (.ci/run installs it).
    let out = Command::new("/usr/bin/python3")
        .args([script, &format!("{}{REGISTRY}", server.url), TOKEN])
        .output()
        .expect("/usr/bin/python3 is needed for this test");
    assert!(
        out.status.success(),
        "the client failed (python3-confluent-kafka and python3-requests are needed: .ci/run installs them):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["id1"], 1);
    assert_eq!(seen["id1_again"], 1);
    assert_eq!(seen["fetched"]["name"], "Order");
    assert_eq!(seen["compatible_v2"], true);
    assert_eq!(seen["compatible_bad"], false);
    assert_eq!(seen["id2"], 2);
    assert_eq!(seen["conflict"]["status"], 409);
    assert_eq!(seen["conflict"]["code"], 409);
    let message = seen["conflict"]["message"].as_str().unwrap();
    assert!(
        message.contains("Order.total: type changed from long to string; data written with version 2 cannot be read"),
        "{message}"
    );
    assert_eq!(
        seen["latest"],
        json!({"id": 2, "version": 2, "subject": "orders-value"})
    );
    assert_eq!(seen["versions"], json!([1, 2]));
    assert_eq!(seen["lookup"], 1);
    assert_eq!(seen["subjects"], json!(["orders-value"]));
    assert_eq!(seen["global_mode"], "BACKWARD");
    assert_eq!(seen["subject_mode"], "FULL");
    assert_eq!(seen["json_type"], "JSON");
    assert_eq!(seen["missing"], json!({"status": 404, "code": 40401}));
    assert_eq!(seen["deleted"], 2);
    assert_eq!(seen["versions_after_delete"], json!([1]));

    // Without the token: refused, in the registry's own error shape.
    let (status, body) = get(&server, &format!("{REGISTRY}/subjects"), &[]);
    assert_eq!(status, 401);
    assert_eq!(body["error_code"], 401);
    server.stop();
}

#[test]
fn the_registry_answers_with_reasons_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "");
    assert_eq!(
        register(&server, "orders", ORDER_V1),
        (200, json!({"id": 1}))
    );
    let bad = ORDER_V1.replace(r#""type": "double""#, r#""type": "string""#);
    let body = json!({ "schema": bad }).to_string();
    let (status, answer) = post(
        &server,
        &format!("{REGISTRY}/compatibility/subjects/orders/versions/latest"),
        &[AUTH, SR],
        body.as_bytes(),
    );
    assert_eq!(status, 200);
    assert_eq!(answer["is_compatible"], false);
    assert_eq!(
        answer["messages"][0],
        "Order.total: type changed from double to string; data written with version 1 cannot be read by the new schema"
    );
    let (status, answer) = register(&server, "orders", "{\"type\": \"recor\"}");
    assert_eq!((status, answer["error_code"].clone()), (422, json!(42201)));
    // Deletes are soft only.
    let url = format!(
        "{}{REGISTRY}/subjects/orders/versions/1?permanent=true",
        server.url
    );
    let mut r = agent().delete(url).header(AUTH.0, AUTH.1).call().unwrap();
    let answer: serde_json::Value =
        serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(
        (r.status().as_u16(), answer["error_code"].clone()),
        (422, json!(42205))
    );
    server.stop();

    let server = Server::start(dir.path(), "");
    let (status, answer) = get(&server, &format!("{REGISTRY}/schemas/ids/1"), &[AUTH]);
    assert_eq!(status, 200);
    assert!(answer["schema"].as_str().unwrap().contains("Order"));
    assert_eq!(
        register(&server, "orders", ORDER_V2),
        (200, json!({"id": 2}))
    );
    server.stop();
}

const BOUND: &str = "[repositories.orders]\nschema = { subject = \"orders\" }\n[[tcp]]\nlisten = \"127.0.0.1:0\"\nrepository = \"orders\"\nparser = \"json\"\n";

#[test]
fn the_gatekeeper_stops_bad_events_at_every_door_and_resolves_old_writers() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), BOUND);
    let ingest = "/api/v1/ingest/orders";
    // Nothing registered yet: nothing to check against, nothing stored.
    let (status, answer) = post(&server, ingest, &[NDJSON], b"{\"id\": 1, \"total\": 2}\n");
    assert_eq!(status, 400);
    assert!(
        answer["error"].as_str().unwrap().contains("register one"),
        "{answer}"
    );

    let (_, v1) = register(&server, "orders", ORDER_V1);
    let good = "{\"id\": 1, \"total\": 2.5}\n{\"id\": 2, \"total\": 3, \"@timestamp\": \"2026-11-24T10:00:00Z\"}\n";
    assert_eq!(post(&server, ingest, &[NDJSON], good.as_bytes()).0, 200);
    let bad =
        "{\"id\": 3, \"total\": 1}\n{\"id\": \"4\", \"total\": 1}\n{\"id\": 5, \"totl\": 1}\n";
    let (status, answer) = post(&server, ingest, &[NDJSON], bad.as_bytes());
    assert_eq!(status, 400);
    assert_eq!(answer["invalid"], 2);
    assert_eq!(
        answer["lines"],
        json!([
            {"line": 2, "field": "id", "reason": "expected a long, found string \"4\""},
            {"line": 3, "field": "totl", "reason": "not a field of Order"},
        ])
    );

    // Binary Avro written with version 1, after version 2 adds a field with a default: each
    // framing is read and resolved to version 2.
    assert_eq!(register(&server, "orders", ORDER_V2).0, 200);
    let schema = AvroSchema::parse(ORDER_V1).unwrap();
    let datum = |id: i64| {
        use apache_avro::types::Value as A;
        schema
            .encode(A::Record(vec![
                ("id".into(), A::Long(id)),
                ("total".into(), A::Double(1.5)),
            ]))
            .unwrap()
    };
    let mut body = framing::confluent(v1["id"].as_u64().unwrap() as u32, &datum(10));
    body.extend(framing::single_object(schema.crc64(), &datum(11)));
    body.extend(framing::sha256(schema.sha256(), &datum(12)));
    let avro = ("Content-Type", "application/vnd.apache.avro+binary");
    let (status, answer) = post(&server, ingest, &[avro], &body);
    assert_eq!(
        (status, answer["events"].clone()),
        (200, json!(3)),
        "{answer}"
    );
    let (status, answer) = post(&server, ingest, &[avro], &[0x81, 1, 2]);
    assert_eq!(status, 400);
    assert!(
        answer["lines"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("SHA-256 header needs 33 bytes"),
        "{answer}"
    );

    // TCP: a listener has no one to answer; bad lines are dropped and counted.
    let mut tcp = std::net::TcpStream::connect(server.tcp[0]).unwrap();
    tcp.write_all(b"{\"id\": 20, \"total\": 1}\n{\"id\": 21}\n")
        .unwrap();
    drop(tcp);
    let rejected = server.wait_for_metric(
        r#"eddy_ingest_rejected_events_total{door="tcp",repository="orders",reason="schema"}"#,
        1.0,
    );
    assert_eq!(rejected, 1.0);
    server.wait_for_metric(
        r#"eddy_ingest_events_total{door="tcp",repository="orders"}"#,
        1.0,
    );
    server.stop();

    let stored = stored_events(dir.path(), "orders");
    let mut ids: Vec<i64> = stored
        .iter()
        .map(|e| match e.fields.get("id") {
            Some(Value::Int(i)) => *i,
            other => panic!("{other:?}"),
        })
        .collect();
    ids.sort();
    assert_eq!(ids, [1, 2, 10, 11, 12, 20]);
    let resolved = stored
        .iter()
        .find(|e| e.fields.get("id") == Some(&Value::Int(10)))
        .unwrap();
    assert_eq!(resolved.fields.get("currency"), Some(&Value::from("EUR")));
}

#[test]
fn json_events_get_the_bound_avro_schema_defaults_like_avro_datums() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), BOUND);
    register(&server, "orders", ORDER_V1);
    assert_eq!(register(&server, "orders", ORDER_V2).0, 200);
    let ingest = "/api/v1/ingest/orders";
    let body = b"{\"id\": 1, \"total\": 2.5}\n{\"id\": 2, \"total\": 3, \"currency\": \"USD\"}\n";
    let (status, answer) = post(&server, ingest, &[NDJSON], body);
    assert_eq!(status, 200, "{answer}");
    server.stop();
    let stored = stored_events(dir.path(), "orders");
    let currency = |id: i64| {
        stored
            .iter()
            .find(|e| e.fields.get("id") == Some(&Value::Int(id)))
            .and_then(|e| e.fields.get("currency").cloned())
    };
    assert_eq!(currency(1), Some(Value::from("EUR")), "the default, filled");
    assert_eq!(
        currency(2),
        Some(Value::from("USD")),
        "the client's own value"
    );
}

fn eddy_schema(server: &Server, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .arg("schema")
        .args(args)
        .args(["--url", &server.url, "--token", TOKEN])
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_schema_command_registers_lists_shows_checks_and_diffs() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "");
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let (v1, v2) = (file("v1.avsc", ORDER_V1), file("v2.avsc", ORDER_V2));
    let bad = file(
        "bad.avsc",
        &ORDER_V2.replace(
            r#""name": "id", "type": "long""#,
            r#""name": "id", "type": "int""#,
        ),
    );

    let (code, out, _) = eddy_schema(&server, &["register", "orders", &v1]);
    assert_eq!((code, out.trim()), (0, "orders: version 1 (schema id 1)"));
    let (code, out, _) = eddy_schema(&server, &["check", "orders", &v2]);
    assert_eq!((code, out.trim()), (0, "compatible: compatible"));
    let (code, _, err) = eddy_schema(&server, &["check", "orders", &bad]);
    assert_eq!(code, 1);
    assert!(err.contains("Order.id: type changed from long to int; data written with version 1 cannot be read by the new schema"), "{err}");
    let (code, _, err) = eddy_schema(&server, &["register", "orders", &bad]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("incompatible (1 reasons)"), "{err}");
    assert_eq!(eddy_schema(&server, &["register", "orders", &v2]).0, 0);

    let (code, out, _) = eddy_schema(&server, &["list", "--json"]);
    assert_eq!(code, 0);
    let row: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        row,
        json!({"subject": "orders", "version": 2, "id": 2, "type": "AVRO", "compatibility": "BACKWARD"})
    );
    let (code, out, _) = eddy_schema(&server, &["show", "orders", "--at", "1"]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("# orders version 1 (schema id 1, AVRO)"),
        "{out}"
    );
    let (code, out, _) = eddy_schema(&server, &["diff", "orders", "1", "2"]);
    assert_eq!(code, 0);
    assert!(
        out.contains(
            "+ fields.currency: {\"default\":\"EUR\",\"name\":\"currency\",\"type\":\"string\"}"
        ),
        "{out}"
    );
    assert!(
        out.contains("the new version reads old data (backward): yes"),
        "{out}"
    );
    assert!(
        out.contains("old readers read new data (forward): yes"),
        "{out}"
    );
    let (code, _, err) = eddy_schema(&server, &["show", "nope"]);
    assert_eq!(code, 1);
    assert!(err.contains("error 40401"), "{err}");
    server.stop();
}
