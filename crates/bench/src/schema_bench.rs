//! The gatekeeper's own cost, in process on one core: a 10-field JSON record checked against
//! its Avro schema (parsed, then converted field by field), beside parsing the JSON alone; and
//! binary Avro in the Confluent framing decoded to JSON.

use std::sync::Arc;
use std::time::Instant;

use eddy_schema::gate::{Binding, Gate, Versions};
use eddy_schema::{framing, AvroSchema, Registry, SchemaType};

use crate::error::{Error, IoContext, Result};
use crate::report::Figure;

/// The record's schema: ten fields of the usual kinds.
pub const ORDER: &str = r#"{"type": "record", "name": "Order", "namespace": "shop", "fields": [
    {"name": "id", "type": "long"}, {"name": "customer", "type": "string"},
    {"name": "total", "type": "double"}, {"name": "currency", "type": "string", "default": "EUR"},
    {"name": "items", "type": "int"}, {"name": "paid", "type": "boolean"},
    {"name": "state", "type": {"type": "enum", "name": "State", "symbols": ["NEW", "PAID", "SENT"]}},
    {"name": "coupon", "type": ["null", "string"], "default": null},
    {"name": "created_ms", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "region", "type": "string"}]}"#;

fn record(n: u64) -> String {
    format!(
        r#"{{"id": {n}, "customer": "c{:06}", "total": {}.{:02}, "currency": "EUR", "items": {}, "paid": {}, "state": "{}", "coupon": {}, "created_ms": {}, "region": "eu-{}"}}"#,
        n % 100_000,
        n % 500,
        n % 100,
        n % 9 + 1,
        n.is_multiple_of(2),
        ["NEW", "PAID", "SENT"][(n % 3) as usize],
        if n.is_multiple_of(4) {
            "\"SPRING\"".to_string()
        } else {
            "null".to_string()
        },
        1_795_000_000_000u64 + n,
        n % 4
    )
}

/// Events per second (one thread) of each path, over `events` records, `runs` times.
pub fn figures(
    scratch: &std::path::Path,
    events: u64,
    runs: usize,
) -> Result<(Figure, Figure, Figure)> {
    let fail = |what: &str, e: String| Error::Invalid(format!("{what}: {e}"));
    std::fs::create_dir_all(scratch).context(|| format!("creating {}", scratch.display()))?;
    let dir = scratch.join("schema-bench");
    let _ = std::fs::remove_dir_all(&dir);
    let log =
        Arc::new(eddy_log::Log::open(&dir).map_err(|e| fail("opening a log", e.to_string()))?);
    let registry = Arc::new(
        Registry::open(log.clone()).map_err(|e| fail("opening the registry", e.to_string()))?,
    );
    let id = registry
        .register("orders", SchemaType::Avro, ORDER)
        .map_err(|e| fail("registering", e.to_string()))?
        .id;
    let gate = Gate::new(
        registry,
        Binding {
            subject: "orders".into(),
            versions: Versions::Latest,
        },
    );
    let contract = gate
        .contract()
        .map_err(|e| fail("the contract", e.to_string()))?;
    let texts: Vec<String> = (0..events).map(record).collect();
    let schema = AvroSchema::parse(ORDER).map_err(|e| fail("the schema", e.to_string()))?;
    let checker = contract.checker();
    let framed: Vec<Vec<u8>> = texts
        .iter()
        .map(|t| -> Result<Vec<u8>> {
            let json: serde_json::Value =
                serde_json::from_str(t).map_err(|e| fail("a record", e.to_string()))?;
            let value = eddy_schema::avro_json::Converter::new(schema.schema())
                .convert(&json)
                .map_err(|e| fail("a record", e.to_string()))?;
            Ok(framing::confluent(
                id,
                &schema
                    .encode(value)
                    .map_err(|e| fail("encoding", e.to_string()))?,
            ))
        })
        .collect::<Result<_>>()?;

    let mut parse_only = Figure::new("JSON parsing alone (serde_json), the floor", "events/s");
    let mut check = Figure::new(
        "10-field JSON record checked against its Avro schema, one core",
        "events/s",
    );
    let mut decode = Figure::new(
        "binary Avro (Confluent framing) decoded to JSON, one core",
        "events/s",
    );
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        let mut fields = 0usize;
        for text in &texts {
            let v: serde_json::Value =
                serde_json::from_str(text).map_err(|e| fail("a record", e.to_string()))?;
            fields += v.as_object().map_or(0, |o| o.len());
        }
        parse_only
            .runs
            .push(events as f64 / t.elapsed().as_secs_f64());
        std::hint::black_box(fields);

        let t = Instant::now();
        for text in &texts {
            if let Err(why) = checker.check_text(text) {
                return Err(fail("a valid record was refused", format!("{why:?}")));
            }
        }
        check.runs.push(events as f64 / t.elapsed().as_secs_f64());

        let t = Instant::now();
        for bytes in &framed {
            let (json, _) = contract
                .decode(bytes)
                .map_err(|e| fail("decoding", e.to_string()))?;
            std::hint::black_box(json);
        }
        decode.runs.push(events as f64 / t.elapsed().as_secs_f64());
    }
    drop(log);
    let _ = std::fs::remove_dir_all(&dir);
    Ok((parse_only, check, decode))
}
