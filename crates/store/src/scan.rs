//! What a scan of a repository wants: a time range, tags and tokens. The planner prunes
//! segments and blocks by it, and a block view keeps the events in its range with its tags.

use std::collections::BTreeMap;

/// What a scan wants: a time range, tags every event must have, and tokens every matching
/// event holds (used only to skip blocks; the caller still matches each event).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    /// Earliest `@timestamp`, inclusive.
    pub start: i64,
    /// Latest `@timestamp`, exclusive.
    pub end: i64,
    /// `(name, value)` pairs that must all match the event's tags.
    pub tags: Vec<(String, String)>,
    /// Lower-cased tokens (see `tokens`) that a block must hold to be read.
    pub tokens: Vec<String>,
}

impl Scan {
    /// Everything.
    pub fn all() -> Scan {
        Scan {
            start: i64::MIN,
            end: i64::MAX,
            ..Scan::default()
        }
    }

    pub(crate) fn overlaps(&self, min: i64, max: i64) -> bool {
        min < self.end && max >= self.start
    }

    pub(crate) fn tags_may_match(&self, known: &BTreeMap<String, String>, source: &str) -> bool {
        self.tags.iter().all(|(k, v)| match known.get(k) {
            Some(have) => have == v,
            // Not constant over the segment: the key still names it (grouped values aside).
            None => source.contains(&format!("#{k}=")),
        })
    }
}
