//! The compression codecs of eddy's on-disk formats, and the number each format stores for them.
//!
//! Two formats number the same codecs differently, for history only: the bus's record batches
//! were defined first with LZ4 as 1 and Zstandard as 2; the segment store's blocks were defined
//! later, zstd-first, as 1 Zstandard and 2 LZ4. Files of both exist, so neither numbering can
//! change. [`Codec::code`] is the one table: the bus's batches use it, and so does every format
//! defined from now on. [`Codec::segment_block_code`] is the documented exception for the
//! segment store's block codec byte.
//!
//! | codec | [`Codec::code`] (bus batches, future formats) | [`Codec::segment_block_code`] |
//! |-------|------------------------------------------------|-------------------------------|
//! | none  | 0                                              | 0                             |
//! | LZ4   | 1                                              | 2                             |
//! | zstd  | 2                                              | 1                             |

/// A compression codec, whatever its settings (a zstd level is not part of the format).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Stored as is.
    None,
    /// LZ4.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl Codec {
    /// The codec's number in the common table (bus batches and every new format).
    pub fn code(self) -> u8 {
        match self {
            Codec::None => 0,
            Codec::Lz4 => 1,
            Codec::Zstd => 2,
        }
    }

    /// The codec a number of the common table names; `None` if none does.
    pub fn from_code(code: u8) -> Option<Codec> {
        match code {
            0 => Some(Codec::None),
            1 => Some(Codec::Lz4),
            2 => Some(Codec::Zstd),
            _ => None,
        }
    }

    /// The codec byte before a block in a segment file (the store's own, older numbering).
    pub fn segment_block_code(self) -> u8 {
        match self {
            Codec::None => 0,
            Codec::Zstd => 1,
            Codec::Lz4 => 2,
        }
    }

    /// The codec a segment block's codec byte names; `None` if none does.
    pub fn from_segment_block_code(code: u8) -> Option<Codec> {
        match code {
            0 => Some(Codec::None),
            1 => Some(Codec::Zstd),
            2 => Some(Codec::Lz4),
            _ => None,
        }
    }
}

thread_local! {
    /// A zstd decompression context per reading thread: making one costs more than a small
    /// frame.
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// Decompresses a zstd frame of `raw_len` bytes into `out` (whose content it replaces, keeping
/// its memory), with the thread's context. What every format here that holds zstd frames reads
/// them with (the bus's batches, the store's blocks and sections).
pub fn zstd_into(frame: &[u8], raw_len: usize, out: &mut Vec<u8>) -> std::io::Result<()> {
    out.clear();
    out.reserve(raw_len);
    DECOMPRESSOR.with_borrow_mut(|d| {
        let d = match d {
            Some(d) => d,
            None => d.insert(zstd::bulk::Decompressor::new()?),
        };
        d.decompress_to_buffer(frame, out)
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Codec; 3] = [Codec::None, Codec::Lz4, Codec::Zstd];

    #[test]
    fn both_tables_round_trip_and_refuse_unknown_numbers() {
        for c in ALL {
            assert_eq!(Codec::from_code(c.code()), Some(c));
            assert_eq!(
                Codec::from_segment_block_code(c.segment_block_code()),
                Some(c)
            );
        }
        assert_eq!(Codec::from_code(3), None);
        assert_eq!(Codec::from_segment_block_code(3), None);
    }

    #[test]
    fn numbers_on_disk_stay_as_written() {
        assert_eq!(ALL.map(Codec::code), [0, 1, 2]);
        assert_eq!(ALL.map(Codec::segment_block_code), [0, 2, 1]);
    }
}
