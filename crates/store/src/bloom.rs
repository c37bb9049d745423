//! A split-block bloom filter (the layout Apache Parquet uses): the bit array is cut into
//! 256-bit blocks, a token's hash picks one block and sets one bit in each of its eight 32-bit
//! words. A lookup touches one cache line, and with about 10 bits per distinct token the false
//! positive rate is about 1 % (measured in the tests).
//!
//! Serialised as its 32-bit words, little-endian, one block after another; the number of
//! blocks is the length divided by 32. Hash: XXH3-64 of the token's UTF-8 bytes (pinned in a
//! test: files depend on it).

/// Bits per distinct token, by default.
pub const DEFAULT_BITS_PER_TOKEN: usize = 10;

const BLOCK_WORDS: usize = 8;
const BLOCK_BYTES: usize = BLOCK_WORDS * 4;

/// Odd constants that spread one hash into eight bit positions (from the Parquet spec).
const SALT: [u32; BLOCK_WORDS] = [
    0x47b6_137b,
    0x4497_4d91,
    0x8824_ad5b,
    0xa2b7_289d,
    0x7054_95c7,
    0x2df1_424b,
    0x9efc_4947,
    0x5c6b_fb31,
];

/// Why bytes are not a bloom filter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BloomError {
    /// The length is not a whole number of blocks, or zero.
    #[error("a bloom filter is a non-zero multiple of {BLOCK_BYTES} bytes, not {0}")]
    BadLength(usize),
}

/// A split-block bloom filter over tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BloomFilter {
    words: Vec<u32>,
}

/// The hash a token is filed under (XXH3-64 of its UTF-8 bytes): builders that gather a block's
/// distinct tokens keep these instead of the strings.
pub fn token_hash(token: &str) -> u64 {
    token_hash_bytes(token.as_bytes())
}

/// [`token_hash`] of a token's bytes.
pub fn token_hash_bytes(token: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(token)
}

impl BloomFilter {
    /// A filter sized for `tokens` distinct tokens at `bits_per_token` bits each.
    pub fn with_capacity(tokens: usize, bits_per_token: usize) -> BloomFilter {
        let bits = tokens.max(1).saturating_mul(bits_per_token.max(1));
        let blocks = bits.div_ceil(BLOCK_WORDS * 32).max(1);
        BloomFilter {
            words: vec![0; blocks * BLOCK_WORDS],
        }
    }

    /// A filter holding exactly `tokens`, sized for them at the default density.
    pub fn of<'a>(tokens: impl ExactSizeIterator<Item = &'a str>) -> BloomFilter {
        let mut f = BloomFilter::with_capacity(tokens.len(), DEFAULT_BITS_PER_TOKEN);
        for t in tokens {
            f.insert(t);
        }
        f
    }

    fn block_and_masks(&self, h: u64) -> (usize, [u32; BLOCK_WORDS]) {
        let blocks = (self.words.len() / BLOCK_WORDS) as u64;
        // The high half picks the block (multiply-shift, no modulo bias), the low half the bits.
        let block = (((h >> 32) * blocks) >> 32) as usize;
        let key = h as u32;
        let mut masks = [0u32; BLOCK_WORDS];
        for (m, salt) in masks.iter_mut().zip(SALT) {
            *m = 1 << (key.wrapping_mul(salt) >> 27);
        }
        (block * BLOCK_WORDS, masks)
    }

    /// Adds a token.
    pub fn insert(&mut self, token: &str) {
        self.insert_hash(token_hash(token));
    }

    /// Adds a token by its [`token_hash`].
    pub fn insert_hash(&mut self, hash: u64) {
        let (at, masks) = self.block_and_masks(hash);
        for (w, m) in self.words[at..at + BLOCK_WORDS].iter_mut().zip(masks) {
            *w |= m;
        }
    }

    /// False if the token was certainly never inserted; true if it may have been.
    pub fn may_contain(&self, token: &str) -> bool {
        self.may_contain_hash(token_hash(token))
    }

    /// [`BloomFilter::may_contain`] for a token's [`token_hash`] (hashed once, tried on many
    /// filters).
    pub fn may_contain_hash(&self, hash: u64) -> bool {
        let (at, masks) = self.block_and_masks(hash);
        self.words[at..at + BLOCK_WORDS]
            .iter()
            .zip(masks)
            .all(|(w, m)| w & m == m)
    }

    /// Size in bytes, serialised.
    pub fn byte_len(&self) -> usize {
        self.words.len() * 4
    }

    /// The serialised form.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    /// Reads a serialised filter.
    pub fn from_bytes(bytes: &[u8]) -> Result<BloomFilter, BloomError> {
        if bytes.is_empty() || !bytes.len().is_multiple_of(BLOCK_BYTES) {
            return Err(BloomError::BadLength(bytes.len()));
        }
        Ok(BloomFilter {
            words: bytes
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_hash_is_pinned() {
        // Stored filters depend on it: changing it needs a new segment format version.
        let f = BloomFilter::of(["needle", "7f3a9c"].into_iter());
        assert_eq!(
            xxhash_rust::xxh3::xxh3_64(&f.to_bytes()),
            0x83aa_6320_fdd4_8273,
            "the serialised filter changed"
        );
    }

    #[test]
    fn false_positive_rate_is_about_one_percent_at_ten_bits_per_token() {
        let inserted: Vec<String> = (0..20_000).map(|i| format!("token-{i}")).collect();
        let f = BloomFilter::of(inserted.iter().map(String::as_str));
        assert!(inserted.iter().all(|t| f.may_contain(t)));
        let probes = 100_000;
        let false_positives = (0..probes)
            .filter(|i| f.may_contain(&format!("absent-{i}")))
            .count();
        let rate = false_positives as f64 / probes as f64;
        assert!(rate < 0.02, "false positive rate {rate}");
        assert_eq!(f.byte_len(), 20_000 * 10 / 8 / 32 * 32 + 32);
    }

    #[test]
    fn bad_lengths_are_refused() {
        assert_eq!(BloomFilter::from_bytes(&[]), Err(BloomError::BadLength(0)));
        assert_eq!(
            BloomFilter::from_bytes(&[0; 33]),
            Err(BloomError::BadLength(33))
        );
    }

    proptest! {
        #[test]
        fn no_false_negatives_and_bytes_roundtrip(
            tokens in proptest::collection::hash_set(".{0,12}", 0..200),
            bits in 1usize..16,
        ) {
            let mut f = BloomFilter::with_capacity(tokens.len(), bits);
            for t in &tokens {
                f.insert(t);
            }
            for t in &tokens {
                prop_assert!(f.may_contain(t));
            }
            let back = BloomFilter::from_bytes(&f.to_bytes()).unwrap();
            prop_assert_eq!(back, f);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), probe in ".{0,8}") {
            if let Ok(f) = BloomFilter::from_bytes(&bytes) {
                let _ = f.may_contain(&probe);
            }
        }
    }
}
