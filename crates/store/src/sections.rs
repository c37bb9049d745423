//! A block stored as sections, each compressed on its own, so that a query decompresses only
//! what it reads: the events' times, ids and tags (the core), their texts, their templates,
//! and one section per field column.
//!
//! ```text
//!  u8      3 (the block codec byte that names this layout)
//!  varint  s, the sections, then per section:
//!            u8 role (0 core, 1 text, 2 templates, 3 column, 4 times, 5 arrivals)
//!            · str field name (columns)
//!            · u8 codec (the common table: 0 none, 1 lz4, 2 zstd) · varint payload length
//!            · varint stored length · u32 CRC-32C of the stored bytes
//!            · u8 summary (0 none, 1 integers: zz min, zz max, 2 numbers: f64 min, f64 max,
//!              3 since format 5, a text column's bytes: 32 bytes, a bit per byte value)
//!  the sections' stored bytes, one after another
//! ```
//!
//! A section's own checksum names the column a damaged block lost; a column's range lets a
//! filter skip the block without decompressing anything, and a text column's bytes let a regex
//! leave a column compressed whose values cannot move it. Since segment format 4 the times and
//! the arrivals (ingest times and ids) are sections of their own, out of the core: a count or a
//! `groupBy` over a block inside the query's range reads neither.

use eddy_base::codec::Codec;
use eddy_event::wire::{put_str, put_varint, unzigzag, zigzag, DecodeError, Reader};

use crate::block::BlockError;
use crate::columns::{ByteSet, Range};

/// The block codec byte of a sectioned block.
pub const SECTIONED: u8 = 3;

/// What a section holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Count, tag sets, flags, tag indexes (and, in format 3, times, ingest times and ids).
    Core,
    /// The texts stored as text.
    Text,
    /// The templates of the texts rebuilt from columns.
    Templates,
    /// One field's values.
    Column,
    /// The events' times.
    Times,
    /// The events' ingest times and ids.
    Arrivals,
}

impl Role {
    fn code(self) -> u8 {
        match self {
            Role::Core => 0,
            Role::Text => 1,
            Role::Templates => 2,
            Role::Column => 3,
            Role::Times => 4,
            Role::Arrivals => 5,
        }
    }

    fn of(code: u8) -> Option<Role> {
        Some(match code {
            0 => Role::Core,
            1 => Role::Text,
            2 => Role::Templates,
            3 => Role::Column,
            4 => Role::Times,
            5 => Role::Arrivals,
            _ => return None,
        })
    }
}

/// One section, as the directory describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    /// What it holds.
    pub role: Role,
    /// The field, for a column.
    pub name: String,
    codec: Codec,
    /// Bytes of its payload.
    pub raw_len: usize,
    /// Where its stored bytes are in the block.
    at: usize,
    stored_len: usize,
    crc: u32,
    /// Where its checksum is in the block.
    crc_at: usize,
    /// A numeric column's smallest and largest value.
    pub range: Option<Range>,
    /// The bytes a text column's values hold (blocks since format 5).
    pub bytes: Option<ByteSet>,
}

impl Section {
    /// Where its stored bytes are in the block.
    pub fn span(&self) -> std::ops::Range<usize> {
        self.at..self.at + self.stored_len
    }

    /// How a section is named in an error.
    pub fn label(&self) -> String {
        match self.role {
            Role::Core => "the event index".to_string(),
            Role::Times => "the times".to_string(),
            Role::Arrivals => "the ingest times and ids".to_string(),
            Role::Text => "the texts".to_string(),
            Role::Templates => "the templates".to_string(),
            Role::Column => format!("column {:?}", self.name),
        }
    }
}

/// A section to write: its payload, compressed at `level` when that pays.
pub struct Part<'a> {
    /// What it holds.
    pub role: Role,
    /// The field, for a column.
    pub name: &'a str,
    /// The payload.
    pub payload: &'a [u8],
    /// A numeric column's range.
    pub range: Option<Range>,
    /// A text column's bytes.
    pub bytes: Option<ByteSet>,
    /// The codec, and its level for zstd.
    pub level: (Codec, i32),
}

/// Sections under this size are stored as they are: a frame's header would outweigh the gain.
const SMALLEST_COMPRESSED: usize = 64;

/// Writes `parts` as one stored block.
pub fn write(
    parts: &[Part<'_>],
    compressor: &mut Option<zstd::bulk::Compressor<'static>>,
) -> Vec<u8> {
    let mut frames: Vec<(Codec, Vec<u8>)> = Vec::with_capacity(parts.len());
    for p in parts {
        let (codec, level) = p.level;
        let frame = match codec {
            _ if p.payload.len() < SMALLEST_COMPRESSED => None,
            Codec::None => None,
            Codec::Zstd => compress(compressor, level, p.payload),
            Codec::Lz4 => Some(lz4_flex::compress_prepend_size(p.payload)),
        };
        frames.push(match frame {
            Some(f) if f.len() < p.payload.len() => (codec, f),
            _ => (Codec::None, p.payload.to_vec()),
        });
    }
    let mut out = vec![SECTIONED];
    put_varint(&mut out, parts.len() as u64);
    for (p, (codec, frame)) in parts.iter().zip(&frames) {
        out.push(p.role.code());
        put_str(&mut out, p.name);
        out.push(codec.code());
        put_varint(&mut out, p.payload.len() as u64);
        put_varint(&mut out, frame.len() as u64);
        out.extend_from_slice(&crc32c::crc32c(frame).to_le_bytes());
        match (p.range, p.bytes) {
            (None, None) => out.push(0),
            (None, Some(set)) => {
                out.push(3);
                for word in set.0 {
                    out.extend_from_slice(&word.to_le_bytes());
                }
            }
            (Some(Range::Int(lo, hi)), _) => {
                out.push(1);
                put_varint(&mut out, zigzag(lo));
                put_varint(&mut out, zigzag(hi));
            }
            (Some(Range::Float(lo, hi)), _) => {
                out.push(2);
                out.extend_from_slice(&lo.to_le_bytes());
                out.extend_from_slice(&hi.to_le_bytes());
            }
        }
    }
    for (_, frame) in frames {
        out.extend_from_slice(&frame);
    }
    out
}

fn compress(
    compressor: &mut Option<zstd::bulk::Compressor<'static>>,
    level: i32,
    payload: &[u8],
) -> Option<Vec<u8>> {
    let c = match compressor {
        Some(c) => c.set_compression_level(level).ok().map(|()| c)?,
        None => compressor.insert(zstd::bulk::Compressor::new(level).ok()?),
    };
    c.compress(payload).ok()
}

/// Reads the directory of a sectioned block (`stored` starts with its codec byte).
pub fn directory(stored: &[u8]) -> Result<Vec<Section>, BlockError> {
    let (sections, end) = parse_directory(stored)?;
    if end != stored.len() {
        return Err(BlockError::Decompress(format!(
            "the sections hold {end} bytes where the block has {}",
            stored.len()
        )));
    }
    Ok(sections)
}

/// The length of the sectioned block at the start of `bytes` and of its payload, read from
/// its directory (to find blocks in a file whose footer is lost).
pub fn block_len(bytes: &[u8]) -> Option<(usize, usize)> {
    let (sections, end) = parse_directory(bytes).ok()?;
    (end <= bytes.len()).then(|| (end, sections.iter().map(|s| s.raw_len).sum()))
}

/// The directory of the sectioned block at the start of `stored`, and where the block ends.
fn parse_directory(stored: &[u8]) -> Result<(Vec<Section>, usize), BlockError> {
    let mut r = Reader::new(stored);
    let [code] = r.array::<1>("empty block")?;
    if code != SECTIONED {
        return Err(BlockError::UnknownCodec(code));
    }
    let n = r.len("bad section count")?;
    let mut sections = Vec::with_capacity(n);
    for _ in 0..n {
        let [role] = r.array::<1>("truncated section role")?;
        let Some(role) = Role::of(role) else {
            return Err(DecodeError {
                position: r.pos,
                reason: "unknown section role",
            }
            .into());
        };
        let name = r.string("truncated section name")?;
        let [codec] = r.array::<1>("truncated section codec")?;
        let Some(codec) = Codec::from_code(codec) else {
            return Err(BlockError::UnknownCodec(codec));
        };
        let raw_len = usize::try_from(r.varint("bad section length")?).unwrap_or(usize::MAX);
        let stored_len = usize::try_from(r.varint("bad stored length")?).unwrap_or(usize::MAX);
        let crc_at = r.pos;
        let crc = u32::from_le_bytes(r.array::<4>("truncated section checksum")?);
        let (mut range, mut bytes) = (None, None);
        match r.array::<1>("truncated range")?[0] {
            0 => {}
            1 => {
                range = Some(Range::Int(
                    unzigzag(r.varint("bad range")?),
                    unzigzag(r.varint("bad range")?),
                ))
            }
            2 => {
                range = Some(Range::Float(
                    f64::from_le_bytes(r.array::<8>("truncated range")?),
                    f64::from_le_bytes(r.array::<8>("truncated range")?),
                ))
            }
            3 => {
                let mut set = ByteSet::default();
                for word in &mut set.0 {
                    *word = u64::from_le_bytes(r.array::<8>("truncated byte set")?);
                }
                bytes = Some(set);
            }
            _ => {
                return Err(DecodeError {
                    position: r.pos,
                    reason: "unknown range kind",
                }
                .into())
            }
        }
        sections.push(Section {
            role,
            name,
            codec,
            raw_len,
            at: 0,
            stored_len,
            crc,
            crc_at,
            range,
            bytes,
        });
    }
    let mut at = r.pos;
    for s in &mut sections {
        s.at = at;
        at = at.checked_add(s.stored_len).ok_or(DecodeError {
            position: r.pos,
            reason: "section lengths overflow",
        })?;
    }
    Ok((sections, at))
}

/// The first section whose bytes do not match their checksum, if any (to name what a damaged
/// block lost).
pub fn damaged_section(stored: &[u8]) -> Option<String> {
    let sections = directory(stored).ok()?;
    sections
        .iter()
        .find(|s| crc32c::crc32c(&stored[s.span()]) != s.crc)
        .map(Section::label)
}

/// Makes every section's checksum match its bytes again (for tests that reach the decoders
/// behind the checksums with damaged bytes).
#[doc(hidden)]
pub fn reseal(stored: &mut [u8]) {
    let Ok(sections) = directory(stored) else {
        return;
    };
    for s in sections {
        let crc = crc32c::crc32c(&stored[s.span()]);
        stored[s.crc_at..s.crc_at + 4].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Decompresses section `s` of `stored` into `out` (replacing what it held).
pub fn read(stored: &[u8], s: &Section, out: &mut Vec<u8>) -> Result<(), BlockError> {
    let named = |reason: String| BlockError::Section {
        section: s.label(),
        reason,
    };
    let frame = stored
        .get(s.span())
        .ok_or_else(|| named("cut short".into()))?;
    if crc32c::crc32c(frame) != s.crc {
        return Err(named("checksum mismatch".into()));
    }
    // A damaged length must not make us allocate: nothing larger is ever written.
    if s.raw_len > crate::block::MAX_PAYLOAD {
        return Err(named(format!("{} bytes is over the limit", s.raw_len)));
    }
    out.clear();
    match s.codec {
        Codec::None => out.extend_from_slice(frame),
        Codec::Zstd => crate::block::zstd_into(frame, s.raw_len, out).map_err(named)?,
        Codec::Lz4 => {
            let size = frame
                .get(..4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
            if size != Some(s.raw_len) {
                return Err(named(format!(
                    "the frame's size ({size:?}) is not the directory's {}",
                    s.raw_len
                )));
            }
            *out = lz4_flex::decompress_size_prepended(frame).map_err(|e| named(e.to_string()))?
        }
    }
    if out.len() != s.raw_len {
        return Err(named(format!(
            "{} bytes came out where the directory says {}",
            out.len(),
            s.raw_len
        )));
    }
    Ok(())
}
