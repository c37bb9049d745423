//! The small binary vocabulary shared by eddy's encodings (bus records, segment blocks):
//! unsigned LEB128 varints, length-prefixed UTF-8 text, and a bounds-checked reader that turns
//! every shortfall into a [`DecodeError`] naming the byte where it happened.

use std::collections::BTreeMap;

pub use eddy_base::varint::{put_varint, put_varint128};
pub use eddy_base::zigzag::{unzigzag, unzigzag128, zigzag, zigzag128};

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot decode at byte {position}: {reason}")]
pub struct DecodeError {
    /// Where decoding stopped.
    pub position: usize,
    /// What was wrong.
    pub reason: &'static str,
}

/// Appends `s` as a varint length and its bytes.
pub fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// Appends a map of texts: a varint count, then each name and value as [`put_str`].
pub fn put_string_map(out: &mut Vec<u8>, map: &BTreeMap<String, String>) {
    put_varint(out, map.len() as u64);
    for (k, v) in map {
        put_str(out, k);
        put_str(out, v);
    }
}

/// A cursor over untrusted bytes: every read is checked against what is left.
#[derive(Debug)]
pub struct Reader<'a> {
    /// The bytes being read.
    pub buf: &'a [u8],
    /// The next byte to read.
    pub pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    /// Whether every byte has been read.
    pub fn at_end(&self) -> bool {
        self.pos == self.buf.len()
    }

    /// An error at the current position.
    pub fn fail<T>(&self, reason: &'static str) -> Result<T, DecodeError> {
        Err(DecodeError {
            position: self.pos,
            reason,
        })
    }

    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        match self.pos.checked_add(n).filter(|&end| end <= self.buf.len()) {
            Some(end) => {
                let out = &self.buf[self.pos..end];
                self.pos = end;
                Ok(out)
            }
            None => self.fail(what),
        }
    }

    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N, what)?);
        Ok(a)
    }

    /// The next varint.
    pub fn varint(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let read = eddy_base::varint::read_varint(self.rest());
        self.take_varint(read, 10, what)
    }

    /// The next varint of up to 128 bits.
    pub fn varint128(&mut self, what: &'static str) -> Result<u128, DecodeError> {
        let read = eddy_base::varint::read_varint128(self.rest());
        self.take_varint(read, 19, what)
    }

    fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    /// Moves past a varint read at the current position. A bad one fails where reading it
    /// stopped: at the end of the bytes, or after its `max_len` bytes.
    fn take_varint<T>(
        &mut self,
        read: Option<(T, usize)>,
        max_len: usize,
        what: &'static str,
    ) -> Result<T, DecodeError> {
        match read {
            Some((v, n)) => {
                self.pos += n;
                Ok(v)
            }
            None => {
                self.pos = self
                    .pos
                    .saturating_add(max_len)
                    .min(self.buf.len().max(self.pos));
                self.fail(what)
            }
        }
    }

    /// The next varint, which must fit in 32 bits.
    pub fn varint_u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let v = self.varint(what)?;
        u32::try_from(v).or_else(|_| self.fail(what))
    }

    /// The next map written by [`put_string_map`].
    pub fn string_map(
        &mut self,
        what: &'static str,
    ) -> Result<BTreeMap<String, String>, DecodeError> {
        let mut map = BTreeMap::new();
        for _ in 0..self.len(what)? {
            let k = self.string(what)?;
            let v = self.string(what)?;
            map.insert(k, v);
        }
        Ok(map)
    }

    /// [`Reader::string_map`] into `map`, which is left as it is when it holds what the input
    /// holds, in the same order (no allocation then).
    pub fn string_map_into(
        &mut self,
        what: &'static str,
        map: &mut BTreeMap<String, String>,
    ) -> Result<(), DecodeError> {
        let start = self.pos;
        let count = self.len(what)?;
        if count == map.len() {
            let mut same = true;
            for (k, v) in map.iter() {
                if self.string_ref(what)? != k || self.string_ref(what)? != v {
                    same = false;
                    break;
                }
            }
            if same {
                return Ok(());
            }
        }
        self.pos = start;
        *map = self.string_map(what)?;
        Ok(())
    }

    /// The next varint, checked to be no more than the bytes left (a length).
    pub fn len(&mut self, what: &'static str) -> Result<usize, DecodeError> {
        let n = self.varint(what)?;
        // A length can never exceed what is left; checking here also bounds allocations.
        match usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.buf.len() - self.pos)
        {
            Some(n) => Ok(n),
            None => self.fail(what),
        }
    }

    /// The next length-prefixed UTF-8 text.
    pub fn string(&mut self, what: &'static str) -> Result<String, DecodeError> {
        self.string_ref(what).map(str::to_string)
    }

    /// The next `n` bytes as UTF-8 text.
    pub fn text(&mut self, n: usize, what: &'static str) -> Result<String, DecodeError> {
        self.str(n, what).map(str::to_string)
    }

    /// `n` bytes of UTF-8 text, borrowed.
    pub fn str(&mut self, n: usize, what: &'static str) -> Result<&'a str, DecodeError> {
        let at = self.pos;
        let b = self.bytes(n, what)?;
        std::str::from_utf8(b).map_err(|_| DecodeError {
            position: at,
            reason: "text is not UTF-8",
        })
    }

    /// The next length-prefixed UTF-8 text, borrowed.
    pub fn string_ref(&mut self, what: &'static str) -> Result<&'a str, DecodeError> {
        let n = self.len(what)?;
        self.str(n, what)
    }
}
