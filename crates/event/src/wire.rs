//! The small binary vocabulary shared by eddy's encodings (bus records, segment blocks):
//! unsigned LEB128 varints, length-prefixed UTF-8 text, and a bounds-checked reader that turns
//! every shortfall into a [`DecodeError`] naming the byte where it happened.

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot decode at byte {position}: {reason}")]
pub struct DecodeError {
    /// Where decoding stopped.
    pub position: usize,
    /// What was wrong.
    pub reason: &'static str,
}

/// Appends `v` as an unsigned LEB128 varint.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends `s` as a varint length and its bytes.
pub fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// Maps signed integers to unsigned so small magnitudes stay short as varints.
pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// The inverse of [`zigzag`].
pub fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
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
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let [b] = self.array::<1>(what)?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        self.fail(what)
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
        let n = self.len(what)?;
        self.text(n, what)
    }

    /// The next `n` bytes as UTF-8 text.
    pub fn text(&mut self, n: usize, what: &'static str) -> Result<String, DecodeError> {
        let at = self.pos;
        let b = self.bytes(n, what)?;
        String::from_utf8(b.to_vec()).map_err(|_| DecodeError {
            position: at,
            reason: "text is not UTF-8",
        })
    }
}
