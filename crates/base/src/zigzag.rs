//! Zig-zag mapping of signed integers to unsigned ones, so small magnitudes of either sign make
//! short [varints](crate::varint): 0, -1, 1, -2, 2 … become 0, 1, 2, 3, 4 …

/// Maps `v` to an unsigned integer whose size follows its magnitude.
#[inline]
pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// The inverse of [`zigzag`].
#[inline]
pub fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// [`zigzag`] for 128-bit integers.
#[inline]
pub fn zigzag128(v: i128) -> u128 {
    ((v << 1) ^ (v >> 127)) as u128
}

/// The inverse of [`zigzag128`].
#[inline]
pub fn unzigzag128(v: u128) -> i128 {
    ((v >> 1) as i128) ^ -((v & 1) as i128)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn small_magnitudes_map_to_small_numbers() {
        let mapped: Vec<u64> = [0, -1, 1, -2, 2].into_iter().map(zigzag).collect();
        assert_eq!(mapped, [0, 1, 2, 3, 4]);
        assert_eq!(zigzag(i64::MIN), u64::MAX);
        assert_eq!(zigzag128(-1), 1);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn zigzag_round_trips(v: i64) {
            prop_assert_eq!(unzigzag(zigzag(v)), v);
            prop_assert_eq!(unzigzag128(zigzag128(i128::from(v))), i128::from(v));
            prop_assert_eq!(u128::from(zigzag(v)), zigzag128(i128::from(v)));
        }

        #[test]
        fn zigzag128_round_trips(v: i128) {
            prop_assert_eq!(unzigzag128(zigzag128(v)), v);
        }
    }
}
