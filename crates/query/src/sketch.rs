//! Mergeable sketches: percentiles (a DDSketch) and distinct counts (HyperLogLog).

use std::collections::HashSet;

/// Relative accuracy of [`Quantiles`]: a reported percentile is within 1 % of the true value
/// of the rank (DDSketch's guarantee, for positive and negative values alike; zero is exact).
pub const QUANTILE_RELATIVE_ERROR: f64 = 0.01;

/// A DDSketch (Masson, Rim, Lee 2019): values counted in logarithmic buckets whose width is
/// 2 % of their value, so any quantile is known within 1 %; merging adds bucket counts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Quantiles {
    pub(crate) positive: Buckets,
    pub(crate) negative: Buckets,
    pub(crate) zeros: u64,
    pub(crate) count: u64,
    pub(crate) min: f64,
    pub(crate) max: f64,
}

/// Bucket counts by index, in one array from the smallest index seen to the largest: adding a
/// value is an array increment (a tree map's look-up per value was most of a percentile's
/// time). Indexes are bounded by the finite magnitudes above [`SMALLEST`], so the array is too.
#[derive(Debug, Clone, Default)]
pub(crate) struct Buckets {
    pub(crate) base: i32,
    pub(crate) counts: Vec<u64>,
}

impl Buckets {
    #[inline]
    fn add(&mut self, index: i32, n: u64) {
        if self.counts.is_empty() {
            self.base = index;
        } else if index < self.base {
            let grow = (self.base - index) as usize;
            self.counts.splice(0..0, std::iter::repeat_n(0, grow));
            self.base = index;
        }
        let k = (index - self.base) as usize;
        if k >= self.counts.len() {
            self.counts.resize(k + 1, 0);
        }
        self.counts[k] = self.counts[k].saturating_add(n);
    }

    /// The buckets that count something, by index.
    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = (i32, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(k, &n)| (self.base + k as i32, n))
    }
}

impl PartialEq for Buckets {
    fn eq(&self, other: &Buckets) -> bool {
        self.iter().eq(other.iter())
    }
}

fn gamma() -> f64 {
    (1.0 + QUANTILE_RELATIVE_ERROR) / (1.0 - QUANTILE_RELATIVE_ERROR)
}

/// Magnitudes below this count as zero (keeps bucket indexes in range).
const SMALLEST: f64 = 1e-9;

/// The largest bucket index of either sign: that of `f64::MAX` (about 35 500), with room.
/// Indexes below [`SMALLEST`]'s are never made either (zero counts those).
pub(crate) const MAX_INDEX: i32 = 40_000;

impl Quantiles {
    /// Counts `x` (non-finite values are ignored).
    pub fn add(&mut self, x: f64) {
        if !x.is_finite() {
            return;
        }
        if self.count == 0 {
            self.min = x;
            self.max = x;
        } else {
            self.min = self.min.min(x);
            self.max = self.max.max(x);
        }
        self.count += 1;
        if x.abs() < SMALLEST {
            self.zeros += 1;
        } else {
            let index = (x.abs().ln() / gamma().ln()).ceil() as i32;
            let side = if x > 0.0 {
                &mut self.positive
            } else {
                &mut self.negative
            };
            side.add(index, 1);
        }
    }

    /// Adds another sketch's counts.
    pub fn merge(&mut self, other: &Quantiles) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            self.min = other.min;
            self.max = other.max;
        } else {
            self.min = self.min.min(other.min);
            self.max = self.max.max(other.max);
        }
        // Saturating: a peer's sketch (see `crate::partial`) must not overflow.
        self.count = self.count.saturating_add(other.count);
        self.zeros = self.zeros.saturating_add(other.zeros);
        for (k, v) in other.positive.iter() {
            self.positive.add(k, v);
        }
        for (k, v) in other.negative.iter() {
            self.negative.add(k, v);
        }
    }

    /// Values counted.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Roughly the bytes it holds.
    pub fn approx_bytes(&self) -> usize {
        64 + (self.positive.counts.len() + self.negative.counts.len()) * 8
    }

    /// The smallest and largest values counted (exact), or `None` without values.
    pub fn range(&self) -> Option<(f64, f64)> {
        (self.count > 0).then_some((self.min, self.max))
    }

    /// Each bucket's value (within 1 % of every value it counts, and within the range) and
    /// count, from the smallest value up.
    pub fn buckets(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        let value_of = |index: i32| {
            let g = gamma();
            2.0 * g.powi(index) / (g + 1.0)
        };
        let (min, max) = (self.min, self.max);
        // Negative values from the most negative (largest magnitude) up.
        let negative = self
            .negative
            .iter()
            .rev()
            .map(move |(i, n)| ((-value_of(i)).clamp(min, max), n));
        let zeros = (self.zeros > 0).then_some((0.0, self.zeros));
        let positive = self
            .positive
            .iter()
            .map(move |(i, n)| (value_of(i).clamp(min, max), n));
        negative.chain(zeros).chain(positive)
    }

    /// The `p`-th percentile (0–100), or `None` without values.
    pub fn percentile(&self, p: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((p / 100.0).clamp(0.0, 1.0) * (self.count - 1) as f64).round() as u64;
        let mut seen = 0u64;
        for (value, n) in self.buckets() {
            seen += n;
            if seen > rank {
                return Some(value);
            }
        }
        Some(self.max)
    }

    /// A box plot: quartiles, whiskers at the furthest values within 1.5 interquartile ranges
    /// of the box, the number of outliers beyond them, and the range.
    pub fn boxplot(&self) -> Option<BoxPlot> {
        let (q1, median, q3) = (
            self.percentile(25.0)?,
            self.percentile(50.0)?,
            self.percentile(75.0)?,
        );
        let iqr = q3 - q1;
        let (low_fence, high_fence) = (q1 - 1.5 * iqr, q3 + 1.5 * iqr);
        let (mut low, mut high, mut outliers) = (q1, q3, 0);
        for (value, n) in self.buckets() {
            if value < low_fence || value > high_fence {
                outliers += n;
            } else {
                low = low.min(value);
                high = high.max(value);
            }
        }
        Some(BoxPlot {
            q1,
            median,
            q3,
            low_whisker: low,
            high_whisker: high,
            outliers,
            min: self.min,
            max: self.max,
        })
    }
}

/// What [`Quantiles::boxplot`] gives.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoxPlot {
    /// The 25th percentile.
    pub q1: f64,
    /// The 50th percentile.
    pub median: f64,
    /// The 75th percentile.
    pub q3: f64,
    /// The smallest value within 1.5 interquartile ranges below `q1`.
    pub low_whisker: f64,
    /// The largest value within 1.5 interquartile ranges above `q3`.
    pub high_whisker: f64,
    /// Values beyond the whiskers.
    pub outliers: u64,
    /// The smallest value.
    pub min: f64,
    /// The largest value.
    pub max: f64,
}

/// Distinct values counted exactly up to [`EXACT_UP_TO`], then by a HyperLogLog of 2^12
/// registers (standard error 1.6 %); merging keeps whichever form holds both.
#[derive(Debug, Clone, PartialEq)]
pub enum Distinct {
    /// The hashes seen.
    Exact(HashSet<u64>),
    /// HyperLogLog registers.
    Sketch(Vec<u8>),
}

/// Distinct values kept exactly before switching to the sketch.
pub const EXACT_UP_TO: usize = 1024;
pub(crate) const HLL_BITS: u32 = 12;

impl Default for Distinct {
    fn default() -> Distinct {
        Distinct::Exact(HashSet::new())
    }
}

impl Distinct {
    /// Counts a value's text.
    pub fn add(&mut self, text: &str) {
        self.add_hash(xxhash_rust::xxh3::xxh3_64(text.as_bytes()));
    }

    fn add_hash(&mut self, h: u64) {
        match self {
            Distinct::Exact(set) => {
                set.insert(h);
                if set.len() > EXACT_UP_TO {
                    let mut registers = vec![0u8; 1 << HLL_BITS];
                    for &h in set.iter() {
                        hll_add(&mut registers, h);
                    }
                    *self = Distinct::Sketch(registers);
                }
            }
            Distinct::Sketch(registers) => hll_add(registers, h),
        }
    }

    /// Adds another's values.
    pub fn merge(&mut self, other: &Distinct) {
        match other {
            Distinct::Exact(set) => {
                for &h in set {
                    self.add_hash(h);
                }
            }
            Distinct::Sketch(theirs) => {
                if let Distinct::Exact(set) = self {
                    let mut registers = vec![0u8; 1 << HLL_BITS];
                    for &h in set.iter() {
                        hll_add(&mut registers, h);
                    }
                    *self = Distinct::Sketch(registers);
                }
                if let Distinct::Sketch(mine) = self {
                    for (m, t) in mine.iter_mut().zip(theirs) {
                        *m = (*m).max(*t);
                    }
                }
            }
        }
    }

    /// The estimated number of distinct values.
    pub fn estimate(&self) -> u64 {
        match self {
            Distinct::Exact(set) => set.len() as u64,
            Distinct::Sketch(registers) => {
                let m = registers.len() as f64;
                let sum: f64 = registers.iter().map(|&r| 2f64.powi(-i32::from(r))).sum();
                let alpha = 0.7213 / (1.0 + 1.079 / m);
                let raw = alpha * m * m / sum;
                let zeros = registers.iter().filter(|&&r| r == 0).count();
                if raw <= 2.5 * m && zeros > 0 {
                    // Linear counting for small cardinalities.
                    (m * (m / zeros as f64).ln()).round() as u64
                } else {
                    raw.round() as u64
                }
            }
        }
    }
}

fn hll_add(registers: &mut [u8], h: u64) {
    let index = (h >> (64 - HLL_BITS)) as usize;
    let rest = h << HLL_BITS;
    let rank = (rest.leading_zeros() + 1).min(64 - HLL_BITS + 1) as u8;
    if let Some(r) = registers.get_mut(index) {
        *r = (*r).max(rank);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact_percentile(sorted: &[f64], p: f64) -> f64 {
        let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
        sorted[rank]
    }

    #[test]
    fn percentiles_are_within_the_stated_error_on_known_distributions() {
        // Uniform, exponential-like and heavy-tailed data, split over sketches then merged.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let uniform: Vec<f64> = (0..100_000).map(|_| next() * 1000.0).collect();
        let exponential: Vec<f64> = (0..100_000).map(|_| -(1.0 - next()).ln() * 50.0).collect();
        let pareto: Vec<f64> = (0..100_000)
            .map(|_| 1.0 / (1.0 - next()).powf(0.8))
            .collect();
        let mixed: Vec<f64> = (0..100_000)
            .map(|i| {
                if i % 3 == 0 {
                    -next() * 10.0
                } else {
                    next() * 10.0
                }
            })
            .collect();
        for data in [uniform, exponential, pareto, mixed] {
            let (mut a, mut b) = (Quantiles::default(), Quantiles::default());
            for (i, &x) in data.iter().enumerate() {
                if i % 2 == 0 {
                    a.add(x)
                } else {
                    b.add(x)
                }
            }
            a.merge(&b);
            let mut sorted = data.clone();
            sorted.sort_by(f64::total_cmp);
            for p in [1.0, 25.0, 50.0, 90.0, 95.0, 99.0, 99.9] {
                let want = exact_percentile(&sorted, p);
                let got = a.percentile(p).unwrap();
                assert!(
                    (got - want).abs() <= QUANTILE_RELATIVE_ERROR * want.abs() + 1e-9,
                    "p{p}: {got} against {want}"
                );
            }
        }
        assert_eq!(Quantiles::default().percentile(50.0), None);
    }

    #[test]
    fn distinct_counts_are_exact_when_small_and_close_when_large() {
        let mut d = Distinct::default();
        for i in 0..1000 {
            d.add(&format!("v{}", i % 500));
        }
        assert_eq!(d.estimate(), 500);
        let (mut a, mut b) = (Distinct::default(), Distinct::default());
        for i in 0..200_000 {
            a.add(&format!("u{i}"));
            b.add(&format!("u{}", i + 100_000));
        }
        a.merge(&b);
        let est = a.estimate() as f64;
        assert!((est - 300_000.0).abs() / 300_000.0 < 0.05, "{est}");
    }
}
