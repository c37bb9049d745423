//! Sealed marks: what a digest tells the bus when it seals a segment, on a bus whose partitions
//! other nodes digest too (Kafka).
//!
//! The digest commits a partition's offset only past events that are all sealed, and data
//! sources seal at different times: a source may be sealed far past the committed offset. On
//! one node the store's own watermarks skip those events after a restart. When the partition
//! moves to another node, that node has none of them, and would digest the events again: the
//! cluster would hold them twice. So, before a segment counts as sealed (before any commit
//! passes it), its mark goes to the bus, in topic `_sealed.<topic>`, on the same partition
//! number. A new owner reads the marks of its partition and skips what others sealed.
//!
//! A node that died between sealing and the bus's acknowledgement of the mark has a segment
//! nobody else knows of: the next owner digests those events again. At its next start the node
//! looks for the mark and drops the segment if it is not there (see
//! [`crate::RepoStore::settle_unpublished`]); if it is, the segment stays and the next owner
//! skipped it. The bus is the one place both nodes read, so they agree.
//!
//! Record: key = the data source; value = version byte 1, str store id, varint segment id,
//! str data source, varint first offset, varint last offset.

use eddy_event::wire::{put_str, put_varint, DecodeError, Reader};
use eddy_log::{Bus, PartitionChoice, Record, TopicConfig};

/// One sealed segment, as the bus records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedMark {
    /// The store that holds the segment ([`crate::RepoStore::identity`]).
    pub store: String,
    /// The segment's id in that store.
    pub segment: u64,
    /// Its data source.
    pub source: String,
    /// The first bus offset it holds.
    pub first: u64,
    /// The last bus offset it holds.
    pub upto: u64,
}

const VERSION: u8 = 1;

/// The topic holding the marks of repository topic `topic`.
pub fn marks_topic(topic: &str) -> String {
    format!("_sealed.{topic}")
}

/// Creates `topic`'s marks topic with `partitions` partitions if it does not exist. Its
/// retention only needs to outlast the gap between a partition's committed offset and its
/// newest seal (about a segment's age); the default week is plenty.
pub fn ensure_topic(bus: &dyn Bus, topic: &str, partitions: u32) -> eddy_log::Result<()> {
    let config = TopicConfig {
        partitions,
        ..TopicConfig::default()
    };
    bus.ensure_topic(&marks_topic(topic), &config)?;
    Ok(())
}

impl SealedMark {
    fn encode(&self) -> Vec<u8> {
        let mut out = vec![VERSION];
        put_str(&mut out, &self.store);
        put_varint(&mut out, self.segment);
        put_str(&mut out, &self.source);
        put_varint(&mut out, self.first);
        put_varint(&mut out, self.upto);
        out
    }

    fn decode(bytes: &[u8]) -> Result<SealedMark, DecodeError> {
        let mut r = Reader::new(bytes);
        if r.array::<1>("empty mark")? != [VERSION] {
            return r.fail("unknown mark version");
        }
        let mark = SealedMark {
            store: r.string("bad store id")?,
            segment: r.varint("bad segment id")?,
            source: r.string("bad data source")?,
            first: r.varint("bad first offset")?,
            upto: r.varint("bad last offset")?,
        };
        if !r.at_end() {
            return r.fail("trailing bytes");
        }
        Ok(mark)
    }
}

/// Records `mark` on partition `partition` of `topic`'s marks topic, durably.
pub fn publish(
    bus: &dyn Bus,
    topic: &str,
    partition: u32,
    mark: &SealedMark,
) -> eddy_log::Result<()> {
    let record = Record::new(mark.encode()).with_key(mark.source.clone());
    bus.produce(
        &marks_topic(topic),
        vec![record],
        PartitionChoice::Explicit(partition),
    )?;
    Ok(())
}

/// Every mark partition `partition` of `topic`'s marks topic holds now. A record that is not a
/// mark is passed over with an error in the log: it cannot name a segment, and stopping the
/// digest for it would stop the whole partition.
pub fn read(bus: &dyn Bus, topic: &str, partition: u32) -> eddy_log::Result<Vec<SealedMark>> {
    let marks_topic = marks_topic(topic);
    let (first, end) = bus.offsets(&marks_topic, partition)?;
    let mut marks = Vec::new();
    eddy_log::read_range(bus, &marks_topic, partition, first, end, &mut |r| {
        match SealedMark::decode(&r.value) {
            Ok(mark) => marks.push(mark),
            Err(e) => tracing::error!(
                topic = marks_topic,
                partition,
                offset = r.offset,
                "not a sealed mark, passed over: {e}"
            ),
        }
        true
    })?;
    Ok(marks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark() -> SealedMark {
        SealedMark {
            store: "0f3a".into(),
            segment: 42,
            source: "#host=web-1".into(),
            first: 1_000,
            upto: 2_345,
        }
    }

    #[test]
    fn a_mark_roundtrips() {
        assert_eq!(SealedMark::decode(&mark().encode()).unwrap(), mark());
    }

    #[test]
    fn a_damaged_mark_is_an_error_not_a_panic() {
        let bytes = mark().encode();
        for cut in 0..bytes.len() {
            assert!(SealedMark::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut future = bytes.clone();
        future[0] = 9;
        assert!(SealedMark::decode(&future).is_err());
        let mut long = bytes;
        long.push(0);
        assert!(SealedMark::decode(&long).is_err());
    }
}
