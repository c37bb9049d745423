//! A group's recent values, for the conditions that compare a value with its own past:
//!
//! - `change`: the value now against the value `over` ago (the newest kept at or before then);
//! - `anomaly`: the value against a **seasonal baseline**, the values at the same time of the
//!   previous seasons (the same hour of previous days). The band is the baseline's mean ±
//!   `deviations` standard deviations, at least a tenth of the mean wide (so a baseline of equal
//!   values does not make every wiggle an anomaly). A value found anomalous does not enter the
//!   baseline, so one incident does not teach the rule that incidents are normal. Without a
//!   previous season at that time there is no baseline and nothing is an anomaly.
//!
//! Seasonal, not an EWMA with a band: traffic has daily peaks, and an EWMA, which only knows
//! the last hours, calls every morning's rise an anomaly; the same hour of earlier days
//! expects it.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::rule::{Condition, Seasonal};

/// The narrowest band, as a share of the baseline's mean.
const MIN_BAND: f64 = 0.1;

/// A group's history.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// `change`: `(time ns, value)`, oldest first, spanning a little more than `over`.
    #[serde(default, skip_serializing_if = "VecDeque::is_empty")]
    recent: VecDeque<(i64, f64)>,
    /// `anomaly`: by the time of season (its index in steps of the evaluation interval), the
    /// values of the previous seasons, oldest first.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    seasonal: BTreeMap<i64, VecDeque<(i64, f64)>>,
}

impl Series {
    /// Whether `condition` holds at `now` for `value`, remembering it; `step` is the
    /// evaluation interval, ns (the resolution of a season's times). Threshold and absence
    /// need no history.
    pub fn holds(
        &mut self,
        condition: &Condition,
        value: Option<f64>,
        now: i64,
        step: i64,
    ) -> bool {
        match condition {
            Condition::Change { over, bound } => {
                let Some(v) = value else {
                    return false;
                };
                let then = now.saturating_sub(*over);
                // Keep one sample at or before `then`, and everything after.
                while self.recent.len() > 1 && self.recent[1].0 <= then {
                    self.recent.pop_front();
                }
                let base = self.recent.front().filter(|(t, _)| *t <= then).map(|s| s.1);
                self.recent.push_back((now, v));
                base.is_some_and(|b| bound.holds(v - b))
            }
            Condition::Anomaly(s) => value.is_some_and(|v| self.anomalous(s, v, now, step)),
            other => other.holds(value),
        }
    }

    fn anomalous(&mut self, s: &Seasonal, v: f64, now: i64, step: i64) -> bool {
        let step = step.max(1);
        let phase = now.rem_euclid(s.season) / step;
        let season_index = now.div_euclid(s.season);
        let past = self.seasonal.entry(phase).or_default();
        // Only earlier seasons, and only the last `seasons` of them.
        let baseline: Vec<f64> = past
            .iter()
            .filter(|(i, _)| *i < season_index && *i >= season_index - s.seasons as i64)
            .map(|p| p.1)
            .collect();
        let anomalous = !baseline.is_empty() && {
            let n = baseline.len() as f64;
            let mean = baseline.iter().sum::<f64>() / n;
            let sd = (baseline.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
            let half = s.deviations * sd.max(MIN_BAND * mean.abs());
            (v - mean).abs() > half
        };
        if !anomalous && past.back().map(|p| p.0) != Some(season_index) {
            past.push_back((season_index, v));
            while past.len() > s.seasons {
                past.pop_front();
            }
        }
        anomalous
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::rule::Bound;

    const S: i64 = 1_000_000_000;

    #[test]
    fn a_change_compares_with_the_value_over_ago() {
        let rise = Condition::Change {
            over: 3 * S,
            bound: Bound::Above(5.0),
        };
        let mut s = Series::default();
        let got: Vec<bool> = [1.0, 2.0, 3.0, 4.0, 10.0, 11.0, 12.0, 12.0, 12.0]
            .iter()
            .enumerate()
            .map(|(i, v)| s.holds(&rise, Some(*v), i as i64 * S, S))
            .collect();
        // 10 - 2 (3 s before) = 8 > 5; 11 - 3, 12 - 4 too; 12 - 10 = 2 not.
        assert_eq!(
            got,
            [false, false, false, false, true, true, true, false, false]
        );
    }

    #[test]
    fn a_seasonal_anomaly_is_found_and_normal_days_are_not() {
        let day = 24 * 3600 * S;
        let hour = 3600 * S;
        let anomaly = Condition::Anomaly(Seasonal {
            season: day,
            seasons: 3,
            deviations: 3.0,
        });
        let mut s = Series::default();
        let mut fired = Vec::new();
        for h in 0..(5 * 24) {
            let hour_of_day = h % 24;
            // A daily curve from 100 to 1000 and back, a little noise.
            let base = 100.0 + 900.0 * ((hour_of_day as f64 / 24.0) * std::f64::consts::PI).sin();
            let noise = [1.0, -2.0, 3.0, 0.0, -1.0][h as usize % 5];
            let v = if h == 4 * 24 + 3 {
                base * 4.0
            } else {
                base + noise
            };
            if s.holds(&anomaly, Some(v), h * hour, hour) {
                fired.push(h);
            }
        }
        assert_eq!(fired, vec![4 * 24 + 3]);
    }
}
