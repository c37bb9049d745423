//! The catalogue: every sealed segment of a repository (tags, time range, size, bus offsets),
//! held in memory and persisted in `catalogue.bin`.
//!
//! It is a cache of the segments' own footers: if the file is missing or damaged it is rebuilt
//! from them, and at start it is reconciled with the directory (a segment sealed just before a
//! crash, a merge's leftovers). It also keeps, per bus partition and data source, the last
//! offset ever sealed, so that after a crash the digest skips what is already in a segment even
//! if retention has since deleted that segment.
//!
//! On a bus other nodes digest too, it also lists the segments sealed but not yet recorded on the
//! bus as sealed (see [`crate::sealed_marks`]): until then the next owner of their partition
//! cannot know of them, so they are either confirmed or dropped before anything relies on them.
//!
//! File: magic `EDDYCAT2`, varint next id, varint n, n × (segment description as in the footer,
//! varint file bytes), varint m, m × (varint partition, str data source, varint offset), varint
//! k, k × (varint segment id, varint 0 or 1 + the watermark before it), then CRC-32C of
//! everything before it (u32, little-endian). `EDDYCAT1` is the same without the last list.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use eddy_base::fs::replace_file;
use eddy_event::wire::{put_str, put_varint, DecodeError, Reader};

use crate::segment::{decode_info, encode_info, SegmentError, SegmentInfo};

const MAGIC: &[u8; 8] = b"EDDYCAT2";
/// The format before unpublished segments were listed; read, never written.
const MAGIC_V1: &[u8; 8] = b"EDDYCAT1";
/// The catalogue's file name in a repository's directory.
pub const FILE: &str = "catalogue.bin";

/// A sealed segment as the catalogue knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// What its footer says.
    pub info: SegmentInfo,
    /// Its size on disk.
    pub file_bytes: u64,
}

/// The segments of one repository.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Catalogue {
    /// By id.
    pub segments: BTreeMap<u64, Entry>,
    /// The next segment id to hand out.
    pub next_id: u64,
    /// Last bus offset sealed, per (partition, data source).
    pub sealed_upto: HashMap<(u32, String), u64>,
    /// Segments sealed but not yet recorded on a shared bus, by id, with their data source's
    /// watermark before them (restored if the segment is dropped).
    pub unpublished: BTreeMap<u64, Option<u64>>,
}

impl Catalogue {
    /// Adds a sealed segment.
    pub fn insert(&mut self, info: SegmentInfo, file_bytes: u64) {
        self.next_id = self.next_id.max(info.id + 1);
        let key = (info.partition, info.source.clone());
        let upto = self.sealed_upto.entry(key).or_insert(info.last_offset);
        *upto = (*upto).max(info.last_offset);
        self.segments.insert(info.id, Entry { info, file_bytes });
    }

    /// A fresh segment id.
    pub fn allocate_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// The last offset of `partition` sealed for `source`, if any.
    pub fn sealed_upto(&self, partition: u32, source: &str) -> Option<u64> {
        self.sealed_upto
            .get(&(partition, source.to_string()))
            .copied()
    }

    /// The encoded file contents.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.segments.len() * 96);
        out.extend_from_slice(MAGIC);
        put_varint(&mut out, self.next_id);
        put_varint(&mut out, self.segments.len() as u64);
        for e in self.segments.values() {
            encode_info(&e.info, &mut out);
            put_varint(&mut out, e.file_bytes);
        }
        let mut marks: Vec<_> = self.sealed_upto.iter().collect();
        marks.sort();
        put_varint(&mut out, marks.len() as u64);
        for ((partition, source), offset) in marks {
            put_varint(&mut out, u64::from(*partition));
            put_str(&mut out, source);
            put_varint(&mut out, *offset);
        }
        put_varint(&mut out, self.unpublished.len() as u64);
        for (id, before) in &self.unpublished {
            put_varint(&mut out, *id);
            match before {
                Some(upto) => {
                    put_varint(&mut out, 1);
                    put_varint(&mut out, *upto);
                }
                None => put_varint(&mut out, 0),
            }
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads what [`Catalogue::encode`] wrote.
    pub fn decode(bytes: &[u8]) -> Result<Catalogue, DecodeError> {
        let magic = bytes.get(..MAGIC.len());
        if bytes.len() < MAGIC.len() + 4 || (magic != Some(MAGIC) && magic != Some(MAGIC_V1)) {
            return Err(DecodeError {
                position: 0,
                reason: "not a catalogue (bad magic)",
            });
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32c::crc32c(body).to_le_bytes() != crc {
            return Err(DecodeError {
                position: body.len(),
                reason: "checksum mismatch",
            });
        }
        let mut r = Reader::new(body);
        r.pos = MAGIC.len();
        let mut c = Catalogue {
            next_id: r.varint("bad next id")?,
            ..Catalogue::default()
        };
        for _ in 0..r.len("bad segment count")? {
            let info = decode_info(&mut r)?;
            let file_bytes = r.varint("bad file size")?;
            c.segments.insert(info.id, Entry { info, file_bytes });
        }
        for _ in 0..r.len("bad watermark count")? {
            let partition = r.varint_u32("bad partition")?;
            let source = r.string("bad data source")?;
            let offset = r.varint("bad offset")?;
            c.sealed_upto.insert((partition, source), offset);
        }
        if magic == Some(MAGIC) {
            for _ in 0..r.len("bad unpublished count")? {
                let id = r.varint("bad unpublished segment id")?;
                let before = match r.varint("bad unpublished watermark flag")? {
                    0 => None,
                    1 => Some(r.varint("bad unpublished watermark")?),
                    _ => return r.fail("bad unpublished watermark flag"),
                };
                c.unpublished.insert(id, before);
            }
        }
        if !r.at_end() {
            return r.fail("trailing bytes");
        }
        Ok(c)
    }

    /// Writes the catalogue into `dir` atomically and durably.
    pub fn persist(&self, dir: &Path) -> Result<(), SegmentError> {
        let path = dir.join(FILE);
        replace_file(&path, &self.encode()).map_err(|e| SegmentError::Io {
            path,
            source: e.source,
        })
    }

    /// Reads `dir`'s catalogue; `None` if there is none or it is damaged (with a warning).
    pub fn load(dir: &Path) -> Option<Catalogue> {
        let path = dir.join(FILE);
        let bytes = std::fs::read(&path).ok()?;
        match Catalogue::decode(&bytes) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), "catalogue unreadable ({e}); rebuilding it from the segments");
                None
            }
        }
    }

    /// Bytes the catalogue takes on disk.
    pub fn encoded_len(&self) -> usize {
        self.encode().len()
    }
}

/// The path of segment `id` in `dir`.
pub fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

/// The sealed segment files in `dir`, in id order.
pub fn segment_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|x| x == "seg") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The path of the work in progress that will become segment `id`.
pub fn wip_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.wip"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: u64, last: u64) -> SegmentInfo {
        SegmentInfo {
            id,
            source: "#host=a".into(),
            tags: BTreeMap::from([("host".into(), "a".into())]),
            partition: 2,
            first_offset: 1,
            last_offset: last,
            min_time: -5,
            max_time: 9,
            count: 3,
            raw_bytes: 100,
            sealed_at: 1,
            replaces: vec![],
        }
    }

    #[test]
    fn roundtrips_and_detects_damage() {
        let mut c = Catalogue::default();
        c.insert(info(4, 30), 77);
        c.insert(info(2, 10), 55);
        c.unpublished.insert(4, Some(10));
        c.unpublished.insert(7, None);
        assert_eq!(c.next_id, 5);
        assert_eq!(c.sealed_upto(2, "#host=a"), Some(30));
        let bytes = c.encode();
        assert_eq!(Catalogue::decode(&bytes).unwrap(), c);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(Catalogue::decode(&bad).is_err(), "flip at {i}");
        }
        let dir = tempfile::tempdir().unwrap();
        c.persist(dir.path()).unwrap();
        assert_eq!(Catalogue::load(dir.path()), Some(c));
    }

    #[test]
    fn a_catalogue_written_before_unpublished_segments_were_listed_still_loads() {
        let mut c = Catalogue::default();
        c.insert(info(4, 30), 77);
        let current = c.encode();
        // The same catalogue as the first format wrote it: its magic, no unpublished list.
        let mut v1 = MAGIC_V1.to_vec();
        v1.extend_from_slice(&current[MAGIC.len()..current.len() - 5]);
        v1.extend_from_slice(&crc32c::crc32c(&v1).to_le_bytes());
        assert_eq!(Catalogue::decode(&v1).unwrap(), c);
    }

    #[test]
    fn a_segment_costs_bytes_not_kilobytes() {
        let mut c = Catalogue::default();
        for id in 0..1000 {
            c.insert(info(id, id * 1_000_000), 100 << 20);
        }
        let per_segment = c.encoded_len() / 1000;
        assert!(per_segment < 128, "{per_segment} bytes per segment");
    }
}
