//! The protocol doors under the ingest benchmark's HTTP load: the same 1,000-event requests
//! from the same number of clients into one `eddy serve`, once through each door (native
//! NDJSON, OTLP protobuf logs, Elasticsearch `_bulk`, Loki protobuf + snappy, Influx line
//! protocol, Splunk HEC), one after another on the same server, so that each door's rate
//! stands beside the native door's from the same run.
//!
//! Each door's events carry the same content as the native door's (the ingest benchmark's
//! 200-byte JSON events), shaped as that protocol carries it. Every acknowledged event is
//! checked against the server's count of events stored through that door.

use std::path::Path;
use std::time::{Duration, Instant};

use eddy_ingest::protocols::{loki, otlp::proto};
use prost::Message;

use crate::error::{Error, Result};
use crate::ingest_bench::{self, IngestBenchOptions, BATCH};
use crate::report::{Figure, Row};
use crate::serve::Serve;

/// A door: its name in `/metrics`, its path and content type, and a body maker.
struct Door {
    name: &'static str,
    label: &'static str,
    path: &'static str,
    content_type: &'static str,
    body: fn(usize, usize) -> Vec<u8>,
}

const DOORS: [Door; 6] = [
    Door {
        name: "http",
        label: "native NDJSON door",
        path: "/api/v1/ingest/bench",
        content_type: "application/x-ndjson",
        body: ingest_bench::body,
    },
    Door {
        name: "otlp",
        label: "OTLP/HTTP logs (protobuf)",
        path: "/v1/logs",
        content_type: "application/x-protobuf",
        body: otlp_body,
    },
    Door {
        name: "elastic",
        label: "Elasticsearch _bulk",
        path: "/_bulk",
        content_type: "application/x-ndjson",
        body: elastic_body,
    },
    Door {
        name: "loki",
        label: "Loki push (protobuf + snappy)",
        path: "/loki/api/v1/push",
        content_type: "application/x-protobuf",
        body: loki_body,
    },
    Door {
        name: "influx",
        label: "Influx line protocol",
        path: "/api/v2/write?bucket=bench&precision=ms",
        content_type: "text/plain",
        body: influx_body,
    },
    Door {
        name: "hec",
        label: "Splunk HEC (concatenated events)",
        path: "/services/collector/event",
        content_type: "application/json",
        body: hec_body,
    },
];

/// The native door's events, as parsed JSON values (the other bodies are made from them).
fn events(client: usize, batch: usize) -> Vec<serde_json::Map<String, serde_json::Value>> {
    let body = ingest_bench::body(client, batch);
    body.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect()
}

fn text(v: &serde_json::Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

fn otlp_body(client: usize, batch: usize) -> Vec<u8> {
    let kv = |k: &str, v: proto::any_value::Value| proto::KeyValue {
        key: k.into(),
        value: Some(proto::AnyValue { value: Some(v) }),
    };
    let mut by_host: Vec<proto::ResourceLogs> = Vec::new();
    for e in events(client, batch) {
        let host = e.get("#host").map(text).unwrap_or_default();
        let attributes = e
            .iter()
            .filter(|(k, _)| !k.starts_with('@') && !k.starts_with('#') && *k != "msg")
            .map(|(k, v)| match v.as_i64() {
                Some(i) => kv(k, proto::any_value::Value::IntValue(i)),
                None => kv(k, proto::any_value::Value::StringValue(text(v))),
            })
            .collect();
        let record = proto::LogRecord {
            time_unix_nano: 1_795_500_000_000_000_000,
            severity_text: e.get("level").map(text).unwrap_or_default(),
            body: Some(proto::AnyValue {
                value: Some(proto::any_value::Value::StringValue(
                    e.get("msg").map(text).unwrap_or_default(),
                )),
            }),
            attributes,
            ..Default::default()
        };
        let host_kv = kv("host.name", proto::any_value::Value::StringValue(host));
        match by_host.iter_mut().find(|r| {
            r.resource
                .as_ref()
                .is_some_and(|res| res.attributes[1] == host_kv)
        }) {
            Some(r) => r.scope_logs[0].log_records.push(record),
            None => by_host.push(proto::ResourceLogs {
                resource: Some(proto::Resource {
                    attributes: vec![
                        kv(
                            "service.name",
                            proto::any_value::Value::StringValue("checkout".into()),
                        ),
                        host_kv,
                    ],
                }),
                scope_logs: vec![proto::ScopeLogs {
                    scope: None,
                    log_records: vec![record],
                }],
            }),
        }
    }
    proto::ExportLogsServiceRequest {
        resource_logs: by_host,
    }
    .encode_to_vec()
}

fn elastic_body(client: usize, batch: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for line in ingest_bench::body(client, batch)
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
    {
        out.extend_from_slice(b"{\"index\":{\"_index\":\"bench\"}}\n");
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out
}

fn loki_body(client: usize, batch: usize) -> Vec<u8> {
    let mut streams: Vec<loki::proto::Stream> = Vec::new();
    let body = ingest_bench::body(client, batch);
    for (line, e) in body
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .zip(events(client, batch))
    {
        let labels = format!(
            "{{host=\"{}\", service=\"checkout\"}}",
            e.get("#host").map(text).unwrap_or_default()
        );
        let entry = loki::proto::Entry {
            timestamp: Some(loki::proto::Timestamp {
                seconds: 1_795_500_000,
                nanos: 0,
            }),
            line: String::from_utf8_lossy(line).into_owned(),
            structured_metadata: Vec::new(),
        };
        match streams.iter_mut().find(|s| s.labels == labels) {
            Some(s) => s.entries.push(entry),
            None => streams.push(loki::proto::Stream {
                labels,
                entries: vec![entry],
            }),
        }
    }
    let raw = loki::proto::PushRequest { streams }.encode_to_vec();
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .unwrap_or_default()
}

fn influx_body(client: usize, batch: usize) -> Vec<u8> {
    let mut out = String::new();
    for e in events(client, batch) {
        let field = |k: &str| e.get(k).cloned().unwrap_or_default();
        out.push_str(&format!(
            "orders,host={},level={},service=checkout status={}i,latency_ms={}i,user=\"{}\",msg=\"order placed\",c={}i,n={}i,pad=\"{}\" 1795500000000\n",
            text(&field("#host")),
            text(&field("level")),
            field("status"),
            field("latency_ms"),
            text(&field("user")),
            field("c"),
            field("n"),
            text(&field("pad")),
        ));
    }
    out.into_bytes()
}

fn hec_body(client: usize, batch: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for mut e in events(client, batch) {
        let host = e.remove("#host").map(|h| text(&h)).unwrap_or_default();
        e.remove("@timestamp");
        let item = serde_json::json!({"time": 1_795_500_000.0, "host": host, "sourcetype": "bench", "event": e});
        out.extend_from_slice(item.to_string().as_bytes());
    }
    out
}

/// `eddy serve` with every door on, into repository `bench`; SIGKILLed when dropped.
struct DoorsServer {
    serve: Serve,
}

impl DoorsServer {
    fn start(exe: &Path, dir: &Path) -> Result<DoorsServer> {
        let doors: String = ["otlp", "elastic", "loki", "influx", "hec"]
            .iter()
            .map(|d| format!("[doors.{d}]\nenabled = true\nrepository = \"bench\"\n"))
            .collect();
        let config = Serve::fresh_config(
            dir,
            &format!(
                "[http]\nlisten = \"127.0.0.1:0\"\n[repositories.bench]\npartitions = 4\n{doors}"
            ),
        )?;
        let (serve, _) = Serve::start(exe, &config, true, &[])?;
        Ok(DoorsServer { serve })
    }

    fn stored(&self, door: &str) -> Result<u64> {
        let text = ingest_bench::Server::agent()
            .get(format!("{}/metrics", self.serve.http))
            .call()
            .and_then(|mut r| r.body_mut().read_to_string())
            .map_err(|e| Error::Invalid(format!("reading /metrics: {e}")))?;
        let series = format!("eddy_ingest_events_total{{door=\"{door}\",repository=\"bench\"}} ");
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix(&series)?.parse().ok())
            .unwrap_or(0))
    }
}

/// Events/s through `door`: `clients` threads posting its 1,000-event bodies for `seconds`.
fn door_run(server: &DoorsServer, door: &Door, opts: &IngestBenchOptions) -> Result<(f64, u64)> {
    let url = format!("{}{}", server.serve.http, door.path);
    let deadline = Instant::now() + Duration::from_secs(opts.seconds);
    let started = Instant::now();
    let results: Vec<Result<u64>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..opts.clients)
            .map(|c| {
                let url = url.clone();
                s.spawn(move || -> Result<u64> {
                    let bodies: Vec<Vec<u8>> = (0..8).map(|b| (door.body)(c, b)).collect();
                    let agent = ingest_bench::Server::agent();
                    let mut events = 0u64;
                    let mut i = 0;
                    while Instant::now() < deadline {
                        let mut resp = agent
                            .post(&url)
                            .header("Content-Type", door.content_type)
                            .send(&bodies[i % bodies.len()][..])
                            .map_err(|e| Error::Invalid(format!("posting to {url}: {e}")))?;
                        if !resp.status().is_success() {
                            let text = resp.body_mut().read_to_string().unwrap_or_default();
                            return Err(Error::Invalid(format!(
                                "the {} door answered {} to a valid request: {text}",
                                door.name,
                                resp.status()
                            )));
                        }
                        events += BATCH as u64;
                        i += 1;
                    }
                    Ok(events)
                })
            })
            .collect();
        crate::serve::joined(handles).collect()
    });
    let secs = started.elapsed().as_secs_f64();
    let mut total = 0;
    for r in results {
        total += r?;
    }
    Ok((total as f64 / secs, total))
}

/// One row per door, each beside the native door's rate from the same run.
pub fn rows(opts: &IngestBenchOptions, progress: &dyn Fn(&str)) -> Result<Vec<Row>> {
    let runs = opts.runs.max(1);
    let mut figures: Vec<Figure> = DOORS
        .iter()
        .map(|d| {
            Figure::new(
                &format!(
                    "{}: 1,000-event requests, {} clients",
                    d.label, opts.clients
                ),
                "events/s",
            )
        })
        .collect();
    for run in 0..runs {
        let server = DoorsServer::start(&opts.server, &opts.dir)?;
        for (door, figure) in DOORS.iter().zip(figures.iter_mut()) {
            progress(&format!("the {} door, run {}/{runs}", door.name, run + 1));
            let (rate, acked) = door_run(&server, door, opts)?;
            let stored = server.stored(door.name)?;
            if stored != acked {
                return Err(Error::Mismatch {
                    what: format!(
                        "events stored through the {} door vs acknowledged",
                        door.name
                    ),
                    expected: acked.to_string(),
                    got: stored.to_string(),
                });
            }
            figure.runs.push(rate);
        }
    }
    let _ = std::fs::remove_dir_all(&opts.dir);
    let native = figures[0].median();
    Ok(figures
        .into_iter()
        .enumerate()
        .map(|(i, figure)| {
            if i == 0 {
                return Row {
                    baseline: "the same events, same server, in turn with the doors below".into(),
                    ratio: String::new(),
                    goal: String::new(),
                    figure,
                };
            }
            Row {
                baseline: "native NDJSON door (row above), same run".into(),
                ratio: format!("{:.2}× native", figure.median() / native),
                goal: "≥ 0.70× native".into(),
                figure,
            }
        })
        .collect())
}
