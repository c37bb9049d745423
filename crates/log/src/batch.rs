//! Record batches: the unit the log writes, fsyncs, checks and reads.
//!
//! A batch is written to a segment file exactly as it is encoded here, and read back the same way
//! (like Kafka, the bytes on disk are the bytes handed around). All integers are little-endian.
//!
//! ```text
//!  byte  size  field
//!     0     8  base_offset      offset of the first record; set at append, so NOT covered by the
//!                               CRC; recovery and readers check it against the expected sequence
//!     8     4  batch_len        bytes in the whole batch, this header included
//!    12     4  crc32c           CRC32C (Castagnoli) of bytes [16, batch_len)
//!    16     1  magic            format version: 1
//!    17     1  attributes       bits 0-1 compression (0 none, 1 lz4, 2 zstd: the common codec
//!                               table of `eddy_base::codec`); bit 2 LAID_OUT (below), with
//!                               bits 0-1 zero; bits 3-7 zero
//!    18     2  reserved         zero
//!    20     4  record_count     > 0
//!    24     8  first_timestamp  ns since the Unix epoch, of record 0
//!    32     8  max_timestamp    ns, the largest record timestamp in the batch
//!    40     4  payload_len      size of the records section before compression (laid out:
//!                               its stored size, `batch_len - 48`)
//!    44     4  reserved         zero
//!    48     …  records          `record_count` records, compressed as a whole per `attributes`
//! ```
//!
//! Each record inside the (decompressed) records section, with unsigned LEB128 varints and the
//! timestamp delta zig-zag encoded:
//!
//! ```text
//!  varint  timestamp - first_timestamp
//!  varint  key length + 1   (0 = no key)      bytes  key
//!  varint  value length                        bytes  value
//!  varint  header count, then per header: varint name length, name (UTF-8), varint value length, value
//! ```
//!
//! A record's offset is `base_offset + its index`, so offsets are dense within a batch.
//!
//! **Laid-out batches** (attribute bit 2, [`LAID_OUT`]): the records section is a payload laid
//! out by a layer above the log (the segment store's columnar block of a repository topic's
//! events), stored as is, never compressed by the log (it compresses itself). Its first byte
//! names the layout (see [`crate::layout`](mod@crate::layout)); the header still counts its `record_count`
//! records, which get dense offsets like any others, and its timestamps feed the time index.
//! Recovery, the CRC and damage search need nothing but the header; turning the payload into
//! records needs the layout registered in this process. Binaries from before laid-out batches
//! rejected attribute bit 2 as corrupt: a log that holds laid-out batches cannot be read by them
//! (no downgrade past this change while such batches are retained).
//!
//! Decoding never trusts the bytes: every length is bounds-checked, the CRC is verified before
//! anything inside is interpreted, and a decompressed payload must have exactly `payload_len`
//! bytes. Errors are [`CorruptReason`]s; the segment adds the file and position.

use bytes::{Buf, Bytes};
use eddy_base::codec::Codec;
use eddy_base::varint::{put_varint, read_varint, varint_len};
use eddy_base::zigzag::{unzigzag, zigzag};

use crate::error::CorruptReason;
use crate::record::{Header, Record, StoredRecord};

/// Size of the fixed batch header.
pub const HEADER_LEN: usize = 48;
/// The current batch format version.
pub const MAGIC: u8 = 1;
/// Sanity bound on a decompressed payload, so a corrupt length cannot ask for a huge allocation.
pub const MAX_PAYLOAD_LEN: usize = 256 << 20;

const COMPRESSION_MASK: u8 = 0b11;
/// Attribute bit 2: the records section is a payload laid out above the log (see the module
/// doc); the compression bits are zero with it.
pub const LAID_OUT: u8 = 0b100;

/// How a batch's records section is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Stored as is: the cheapest on CPU, the default for the bus.
    #[default]
    None,
    /// LZ4 block compression: fast, about 2× on logs.
    Lz4,
    /// Zstandard at [`ZSTD_LEVEL`]: slower, about 2× smaller than LZ4 on logs.
    Zstd,
}

impl Compression {
    /// The attribute bits: the codec's number in the common table (see [`eddy_base::codec`]).
    fn bits(self) -> u8 {
        Codec::from(self).code()
    }
}

impl From<Compression> for Codec {
    fn from(c: Compression) -> Codec {
        match c {
            Compression::None => Codec::None,
            Compression::Lz4 => Codec::Lz4,
            Compression::Zstd => Codec::Zstd,
        }
    }
}

impl TryFrom<u8> for Compression {
    type Error = CorruptReason;

    fn try_from(attributes: u8) -> Result<Self, CorruptReason> {
        if attributes & !COMPRESSION_MASK != 0 {
            return Err(CorruptReason::BadAttributes(attributes));
        }
        match Codec::from_code(attributes & COMPRESSION_MASK) {
            Some(Codec::None) => Ok(Compression::None),
            Some(Codec::Lz4) => Ok(Compression::Lz4),
            Some(Codec::Zstd) => Ok(Compression::Zstd),
            None => Err(CorruptReason::BadAttributes(attributes)),
        }
    }
}

impl std::str::FromStr for Compression {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Ok(Compression::None),
            "lz4" => Ok(Compression::Lz4),
            "zstd" => Ok(Compression::Zstd),
            other => Err(format!(
                "unknown compression {other:?}; expected none, lz4 or zstd"
            )),
        }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Compression::None => "none",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        })
    }
}

/// The zstd level of the bus's batches. Level 1 (zstd's "fast" strategy) against level 3
/// ("dfast") on the benchmark's data: JSON lines 1.8× faster to compress and 4 % smaller (their
/// random ids defeat the longer search), access lines as fast and 1.5 % larger. The door
/// compresses every byte it takes, so its speed is the ingest rate's; the store recompresses
/// at its own level when it seals.
pub const ZSTD_LEVEL: i32 = 1;

thread_local! {
    /// A compression context per producing thread: making one per batch cleared a few hundred
    /// kilobytes of fresh tables (page faults) every time.
    static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// `payload` compressed with zstd into a new buffer, after [`HEADER_LEN`] zero bytes.
fn zstd_after_header(payload: &[u8]) -> Vec<u8> {
    let out = Vec::with_capacity(HEADER_LEN + zstd::zstd_safe::compress_bound(payload.len()));
    let mut out = std::io::Cursor::new(out);
    out.get_mut().resize(HEADER_LEN, 0);
    out.set_position(HEADER_LEN as u64);
    let written = COMPRESSOR.with_borrow_mut(|c| {
        let c = match c {
            Some(c) => c,
            None => c.insert(zstd::bulk::Compressor::new(ZSTD_LEVEL)?),
        };
        c.compress_to_buffer(payload, &mut out)
    });
    // Compressing into a buffer of the bound's size cannot fail short of allocation failure.
    if let Err(e) = written {
        panic!("zstd compression of a memory buffer failed: {e}");
    }
    out.into_inner()
}

/// The fixed header of a batch, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: u64,
    /// Bytes in the batch, header included.
    pub batch_len: u32,
    /// Stored CRC32C of bytes `[16, batch_len)`.
    pub crc: u32,
    /// Compression of the records section (always `None` when `laid_out`).
    pub compression: Compression,
    /// Whether the records section is a payload laid out above the log ([`LAID_OUT`]).
    pub laid_out: bool,
    /// Number of records (> 0).
    pub record_count: u32,
    /// Timestamp of the first record, ns.
    pub first_timestamp: i64,
    /// Largest record timestamp, ns.
    pub max_timestamp: i64,
    /// Size of the uncompressed records section.
    pub payload_len: u32,
}

impl BatchHeader {
    fn attributes(&self) -> u8 {
        if self.laid_out {
            LAID_OUT
        } else {
            self.compression.bits()
        }
    }
}

impl BatchHeader {
    /// Offset one past the last record.
    pub fn next_offset(&self) -> u64 {
        self.base_offset + u64::from(self.record_count)
    }
}

/// The outcome of looking at the start of a buffer: "not enough bytes yet" is not an error.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A whole batch of `len` bytes is at the start of the buffer, its header checked for shape
    /// (not yet its CRC).
    Complete(BatchHeader),
    /// The buffer holds only the start of a batch; `needed` more bytes complete it.
    Incomplete {
        /// Bytes missing.
        needed: usize,
    },
}

/// Parses and shape-checks the header at the start of `buf` without touching the payload.
pub fn check(buf: &[u8]) -> Result<Frame, CorruptReason> {
    let Some(header) = parse_header(buf)? else {
        return Ok(Frame::Incomplete {
            needed: HEADER_LEN - buf.len(),
        });
    };
    if buf.len() < header.batch_len as usize {
        return Ok(Frame::Incomplete {
            needed: header.batch_len as usize - buf.len(),
        });
    }
    Ok(Frame::Complete(header))
}

/// Parses and shape-checks a batch header; `None` if `buf` is shorter than a header.
pub fn parse_header(buf: &[u8]) -> Result<Option<BatchHeader>, CorruptReason> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let mut h = &buf[..HEADER_LEN];
    let base_offset = h.get_u64_le();
    let batch_len = h.get_u32_le();
    let crc = h.get_u32_le();
    let magic = h.get_u8();
    let attributes = h.get_u8();
    let reserved = h.get_u16_le();
    let record_count = h.get_u32_le();
    let first_timestamp = h.get_i64_le();
    let max_timestamp = h.get_i64_le();
    let payload_len = h.get_u32_le();
    let reserved2 = h.get_u32_le();

    if magic != MAGIC {
        return Err(CorruptReason::BadMagic(magic));
    }
    let laid_out = attributes & LAID_OUT != 0;
    if laid_out && attributes & COMPRESSION_MASK != 0 {
        // The payload compresses itself; the log never compresses it again.
        return Err(CorruptReason::BadAttributes(attributes));
    }
    let compression = Compression::try_from(attributes & !LAID_OUT)?;
    if reserved != 0 || reserved2 != 0 {
        return Err(CorruptReason::BadAttributes(attributes));
    }
    // The smallest record takes 4 bytes (ts delta, key flag, value length, header count); the
    // smallest laid-out payload is its layout id.
    let min_len = HEADER_LEN as u64 + 1;
    if u64::from(batch_len) < min_len || payload_len as usize > MAX_PAYLOAD_LEN {
        return Err(CorruptReason::BadLength(u64::from(batch_len)));
    }
    if laid_out {
        // Stored as is: the header's payload length is the stored length, exactly.
        if u64::from(payload_len) + HEADER_LEN as u64 != u64::from(batch_len) {
            return Err(CorruptReason::BadLength(u64::from(batch_len)));
        }
        if record_count == 0 {
            return Err(CorruptReason::Record {
                index: 0,
                what: "laid-out batch with no records",
            });
        }
    } else if record_count == 0 || u64::from(record_count) * 4 > u64::from(payload_len) {
        return Err(CorruptReason::Record {
            index: 0,
            what: "record count does not fit the payload",
        });
    }
    Ok(Some(BatchHeader {
        base_offset,
        batch_len,
        crc,
        compression,
        laid_out,
        record_count,
        first_timestamp,
        max_timestamp,
        payload_len,
    }))
}

/// Verifies the CRC of a complete batch whose header `check` accepted.
pub fn verify_crc(header: &BatchHeader, batch: &[u8]) -> Result<(), CorruptReason> {
    let computed = crc32c::crc32c(&batch[16..header.batch_len as usize]);
    if computed != header.crc {
        return Err(CorruptReason::Crc {
            stored: header.crc,
            computed,
        });
    }
    Ok(())
}

/// The header of the complete batch at the start of `batch`, its CRC verified.
fn checked(batch: &[u8]) -> Result<BatchHeader, CorruptReason> {
    let header = match check(batch)? {
        Frame::Complete(h) => h,
        Frame::Incomplete { needed } => {
            return Err(CorruptReason::Truncated {
                needed: needed as u64,
            })
        }
    };
    verify_crc(&header, batch)?;
    Ok(header)
}

/// Checks one complete laid-out batch held in `batch` (header shape and CRC, as
/// [`decode`] does) and returns its header and payload, without calling its layout: what a
/// reader that takes the payload whole needs. A batch that is not laid out is
/// [`CorruptReason::BadAttributes`].
pub fn laid_out_payload(batch: &Bytes) -> Result<(BatchHeader, Bytes), CorruptReason> {
    let header = checked(batch)?;
    if !header.laid_out {
        return Err(CorruptReason::BadAttributes(header.attributes()));
    }
    Ok((header, batch.slice(HEADER_LEN..header.batch_len as usize)))
}

/// Checks and decodes one complete batch held in `batch` (exactly `batch_len` bytes), calling
/// `f` for each record at or after `from_offset`. A laid-out batch's records come from the
/// layout its payload's first byte names; with none registered in this process that is
/// [`CorruptReason::UnknownLayout`] (after the CRC passed: the bytes are whole).
pub fn decode(
    batch: &Bytes,
    from_offset: u64,
    mut f: impl FnMut(StoredRecord),
) -> Result<BatchHeader, CorruptReason> {
    let header = checked(batch)?;
    let stored = batch.slice(HEADER_LEN..header.batch_len as usize);
    if header.laid_out {
        decode_laid_out(&header, &stored, from_offset, f)?;
        return Ok(header);
    }
    let payload = match header.compression {
        Compression::None => stored,
        Compression::Lz4 => Bytes::from(
            lz4_flex::block::decompress(&stored, header.payload_len as usize)
                .map_err(|e| CorruptReason::Decompress(e.to_string()))?,
        ),
        Compression::Zstd => Bytes::from({
            let mut out = Vec::new();
            eddy_base::codec::zstd_into(&stored, header.payload_len as usize, &mut out)
                .map_err(|e| CorruptReason::Decompress(e.to_string()))?;
            out
        }),
    };
    if payload.len() != header.payload_len as usize {
        return Err(CorruptReason::Decompress(format!(
            "payload is {} bytes, header says {}",
            payload.len(),
            header.payload_len
        )));
    }
    let mut cursor = RecordCursor {
        buf: &payload,
        pos: 0,
    };
    for index in 0..header.record_count {
        let record = cursor.record(&payload, header.first_timestamp, index)?;
        let offset = header.base_offset + u64::from(index);
        if offset >= from_offset {
            f(StoredRecord {
                offset,
                timestamp: record.0,
                key: record.1,
                value: record.2,
                headers: record.3,
            });
        }
    }
    if cursor.pos != payload.len() {
        return Err(CorruptReason::Record {
            index: header.record_count,
            what: "trailing bytes after the last record",
        });
    }
    Ok(header)
}

/// The records of a laid-out batch, through the layout its first byte names.
fn decode_laid_out(
    header: &BatchHeader,
    payload: &Bytes,
    from_offset: u64,
    mut f: impl FnMut(StoredRecord),
) -> Result<(), CorruptReason> {
    let id = *payload.first().ok_or(CorruptReason::BadLength(0))?;
    let layout = crate::layout::layout(id).ok_or(CorruptReason::UnknownLayout(id))?;
    let records = layout
        .records(payload, header.record_count)
        .map_err(|message| CorruptReason::Layout { id, message })?;
    if records.len() != header.record_count as usize {
        return Err(CorruptReason::Layout {
            id,
            message: format!(
                "the layout gave {} records, the batch header counts {}",
                records.len(),
                header.record_count
            ),
        });
    }
    for (index, r) in records.into_iter().enumerate() {
        let offset = header.base_offset + index as u64;
        if offset >= from_offset {
            f(StoredRecord {
                offset,
                timestamp: r.timestamp,
                key: r.key,
                value: r.value,
                headers: Vec::new(),
            });
        }
    }
    Ok(())
}

type DecodedRecord = (i64, Option<Bytes>, Bytes, Vec<Header>);

struct RecordCursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl RecordCursor<'_> {
    fn varint(&mut self, index: u32, what: &'static str) -> Result<u64, CorruptReason> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let (value, len) = read_varint(rest).ok_or(CorruptReason::Record { index, what })?;
        self.pos += len;
        Ok(value)
    }

    fn bytes(
        &mut self,
        whole: &Bytes,
        len: u64,
        index: u32,
        what: &'static str,
    ) -> Result<Bytes, CorruptReason> {
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| self.pos.checked_add(l))
            .filter(|&end| end <= self.buf.len())
            .ok_or(CorruptReason::Record { index, what })?;
        let out = whole.slice(self.pos..end);
        self.pos = end;
        Ok(out)
    }

    fn record(
        &mut self,
        whole: &Bytes,
        first_timestamp: i64,
        index: u32,
    ) -> Result<DecodedRecord, CorruptReason> {
        let delta = unzigzag(self.varint(index, "bad timestamp varint")?);
        let timestamp = first_timestamp.wrapping_add(delta);
        let key_flag = self.varint(index, "bad key length")?;
        let key = match key_flag {
            0 => None,
            n => Some(self.bytes(whole, n - 1, index, "key runs past the payload")?),
        };
        let value_len = self.varint(index, "bad value length")?;
        let value = self.bytes(whole, value_len, index, "value runs past the payload")?;
        let header_count = self.varint(index, "bad header count")?;
        let mut headers = Vec::new();
        for _ in 0..header_count {
            let name_len = self.varint(index, "bad header name length")?;
            let name = self.bytes(whole, name_len, index, "header name runs past the payload")?;
            let name = String::from_utf8(name.to_vec()).map_err(|_| CorruptReason::Record {
                index,
                what: "header name is not UTF-8",
            })?;
            let value_len = self.varint(index, "bad header value length")?;
            let value = self.bytes(
                whole,
                value_len,
                index,
                "header value runs past the payload",
            )?;
            headers.push(Header { name, value });
        }
        Ok((timestamp, key, value, headers))
    }
}

/// Encoded size of one record inside the records section (excluding the timestamp delta),
/// the figure `max_record_bytes` limits.
pub fn record_size(record: &Record) -> usize {
    let key = record.key.as_ref().map_or(0, |k| k.len());
    let mut size = varint_len(key as u64 + u64::from(record.key.is_some()))
        + key
        + varint_len(record.value.len() as u64)
        + record.value.len()
        + varint_len(record.headers.len() as u64);
    for h in &record.headers {
        size += varint_len(h.name.len() as u64)
            + h.name.len()
            + varint_len(h.value.len() as u64)
            + h.value.len();
    }
    size
}

/// Checks every record against `limit` (the topic's `max_record_bytes`); the error names the
/// record's index in `records`.
pub fn check_record_sizes(records: &[Record], limit: usize) -> Result<(), crate::Error> {
    for (index, r) in records.iter().enumerate() {
        let size = record_size(r);
        if size > limit {
            return Err(crate::Error::RecordTooLarge { index, size, limit });
        }
    }
    Ok(())
}

/// A batch encoded and ready to append; its base offset is filled in by the partition.
#[derive(Debug, Clone)]
pub struct EncodedBatch {
    pub(crate) bytes: Vec<u8>,
    pub(crate) header: BatchHeader,
}

impl EncodedBatch {
    /// Encodes `records`, stamping those without a timestamp with `now` (ns).
    ///
    /// The caller has checked the size limits; this only builds bytes.
    pub fn encode(records: &[Record], compression: Compression, now: i64) -> EncodedBatch {
        let first_timestamp = records.first().and_then(|r| r.timestamp).unwrap_or(now);
        let mut max_timestamp = i64::MIN;
        // A capacity hint only: headers are rare, and the vector grows if they are there.
        let payload_estimate: usize = records
            .iter()
            .map(|r| r.value.len() + r.key.as_ref().map_or(0, |k| k.len()) + 8)
            .sum();
        let mut payload = Vec::with_capacity(HEADER_LEN + payload_estimate);
        payload.resize(HEADER_LEN, 0);
        for r in records {
            let ts = r.timestamp.unwrap_or(now);
            max_timestamp = max_timestamp.max(ts);
            put_varint(&mut payload, zigzag(ts.wrapping_sub(first_timestamp)));
            match &r.key {
                None => put_varint(&mut payload, 0),
                Some(k) => {
                    put_varint(&mut payload, k.len() as u64 + 1);
                    payload.extend_from_slice(k);
                }
            }
            put_varint(&mut payload, r.value.len() as u64);
            payload.extend_from_slice(&r.value);
            put_varint(&mut payload, r.headers.len() as u64);
            for h in &r.headers {
                put_varint(&mut payload, h.name.len() as u64);
                payload.extend_from_slice(h.name.as_bytes());
                put_varint(&mut payload, h.value.len() as u64);
                payload.extend_from_slice(&h.value);
            }
        }
        let payload_len = payload.len() - HEADER_LEN;
        let bytes = match compression {
            Compression::None => payload,
            Compression::Lz4 => {
                let mut out = vec![0u8; HEADER_LEN];
                out.extend_from_slice(&lz4_flex::block::compress(&payload[HEADER_LEN..]));
                out
            }
            Compression::Zstd => zstd_after_header(&payload[HEADER_LEN..]),
        };
        let header = BatchHeader {
            base_offset: 0,
            batch_len: 0,
            crc: 0,
            compression,
            laid_out: false,
            record_count: records.len() as u32,
            first_timestamp,
            max_timestamp,
            payload_len: payload_len as u32,
        };
        EncodedBatch::sealed(bytes, header)
    }

    /// `bytes` (a batch with room for its header at the start) with the header of `header`
    /// written and its CRC computed; the length and CRC of `header` are set from them.
    fn sealed(mut bytes: Vec<u8>, mut header: BatchHeader) -> EncodedBatch {
        header.batch_len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        let attributes = match header.laid_out {
            true => LAID_OUT,
            false => header.compression.bits(),
        };
        let mut h = &mut bytes[8..HEADER_LEN];
        put(&mut h, &header.batch_len.to_le_bytes());
        put(&mut h, &0u32.to_le_bytes()); // CRC, filled below
        put(&mut h, &[MAGIC, attributes, 0, 0]);
        put(&mut h, &header.record_count.to_le_bytes());
        put(&mut h, &header.first_timestamp.to_le_bytes());
        put(&mut h, &header.max_timestamp.to_le_bytes());
        put(&mut h, &header.payload_len.to_le_bytes());
        header.crc = crc32c::crc32c(&bytes[16..]);
        bytes[12..16].copy_from_slice(&header.crc.to_le_bytes());
        EncodedBatch { bytes, header }
    }

    /// A batch whose records section is `payload`, laid out above the log (see [`LAID_OUT`]):
    /// `payload` starts with its layout's id (see [`crate::layout`](mod@crate::layout)) and holds `record_count`
    /// records, whose timestamps are between `first_timestamp` (record 0's) and
    /// `max_timestamp` (the largest). It is written as is, after the header.
    ///
    /// An empty payload or a zero count makes a batch every partition refuses
    /// ([`crate::Error::EmptyBatch`]) rather than one that would read back as corrupt; the
    /// topic's `max_batch_bytes` (at most [`MAX_PAYLOAD_LEN`]) bounds the payload.
    pub fn laid_out(
        payload: Vec<u8>,
        record_count: u32,
        first_timestamp: i64,
        max_timestamp: i64,
    ) -> EncodedBatch {
        let payload_len = payload.len();
        // One allocation for header and payload; the copy is a memcpy the disk write dwarfs.
        let mut bytes = Vec::with_capacity(HEADER_LEN + payload_len);
        bytes.resize(HEADER_LEN, 0);
        bytes.extend_from_slice(&payload);
        drop(payload);
        let header = BatchHeader {
            base_offset: 0,
            batch_len: 0,
            crc: 0,
            compression: Compression::None,
            laid_out: true,
            record_count,
            first_timestamp,
            max_timestamp,
            payload_len: u32::try_from(payload_len).unwrap_or(u32::MAX),
        };
        EncodedBatch::sealed(bytes, header)
    }

    /// Whether the batch is laid out above the log (built by [`EncodedBatch::laid_out`]).
    pub fn is_laid_out(&self) -> bool {
        self.header.laid_out
    }

    /// Bytes the batch takes on disk.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// True if the batch holds no bytes (never, for a batch built by `encode`).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Number of records.
    pub fn record_count(&self) -> u32 {
        self.header.record_count
    }

    /// The batch's header as written.
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// Sets the base offset (outside the CRC, so no re-checksum).
    pub(crate) fn set_base_offset(&mut self, base: u64) {
        self.header.base_offset = base;
        self.bytes[..8].copy_from_slice(&base.to_le_bytes());
    }

    /// The encoded bytes, as written to disk.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

fn put(dst: &mut &mut [u8], src: &[u8]) {
    let (head, tail) = std::mem::take(dst).split_at_mut(src.len());
    head.copy_from_slice(src);
    *dst = tail;
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(n: usize) -> Vec<Record> {
        (0..n)
            .map(|i| {
                let mut r = Record::new(format!("value-{i}-{}", "x".repeat(i % 7)));
                if i % 2 == 0 {
                    r = r.with_key(format!("k{i}"));
                }
                if i % 3 == 0 {
                    r = r.with_header("trace", format!("t{i}"));
                }
                r.with_timestamp(1_000_000 + (i as i64 % 5) * 1000 - 2000)
            })
            .collect()
    }

    fn roundtrip(compression: Compression) {
        let records = sample(50);
        let mut batch = EncodedBatch::encode(&records, compression, 0);
        batch.set_base_offset(77);
        let bytes = Bytes::from(batch.bytes.clone());
        let mut out = Vec::new();
        let h = decode(&bytes, 0, |r| out.push(r)).unwrap();
        assert_eq!(h.base_offset, 77);
        assert_eq!(h.record_count, 50);
        assert_eq!(h.compression, compression);
        assert_eq!(out.len(), 50);
        for (i, (got, want)) in out.iter().zip(&records).enumerate() {
            assert_eq!(got.offset, 77 + i as u64);
            assert_eq!(got.timestamp, want.timestamp.unwrap());
            assert_eq!(got.key, want.key);
            assert_eq!(got.value, want.value);
            assert_eq!(got.headers, want.headers);
        }
        assert_eq!(
            h.max_timestamp,
            records.iter().filter_map(|r| r.timestamp).max().unwrap()
        );
    }

    #[test]
    fn roundtrips_uncompressed() {
        roundtrip(Compression::None);
    }

    #[test]
    fn roundtrips_lz4() {
        roundtrip(Compression::Lz4);
    }

    #[test]
    fn roundtrips_zstd() {
        roundtrip(Compression::Zstd);
    }

    #[test]
    fn skips_records_before_from_offset() {
        let mut batch = EncodedBatch::encode(&sample(10), Compression::None, 0);
        batch.set_base_offset(100);
        let mut offsets = Vec::new();
        decode(&Bytes::from(batch.bytes), 104, |r| offsets.push(r.offset)).unwrap();
        assert_eq!(offsets, (104..110).collect::<Vec<_>>());
    }

    #[test]
    fn short_buffer_is_incomplete_not_error() {
        let batch = EncodedBatch::encode(&sample(3), Compression::None, 0);
        assert_eq!(
            check(&batch.bytes[..10]).unwrap(),
            Frame::Incomplete { needed: 38 }
        );
        let n = batch.bytes.len();
        assert_eq!(
            check(&batch.bytes[..n - 1]).unwrap(),
            Frame::Incomplete { needed: 1 }
        );
    }

    #[test]
    fn detects_every_single_bit_flip_under_the_crc() {
        let batch = EncodedBatch::encode(&sample(5), Compression::Lz4, 0);
        for byte in 8..batch.bytes.len() {
            for bit in 0..8 {
                let mut bad = batch.bytes.clone();
                bad[byte] ^= 1 << bit;
                let result = decode(&Bytes::from(bad), 0, |_| {});
                assert!(
                    result.is_err(),
                    "flip at byte {byte} bit {bit} went unnoticed"
                );
            }
        }
    }

    /// A layout for these unit tests: the id byte, then one byte per record (its value).
    struct Bytewise;
    const BYTEWISE: u8 = 0x42;

    impl crate::layout::RecordLayout for Bytewise {
        fn records(
            &self,
            payload: &Bytes,
            _count: u32,
        ) -> Result<Vec<crate::layout::LaidOutRecord>, String> {
            Ok((1..payload.len())
                .map(|i| crate::layout::LaidOutRecord {
                    timestamp: i as i64,
                    key: None,
                    value: payload.slice(i..i + 1),
                })
                .collect())
        }
    }

    fn bytewise(n: u8) -> EncodedBatch {
        crate::layout::register_layout(BYTEWISE, std::sync::Arc::new(Bytewise));
        let mut payload = vec![BYTEWISE];
        payload.extend(0..n);
        EncodedBatch::laid_out(payload, u32::from(n), 1, i64::from(n))
    }

    #[test]
    fn laid_out_batches_decode_through_their_layout() {
        let mut batch = bytewise(6);
        batch.set_base_offset(10);
        let h = parse_header(&batch.bytes).unwrap().unwrap();
        assert!(h.laid_out);
        assert_eq!(h.compression, Compression::None);
        assert_eq!(h.payload_len as usize, batch.len() - HEADER_LEN);
        assert_eq!(&h, batch.header());
        let mut got = Vec::new();
        decode(&Bytes::from(batch.bytes.clone()), 12, |r| {
            got.push((r.offset, r.value[0]))
        })
        .unwrap();
        assert_eq!(got, [(12, 2), (13, 3), (14, 4), (15, 5)]);
        let (h, payload) = laid_out_payload(&Bytes::from(batch.bytes)).unwrap();
        assert_eq!(
            (h.base_offset, payload[0], payload.len()),
            (10, BYTEWISE, 7)
        );
    }

    #[test]
    fn laid_out_with_a_record_count_the_layout_disagrees_with_is_corrupt() {
        crate::layout::register_layout(BYTEWISE, std::sync::Arc::new(Bytewise));
        let batch = EncodedBatch::laid_out(vec![BYTEWISE, 1, 2], 3, 0, 0);
        let err = decode(&Bytes::from(batch.bytes), 0, |_| {}).unwrap_err();
        assert!(
            matches!(err, CorruptReason::Layout { id: BYTEWISE, .. }),
            "{err}"
        );
    }

    #[test]
    fn laid_out_with_compression_bits_is_rejected() {
        for compression in [Compression::Lz4, Compression::Zstd] {
            let mut bytes = bytewise(3).bytes;
            bytes[17] |= compression.bits();
            assert_eq!(
                parse_header(&bytes),
                Err(CorruptReason::BadAttributes(LAID_OUT | compression.bits()))
            );
        }
        let mut bytes = bytewise(3).bytes;
        bytes[17] |= 0b1000;
        assert!(matches!(
            parse_header(&bytes),
            Err(CorruptReason::BadAttributes(_))
        ));
        // Stored as is: a payload length other than the stored one is wrong.
        let mut bytes = bytewise(3).bytes;
        bytes[40] += 1;
        assert!(matches!(
            parse_header(&bytes),
            Err(CorruptReason::BadLength(_))
        ));
    }

    #[test]
    fn laid_out_with_an_unregistered_layout_is_unknown_not_garbage() {
        let batch = EncodedBatch::laid_out(vec![0x01, 9, 9], 2, 0, 0);
        assert_eq!(
            decode(&Bytes::from(batch.bytes), 0, |_| {}),
            Err(CorruptReason::UnknownLayout(0x01))
        );
    }

    #[test]
    fn detects_every_single_bit_flip_of_a_laid_out_batch() {
        let batch = bytewise(5);
        for byte in 8..batch.bytes.len() {
            for bit in 0..8 {
                let mut bad = batch.bytes.clone();
                bad[byte] ^= 1 << bit;
                let bad = Bytes::from(bad);
                assert!(
                    decode(&bad, 0, |_| {}).is_err() && laid_out_payload(&bad).is_err(),
                    "flip at byte {byte} bit {bit} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn varint_lengths_match_encoding() {
        for v in [0u64, 1, 127, 128, 16383, 16384, u32::MAX as u64, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v), "{v}");
        }
        for v in [0i64, 1, -1, i64::MIN, i64::MAX] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = check(&data);
            let _ = decode(&Bytes::from(data), 0, |_| {});
        }

        #[test]
        fn arbitrary_payload_under_a_valid_header_never_panics(
            payload in proptest::collection::vec(any::<u8>(), 1..400),
            count in 1u32..50,
            attributes in prop_oneof![0u8..3, Just(LAID_OUT)],
            payload_len in 0u32..2000,
        ) {
            // A header whose CRC is right for garbage records: the record parser itself must hold.
            let mut bytes = vec![0u8; HEADER_LEN];
            bytes.extend_from_slice(&payload);
            let len = bytes.len() as u32;
            bytes[8..12].copy_from_slice(&len.to_le_bytes());
            bytes[16] = MAGIC;
            bytes[17] = attributes;
            bytes[20..24].copy_from_slice(&count.to_le_bytes());
            let plen = if attributes == 0 || attributes == LAID_OUT { payload.len() as u32 } else { payload_len };
            bytes[40..44].copy_from_slice(&plen.to_le_bytes());
            let crc = crc32c::crc32c(&bytes[16..]);
            bytes[12..16].copy_from_slice(&crc.to_le_bytes());
            let _ = decode(&Bytes::from(bytes), 0, |_| {});
        }

        #[test]
        fn bit_flipped_batches_error_never_panic(
            n in 1usize..40,
            compression in prop_oneof![Just(Compression::None), Just(Compression::Lz4), Just(Compression::Zstd)],
            flips in proptest::collection::vec((any::<usize>(), 0u8..8), 1..4),
        ) {
            let batch = EncodedBatch::encode(&sample(n), compression, 0);
            let mut bad = batch.bytes.clone();
            for (pos, bit) in &flips {
                let i = 8 + pos % (bad.len() - 8);
                bad[i] ^= 1 << bit;
            }
            let changed = bad != batch.bytes;
            let result = decode(&Bytes::from(bad), 0, |_| {});
            if changed {
                prop_assert!(result.is_err());
            }
        }

        #[test]
        fn truncated_batches_are_incomplete(n in 1usize..20, cut in any::<usize>(), laid_out in any::<bool>()) {
            let batch = if laid_out {
                bytewise(n as u8)
            } else {
                EncodedBatch::encode(&sample(n), Compression::None, 0)
            };
            let cut = cut % batch.bytes.len();
            let incomplete = matches!(check(&batch.bytes[..cut]), Ok(Frame::Incomplete { .. }));
            prop_assert!(incomplete);
        }
    }
}
