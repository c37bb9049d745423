//! End-to-end tests of the protocol doors with the real clients users have: the OpenTelemetry
//! Python SDK's OTLP/HTTP exporters, the `elasticsearch` client's bulk helper, the
//! `influxdb-client` package, a Loki logging handler and Splunk HEC requests as Splunk
//! documents them. Each starts `eddy serve`, sends with the client, then queries the events
//! back; and each door gets bad input (malformed, wrong token, oversize) answered in its
//! protocol's own form. The Python packages are installed by bench/setup.sh (CI runs it).
#![allow(clippy::unwrap_used)]

use crate::common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{post, Server, TOKEN};
use serde_json::{json, Value};

/// The config of every test here: the five doors on, into repositories that need `TOKEN`.
const DOORS: &str = "[repositories.otel]\ntokens = [\"test-token-0123456789\"]\n\
    [repositories.logs]\ntokens = [\"test-token-0123456789\"]\n\
    [repositories.web]\ntokens = [\"test-token-0123456789\"]\n\
    [doors.otlp]\nenabled = true\nrepository = \"otel\"\n\
    [doors.elastic]\nenabled = true\nrepository = \"logs\"\n\
    [doors.loki]\nenabled = true\nrepository = \"logs\"\n\
    [doors.influx]\nenabled = true\nrepository = \"logs\"\n\
    [doors.hec]\nenabled = true\nrepository = \"logs\"\n";

/// Runs a Python script with `EDDY_URL` and `EDDY_TOKEN` set; `None` (after a loud message)
/// only if one of `modules` cannot be imported here.
fn python(server: &Server, modules: &[&str], script: &str) -> Option<String> {
    let probe = Command::new("python3")
        .arg("-c")
        .arg(
            modules
                .iter()
                .map(|m| format!("import {m}\n"))
                .collect::<String>(),
        )
        .output()
        .expect("python3 is needed for this test");
    if !probe.status.success() {
        eprintln!(
            "\n\n!!! SKIPPED: the Python client {modules:?} cannot be imported ({}); bench/setup.sh installs it\n\n",
            String::from_utf8_lossy(&probe.stderr).trim()
        );
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have the Python clients: bench/setup.sh installs them"
        );
        return None;
    }
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .env("EDDY_URL", &server.url)
        .env("EDDY_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the client failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The rows of `query` over all time in `repository`, once there are `expected` of them.
fn rows(server: &Server, repository: &str, query: &str, expected: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, answer) = post(
            server,
            &format!("/api/v1/repositories/{repository}/query"),
            &[
                ("Authorization", &format!("Bearer {TOKEN}")),
                ("Content-Type", "application/json"),
            ],
            json!({"query": query, "start": "1970-01-01T00:00:00Z", "end": "2200-01-01T00:00:00Z"})
                .to_string()
                .as_bytes(),
        );
        assert_eq!(status, 200, "{answer}");
        let rows = answer["rows"].as_array().cloned().unwrap_or_default();
        if rows.len() >= expected || Instant::now() > deadline {
            assert_eq!(rows.len(), expected, "{query}: {answer}");
            return rows;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn row<'a>(rows: &'a [Value], field: &str, value: &str) -> &'a Value {
    rows.iter()
        .find(|r| r[field] == value)
        .unwrap_or_else(|| panic!("no row with {field} = {value:?} in {rows:#?}"))
}

const OTLP_CLIENT: &str = r#"
import logging, os
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.trace import TracerProvider

url, token = os.environ["EDDY_URL"], os.environ["EDDY_TOKEN"]
headers = {"Authorization": "Bearer " + token}
resource = Resource.create({"service.name": "checkout", "host.name": "web-1", "deployment.environment": "prod"})

logs = LoggerProvider(resource=resource)
logs.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(endpoint=url + "/v1/logs", headers=headers)))
log = logging.getLogger("orders")
log.addHandler(LoggingHandler(level=logging.INFO, logger_provider=logs))
log.setLevel(logging.INFO)
tracer = TracerProvider(resource=resource).get_tracer("shop")
with tracer.start_as_current_span("checkout") as span:
    log.error("payment failed for %s", "A17", extra={"order_id": "A17", "retries": 3})
    context = span.get_span_context()
log.info("order shipped")
logs.shutdown()

reader = PeriodicExportingMetricReader(
    OTLPMetricExporter(endpoint=url + "/v1/metrics", headers=headers, compression=Compression.Gzip),
    export_interval_millis=3_600_000)
meters = MeterProvider(resource=resource, metric_readers=[reader])
meter = meters.get_meter("shop")
orders = meter.create_counter("orders", unit="1")
orders.add(5, {"route": "/buy"})
orders.add(2, {"route": "/cart"})
latency = meter.create_histogram("latency", unit="ms")
latency.record(12, {"route": "/buy"})
latency.record(30, {"route": "/buy"})
# One export, at shutdown (a cumulative sum exported twice would count twice in a sum()).
meters.shutdown()
print(format(context.trace_id, "032x"), format(context.span_id, "016x"))
"#;

#[test]
fn the_opentelemetry_python_exporters_send_logs_and_metrics_that_query_back() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), DOORS);
    let Some(out) = python(
        &server,
        &[
            "opentelemetry.sdk",
            "opentelemetry.exporter.otlp.proto.http",
        ],
        OTLP_CLIENT,
    ) else {
        return;
    };
    let ids: Vec<&str> = out.split_whitespace().collect();
    let (trace_id, span_id) = (ids[0], ids[1]);

    let logs = rows(
        &server,
        "otel",
        "#type=otlp-log | sort(@timestamp, order=asc)",
        2,
    );
    let failed = row(&logs, "severity", "ERROR");
    assert_eq!(failed["@rawstring"], "payment failed for A17", "{failed}");
    assert_eq!(failed["trace_id"], trace_id, "{failed}");
    assert_eq!(failed["span_id"], span_id, "{failed}");
    assert_eq!(failed["order_id"], "A17", "{failed}");
    assert_eq!(failed["retries"], 3, "{failed}");
    assert_eq!(failed["#service"], "checkout", "{failed}");
    assert_eq!(failed["#host"], "web-1", "{failed}");
    assert_eq!(failed["#env"], "prod", "{failed}");
    assert_eq!(failed["scope.name"], "orders", "{failed}");
    assert_eq!(failed["severity_number"], 17, "{failed}");
    let shipped = row(&logs, "severity", "INFO");
    assert_eq!(shipped["@rawstring"], "order shipped", "{shipped}");

    // One event per data point, chartable by name and attributes.
    let counts = rows(
        &server,
        "otel",
        "#type=otlp-metric name=orders | groupBy(route, function=sum(value))",
        2,
    );
    assert_eq!(row(&counts, "route", "/buy")["_sum"], 5, "{counts:?}");
    assert_eq!(row(&counts, "route", "/cart")["_sum"], 2, "{counts:?}");
    let histogram = rows(&server, "otel", "name=latency", 1);
    let h = &histogram[0];
    assert_eq!(h["type"], "histogram", "{h}");
    assert_eq!(h["count"], 2, "{h}");
    assert_eq!(h["sum"], 42.0, "{h}");
    assert_eq!(h["unit"], "ms", "{h}");
    let metrics = server.metrics();
    assert!(
        metrics.contains(r#"eddy_ingest_requests_total{door="otlp",status="200"} 3"#),
        "{metrics}"
    );
    server.stop();
}

const ELASTIC_CLIENT: &str = r#"
import os
from elasticsearch import Elasticsearch, helpers
es = Elasticsearch(os.environ["EDDY_URL"] + "/elastic", basic_auth=("elastic", os.environ["EDDY_TOKEN"]))
assert es.info()["version"]["number"].startswith("8."), es.info()
docs = [
    {"_index": "web", "_id": "order-1", "_source": {"@timestamp": "2026-01-05T10:00:00Z", "msg": "paid", "http": {"status": 200}}},
    {"_index": "web", "_id": "order-2", "_source": {"@timestamp": "2026-01-05T10:00:01Z", "msg": "refunded", "http": {"status": 409}}},
    {"_index": "filebeat-8.17.0", "_source": {"@timestamp": "2026-01-05T10:00:02Z", "message": "to the default repository"}},
]
ok, errors = helpers.bulk(es, docs)
assert (ok, errors) == (3, []), (ok, errors)
# A shipper's retry: the same _ids are stored once.
ok, errors = helpers.bulk(es, docs[:2])
assert ok == 2, ok
print("sent")
"#;

#[test]
fn the_elasticsearch_bulk_helper_indexes_into_repositories_and_retries_are_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), DOORS);
    if python(&server, &["elasticsearch"], ELASTIC_CLIENT).is_none() {
        return;
    }
    let web = rows(&server, "web", "sort(@timestamp, order=asc)", 2);
    assert_eq!(web[0]["msg"], "paid", "{web:?}");
    assert_eq!(web[0]["http.status"], 200, "{web:?}");
    assert_eq!(web[0]["@id"], "order-1", "{web:?}");
    assert_eq!(web[1]["msg"], "refunded", "{web:?}");
    let logs = rows(&server, "logs", "message=*default*", 1);
    assert_eq!(logs[0]["message"], "to the default repository");
    server.stop();
}

const LOKI_CLIENT: &str = r#"
import logging, os
import logging_loki
handler = logging_loki.LokiHandler(
    url=os.environ["EDDY_URL"] + "/loki/api/v1/push",
    tags={"application": "shop"},
    auth=("eddy", os.environ["EDDY_TOKEN"]),
    version="1",
)
log = logging.getLogger("loki-test")
log.addHandler(handler)
log.error("disk almost full", extra={"tags": {"service": "db"}})
"#;

/// A Loki push body built from the published push.proto (logproto.PushRequest) with the
/// protobuf runtime's descriptors (no protoc), compressed with snappy, as Promtail sends it.
const LOKI_PROTOBUF: &str = r#"
import os, urllib.request
import snappy
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2
F = descriptor_pb2.FieldDescriptorProto
proto = descriptor_pb2.FileDescriptorProto(name="pkg/push/push.proto", package="logproto", syntax="proto3")
proto.dependency.append("google/protobuf/timestamp.proto")
def message(name, fields):
    m = proto.message_type.add(name=name)
    for field, number, kind, type_name, repeated in fields:
        f = m.field.add(name=field, number=number, type=kind,
                        label=F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL)
        if type_name:
            f.type_name = type_name
message("PushRequest", [("streams", 1, F.TYPE_MESSAGE, ".logproto.StreamAdapter", True)])
message("StreamAdapter", [("labels", 1, F.TYPE_STRING, None, False),
                          ("entries", 2, F.TYPE_MESSAGE, ".logproto.EntryAdapter", True),
                          ("hash", 3, F.TYPE_UINT64, None, False)])
message("EntryAdapter", [("timestamp", 1, F.TYPE_MESSAGE, ".google.protobuf.Timestamp", False),
                         ("line", 2, F.TYPE_STRING, None, False),
                         ("structuredMetadata", 3, F.TYPE_MESSAGE, ".logproto.LabelPairAdapter", True)])
message("LabelPairAdapter", [("name", 1, F.TYPE_STRING, None, False), ("value", 2, F.TYPE_STRING, None, False)])
pool = descriptor_pool.Default()
pool.Add(proto)
Push = message_factory.GetMessageClass(pool.FindMessageTypeByName("logproto.PushRequest"))
push = Push()
stream = push.streams.add(labels='{job="api", host="web-1"}')
entry = stream.entries.add(line="GET /checkout 500")
entry.timestamp.seconds, entry.timestamp.nanos = 1700000000, 42
entry.structuredMetadata.add(name="trace_id", value="0af7651916cd43dd")
request = urllib.request.Request(os.environ["EDDY_URL"] + "/loki/api/v1/push",
    data=snappy.compress(push.SerializeToString()),
    headers={"Content-Type": "application/x-protobuf", "Authorization": "Bearer " + os.environ["EDDY_TOKEN"]})
assert urllib.request.urlopen(request).status == 204
"#;

#[test]
fn loki_pushes_in_json_from_a_logging_handler_and_in_snappy_protobuf_query_back() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), DOORS);
    if python(&server, &["logging_loki"], LOKI_CLIENT).is_none()
        || python(&server, &["snappy", "google.protobuf"], LOKI_PROTOBUF).is_none()
    {
        return;
    }
    let handler = rows(&server, "logs", "#application=shop", 1);
    assert_eq!(handler[0]["@rawstring"], "disk almost full", "{handler:?}");
    assert_eq!(handler[0]["#service"], "db", "{handler:?}");
    assert_eq!(handler[0]["#severity"], "error", "{handler:?}");
    let promtail = rows(&server, "logs", "#job=api", 1);
    let p = &promtail[0];
    assert_eq!(p["@rawstring"], "GET /checkout 500", "{p}");
    assert_eq!(p["#host"], "web-1", "{p}");
    assert_eq!(p["trace_id"], "0af7651916cd43dd", "{p}");
    assert_eq!(p["@timestamp"], 1_700_000_000_000_000_042_i64, "{p}");
    server.stop();
}

const INFLUX_CLIENT: &str = r#"
import os
from influxdb_client import InfluxDBClient, Point, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
with InfluxDBClient(url=os.environ["EDDY_URL"], token=os.environ["EDDY_TOKEN"], org="eddy", enable_gzip=True) as client:
    write = client.write_api(write_options=SYNCHRONOUS)
    write.write(bucket="web", record=Point("cpu").tag("host", "web-1").field("usage", 0.5).field("cores", 4).time(1700000000, WritePrecision.S), write_precision=WritePrecision.S)
    write.write(bucket="metrics", record="mem,host=web-1 free=12i,note=\"low, very\" 1700000000123", write_precision=WritePrecision.MS)
"#;

#[test]
fn the_influxdb_client_writes_points_with_their_precision() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), DOORS);
    if python(&server, &["influxdb_client"], INFLUX_CLIENT).is_none() {
        return;
    }
    let cpu = rows(&server, "web", "#measurement=cpu", 1);
    assert_eq!(cpu[0]["#host"], "web-1", "{cpu:?}");
    assert_eq!(cpu[0]["usage"], 0.5, "{cpu:?}");
    assert_eq!(cpu[0]["cores"], 4, "{cpu:?}");
    assert_eq!(
        cpu[0]["@timestamp"], 1_700_000_000_000_000_000_i64,
        "{cpu:?}"
    );
    // Bucket "metrics" is no repository: the door's.
    let mem = rows(&server, "logs", "#measurement=mem", 1);
    assert_eq!(mem[0]["free"], 12, "{mem:?}");
    assert_eq!(mem[0]["note"], "low, very", "{mem:?}");
    assert_eq!(
        mem[0]["@timestamp"], 1_700_000_000_123_000_000_i64,
        "{mem:?}"
    );
    server.stop();
}

const HEC_CLIENT: &str = r#"
import logging, os, urllib.parse
from splunk_handler import SplunkHandler
url = urllib.parse.urlparse(os.environ["EDDY_URL"])
handler = SplunkHandler(host=url.hostname, port=url.port, protocol="http", token=os.environ["EDDY_TOKEN"],
                        index="web", sourcetype="shop-log", source="checkout.py", hostname="web-7",
                        flush_interval=3600, retry_count=0, verify=False)
log = logging.getLogger("hec-test")
log.addHandler(handler)
log.warning("card declined")
log.warning("card accepted")
# Both queued events go in one body, concatenated.
handler.force_flush()
"#;

#[test]
fn a_splunk_hec_handler_and_documented_requests_are_stored_with_their_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), DOORS);
    if python(&server, &["splunk_handler"], HEC_CLIENT).is_none() {
        return;
    }
    let web = rows(
        &server,
        "web",
        "#sourcetype=shop-log | sort(@timestamp, order=asc)",
        2,
    );
    assert!(
        web[0]["@rawstring"]
            .as_str()
            .unwrap()
            .contains("card declined"),
        "{web:?}"
    );
    assert_eq!(web[0]["#host"], "web-7", "{web:?}");
    assert_eq!(web[0]["source"], "checkout.py", "{web:?}");
    // Splunk's documented batch: objects one after another, event as text or object.
    let splunk = [("Authorization", format!("Splunk {TOKEN}"))];
    let auth: Vec<(&str, &str)> = splunk.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, answer) = post(
        &server,
        "/services/collector/event",
        &auth,
        br#"{"time": 1426279439.5, "host": "localhost", "source": "datasource", "sourcetype": "txt", "index": "main", "event": "Hello world!"}{"time": 1426279440, "event": {"message": "Something happened", "severity": "INFO"}, "fields": {"device": "macbook"}}"#,
    );
    assert_eq!(
        (status, answer.clone()),
        (200, json!({"text": "Success", "code": 0}))
    );
    let (status, answer) = post(
        &server,
        "/services/collector/raw?host=db-1&sourcetype=syslog",
        &auth,
        b"raw line one\nraw line two\n",
    );
    assert_eq!(status, 200, "{answer}");
    let logs = rows(&server, "logs", "sort(@timestamp, order=asc)", 4);
    let hello = row(&logs, "@rawstring", "Hello world!");
    assert_eq!(
        hello["@timestamp"], 1_426_279_439_500_000_000_i64,
        "{hello}"
    );
    assert_eq!(hello["#host"], "localhost", "{hello}");
    assert_eq!(hello["#sourcetype"], "txt", "{hello}");
    assert_eq!(hello["index"], "main", "{hello}");
    let object = row(&logs, "message", "Something happened");
    assert_eq!(object["device"], "macbook", "{object}");
    assert_eq!(row(&logs, "@rawstring", "raw line two")["#host"], "db-1");
    server.stop();
}

/// Posts `body` and returns the status, the headers asked for and the body as JSON or text.
fn send(server: &Server, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, Value) {
    post(server, path, headers, body)
}

#[test]
fn bad_input_gets_each_protocols_own_error_never_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), DOORS);
    let bearer = format!("Bearer {TOKEN}");
    let good = [("Authorization", bearer.as_str())];
    let wrong = [("Authorization", "Bearer not-the-token-0123456789")];
    let oversize = vec![b'x'; 200_000];

    // OTLP: google.rpc.Status in the request's encoding.
    let json_type = ("Content-Type", "application/json");
    let (status, a) = send(
        &server,
        "/v1/logs",
        &[good[0], json_type],
        b"{\"resourceLogs\": 7}",
    );
    assert_eq!(status, 400, "{a}");
    assert_eq!(a["code"], 3, "{a}");
    assert!(
        a["message"].as_str().unwrap().contains("line 1, column"),
        "{a}"
    );
    let (status, a) = send(&server, "/v1/logs", &[wrong[0], json_type], b"{}");
    assert_eq!((status, a["code"].clone()), (403, json!(7)), "{a}");
    let (status, a) = send(&server, "/v1/logs", &[json_type], b"{}");
    assert_eq!((status, a["code"].clone()), (401, json!(16)), "{a}");
    let (status, a) = send(&server, "/v1/metrics", &[good[0], json_type], &oversize);
    assert_eq!((status, a["code"].clone()), (413, json!(8)), "{a}");
    // In protobuf, the status is protobuf too.
    let mut resp = common::agent()
        .post(format!("{}/v1/logs", server.url))
        .header("Authorization", &bearer)
        .header("Content-Type", "application/x-protobuf")
        .send(&[0x0a, 0xff, 0xff][..])
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.headers()["content-type"], "application/x-protobuf");
    let status = resp.body_mut().read_to_vec().unwrap();
    assert_eq!(
        status[..2],
        [0x08, 3],
        "google.rpc.Status code 3: {status:?}"
    );

    // Elasticsearch: {"error": {"type", "reason"}, "status"}.
    let ndjson = ("Content-Type", "application/x-ndjson");
    let (status, a) = send(&server, "/_bulk", &[good[0], ndjson], b"{\"index\":\n{}\n");
    assert_eq!(status, 400, "{a}");
    assert_eq!(a["error"]["type"], "illegal_argument_exception", "{a}");
    assert!(
        a["error"]["reason"].as_str().unwrap().contains("line 1"),
        "{a}"
    );
    let (status, a) = send(&server, "/_bulk", &[wrong[0], ndjson], b"");
    assert_eq!(
        (status, a["error"]["type"].clone()),
        (403, json!("security_exception"))
    );
    let (status, a) = send(&server, "/_bulk", &[good[0], ndjson], &oversize);
    assert_eq!((status, a["status"].clone()), (413, json!(413)), "{a}");
    // A broken document is its item's error; the others are stored.
    let (status, a) = send(
        &server,
        "/logs/_bulk",
        &[good[0], ndjson],
        b"{\"index\":{}}\n{\"ok\":1}\n{\"index\":{}}\n{\"broken\": }\n",
    );
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["errors"], true, "{a}");
    assert_eq!(a["items"][0]["index"]["status"], 201, "{a}");
    assert_eq!(
        a["items"][1]["index"]["error"]["type"], "mapper_parsing_exception",
        "{a}"
    );

    // Loki: text.
    let (status, a) = send(
        &server,
        "/loki/api/v1/push",
        &[good[0], json_type],
        b"{\"streams\":[{\"values\":[[1,2]]}]}",
    );
    assert_eq!(status, 400, "{a}");
    assert!(a.as_str().unwrap().contains("streams[0].values[0]"), "{a}");
    let (status, a) = send(
        &server,
        "/loki/api/v1/push",
        &[good[0], ("Content-Type", "application/x-protobuf")],
        b"not snappy",
    );
    assert_eq!(status, 400, "{a}");
    assert!(a.as_str().unwrap().contains("snappy"), "{a}");
    let (status, _) = send(&server, "/loki/api/v1/push", &[wrong[0], json_type], b"{}");
    assert_eq!(status, 403);
    let (status, _) = send(
        &server,
        "/loki/api/v1/push",
        &[good[0], json_type],
        &oversize,
    );
    assert_eq!(status, 413);

    // Influx: {"code", "message"}.
    let token = format!("Token {TOKEN}");
    let influx = [("Authorization", token.as_str())];
    let (status, a) = send(
        &server,
        "/api/v2/write?bucket=logs",
        &influx,
        b"cpu usage=0.5\ncpu usage=high\n",
    );
    assert_eq!((status, a["code"].clone()), (400, json!("invalid")), "{a}");
    assert!(
        a["message"].as_str().unwrap().contains("line 2, column 11"),
        "{a}"
    );
    let (status, a) = send(
        &server,
        "/api/v2/write?bucket=logs&precision=d",
        &influx,
        b"cpu a=1\n",
    );
    assert_eq!((status, a["code"].clone()), (400, json!("invalid")), "{a}");
    let (status, a) = send(
        &server,
        "/write?db=logs&u=x&p=wrong-password-0123456",
        &[],
        b"cpu a=1\n",
    );
    assert_eq!(
        (status, a["code"].clone()),
        (403, json!("unauthorized")),
        "{a}"
    );
    let (status, a) = send(&server, "/api/v2/write?bucket=logs", &influx, &oversize);
    assert_eq!(
        (status, a["code"].clone()),
        (413, json!("request too large")),
        "{a}"
    );

    // HEC: {"text", "code"}.
    let splunk = format!("Splunk {TOKEN}");
    let hec = [("Authorization", splunk.as_str())];
    let (status, a) = send(
        &server,
        "/services/collector/event",
        &hec,
        b"{\"event\":\"a\"}{\"event\": nope}",
    );
    assert_eq!(status, 400, "{a}");
    assert_eq!(
        (a["code"].clone(), a["invalid-event-number"].clone()),
        (json!(6), json!(1)),
        "{a}"
    );
    let (status, a) = send(
        &server,
        "/services/collector/event",
        &hec,
        b"{\"host\":\"x\"}",
    );
    assert_eq!((status, a["code"].clone()), (400, json!(12)), "{a}");
    let (status, a) = send(
        &server,
        "/services/collector/event",
        &[],
        b"{\"event\":\"a\"}",
    );
    assert_eq!(
        (status, a),
        (401, json!({"text": "Token is required", "code": 2}))
    );
    let (status, a) = send(
        &server,
        "/services/collector/event",
        &[("Authorization", "Splunk nope-nope-nope-nope")],
        b"{\"event\":\"a\"}",
    );
    assert_eq!(
        (status, a),
        (403, json!({"text": "Invalid token", "code": 4}))
    );
    let (status, _) = send(&server, "/services/collector/event", &hec, &oversize);
    assert_eq!(status, 413);

    // Still serving; every refusal counted by door.
    let metrics = server.metrics();
    for door in ["otlp", "elastic", "loki", "influx", "hec"] {
        assert!(
            metrics.contains(&format!(
                "eddy_ingest_rejected_events_total{{door=\"{door}\""
            )),
            "{door}: {metrics}"
        );
    }
    server.stop();
}

#[test]
fn disabled_doors_are_not_there() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "");
    for path in [
        "/v1/logs",
        "/_bulk",
        "/loki/api/v1/push",
        "/api/v2/write",
        "/services/collector/event",
    ] {
        let (status, _) = send(&server, path, &[], b"{}");
        assert!(status == 404 || status == 405, "{path}: {status}");
    }
    server.stop();
}
