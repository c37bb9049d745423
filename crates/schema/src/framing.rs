//! The three ways binary Avro names the schema it was written with, in its first bytes:
//!
//! - Confluent: `0x00`, then the schema id (4 bytes, big-endian);
//! - Avro single-object encoding: `C3 01`, then the CRC-64-AVRO fingerprint (8 bytes,
//!   little-endian);
//! - the Gilt talk's framing: `0x81`, then the SHA-256 of the canonical form (32 bytes).
//!
//! The datum follows. Its length is not framed: Avro data knows where it ends, so several
//! framed datums can follow each other in one body.

/// Whom a frame names as its writer schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writer {
    /// A registry id.
    Id(u32),
    /// A CRC-64-AVRO fingerprint.
    Crc64([u8; 8]),
    /// A SHA-256 fingerprint.
    Sha256([u8; 32]),
}

impl std::fmt::Display for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        match self {
            Writer::Id(id) => write!(f, "schema id {id}"),
            Writer::Crc64(fp) => write!(f, "CRC-64 fingerprint {}", hex(fp)),
            Writer::Sha256(fp) => write!(f, "SHA-256 fingerprint {}", hex(fp)),
        }
    }
}

/// Why the first bytes are not a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Nothing at all.
    #[error("empty: no frame")]
    Empty,
    /// An unknown first byte.
    #[error("first byte 0x{0:02x} starts no framing: 0x00 (Confluent), C3 01 (single-object) or 0x81 (SHA-256)")]
    UnknownMagic(u8),
    /// The header is cut short.
    #[error("the {framing} header needs {needed} bytes, only {found} are there")]
    Short {
        /// Which framing.
        framing: &'static str,
        /// Its header's length.
        needed: usize,
        /// The bytes there are.
        found: usize,
    },
}

/// Splits a frame's header from what follows: whom it names, and the rest (the datum and
/// anything after it).
pub fn split(bytes: &[u8]) -> Result<(Writer, &[u8]), FrameError> {
    let header = |framing: &'static str, needed: usize| {
        if bytes.len() < needed {
            Err(FrameError::Short {
                framing,
                needed,
                found: bytes.len(),
            })
        } else {
            Ok(bytes.split_at(needed))
        }
    };
    match bytes.first() {
        None => Err(FrameError::Empty),
        Some(0x00) => {
            let (h, rest) = header("Confluent", 5)?;
            Ok((
                Writer::Id(u32::from_be_bytes([h[1], h[2], h[3], h[4]])),
                rest,
            ))
        }
        Some(0xC3) if bytes.get(1).is_none_or(|&b| b == 0x01) => {
            let (h, rest) = header("single-object", 10)?;
            let mut fp = [0u8; 8];
            fp.copy_from_slice(&h[2..]);
            Ok((Writer::Crc64(fp), rest))
        }
        Some(0x81) => {
            let (h, rest) = header("SHA-256", 33)?;
            let mut fp = [0u8; 32];
            fp.copy_from_slice(&h[1..]);
            Ok((Writer::Sha256(fp), rest))
        }
        Some(&b) => Err(FrameError::UnknownMagic(b)),
    }
}

/// `datum` framed the Confluent way.
pub fn confluent(id: u32, datum: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8];
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(datum);
    out
}

/// `datum` in single-object encoding.
pub fn single_object(crc64: [u8; 8], datum: &[u8]) -> Vec<u8> {
    let mut out = vec![0xC3, 0x01];
    out.extend_from_slice(&crc64);
    out.extend_from_slice(datum);
    out
}

/// `datum` framed by SHA-256.
pub fn sha256(fp: [u8; 32], datum: &[u8]) -> Vec<u8> {
    let mut out = vec![0x81];
    out.extend_from_slice(&fp);
    out.extend_from_slice(datum);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn each_framing_names_its_writer() {
        let framed = [
            confluent(258, b"xy"),
            single_object([1; 8], b"z"),
            sha256([2; 32], b""),
        ];
        let parts: Vec<_> = framed.iter().map(|f| split(f).unwrap()).collect();
        assert_eq!(parts[0], (Writer::Id(258), &b"xy"[..]));
        assert_eq!(parts[1], (Writer::Crc64([1; 8]), &b"z"[..]));
        assert_eq!(parts[2], (Writer::Sha256([2; 32]), &b""[..]));
        assert_eq!(
            split(&[0xC3, 0x01, 1]).unwrap_err().to_string(),
            "the single-object header needs 10 bytes, only 3 are there"
        );
        assert_eq!(split(b"{").unwrap_err(), FrameError::UnknownMagic(b'{'));
        assert_eq!(
            split(&[0xC3, 0x02]).unwrap_err(),
            FrameError::UnknownMagic(0xC3)
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_split_or_say_why(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            match split(&bytes) {
                Ok((_, rest)) => prop_assert!(rest.len() < bytes.len()),
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
        }
    }
}
