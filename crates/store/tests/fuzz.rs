//! Fuzzing the store's decoders: arbitrary bytes, and valid blocks, segments, footers and
//! catalogues mutated (with their checksums made good again, so the decoders behind them are
//! reached). Every outcome is a value or a typed error naming what and where — never a panic —
//! and the memory held never grows far beyond the input, whatever a damaged length says.
#![allow(clippy::unwrap_used)]

use std::alloc::System;
use std::collections::BTreeMap;
use std::path::Path;

use cap::Cap;
use eddy_event::{Event, Parser};
use eddy_store::block::{self, BlockBuilder, Compression};
use eddy_store::catalogue::Catalogue;
use eddy_store::sections;
use eddy_store::segment::{SegmentInfo, SegmentWriter};
use eddy_store::{BlockView, SegmentFile};
use proptest::prelude::*;

/// Counts the memory the process holds, and its peak.
#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

/// Far above what the kilobytes of input of this binary's tests need (all of them at once),
/// far below what a damaged length asks for.
const PEAK_LIMIT: usize = 256 << 20;

fn assert_no_huge_allocation() {
    let peak = ALLOCATOR.max_allocated();
    assert!(peak < PEAK_LIMIT, "{peak} bytes held at once");
}

fn events() -> Vec<Event> {
    let mut out = Vec::new();
    for i in 0..40 {
        let mut e = match i % 3 {
            0 => Parser::Json
                .parse(&format!(r#"{{"n":{i},"msg":"request {i} served"}}"#), i)
                .unwrap(),
            1 => Parser::Kv.parse(&format!("n={i} status=200"), i).unwrap(),
            _ => Parser::None.parse(&format!("plain line {i}"), i).unwrap(),
        };
        e.tags = BTreeMap::from([("host".into(), format!("h{}", i % 2))]);
        out.push(e);
    }
    out
}

fn stored_block(compression: Compression) -> (Vec<u8>, usize) {
    let mut b = BlockBuilder::new();
    events().iter().for_each(|e| b.push(e));
    let (stored, summary, _) = b.finish(compression, 10);
    (stored, summary.raw_len as usize)
}

fn info() -> SegmentInfo {
    SegmentInfo {
        id: 7,
        source: "#host=h1".into(),
        tags: BTreeMap::new(),
        partition: 0,
        first_offset: 3,
        last_offset: 90,
        min_time: 0,
        max_time: 0,
        count: 0,
        raw_bytes: 0,
        sealed_at: 1,
        replaces: vec![],
    }
}

/// A sealed segment of two blocks, as bytes.
fn segment_bytes(dir: &Path) -> Vec<u8> {
    let mut w = SegmentWriter::create(&dir.join("s.wip")).unwrap();
    for compression in [Compression::Zstd(3), Compression::Lz4] {
        let mut b = BlockBuilder::new();
        events().iter().for_each(|e| b.push(e));
        let (stored, summary, bloom) = b.finish(compression, 10);
        w.append(&stored, summary, bloom).unwrap();
    }
    let path = dir.join("s.seg");
    w.seal(info(), &path).unwrap();
    std::fs::read(&path).unwrap()
}

/// Where the footer of segment `bytes` is, from its trailer.
fn footer_range(bytes: &[u8]) -> std::ops::Range<usize> {
    let trailer = bytes.len() - 24;
    let len = u64::from_le_bytes(bytes[trailer..trailer + 8].try_into().unwrap()) as usize;
    trailer - len..trailer
}

/// Makes the trailer's footer checksum match the footer again.
fn reseal(bytes: &mut [u8]) {
    let range = footer_range(bytes);
    let crc = crc32c::crc32c(&bytes[range.clone()]);
    bytes[range.end + 8..range.end + 12].copy_from_slice(&crc.to_le_bytes());
}

/// Opens a segment from `bytes` and reads every block: any error must name the file.
fn open_and_read(dir: &Path, bytes: &[u8]) -> Result<(), String> {
    let path = dir.join("fuzzed.seg");
    std::fs::write(&path, bytes).unwrap();
    let seg = SegmentFile::open(&path).map_err(|e| e.to_string())?;
    let problems = seg.verify();
    match problems.first() {
        Some(p) => Err(p.to_string()),
        None => Ok(()),
    }
}

/// Byte edits: (position, new byte), positions taken modulo the length.
fn edits() -> impl Strategy<Value = Vec<(usize, u8)>> {
    proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6)
}

fn mutate(bytes: &mut [u8], edits: &[(usize, u8)]) {
    if bytes.is_empty() {
        return;
    }
    let len = bytes.len();
    for &(at, byte) in edits {
        bytes[at % len] = byte;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic_as_a_block(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
        raw_len in any::<u32>(),
    ) {
        let _ = block::decode(&bytes, raw_len as usize);
        let _ = BlockView::decode(&bytes);
        assert_no_huge_allocation();
    }

    #[test]
    fn a_mutated_block_is_decoded_or_refused(edits in edits(), lz4 in any::<bool>()) {
        let compression = if lz4 { Compression::Lz4 } else { Compression::Zstd(3) };
        let (mut stored, raw_len) = stored_block(compression);
        mutate(&mut stored, &edits);
        let _ = block::decode(&stored, raw_len);
        // Sections stored as they are, behind good checksums: their decoders are reached.
        let (mut plain, raw_len) = stored_block(Compression::None);
        mutate(&mut plain, &edits);
        sections::reseal(&mut plain);
        let _ = block::decode(&plain, raw_len);
        assert_no_huge_allocation();
    }

    #[test]
    fn a_mutated_catalogue_is_decoded_or_refused(edits in edits(), count in 0u64..5) {
        let mut c = Catalogue::default();
        for id in 0..count {
            let mut i = info();
            i.id = id;
            c.insert(i, 100);
        }
        let mut bytes = c.encode();
        let body = bytes.len() - 4;
        mutate(&mut bytes[8..body], &edits);
        let crc = crc32c::crc32c(&bytes[..body]);
        bytes[body..].copy_from_slice(&crc.to_le_bytes());
        if let Err(e) = Catalogue::decode(&bytes) {
            prop_assert!(e.position <= bytes.len(), "{e:?}");
        }
        let _ = Catalogue::decode(&bytes[..bytes.len() / 2]);
        assert_no_huge_allocation();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_mutated_segment_is_refused_naming_the_file(edits in edits()) {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = segment_bytes(dir.path());
        mutate(&mut bytes, &edits);
        if let Err(e) = open_and_read(dir.path(), &bytes) {
            prop_assert!(e.contains("fuzzed.seg"), "{e}");
        }
        assert_no_huge_allocation();
    }

    #[test]
    fn a_mutated_footer_behind_a_good_checksum_is_refused_with_its_position(edits in edits()) {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = segment_bytes(dir.path());
        let range = footer_range(&bytes);
        mutate(&mut bytes[range], &edits);
        reseal(&mut bytes);
        if let Err(e) = open_and_read(dir.path(), &bytes) {
            prop_assert!(e.contains("fuzzed.seg"), "{e}");
        }
        assert_no_huge_allocation();
    }

    #[test]
    fn a_segment_cut_anywhere_is_refused_as_unsealed(cut in any::<usize>()) {
        let dir = tempfile::tempdir().unwrap();
        let bytes = segment_bytes(dir.path());
        let cut = cut % bytes.len();
        let e = open_and_read(dir.path(), &bytes[..cut]).unwrap_err();
        prop_assert!(e.contains("fuzzed.seg"), "{e}");
        assert_no_huge_allocation();
    }
}

#[test]
fn damaged_lengths_are_refused_before_memory_is_reserved() {
    let (stored, raw_len) = stored_block(Compression::Zstd(3));
    let e = block::decode(&stored, u32::MAX as usize).unwrap_err();
    assert!(e.to_string().contains("over the limit"), "{e}");
    let e = block::decode(&stored, raw_len + 1).unwrap_err();
    assert!(e.to_string().contains("footer says"), "{e}");
    // A single-frame LZ4 block (format 2) whose frame claims 4 GiB.
    let stored = [2, 0xff, 0xff, 0xff, 0xff, 0, 0, 0];
    let e = block::decode(&stored, 10).unwrap_err();
    assert!(e.to_string().contains("size"), "{e}");
    assert_no_huge_allocation();
}
