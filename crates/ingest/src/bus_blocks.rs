//! How a door lays a request's events out on the bus: each share of one data source in one
//! partition is a batch of records, one per event, or, when it weighs enough and the bus
//! takes them, the store's own blocks (see `eddy_store::bus_block`), which the digest appends
//! as they are. Every share is written before any is waited for, so their fsyncs overlap.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::Ordering;

use eddy_event::{codec, Event};
use eddy_log::{partition_for_salted_key, EncodedBatch, Record};
use eddy_store::bus_block::BusBlockWriter;

use crate::repository::Repository;

/// A share lighter than this part of a store block goes as records: blocks that small would
/// compress worse than records and leave the store many small blocks.
const SMALLEST_BLOCK_PART: usize = 4;

thread_local! {
    /// One block writer per door thread: its buffers and compression context are reused from
    /// request to request (refilling memory that is already mapped costs no page faults).
    static WRITER: RefCell<BusBlockWriter> = RefCell::new(BusBlockWriter::default());
}

/// Whether `repo`'s door writes blocks: its setting, a bus that stores laid-out batches, and
/// a process whose bus readers can read them back.
pub(crate) fn writes_blocks(repo: &Repository) -> bool {
    repo.config.bus_blocks && repo.bus.takes_laid_out() && eddy_store::bus_block::registered()
}

/// Stores `events` (with their data source keys and placement salts) on `repo`'s bus, durably.
pub(crate) fn produce(
    repo: &Repository,
    events: &[Event],
    keys: &[Option<String>],
    salts: &[u32],
) -> Result<(), eddy_log::Error> {
    let partitions = repo.topic.partition_count();
    // Records without a key share one partition per request, as `PartitionChoice::ByKey` puts
    // them.
    let unkeyed = repo.unkeyed.fetch_add(1, Ordering::Relaxed) % partitions.max(1);
    let mut shares: Vec<(u32, Option<&str>, Vec<usize>)> = Vec::new();
    let mut share_of: HashMap<(u32, Option<&str>), usize> = HashMap::new();
    for (i, key) in keys.iter().enumerate() {
        let partition = match key {
            Some(k) => partition_for_salted_key(k.as_bytes(), salts[i], partitions),
            None => unkeyed,
        };
        let share = *share_of
            .entry((partition, key.as_deref()))
            .or_insert_with(|| {
                shares.push((partition, key.as_deref(), Vec::new()));
                shares.len() - 1
            });
        shares[share].2.push(i);
    }
    let config = repo.store.config();
    let mut batches = Vec::with_capacity(shares.len());
    for (partition, key, indexes) in shares {
        let weight: usize = indexes.iter().map(|&i| weight_of(&events[i])).sum();
        if weight < config.block_bytes / SMALLEST_BLOCK_PART {
            let records = records(
                indexes.iter().map(|&i| &events[i]),
                indexes.iter().map(|&i| (key.map(str::to_string), salts[i])),
            );
            batches.push((
                partition,
                repo.topic.partition(partition)?.encode(&records)?,
            ));
            continue;
        }
        // Blocks of about equal size, none much over the store's.
        let blocks = ((weight + config.block_bytes / 2) / config.block_bytes.max(1)).max(1);
        let target = weight / blocks;
        let source = key.unwrap_or("");
        WRITER.with_borrow_mut(|writer| {
            let mut finish = |writer: &mut BusBlockWriter| {
                let block = writer.finish(source, config.compression, config.bloom_bits_per_token);
                let batch = EncodedBatch::laid_out(
                    block.payload,
                    block.count,
                    block.first_time,
                    block.max_time,
                );
                batches.push((partition, batch));
            };
            let mut left = weight;
            for &i in &indexes {
                writer.push(&events[i]);
                left = left.saturating_sub(weight_of(&events[i]));
                // A tail lighter than a quarter block joins the block before it.
                if writer.weight() >= target && left >= target / 4 {
                    finish(writer);
                }
            }
            if !writer.is_empty() {
                finish(writer);
            }
        });
    }
    repo.bus.produce_laid_out(repo.topic.name(), batches)?;
    Ok(())
}

/// About what an event adds to a block before compression.
fn weight_of(event: &Event) -> usize {
    32 + event.raw.as_ref().map_or(64, String::len)
}

/// The bus records of `events`, each with its data source key and placement salt (from
/// `places`, one per event): one buffer for all their values, each value a slice of it (no
/// allocation per event).
pub(crate) fn records<'e>(
    events: impl Iterator<Item = &'e Event> + Clone,
    places: impl Iterator<Item = (Option<String>, u32)>,
) -> Vec<Record> {
    let mut encoded = Vec::with_capacity(
        events
            .clone()
            .map(|e| 64 + e.raw.as_ref().map_or(0, String::len))
            .sum(),
    );
    let ends: Vec<usize> = events
        .clone()
        .map(|e| {
            codec::encode_into(e, &mut encoded);
            encoded.len()
        })
        .collect();
    let encoded = bytes::Bytes::from(encoded);
    let starts = std::iter::once(0).chain(ends.iter().copied());
    events
        .zip(starts.zip(ends.iter().copied()))
        .zip(places)
        .map(|((e, (start, end)), (key, salt))| {
            let r = Record::new(encoded.slice(start..end)).with_timestamp(e.timestamp);
            match key {
                Some(k) => r.with_key(k).with_salt(salt),
                None => r,
            }
        })
        .collect()
}
