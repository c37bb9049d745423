//! OTLP/HTTP logs (`/v1/logs`) and metrics (`/v1/metrics`): the messages of the published
//! `opentelemetry/proto` files as prost structs (only the fields eddy reads; unknown fields are
//! skipped, as protobuf wants), readable from protobuf and from OTLP/JSON (lowerCamelCase keys,
//! hex trace and span ids, 64-bit integers as strings or numbers).
//!
//! The rule that turns them into events, the same for logs and metrics:
//! - resource attributes become fields `resource.<key>`; the few that name a data source also
//!   become tags: `service.name` → `#service`, `service.namespace` → `#namespace`,
//!   `deployment.environment` (or `deployment.environment.name`) → `#env`, `host.name` → `#host`;
//! - the scope becomes `scope.name`, `scope.version` and `scope.<attribute>`;
//! - a record's or data point's own attributes become fields by their own names (maps nested as
//!   dotted names), except where the door already set that name: then `attributes.<key>`;
//! - every event gets the tag `#type` = `otlp-log` or `otlp-metric`.
//!
//! A log record: `@timestamp` from `timeUnixNano` (else `observedTimeUnixNano`, else arrival),
//! `@rawstring` and `body` from its body (a map body becomes `body.<key>` fields), `severity`,
//! `severity_number`, `trace_id` and `span_id` (hex), `flags`, `event_name`.
//!
//! A metric: one event per data point, with `name`, `unit`, `type` (`gauge`, `sum`,
//! `histogram`, `exponential_histogram`, `summary`) and its values: `value` for gauges and sums
//! (with `monotonic` and `temporality` for sums); `count`, `sum`, `min`, `max` and
//! `bucket.<upper bound>` (`bucket.+Inf` last) for histograms; `count`, `sum`, `scale`,
//! `zero_count` for exponential histograms; `count`, `sum`, `quantile.<q>` for summaries.
//! `@timestamp` is the point's `timeUnixNano`, `start_time` its start (ns).

use std::collections::BTreeMap;

use eddy_event::{Event, Value};
use prost::Message;
use serde::{Deserialize, Deserializer};

use super::{event_at, set_field, ProtocolError};

/// How a body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `application/x-protobuf`.
    Protobuf,
    /// `application/json`.
    Json,
}

impl Encoding {
    /// The encoding a `Content-Type` names; `None` for one OTLP does not define.
    pub fn of_content_type(content_type: &str) -> Option<Encoding> {
        match content_type.split(';').next().unwrap_or("").trim() {
            "application/x-protobuf" | "application/protobuf" => Some(Encoding::Protobuf),
            "application/json" => Some(Encoding::Json),
            _ => None,
        }
    }

    /// The `Content-Type` of answers in this encoding.
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// The OTLP messages, as prost structs (a subset of the published `.proto` files' fields).
#[allow(missing_docs)]
pub mod proto {
    use super::*;

    #[derive(Clone, PartialEq, Message, Deserialize)]
    #[serde(default, rename_all = "camelCase")]
    pub struct ExportLogsServiceRequest {
        #[prost(message, repeated, tag = "1")]
        pub resource_logs: Vec<ResourceLogs>,
    }

    #[derive(Clone, PartialEq, Message, Deserialize)]
    #[serde(default, rename_all = "camelCase")]
    pub struct ResourceLogs {
        #[prost(message, optional, tag = "1")]
        pub resource: Option<Resource>,
        #[prost(message, repeated, tag = "2")]
        pub scope_logs: Vec<ScopeLogs>,
    }

    #[derive(Clone, PartialEq, Message, Deserialize)]
    #[serde(default, rename_all = "camelCase")]
    pub struct Resource {
        #[prost(message, repeated, tag = "1")]
        pub attributes: Vec<KeyValue>,
    }

    #[derive(Clone, PartialEq, Message, Deserialize)]
    #[serde(default, rename_all = "camelCase")]
    pub struct ScopeLogs {
        #[prost(message, optional, tag = "1")]
        pub scope: Option<InstrumentationScope>,
        #[prost(message, repeated, tag = "2")]
        pub log_records: Vec<LogRecord>,
    }

    #[derive(Clone, PartialEq, Message, Deserialize)]
    #[serde(default, rename_all = "camelCase")]
    pub struct InstrumentationScope {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub version: String,
        #[prost(message, repeated, tag = "3")]
        pub attributes: Vec<KeyValue>,
    }

    #[derive(Clone, PartialEq, Message, Deserialize)]
    #[serde(default, rename_all = "camelCase")]
    pub struct LogRecord {
        #[prost(fixed64, tag = "1")]
        #[serde(deserialize_with = "json::u64")]
        pub time_unix_nano: u64,
        #[prost(fixed64, tag = "11")]
        #[serde(deserialize_with = "json::u64")]
        pub observed_time_unix_nano: u64,
        #[prost(int32, tag = "2")]
        #[serde(deserialize_with = "json::severity")]
        pub severity_number: i32,
        #[prost(string, tag = "3")]
        pub severity_text: String,
        #[prost(message, optional, tag = "5")]
        pub body: Option<AnyValue>,
        #[prost(message, repeated, tag = "6")]
        pub attributes: Vec<KeyValue>,
        #[prost(fixed32, tag = "8")]
        pub flags: u32,
        #[prost(bytes = "vec", tag = "9")]
        #[serde(deserialize_with = "json::hex")]
        pub trace_id: Vec<u8>,
        #[prost(bytes = "vec", tag = "10")]
        #[serde(deserialize_with = "json::hex")]
        pub span_id: Vec<u8>,
        #[prost(string, tag = "12")]
        pub event_name: String,
    }

    #[derive(Clone, PartialEq, Message, Deserialize)]
    #[serde(default, rename_all = "camelCase")]
    pub struct KeyValue {
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<AnyValue>,
    }

    #[derive(Clone, PartialEq, Message, Deserialize)]
    #[serde(default)]
    pub struct AnyValue {
        #[prost(oneof = "any_value::Value", tags = "1, 2, 3, 4, 5, 6, 7")]
        #[serde(flatten)]
        pub value: Option<any_value::Value>,
    }

    pub mod any_value {
        use super::*;

        #[derive(Clone, PartialEq, prost::Oneof, Deserialize)]
        #[serde(rename_all = "camelCase")]
        pub enum Value {
            #[prost(string, tag = "1")]
            StringValue(String),
            #[prost(bool, tag = "2")]
            BoolValue(bool),
            #[prost(int64, tag = "3")]
            IntValue(#[serde(deserialize_with = "json::i64")] i64),
            #[prost(double, tag = "4")]
            DoubleValue(#[serde(deserialize_with = "json::f64")] f64),
            #[prost(message, tag = "5")]
            ArrayValue(ArrayValue),
            #[prost(message, tag = "6")]
            KvlistValue(KeyValueList),
            #[prost(bytes, tag = "7")]
            BytesValue(#[serde(deserialize_with = "json::base64")] Vec<u8>),
        }
    }

    #[derive(Clone, PartialEq, Message, Deserialize)]
    #[serde(default)]
    pub struct ArrayValue {
        #[prost(message, repeated, tag = "1")]
        pub values: Vec<AnyValue>,
    }

    #[derive(Clone, PartialEq, Message, Deserialize)]
    #[serde(default)]
    pub struct KeyValueList {
        #[prost(message, repeated, tag = "1")]
        pub values: Vec<KeyValue>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct ExportLogsServiceResponse {
        #[prost(message, optional, tag = "1")]
        pub partial_success: Option<ExportLogsPartialSuccess>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct ExportLogsPartialSuccess {
        #[prost(int64, tag = "1")]
        pub rejected_log_records: i64,
        #[prost(string, tag = "2")]
        pub error_message: String,
    }

    #[derive(Clone, PartialEq, Message, Deserialize)]
    #[serde(default, rename_all = "camelCase")]
    pub struct ExportMetricsServiceRequest {
        #[prost(message, repeated, tag = "1")]
        pub resource_metrics: Vec<ResourceMetrics>,
    }

    #[derive(Clone, PartialEq, Message, Deserialize)]
    #[serde(default, rename_all = "camelCase")]
    pub struct ResourceMetrics {
        #[prost(message, optional, tag = "1")]
        pub resource: Option<Resource>,
        #[prost(message, repeated, tag = "2")]
        pub scope_metrics: Vec<ScopeMetrics>,
    }

    #[derive(Clone, PartialEq, Message, Deserialize)]
    #[serde(default, rename_all = "camelCase")]
    pub struct ScopeMetrics {
        #[prost(message, optional, tag = "1")]
        pub scope: Option<InstrumentationScope>,
        #[prost(message, repeated, tag = "2")]
        pub metrics: Vec<Metric>,
    }

    #[derive(Clone, PartialEq, Message, Deserialize)]
    #[serde(default, rename_all = "camelCase")]
    pub struct Metric {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "3")]
        pub unit: String,
        #[prost(oneof = "metric::Data", tags = "5, 7, 9, 10, 11")]
        #[serde(flatten)]
        pub data: Option<metric::Data>,
    }

    pub mod metric {
        use super::*;

        #[derive(Clone, PartialEq, prost::Oneof, Deserialize)]
        #[serde(rename_all = "camelCase")]
        pub enum Data {
            #[prost(message, tag = "5")]
            Gauge(Gauge),
            #[prost(message, tag = "7")]
            Sum(Sum),
            #[prost(message, tag = "9")]
            Histogram(Histogram),
            #[prost(message, tag = "10")]
            ExponentialHistogram(ExponentialHistogram),
            #[prost(message, tag = "11")]
            Summary(Summary),
        }
    }

    #[derive(Clone, PartialEq, Message, Deserialize)]
    #[serde(default, rename_all = "camelCase")]
    pub struct Gauge {
        #[prost(message, repeated, tag = "1")]
        pub data_points: Vec<NumberDataPoint>,
    }

    #[derive(Clone, PartialEq, Message, Deserialize)]
    #[serde(default, rename_all = "camelCase")]
    pub struct Sum {
        #[prost(message, repeated, tag = "1")]
        pub data_points: Vec<NumberDataPoint>,
        #[prost(int32, tag = "2")]
        #[serde(deserialize_with = "json::temporality")]
        pub aggregation_temporality: i32,
        #[prost(bool, tag = "3")]
        pub is_monotonic: bool,
    }

    #[derive(Clone, PartialEq, Message, Deserialize)]
    #[serde(default, rename_all = "camelCase")]
    pub struct Histogram {
        #[prost(message, repeated, tag = "1")]
        pub data_points: Vec<HistogramDataPoint>,
        #[prost(int32, tag = "2")]
        #[serde(deserialize_with = "json::temporality")]
        pub aggregation_temporality: i32,
    }

    #[derive(Clone, PartialEq, Message, Deserialize)]
    #[serde(default, rename_all = "camelCase")]
    pub struct ExponentialHistogram {
        #[prost(message, repeated, tag = "1")]
        pub data_points: Vec<ExponentialHistogramDataPoint>,
        #[prost(int32, tag = "2")]
        #[serde(deserialize_with = "json::temporality")]
        pub aggregation_temporality: i32,
    }

    #[derive(Clone, PartialEq, Message, Deserialize)]
    #[serde(default, rename_all = "camelCase")]
    pub struct Summary {
        #[prost(message, repeated, tag = "1")]
        pub data_points: Vec<SummaryDataPoint>,
    }

    #[derive(Clone, PartialEq, Message, Deserialize)]
    #[serde(default, rename_all = "camelCase")]
    pub struct NumberDataPoint {
        #[prost(message, repeated, tag = "7")]
        pub attributes: Vec<KeyValue>,
        #[prost(fixed64, tag = "2")]
        #[serde(deserialize_with = "json::u64")]
        pub start_time_unix_nano: u64,
        #[prost(fixed64, tag = "3")]
        #[serde(deserialize_with = "json::u64")]
        pub time_unix_nano: u64,
        #[prost(oneof = "number_data_point::Value", tags = "4, 6")]
        #[serde(flatten)]
        pub value: Option<number_data_point::Value>,
    }

    pub mod number_data_point {
        use super::*;

        #[derive(Clone, Copy, PartialEq, prost::Oneof, Deserialize)]
        #[serde(rename_all = "camelCase")]
        pub enum Value {
            #[prost(double, tag = "4")]
            AsDouble(#[serde(deserialize_with = "json::f64")] f64),
            #[prost(sfixed64, tag = "6")]
            AsInt(#[serde(deserialize_with = "json::i64")] i64),
        }
    }

    #[derive(Clone, PartialEq, Message, Deserialize)]
    #[serde(default, rename_all = "camelCase")]
    pub struct HistogramDataPoint {
        #[prost(message, repeated, tag = "9")]
        pub attributes: Vec<KeyValue>,
        #[prost(fixed64, tag = "2")]
        #[serde(deserialize_with = "json::u64")]
        pub start_time_unix_nano: u64,
        #[prost(fixed64, tag = "3")]
        #[serde(deserialize_with = "json::u64")]
        pub time_unix_nano: u64,
        #[prost(fixed64, tag = "4")]
        #[serde(deserialize_with = "json::u64")]
        pub count: u64,
        #[prost(double, optional, tag = "5")]
        #[serde(deserialize_with = "json::opt_f64")]
        pub sum: Option<f64>,
        #[prost(fixed64, repeated, tag = "6")]
        #[serde(deserialize_with = "json::u64s")]
        pub bucket_counts: Vec<u64>,
        #[prost(double, repeated, tag = "7")]
        #[serde(deserialize_with = "json::f64s")]
        pub explicit_bounds: Vec<f64>,
        #[prost(double, optional, tag = "11")]
        #[serde(deserialize_with = "json::opt_f64")]
        pub min: Option<f64>,
        #[prost(double, optional, tag = "12")]
        #[serde(deserialize_with = "json::opt_f64")]
        pub max: Option<f64>,
    }

    #[derive(Clone, PartialEq, Message, Deserialize)]
    #[serde(default, rename_all = "camelCase")]
    pub struct ExponentialHistogramDataPoint {
        #[prost(message, repeated, tag = "1")]
        pub attributes: Vec<KeyValue>,
        #[prost(fixed64, tag = "2")]
        #[serde(deserialize_with = "json::u64")]
        pub start_time_unix_nano: u64,
        #[prost(fixed64, tag = "3")]
        #[serde(deserialize_with = "json::u64")]
        pub time_unix_nano: u64,
        #[prost(fixed64, tag = "4")]
        #[serde(deserialize_with = "json::u64")]
        pub count: u64,
        #[prost(double, optional, tag = "5")]
        #[serde(deserialize_with = "json::opt_f64")]
        pub sum: Option<f64>,
        #[prost(sint32, tag = "6")]
        pub scale: i32,
        #[prost(fixed64, tag = "7")]
        #[serde(deserialize_with = "json::u64")]
        pub zero_count: u64,
        #[prost(double, optional, tag = "12")]
        #[serde(deserialize_with = "json::opt_f64")]
        pub min: Option<f64>,
        #[prost(double, optional, tag = "13")]
        #[serde(deserialize_with = "json::opt_f64")]
        pub max: Option<f64>,
    }

    #[derive(Clone, PartialEq, Message, Deserialize)]
    #[serde(default, rename_all = "camelCase")]
    pub struct SummaryDataPoint {
        #[prost(message, repeated, tag = "7")]
        pub attributes: Vec<KeyValue>,
        #[prost(fixed64, tag = "2")]
        #[serde(deserialize_with = "json::u64")]
        pub start_time_unix_nano: u64,
        #[prost(fixed64, tag = "3")]
        #[serde(deserialize_with = "json::u64")]
        pub time_unix_nano: u64,
        #[prost(fixed64, tag = "4")]
        #[serde(deserialize_with = "json::u64")]
        pub count: u64,
        #[prost(double, tag = "5")]
        #[serde(deserialize_with = "json::f64")]
        pub sum: f64,
        #[prost(message, repeated, tag = "6")]
        pub quantile_values: Vec<ValueAtQuantile>,
    }

    #[derive(Clone, PartialEq, Message, Deserialize)]
    #[serde(default)]
    pub struct ValueAtQuantile {
        #[prost(double, tag = "1")]
        #[serde(deserialize_with = "json::f64")]
        pub quantile: f64,
        #[prost(double, tag = "2")]
        #[serde(deserialize_with = "json::f64")]
        pub value: f64,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct ExportMetricsServiceResponse {
        #[prost(message, optional, tag = "1")]
        pub partial_success: Option<ExportMetricsPartialSuccess>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct ExportMetricsPartialSuccess {
        #[prost(int64, tag = "1")]
        pub rejected_data_points: i64,
        #[prost(string, tag = "2")]
        pub error_message: String,
    }

    /// `google.rpc.Status`: the body of an OTLP error answer.
    #[derive(Clone, PartialEq, Message)]
    pub struct Status {
        #[prost(int32, tag = "1")]
        pub code: i32,
        #[prost(string, tag = "2")]
        pub message: String,
    }
}

/// OTLP/JSON's ways of writing scalars: 64-bit integers as strings or numbers, doubles as
/// numbers or `"NaN"`/`"Infinity"`, bytes as base64 (ids as hex), enums as numbers or names.
mod json {
    use super::*;
    use serde::de::Error;
    use serde_json::Value as J;

    fn number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<J>, D::Error> {
        Ok(match J::deserialize(d)? {
            J::Null => None,
            v => Some(v),
        })
    }

    fn to_u64<E: Error>(v: &J) -> Result<u64, E> {
        match v {
            J::Number(n) => n
                .as_u64()
                .ok_or_else(|| E::custom(format!("{n} is not an unsigned 64-bit integer"))),
            J::String(s) => s
                .parse()
                .map_err(|_| E::custom(format!("{s:?} is not an unsigned 64-bit integer"))),
            other => Err(E::custom(format!("{other} is not an integer"))),
        }
    }

    fn to_f64<E: Error>(v: &J) -> Result<f64, E> {
        match v {
            J::Number(n) => n
                .as_f64()
                .ok_or_else(|| E::custom(format!("{n} is not a number"))),
            J::String(s) => match s.as_str() {
                "NaN" => Ok(f64::NAN),
                "Infinity" => Ok(f64::INFINITY),
                "-Infinity" => Ok(f64::NEG_INFINITY),
                _ => s
                    .parse()
                    .map_err(|_| E::custom(format!("{s:?} is not a number"))),
            },
            other => Err(E::custom(format!("{other} is not a number"))),
        }
    }

    pub fn u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        number(d)?.map_or(Ok(0), |v| to_u64(&v))
    }

    pub fn i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        match number(d)? {
            None => Ok(0),
            Some(J::Number(n)) => n
                .as_i64()
                .ok_or_else(|| D::Error::custom(format!("{n} is not a 64-bit integer"))),
            Some(J::String(s)) => s
                .parse()
                .map_err(|_| D::Error::custom(format!("{s:?} is not a 64-bit integer"))),
            Some(other) => Err(D::Error::custom(format!("{other} is not an integer"))),
        }
    }

    pub fn f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        number(d)?.map_or(Ok(0.0), |v| to_f64(&v))
    }

    pub fn opt_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        number(d)?.map(|v| to_f64(&v)).transpose()
    }

    pub fn u64s<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
        Option::<Vec<J>>::deserialize(d)?
            .unwrap_or_default()
            .iter()
            .map(to_u64)
            .collect()
    }

    pub fn f64s<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        Option::<Vec<J>>::deserialize(d)?
            .unwrap_or_default()
            .iter()
            .map(to_f64)
            .collect()
    }

    fn enum_value<'de, D: Deserializer<'de>>(
        d: D,
        names: &[&str],
        what: &str,
    ) -> Result<i32, D::Error> {
        match number(d)? {
            None => Ok(0),
            Some(J::Number(n)) => n
                .as_i64()
                .and_then(|i| i32::try_from(i).ok())
                .ok_or_else(|| D::Error::custom(format!("{n} is not a {what}"))),
            Some(J::String(s)) => names
                .iter()
                .position(|n| *n == s)
                .map(|i| i as i32)
                .ok_or_else(|| D::Error::custom(format!("{s:?} is not a {what}"))),
            Some(other) => Err(D::Error::custom(format!("{other} is not a {what}"))),
        }
    }

    pub fn temporality<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
        enum_value(d, &TEMPORALITY_NAMES, "aggregation temporality")
    }

    pub fn severity<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
        let names: Vec<String> = std::iter::once("SEVERITY_NUMBER_UNSPECIFIED".to_string())
            .chain(
                ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"]
                    .iter()
                    .flat_map(|l| {
                        (1..=4).map(move |i| match i {
                            1 => format!("SEVERITY_NUMBER_{l}"),
                            _ => format!("SEVERITY_NUMBER_{l}{i}"),
                        })
                    }),
            )
            .collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        enum_value(d, &names, "severity number")
    }

    pub fn hex<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = Option::<String>::deserialize(d)?.unwrap_or_default();
        if text.len() % 2 != 0 {
            return Err(D::Error::custom(format!(
                "{text:?} is not hex: odd number of digits"
            )));
        }
        (0..text.len())
            .step_by(2)
            .map(|i| {
                text.get(i..i + 2)
                    .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                    .ok_or_else(|| D::Error::custom(format!("{text:?} is not hex")))
            })
            .collect()
    }

    pub fn base64<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        use base64::Engine;
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|e| D::Error::custom(format!("bytesValue is not base64: {e}")))
    }
}

const TEMPORALITY_NAMES: [&str; 3] = [
    "AGGREGATION_TEMPORALITY_UNSPECIFIED",
    "AGGREGATION_TEMPORALITY_DELTA",
    "AGGREGATION_TEMPORALITY_CUMULATIVE",
];

fn decode<T: Message + Default + for<'de> Deserialize<'de>>(
    protocol: &'static str,
    body: &[u8],
    encoding: Encoding,
) -> Result<T, ProtocolError> {
    match encoding {
        Encoding::Protobuf => T::decode(body).map_err(|e| {
            // prost names the message and field it was in ("ResourceLogs.scope_logs: …").
            ProtocolError::new(
                protocol,
                format!("{} bytes of protobuf", body.len()),
                e.to_string(),
            )
        }),
        Encoding::Json => serde_json::from_slice(body)
            .map_err(|e| ProtocolError::new(protocol, super::json_at(&e), e.to_string())),
    }
}

/// The events of an `ExportLogsServiceRequest` body: one per log record.
pub fn logs(body: &[u8], encoding: Encoding, now: i64) -> Result<Vec<Event>, ProtocolError> {
    let request: proto::ExportLogsServiceRequest = decode("OTLP logs", body, encoding)?;
    let mut events = Vec::new();
    for rl in request.resource_logs {
        let resource = Context::of_resource(rl.resource.as_ref(), "otlp-log");
        for sl in rl.scope_logs {
            let context = resource.with_scope(sl.scope.as_ref());
            for record in sl.log_records {
                events.push(log_event(&context, record, now));
            }
        }
    }
    Ok(events)
}

/// The events of an `ExportMetricsServiceRequest` body: one per data point.
pub fn metrics(body: &[u8], encoding: Encoding, now: i64) -> Result<Vec<Event>, ProtocolError> {
    let request: proto::ExportMetricsServiceRequest = decode("OTLP metrics", body, encoding)?;
    let mut events = Vec::new();
    for rm in request.resource_metrics {
        let resource = Context::of_resource(rm.resource.as_ref(), "otlp-metric");
        for sm in rm.scope_metrics {
            let context = resource.with_scope(sm.scope.as_ref());
            for metric in sm.metrics {
                metric_events(&context, metric, now, &mut events);
            }
        }
    }
    Ok(events)
}

/// The encoded answer to an export whose `rejected` items (of a logs or metrics request) were
/// refused for `message`: OTLP's partial success (an empty message when all were taken).
pub fn export_response(
    metrics: bool,
    rejected: usize,
    message: &str,
    encoding: Encoding,
) -> Vec<u8> {
    let partial = (rejected > 0 || !message.is_empty()).then_some(());
    match encoding {
        Encoding::Protobuf if metrics => proto::ExportMetricsServiceResponse {
            partial_success: partial.map(|()| proto::ExportMetricsPartialSuccess {
                rejected_data_points: rejected as i64,
                error_message: message.to_string(),
            }),
        }
        .encode_to_vec(),
        Encoding::Protobuf => proto::ExportLogsServiceResponse {
            partial_success: partial.map(|()| proto::ExportLogsPartialSuccess {
                rejected_log_records: rejected as i64,
                error_message: message.to_string(),
            }),
        }
        .encode_to_vec(),
        Encoding::Json => {
            let count = if metrics {
                "rejectedDataPoints"
            } else {
                "rejectedLogRecords"
            };
            let body = match partial {
                Some(()) => {
                    serde_json::json!({"partialSuccess": {count: rejected.to_string(), "errorMessage": message}})
                }
                None => serde_json::json!({}),
            };
            body.to_string().into_bytes()
        }
    }
}

/// The encoded `google.rpc.Status` of a refused export.
pub fn status_response(code: i32, message: &str, encoding: Encoding) -> Vec<u8> {
    match encoding {
        Encoding::Protobuf => proto::Status {
            code,
            message: message.to_string(),
        }
        .encode_to_vec(),
        Encoding::Json => serde_json::json!({"code": code, "message": message})
            .to_string()
            .into_bytes(),
    }
}

/// What the resource and scope give every event under them.
#[derive(Debug, Clone, Default)]
struct Context {
    tags: BTreeMap<String, String>,
    fields: BTreeMap<String, Value>,
}

/// Resource attributes that also become tags, and the tag names they take.
const RESOURCE_TAGS: [(&str, &str); 5] = [
    ("service.name", "service"),
    ("service.namespace", "namespace"),
    ("deployment.environment", "env"),
    ("deployment.environment.name", "env"),
    ("host.name", "host"),
];

impl Context {
    fn of_resource(resource: Option<&proto::Resource>, kind: &str) -> Context {
        let mut c = Context::default();
        c.tags.insert("type".into(), kind.into());
        for kv in resource
            .map(|r| r.attributes.as_slice())
            .unwrap_or_default()
        {
            if let Some((_, tag)) = RESOURCE_TAGS.iter().find(|(key, _)| *key == kv.key) {
                if let Some(v) = kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    c.tags.insert((*tag).into(), scalar_text(v));
                }
            }
            flatten_any(
                kv.value.as_ref(),
                &format!("resource.{}", kv.key),
                &mut c.fields,
            );
        }
        c
    }

    fn with_scope(&self, scope: Option<&proto::InstrumentationScope>) -> Context {
        let mut c = self.clone();
        if let Some(s) = scope {
            if !s.name.is_empty() {
                c.fields.insert("scope.name".into(), s.name.clone().into());
            }
            if !s.version.is_empty() {
                c.fields
                    .insert("scope.version".into(), s.version.clone().into());
            }
            for kv in &s.attributes {
                flatten_any(
                    kv.value.as_ref(),
                    &format!("scope.{}", kv.key),
                    &mut c.fields,
                );
            }
        }
        c
    }

    fn event(&self, now: i64, time_ns: u64) -> Event {
        let at = (time_ns > 0).then(|| i64::try_from(time_ns).unwrap_or(i64::MAX));
        let mut e = event_at(now, at);
        e.tags = self.tags.clone();
        e.fields = self.fields.clone();
        e
    }
}

/// Fields a log event gets from the door (attributes by these names go under `attributes.`).
const LOG_FIELDS: [&str; 7] = [
    "body",
    "severity",
    "severity_number",
    "trace_id",
    "span_id",
    "flags",
    "event_name",
];

fn log_event(context: &Context, r: proto::LogRecord, now: i64) -> Event {
    let time = if r.time_unix_nano > 0 {
        r.time_unix_nano
    } else {
        r.observed_time_unix_nano
    };
    let mut e = context.event(now, time);
    let f = &mut e.fields;
    if let Some(body) = r.body.as_ref().and_then(|b| b.value.as_ref()) {
        match body {
            proto::any_value::Value::StringValue(s) => e.raw = Some(s.clone()),
            other => e.raw = Some(any_to_json(other).to_string()),
        }
        flatten_any(r.body.as_ref(), "body", f);
    }
    if !r.severity_text.is_empty() {
        f.insert("severity".into(), r.severity_text.into());
    }
    if r.severity_number != 0 {
        f.insert(
            "severity_number".into(),
            Value::Int(i64::from(r.severity_number)),
        );
    }
    if !r.trace_id.is_empty() {
        f.insert("trace_id".into(), hex(&r.trace_id).into());
    }
    if !r.span_id.is_empty() {
        f.insert("span_id".into(), hex(&r.span_id).into());
    }
    if r.flags != 0 {
        f.insert("flags".into(), Value::Int(i64::from(r.flags)));
    }
    if !r.event_name.is_empty() {
        f.insert("event_name".into(), r.event_name.into());
    }
    add_attributes(&mut e.fields, &LOG_FIELDS, &r.attributes);
    e
}

/// Fields a metric event gets from the door (attributes by these names go under `attributes.`).
const METRIC_FIELDS: [&str; 12] = [
    "name",
    "unit",
    "type",
    "value",
    "monotonic",
    "temporality",
    "count",
    "sum",
    "min",
    "max",
    "scale",
    "start_time",
];

fn metric_events(context: &Context, m: proto::Metric, now: i64, out: &mut Vec<Event>) {
    use proto::metric::Data;
    let proto::Metric {
        name, unit, data, ..
    } = m;
    let point = |kind: &str, time: u64, start: u64, attributes: &[proto::KeyValue]| {
        let mut e = context.event(now, time);
        e.fields.insert("name".into(), name.clone().into());
        if !unit.is_empty() {
            e.fields.insert("unit".into(), unit.clone().into());
        }
        e.fields.insert("type".into(), kind.into());
        if start > 0 {
            e.fields.insert(
                "start_time".into(),
                Value::Int(i64::try_from(start).unwrap_or(i64::MAX)),
            );
        }
        add_attributes(&mut e.fields, &METRIC_FIELDS, attributes);
        e
    };
    let number = |v: Option<proto::number_data_point::Value>| match v {
        Some(proto::number_data_point::Value::AsInt(i)) => Value::Int(i),
        Some(proto::number_data_point::Value::AsDouble(d)) => float(d),
        None => Value::Null,
    };
    let temporality = |t: i32| {
        TEMPORALITY_NAMES
            .get(usize::try_from(t).unwrap_or(0))
            .unwrap_or(&TEMPORALITY_NAMES[0])
            .trim_start_matches("AGGREGATION_TEMPORALITY_")
            .to_ascii_lowercase()
    };
    match data {
        None => {}
        Some(Data::Gauge(g)) => {
            for p in g.data_points {
                let mut e = point(
                    "gauge",
                    p.time_unix_nano,
                    p.start_time_unix_nano,
                    &p.attributes,
                );
                e.fields.insert("value".into(), number(p.value));
                out.push(e);
            }
        }
        Some(Data::Sum(s)) => {
            for p in s.data_points {
                let mut e = point(
                    "sum",
                    p.time_unix_nano,
                    p.start_time_unix_nano,
                    &p.attributes,
                );
                e.fields.insert("value".into(), number(p.value));
                e.fields.insert("monotonic".into(), s.is_monotonic.into());
                e.fields.insert(
                    "temporality".into(),
                    temporality(s.aggregation_temporality).into(),
                );
                out.push(e);
            }
        }
        Some(Data::Histogram(h)) => {
            for p in h.data_points {
                let mut e = point(
                    "histogram",
                    p.time_unix_nano,
                    p.start_time_unix_nano,
                    &p.attributes,
                );
                let f = &mut e.fields;
                distribution(f, p.count, p.sum, p.min, p.max);
                f.insert(
                    "temporality".into(),
                    temporality(h.aggregation_temporality).into(),
                );
                for (i, n) in p.bucket_counts.iter().enumerate() {
                    let bound = p
                        .explicit_bounds
                        .get(i)
                        .map_or_else(|| "+Inf".to_string(), |b| b.to_string());
                    f.insert(format!("bucket.{bound}"), count(*n));
                }
                out.push(e);
            }
        }
        Some(Data::ExponentialHistogram(h)) => {
            for p in h.data_points {
                let mut e = point(
                    "exponential_histogram",
                    p.time_unix_nano,
                    p.start_time_unix_nano,
                    &p.attributes,
                );
                let f = &mut e.fields;
                distribution(f, p.count, p.sum, p.min, p.max);
                f.insert("scale".into(), Value::Int(i64::from(p.scale)));
                f.insert("zero_count".into(), count(p.zero_count));
                out.push(e);
            }
        }
        Some(Data::Summary(s)) => {
            for p in s.data_points {
                let mut e = point(
                    "summary",
                    p.time_unix_nano,
                    p.start_time_unix_nano,
                    &p.attributes,
                );
                e.fields.insert("count".into(), count(p.count));
                e.fields.insert("sum".into(), float(p.sum));
                for q in &p.quantile_values {
                    e.fields
                        .insert(format!("quantile.{}", q.quantile), float(q.value));
                }
                out.push(e);
            }
        }
    }
}

fn count(n: u64) -> Value {
    i64::try_from(n).map_or(Value::Float(n as f64), Value::Int)
}

/// A double as a field: NaN and infinities (which JSON and the columns cannot hold) as text.
fn float(d: f64) -> Value {
    if d.is_finite() {
        Value::Float(d)
    } else {
        Value::Str(d.to_string())
    }
}

/// A histogram point's count, and its sum, min and max where given.
fn distribution(
    fields: &mut BTreeMap<String, Value>,
    n: u64,
    sum: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
) {
    fields.insert("count".into(), count(n));
    for (name, v) in [("sum", sum), ("min", min), ("max", max)] {
        if let Some(v) = v {
            fields.insert(name.into(), float(v));
        }
    }
}

fn add_attributes(
    fields: &mut BTreeMap<String, Value>,
    taken: &[&str],
    attributes: &[proto::KeyValue],
) {
    for kv in attributes {
        let mut flat = BTreeMap::new();
        flatten_any(kv.value.as_ref(), &kv.key, &mut flat);
        for (name, value) in flat {
            let top = name.split('.').next().unwrap_or(&name);
            if taken.contains(&top) {
                fields.insert(format!("attributes.{name}"), value);
            } else {
                set_field(fields, taken, "attributes", name, value);
            }
        }
    }
}

/// An `AnyValue` as fields under `name`: maps by key, arrays by index, bytes as base64.
fn flatten_any(v: Option<&proto::AnyValue>, name: &str, out: &mut BTreeMap<String, Value>) {
    use proto::any_value::Value as A;
    let Some(v) = v.and_then(|v| v.value.as_ref()) else {
        out.insert(name.to_string(), Value::Null);
        return;
    };
    match v {
        A::StringValue(s) => {
            out.insert(name.into(), s.clone().into());
        }
        A::BoolValue(b) => {
            out.insert(name.into(), (*b).into());
        }
        A::IntValue(i) => {
            out.insert(name.into(), (*i).into());
        }
        A::DoubleValue(d) => {
            out.insert(name.into(), float(*d));
        }
        A::BytesValue(b) => {
            use base64::Engine;
            out.insert(
                name.into(),
                base64::engine::general_purpose::STANDARD.encode(b).into(),
            );
        }
        A::ArrayValue(a) => {
            for (i, item) in a.values.iter().enumerate() {
                flatten_any(Some(item), &format!("{name}.{i}"), out);
            }
        }
        A::KvlistValue(kvs) => {
            for kv in &kvs.values {
                flatten_any(kv.value.as_ref(), &format!("{name}.{}", kv.key), out);
            }
        }
    }
}

fn scalar_text(v: &proto::any_value::Value) -> String {
    match v {
        proto::any_value::Value::StringValue(s) => s.clone(),
        other => any_to_json(other).to_string(),
    }
}

fn any_to_json(v: &proto::any_value::Value) -> serde_json::Value {
    use proto::any_value::Value as A;
    let inner = |v: &Option<proto::AnyValue>| {
        v.as_ref()
            .and_then(|v| v.value.as_ref())
            .map_or(serde_json::Value::Null, any_to_json)
    };
    match v {
        A::StringValue(s) => s.clone().into(),
        A::BoolValue(b) => (*b).into(),
        A::IntValue(i) => (*i).into(),
        A::DoubleValue(d) => {
            serde_json::Number::from_f64(*d).map_or(serde_json::Value::Null, Into::into)
        }
        A::BytesValue(b) => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(b).into()
        }
        A::ArrayValue(a) => a
            .values
            .iter()
            .map(|x| inner(&Some(x.clone())))
            .collect::<Vec<_>>()
            .into(),
        A::KvlistValue(kvs) => kvs
            .values
            .iter()
            .map(|kv| (kv.key.clone(), inner(&kv.value)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::proto::*;
    use super::*;
    use proptest::prelude::*;

    fn s(v: &str) -> Option<AnyValue> {
        Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        })
    }

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: s(v),
        }
    }

    fn sample_logs() -> ExportLogsServiceRequest {
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", "checkout"), kv("host.name", "web-1")],
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "app.orders".into(),
                        version: "1.2".into(),
                        attributes: vec![],
                    }),
                    log_records: vec![LogRecord {
                        time_unix_nano: 1_700_000_000_123_000_000,
                        severity_number: 17,
                        severity_text: "ERROR".into(),
                        body: s("payment failed"),
                        attributes: vec![
                            kv("order.id", "A17"),
                            kv("severity", "shadowed"),
                            KeyValue {
                                key: "retries".into(),
                                value: Some(AnyValue {
                                    value: Some(any_value::Value::IntValue(3)),
                                }),
                            },
                        ],
                        trace_id: vec![0xab; 16],
                        span_id: vec![0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08],
                        ..Default::default()
                    }],
                }],
            }],
        }
    }

    #[test]
    fn a_log_record_keeps_its_time_body_severity_ids_and_attributes() {
        let body = sample_logs().encode_to_vec();
        let events = logs(&body, Encoding::Protobuf, 5).unwrap();
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.timestamp, 1_700_000_000_123_000_000);
        assert_eq!(e.raw.as_deref(), Some("payment failed"));
        assert_eq!(e.tags["service"], "checkout");
        assert_eq!(e.tags["host"], "web-1");
        assert_eq!(e.tags["type"], "otlp-log");
        assert_eq!(e.fields["severity"], Value::from("ERROR"));
        assert_eq!(e.fields["attributes.severity"], Value::from("shadowed"));
        assert_eq!(e.fields["severity_number"], Value::Int(17));
        assert_eq!(e.fields["trace_id"], Value::from("ab".repeat(16).as_str()));
        assert_eq!(e.fields["span_id"], Value::from("0102030405060708"));
        assert_eq!(e.fields["order.id"], Value::from("A17"));
        assert_eq!(e.fields["retries"], Value::Int(3));
        assert_eq!(e.fields["scope.name"], Value::from("app.orders"));
        assert_eq!(e.fields["resource.service.name"], Value::from("checkout"));
    }

    #[test]
    fn otlp_json_reads_like_protobuf() {
        let body = r#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"checkout"}}]},
          "scopeLogs":[{"scope":{"name":"app.orders"},"logRecords":[{"timeUnixNano":"1700000000123000000",
          "severityNumber":"SEVERITY_NUMBER_ERROR","severityText":"ERROR","body":{"kvlistValue":{"values":[{"key":"msg","value":{"stringValue":"hi"}}]}},
          "attributes":[{"key":"retries","value":{"intValue":"3"}},{"key":"ratio","value":{"doubleValue":0.5}},{"key":"tags","value":{"arrayValue":{"values":[{"stringValue":"a"},{"boolValue":true}]}}}],
          "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","unknownKey":1}]}]}]}"#;
        let events = logs(body.as_bytes(), Encoding::Json, 5).unwrap();
        let e = &events[0];
        assert_eq!(e.timestamp, 1_700_000_000_123_000_000);
        assert_eq!(e.fields["severity_number"], Value::Int(17));
        assert_eq!(e.fields["body.msg"], Value::from("hi"));
        assert_eq!(e.raw.as_deref(), Some(r#"{"msg":"hi"}"#));
        assert_eq!(e.fields["retries"], Value::Int(3));
        assert_eq!(e.fields["ratio"], Value::Float(0.5));
        assert_eq!(e.fields["tags.1"], Value::Bool(true));
        assert_eq!(
            e.fields["trace_id"],
            Value::from("5b8efff798038103d269b633813fc60c")
        );
    }

    #[test]
    fn each_data_point_is_an_event_with_name_type_and_value() {
        let body = r#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"api"}}]},"scopeMetrics":[{"metrics":[
          {"name":"requests","unit":"1","sum":{"aggregationTemporality":2,"isMonotonic":true,"dataPoints":[
             {"timeUnixNano":"1700000000000000000","asInt":"7","attributes":[{"key":"route","value":{"stringValue":"/a"}}]},
             {"timeUnixNano":"1700000000000000000","asInt":9,"attributes":[{"key":"route","value":{"stringValue":"/b"}}]}]}},
          {"name":"temp","gauge":{"dataPoints":[{"timeUnixNano":"1700000001000000000","asDouble":21.5}]}},
          {"name":"latency","histogram":{"aggregationTemporality":1,"dataPoints":[{"count":"3","sum":0.6,"bucketCounts":["1","2","0"],"explicitBounds":[0.1,0.5]}]}},
          {"name":"rt","summary":{"dataPoints":[{"count":"2","sum":3,"quantileValues":[{"quantile":0.99,"value":2.5}]}]}}]}]}]}"#;
        let events = metrics(body.as_bytes(), Encoding::Json, 42).unwrap();
        assert_eq!(events.len(), 5);
        let a = &events[0];
        assert_eq!(a.tags["service"], "api");
        assert_eq!(a.tags["type"], "otlp-metric");
        assert_eq!(a.fields["name"], Value::from("requests"));
        assert_eq!(a.fields["type"], Value::from("sum"));
        assert_eq!(a.fields["value"], Value::Int(7));
        assert_eq!(a.fields["route"], Value::from("/a"));
        assert_eq!(a.fields["temporality"], Value::from("cumulative"));
        assert_eq!(a.fields["monotonic"], Value::Bool(true));
        assert_eq!(events[1].fields["value"], Value::Int(9));
        assert_eq!(events[2].fields["value"], Value::Float(21.5));
        assert_eq!(events[2].timestamp, 1_700_000_001_000_000_000);
        let h = &events[3];
        assert_eq!(h.timestamp, 42, "no time: the arrival time");
        assert_eq!(h.fields["count"], Value::Int(3));
        assert_eq!(h.fields["bucket.0.5"], Value::Int(2));
        assert_eq!(h.fields["bucket.+Inf"], Value::Int(0));
        assert_eq!(events[4].fields["quantile.0.99"], Value::Float(2.5));
        // And the same through protobuf.
        let request: ExportMetricsServiceRequest = serde_json::from_str(body).unwrap();
        let again = metrics(&request.encode_to_vec(), Encoding::Protobuf, 42).unwrap();
        assert_eq!(
            again.iter().map(|e| &e.fields).collect::<Vec<_>>(),
            events.iter().map(|e| &e.fields).collect::<Vec<_>>()
        );
    }

    #[test]
    fn bad_bodies_say_what_and_where() {
        let e = logs(
            b"{\"resourceLogs\": [ {\"scopeLogs\": 7} ]}",
            Encoding::Json,
            0,
        )
        .unwrap_err();
        assert_eq!(e.protocol, "OTLP logs");
        assert_eq!(e.at, "line 1, column 34");
        assert!(e.reason.contains("expected a sequence"), "{e}");
        let e = logs(&[0x0a, 0x05, 0x01], Encoding::Protobuf, 0).unwrap_err();
        assert!(e.to_string().contains("3 bytes of protobuf"), "{e}");
        let e = logs(
            br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"traceId":"xyz"}]}]}]}"#,
            Encoding::Json,
            0,
        )
        .unwrap_err();
        assert!(e.reason.contains("not hex"), "{e}");
    }

    #[test]
    fn partial_success_is_encoded_as_otlp_specifies() {
        let r = export_response(false, 2, "2 records do not fit", Encoding::Protobuf);
        let back = ExportLogsServiceResponse::decode(&r[..]).unwrap();
        let p = back.partial_success.unwrap();
        assert_eq!(
            (p.rejected_log_records, p.error_message.as_str()),
            (2, "2 records do not fit")
        );
        assert!(export_response(true, 0, "", Encoding::Protobuf).is_empty());
        assert_eq!(
            String::from_utf8(export_response(true, 1, "x", Encoding::Json)).unwrap(),
            r#"{"partialSuccess":{"errorMessage":"x","rejectedDataPoints":"1"}}"#
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            for encoding in [Encoding::Protobuf, Encoding::Json] {
                if let Err(e) = logs(&body, encoding, 0) {
                    prop_assert!(!e.at.is_empty() && !e.reason.is_empty());
                }
                if let Err(e) = metrics(&body, encoding, 0) {
                    prop_assert!(!e.at.is_empty() && !e.reason.is_empty());
                }
            }
        }

        #[test]
        fn mutated_valid_bodies_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
            let mut body = sample_logs().encode_to_vec();
            for (at, byte) in flips {
                let i = at % body.len();
                body[i] = byte;
            }
            let _ = logs(&body, Encoding::Protobuf, 0);
        }
    }
}
