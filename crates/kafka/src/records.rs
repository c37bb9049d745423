//! eddy's records as Kafka messages and back.
//!
//! Kafka timestamps are milliseconds; eddy's are nanoseconds. The message's Kafka timestamp is
//! eddy's divided down to ms (so Kafka's time index and retention work), and the exact value
//! travels in one more header, [`TIMESTAMP_HEADER`], appended after the record's own headers
//! and removed again on reading. A message without that header (written by another producer)
//! reads with its Kafka timestamp times 10^6.

use bytes::Bytes;
use eddy_log::{Header, StoredRecord};
use rdkafka::message::{Header as KafkaHeader, Headers, Message, OwnedHeaders};

/// The header that carries eddy's nanosecond timestamp, as decimal ASCII.
pub const TIMESTAMP_HEADER: &str = "eddy-timestamp-ns";

const NS_PER_MS: i64 = 1_000_000;

/// The Kafka timestamp (ms) for eddy's `ns`.
pub(crate) fn kafka_timestamp(ns: i64) -> i64 {
    ns.div_euclid(NS_PER_MS)
}

/// The record's headers followed by the timestamp header.
pub(crate) fn kafka_headers(headers: &[Header], ns: i64) -> OwnedHeaders {
    let mut out = OwnedHeaders::new_with_capacity(headers.len() + 1);
    for h in headers {
        out = out.insert(KafkaHeader {
            key: &h.name,
            value: Some(&h.value[..]),
        });
    }
    out.insert(KafkaHeader {
        key: TIMESTAMP_HEADER,
        value: Some(ns.to_string().as_bytes()),
    })
}

/// A consumed message as the record eddy wrote.
pub(crate) fn stored_record(message: &impl Message) -> StoredRecord {
    let mut headers = Vec::new();
    let mut exact_ns = None;
    if let Some(kafka) = message.headers() {
        let count = kafka.count();
        for (i, h) in kafka.iter().enumerate() {
            let value = h.value.unwrap_or_default();
            if i + 1 == count && h.key == TIMESTAMP_HEADER {
                exact_ns = std::str::from_utf8(value)
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok());
                if exact_ns.is_some() {
                    continue;
                }
            }
            headers.push(Header {
                name: h.key.to_string(),
                value: Bytes::copy_from_slice(value),
            });
        }
    }
    let timestamp = exact_ns.unwrap_or_else(|| {
        message
            .timestamp()
            .to_millis()
            .map_or(0, |ms| ms.saturating_mul(NS_PER_MS))
    });
    StoredRecord {
        offset: u64::try_from(message.offset()).unwrap_or(0),
        timestamp,
        key: message.key().map(Bytes::copy_from_slice),
        value: message
            .payload()
            .map(Bytes::copy_from_slice)
            .unwrap_or_default(),
        headers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_before_1970_round_down_to_the_earlier_millisecond() {
        assert_eq!(kafka_timestamp(1_500_000), 1);
        assert_eq!(kafka_timestamp(-1), -1);
        assert_eq!(kafka_timestamp(-1_000_000), -1);
    }
}
