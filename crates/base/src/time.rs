//! The wall clock as eddy's timestamps count it.

/// Now, in ns since the Unix epoch (UTC).
///
/// Overflow policy: a clock before 1970 gives 0, and one past the last instant an `i64` of ns
/// can hold (in 2262) gives `i64::MAX`; both saturate rather than wrap, so a wrong clock can
/// never produce a timestamp that sorts before an earlier one by wrapping around.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    #[test]
    fn now_is_a_positive_count_of_ns_after_2020() {
        assert!(super::now_ns() > 1_577_836_800_000_000_000);
    }
}
