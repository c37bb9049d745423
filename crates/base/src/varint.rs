//! Unsigned LEB128 varints, the integer encoding of eddy's binary formats (bus record batches,
//! segment blocks and footers): seven bits a byte, least significant first, the high bit set on
//! every byte but the last. Values below 128 take one byte; a `u64` takes at most 10.
//!
//! Decoding takes at most 10 bytes for a `u64` (19 for a `u128`); bits beyond the type's width
//! in the last byte are dropped, as every eddy reader has always done, so old files read the same.
//!
//! Every function is `#[inline]`: they run per field of every event, called from other crates,
//! where they were inlined when each crate had its own copy.

/// Appends `v` as a varint.
#[inline]
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends `v` as a varint (for 128-bit values such as UUIDs).
#[inline]
pub fn put_varint128(out: &mut Vec<u8>, mut v: u128) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// How many bytes [`put_varint`] writes for `v`.
#[inline]
pub fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// The varint at the start of `buf` and how many bytes it took; `None` when `buf` ends inside
/// it or it runs over 10 bytes.
#[inline]
pub fn read_varint(buf: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, shift) in (0..64).step_by(7).enumerate() {
        let b = *buf.get(i)?;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// [`read_varint`] for values of up to 128 bits (at most 19 bytes).
#[inline]
pub fn read_varint128(buf: &[u8]) -> Option<(u128, usize)> {
    let mut v = 0u128;
    for (i, shift) in (0..128).step_by(7).enumerate() {
        let b = *buf.get(i)?;
        v |= u128::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_encodings_stay_the_same() {
        let cases: [(u64, &[u8]); 5] = [
            (0, &[0]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (300, &[0xac, 0x02]),
            (
                u64::MAX,
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ];
        for (v, bytes) in cases {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out, bytes, "{v}");
            assert_eq!(read_varint(bytes), Some((v, bytes.len())));
        }
    }

    #[test]
    fn truncated_or_overlong_varints_are_refused() {
        assert_eq!(read_varint(&[]), None);
        assert_eq!(read_varint(&[0x80]), None);
        assert_eq!(read_varint(&[0x80; 11]), None);
        assert_eq!(read_varint128(&[0x80; 19]), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn varints_round_trip_and_know_their_length(v: u64, tail: Vec<u8>) {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            prop_assert_eq!(out.len(), varint_len(v));
            out.extend_from_slice(&tail);
            prop_assert_eq!(read_varint(&out), Some((v, varint_len(v))));
        }

        #[test]
        fn varints128_round_trip(v: u128) {
            let mut out = Vec::new();
            put_varint128(&mut out, v);
            prop_assert_eq!(read_varint128(&out), Some((v, out.len())));
        }

        #[test]
        fn small_values_encode_alike_in_both_widths(v: u64) {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            put_varint(&mut a, v);
            put_varint128(&mut b, u128::from(v));
            prop_assert_eq!(a, b);
        }
    }
}
