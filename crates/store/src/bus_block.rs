//! The store's blocks as the bus carries them.
//!
//! A door that takes a large enough share of a request for one data source builds the block a
//! digest would have built from those events and writes it as one bus batch *laid out* by this
//! module (`eddy_log`'s laid-out batches: one record per event, dense offsets, the payload
//! ours). The digest appends such a block to its work in progress as it is, instead of
//! deriving every event a second time; every other reader of the bus (live queries, alerts,
//! pipelines, `eddy topic`) gets the events back as records through [`StoreBlockLayout`]. The
//! bus then holds what the segments will, compressed as they are: about a third of what a batch
//! of rows takes.
//!
//! The payload (after the log's batch header; integers as in [`eddy_event::wire`]):
//!
//! ```text
//!  u8      LAYOUT_ID (1)
//!  u8      VERSION (1)
//!  str     the data source (the records' key; empty: none)
//!  map     the tags every event of the block has
//!  varint  events
//!  zz      earliest and latest @timestamp, latest @ingesttimestamp
//!  varint  the block's payload before compression (its `raw_len`)
//!  varint  the events' weight, as a segment counts its size (`BlockBuilder::payload_len`)
//!  varint  bloom filter length, then its bytes
//!  …       the stored block (codec byte and frame), to the end
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use eddy_event::codec::{self, FieldsRef};
use eddy_event::wire::{
    put_str, put_string_map, put_varint, unzigzag, zigzag, DecodeError, Reader,
};
use eddy_event::Event;
use eddy_log::{LaidOutRecord, RecordLayout};

use crate::block::{self, BlockBuilder, BlockError, BlockSummary, Compression};
use crate::bloom::BloomFilter;
use crate::view::BlockView;

/// The first byte of the bus payloads this module lays out (the log's registry of layouts).
pub const LAYOUT_ID: u8 = 1;
const VERSION: u8 = 1;

/// A block read from a bus payload, borrowing it.
#[derive(Debug)]
pub struct BusBlock<'a> {
    /// The data source of its events.
    pub source: &'a str,
    /// The tags every event has.
    pub tags: BTreeMap<String, String>,
    /// What the block says about itself.
    pub summary: BlockSummary,
    /// The latest `@ingesttimestamp` of its events.
    pub latest_ingest: i64,
    /// The events' size as a segment counts it.
    pub weight: u64,
    /// Its tokens' filter.
    pub bloom: BloomFilter,
    /// The stored block: codec byte and frame.
    pub stored: &'a [u8],
}

impl<'a> BusBlock<'a> {
    /// Reads the header of a payload this module wrote; the block itself is not decompressed.
    pub fn decode(payload: &'a [u8]) -> Result<BusBlock<'a>, BlockError> {
        let mut r = Reader::new(payload);
        let [layout, version] = r.array::<2>("bus block header")?;
        if layout != LAYOUT_ID || version != VERSION {
            return Err(BlockError::Payload(DecodeError {
                position: 0,
                reason: "not a bus block of a known version",
            }));
        }
        let source = r.string_ref("data source")?;
        let tags = r.string_map("common tags")?;
        let count = r.varint_u32("event count")?;
        let min_time = unzigzag(r.varint("earliest time")?);
        let max_time = unzigzag(r.varint("latest time")?);
        let latest_ingest = unzigzag(r.varint("latest ingest time")?);
        let raw_len = r.varint_u32("block length")?;
        let weight = r.varint("events' weight")?;
        let bloom_len = r.len("bloom length")?;
        let bloom = BloomFilter::from_bytes(r.bytes(bloom_len, "bloom")?).map_err(|e| {
            BlockError::Section {
                section: "bloom filter".to_string(),
                reason: e.to_string(),
            }
        })?;
        if count == 0 || raw_len as usize > block::MAX_PAYLOAD {
            return r
                .fail("impossible event count or block length")
                .map_err(BlockError::Payload);
        }
        Ok(BusBlock {
            source,
            tags,
            summary: BlockSummary {
                count,
                min_time,
                max_time,
                raw_len,
            },
            latest_ingest,
            weight,
            bloom,
            stored: &payload[r.pos..],
        })
    }

    /// Its events as bus records hold them: fields only where no parser makes them.
    pub fn events(&self) -> Result<Vec<Event>, BlockError> {
        let mut view = BlockView::default();
        view.decode_stored(self.stored, self.summary.raw_len as usize)?;
        let events = (0..view.len()).map(|i| view.bus_event(i)).collect();
        // Columns are decompressed on first use: damage found then counts too.
        view.late_error()?;
        Ok(events)
    }
}

/// Builds bus blocks from the events of one data source; kept per door thread, so that its
/// buffers and compression context are reused from request to request.
#[derive(Default)]
pub struct BusBlockWriter {
    builder: BlockBuilder,
    /// The tags every event pushed so far has (`None` before the first).
    tags: Option<BTreeMap<String, String>>,
    first_time: i64,
    latest_ingest: i64,
}

/// A finished bus block: the payload and what the log's batch header says of it.
#[derive(Debug)]
pub struct FinishedBlock {
    /// The payload, starting with [`LAYOUT_ID`].
    pub payload: Vec<u8>,
    /// Its events.
    pub count: u32,
    /// The first event's `@timestamp` (the log's record 0).
    pub first_time: i64,
    /// The latest `@timestamp`.
    pub max_time: i64,
}

impl BusBlockWriter {
    /// Adds an event (its fields as the bus would hold them: none where its parser makes them).
    pub fn push(&mut self, event: &Event) {
        if self.builder.is_empty() {
            self.first_time = event.timestamp;
            self.latest_ingest = event.ingest_timestamp;
        }
        self.latest_ingest = self.latest_ingest.max(event.ingest_timestamp);
        if self.builder.push_with(event, FieldsRef::Map(&event.fields)) {
            match &mut self.tags {
                Some(common) => common.retain(|k, v| event.tags.get(k) == Some(v)),
                None => self.tags = Some(event.tags.clone()),
            }
        }
    }

    /// The events' weight so far (what closes a block).
    pub fn weight(&self) -> usize {
        self.builder.payload_len()
    }

    /// Whether nothing was pushed since the last block.
    pub fn is_empty(&self) -> bool {
        self.builder.is_empty()
    }

    /// Finishes the block of the events pushed, as data source `source`, compressed as the
    /// store compresses its blocks; the writer is left empty for the next.
    pub fn finish(
        &mut self,
        source: &str,
        compression: Compression,
        bloom_bits_per_token: usize,
    ) -> FinishedBlock {
        let weight = self.builder.payload_len() as u64;
        let (stored, summary, bloom) = self
            .builder
            .finish_and_reset(compression, bloom_bits_per_token);
        let bloom = bloom.to_bytes();
        let tags = self.tags.take().unwrap_or_default();
        let mut payload = Vec::with_capacity(64 + source.len() + bloom.len() + stored.len());
        payload.extend_from_slice(&[LAYOUT_ID, VERSION]);
        put_str(&mut payload, source);
        put_string_map(&mut payload, &tags);
        put_varint(&mut payload, u64::from(summary.count));
        put_varint(&mut payload, zigzag(summary.min_time));
        put_varint(&mut payload, zigzag(summary.max_time));
        put_varint(&mut payload, zigzag(self.latest_ingest));
        put_varint(&mut payload, u64::from(summary.raw_len));
        put_varint(&mut payload, weight);
        put_varint(&mut payload, bloom.len() as u64);
        payload.extend_from_slice(&bloom);
        payload.extend_from_slice(&stored);
        FinishedBlock {
            payload,
            count: summary.count,
            first_time: self.first_time,
            max_time: summary.max_time,
        }
    }
}

/// Gives the bus's readers the events of a bus block as the records a door would have written
/// for them one by one (see `eddy_ingest`): key the data source, timestamp `@timestamp`, value
/// the event encoded without the fields its parser makes.
#[derive(Debug)]
pub struct StoreBlockLayout;

impl RecordLayout for StoreBlockLayout {
    fn records(&self, payload: &Bytes, count: u32) -> Result<Vec<LaidOutRecord>, String> {
        let block = BusBlock::decode(payload).map_err(|e| format!("a bus block: {e}"))?;
        if block.summary.count != count {
            return Err(format!(
                "a bus block of {} events in a batch of {count} records",
                block.summary.count
            ));
        }
        let events = block.events().map_err(|e| format!("a bus block: {e}"))?;
        if events.len() != count as usize {
            return Err(format!(
                "a bus block decoded to {} events where it says {count}",
                events.len()
            ));
        }
        let key =
            (!block.source.is_empty()).then(|| Bytes::copy_from_slice(block.source.as_bytes()));
        let mut values = Vec::with_capacity(payload.len() * 4);
        let mut ends = Vec::with_capacity(events.len());
        for event in events {
            codec::encode_into(&event, &mut values);
            ends.push((values.len(), event.timestamp));
        }
        let values = Bytes::from(values);
        let mut start = 0;
        Ok(ends
            .into_iter()
            .map(|(end, timestamp)| {
                let value = values.slice(start..end);
                start = end;
                LaidOutRecord {
                    timestamp,
                    key: key.clone(),
                    value,
                }
            })
            .collect())
    }
}

/// Lets this process's bus readers read bus blocks (the door writes them only in a process that
/// did this; see [`registered`]).
pub fn register() {
    eddy_log::register_layout(LAYOUT_ID, Arc::new(StoreBlockLayout));
}

/// Whether [`register`] was called: a door writes bus blocks only where they can be read back.
pub fn registered() -> bool {
    eddy_log::layout(LAYOUT_ID).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The event as a bus record holds it: no fields where its parser makes them.
    fn as_on_the_bus(e: &Event) -> Event {
        let mut e = e.clone();
        if e.parsed_by.is_some() && e.raw.is_some() {
            e.fields.clear();
        }
        e
    }

    fn written(events: &[Event], source: &str, compression: Compression) -> FinishedBlock {
        let mut writer = BusBlockWriter::default();
        for e in events {
            writer.push(&as_on_the_bus(e));
        }
        writer.finish(source, compression, 10)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn a_bus_block_reads_back_as_the_records_a_door_would_have_written(
            events in proptest::collection::vec(crate::block::tests::event(), 1..40),
            keyed in any::<bool>(),
            zstd in any::<bool>(),
        ) {
            let source = if keyed { "#host=web-1" } else { "" };
            let compression = if zstd { Compression::ZstdAuto } else { Compression::None };
            let block = written(&events, source, compression);
            prop_assert_eq!(block.count as usize, events.len());
            prop_assert_eq!(block.first_time, events[0].timestamp);
            let payload = Bytes::from(block.payload);
            let records = StoreBlockLayout.records(&payload, events.len() as u32).unwrap();
            prop_assert_eq!(records.len(), events.len());
            for (r, e) in records.iter().zip(&events) {
                let expected = as_on_the_bus(e);
                prop_assert_eq!(r.timestamp, e.timestamp);
                prop_assert_eq!(r.key.as_deref(), keyed.then_some(source.as_bytes()));
                let (read, _) = codec::decode_lazily(&r.value).unwrap();
                prop_assert_eq!(&read.raw, &expected.raw);
                prop_assert_eq!(read.timestamp, expected.timestamp);
                prop_assert_eq!(read.ingest_timestamp, expected.ingest_timestamp);
                prop_assert_eq!(read.id, expected.id);
                prop_assert_eq!(read.id_from_client, expected.id_from_client);
                prop_assert_eq!(&read.tags, &expected.tags);
                prop_assert_eq!(read.parsed_by, expected.parsed_by);
                if expected.parsed_by.is_none() {
                    prop_assert_eq!(&codec::decode(&r.value).unwrap().fields, &expected.fields);
                }
            }
        }
    }

    #[test]
    fn a_bus_block_says_what_the_store_needs_without_decompressing() {
        let events: Vec<Event> = (0..50)
            .map(|i| {
                let mut e = eddy_event::Parser::Json
                    .parse_for_bus(
                        &format!(
                            r#"{{"@timestamp":{},"n":{i},"host":"web-1"}}"#,
                            1_700_000_000 + i
                        ),
                        1_800_000_000_000_000_000 + i,
                    )
                    .unwrap();
                e.tags =
                    BTreeMap::from([("host".into(), "web-1".into()), ("n".into(), i.to_string())]);
                e
            })
            .collect();
        let block = written(&events, "#host=web-1", Compression::ZstdAuto);
        let read = BusBlock::decode(&block.payload).unwrap();
        assert_eq!(read.source, "#host=web-1");
        // Only the tag all events share.
        assert_eq!(read.tags, BTreeMap::from([("host".into(), "web-1".into())]));
        assert_eq!(read.summary.count, 50);
        assert_eq!(read.summary.min_time, 1_700_000_000_000_000_000);
        assert_eq!(read.summary.max_time, 1_700_000_049_000_000_000);
        assert_eq!(read.latest_ingest, 1_800_000_000_000_000_049);
        assert!(read.bloom.may_contain("web"));
        assert_eq!(read.events().unwrap().len(), 50);
    }

    #[test]
    fn a_damaged_bus_block_is_an_error_not_a_panic() {
        let events: Vec<Event> = (0..20)
            .map(|i| {
                eddy_event::Parser::None
                    .parse(&format!("line {i}"), 1)
                    .unwrap()
            })
            .collect();
        let block = written(&events, "", Compression::ZstdAuto);
        let payload = Bytes::from(block.payload);
        // Every cut and every flipped byte: an error or (where the flip lands in a text)
        // other text, never a panic.
        for cut in 0..payload.len() {
            let _ = StoreBlockLayout.records(&payload.slice(..cut), 20);
        }
        for at in 0..payload.len() {
            let mut bytes = payload.to_vec();
            bytes[at] ^= 0x5a;
            let _ = StoreBlockLayout.records(&Bytes::from(bytes), 20);
        }
        let other_count = StoreBlockLayout.records(&payload, 21).unwrap_err();
        assert!(
            other_count.contains("20 events in a batch of 21"),
            "{other_count}"
        );
        let not_ours = StoreBlockLayout
            .records(&Bytes::from_static(&[7, 1, 0]), 1)
            .unwrap_err();
        assert!(not_ours.contains("known version"), "{not_ours}");
    }
}
