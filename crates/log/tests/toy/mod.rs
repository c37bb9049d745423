//! A toy record layout for the property tests: batches laid out above the log.
//!
//! Payload: the id byte, then per record i64 timestamp, u32 value length, value (little-endian).

use std::sync::Arc;

use bytes::Bytes;
use eddy_log::{register_layout, EncodedBatch, LaidOutRecord, Record, RecordLayout};

/// The toy layout's id.
pub const TOY: u8 = 0xEE;

struct Toy;

impl RecordLayout for Toy {
    fn records(&self, payload: &Bytes, count: u32) -> Result<Vec<LaidOutRecord>, String> {
        let records = records(payload)?;
        if records.len() != count as usize {
            return Err(format!("{} records, {count} expected", records.len()));
        }
        Ok(records)
    }
}

/// Registers the toy layout (again: ignored).
pub fn register() {
    register_layout(TOY, Arc::new(Toy));
}

/// The records of a toy payload.
pub fn records(payload: &Bytes) -> Result<Vec<LaidOutRecord>, String> {
    let mut out = Vec::new();
    let mut at = 1;
    while at < payload.len() {
        let field = |from: usize, len: usize| {
            payload
                .get(from..from + len)
                .ok_or_else(|| format!("payload ends at byte {}", payload.len()))
        };
        let ts = i64::from_le_bytes(field(at, 8)?.try_into().map_err(|_| "ts")?);
        let len = u32::from_le_bytes(field(at + 8, 4)?.try_into().map_err(|_| "len")?) as usize;
        field(at + 12, len)?;
        out.push(LaidOutRecord {
            timestamp: ts,
            key: None,
            value: payload.slice(at + 12..at + 12 + len),
        });
        at += 12 + len;
    }
    Ok(out)
}

/// `records` (each with a timestamp, or `0`) as one toy batch.
pub fn batch(records: &[Record]) -> EncodedBatch {
    let mut payload = vec![TOY];
    for r in records {
        payload.extend_from_slice(&r.timestamp.unwrap_or(0).to_le_bytes());
        payload.extend_from_slice(&(r.value.len() as u32).to_le_bytes());
        payload.extend_from_slice(&r.value);
    }
    let first = records.first().and_then(|r| r.timestamp).unwrap_or(0);
    let max = records
        .iter()
        .map(|r| r.timestamp.unwrap_or(0))
        .max()
        .unwrap_or(0);
    EncodedBatch::laid_out(payload, records.len() as u32, first, max)
}
