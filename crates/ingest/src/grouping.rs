//! The data source key of an event, with high-cardinality tags auto-grouped.
//!
//! The key (`#name=value` pairs in name order) picks the partition and, downstream, the data
//! source an event is stored with. A tag such as a request id would make one data source per
//! event, so once a tag has had more than `max_values` distinct values in a repository, its
//! values are hashed into `buckets` buckets for the key (`#name=~7`) while the event keeps the
//! real value. Memory is bounded: a grouped tag's values are no longer tracked, and beyond
//! `max_values` known tag names a new name is grouped from its first event.

use std::collections::{BTreeMap, HashMap, HashSet};

/// The auto-grouping state of one repository.
#[derive(Debug)]
pub struct TagGrouping {
    max_values: usize,
    buckets: u32,
    values: HashMap<String, HashSet<String>>,
    grouped: HashSet<String>,
}

impl TagGrouping {
    /// Groups a tag past `max_values` distinct values into `buckets` buckets.
    pub fn new(max_values: usize, buckets: u32) -> TagGrouping {
        TagGrouping {
            max_values: max_values.max(1),
            buckets: buckets.max(1),
            values: HashMap::new(),
            grouped: HashSet::new(),
        }
    }

    /// Names of the tags grouped so far.
    pub fn grouped(&self) -> impl Iterator<Item = &str> {
        self.grouped.iter().map(String::as_str)
    }

    fn is_grouped(&mut self, name: &str, value: &str) -> bool {
        if self.grouped.contains(name) {
            return true;
        }
        // Names known (tracked or grouped) are bounded too; an unknown name past the bound is
        // grouped without being remembered.
        let known = self.values.len() + self.grouped.len();
        let values = match self.values.get_mut(name) {
            Some(v) => v,
            None if known >= self.max_values => return true,
            None => self.values.entry(name.to_string()).or_default(),
        };
        if values.contains(value) {
            return false;
        }
        if values.len() >= self.max_values {
            self.values.remove(name);
            self.grouped.insert(name.to_string());
            tracing::info!(
                tag = name,
                bound = self.max_values,
                buckets = self.buckets,
                "tag has too many distinct values; auto-grouping it into buckets"
            );
            return true;
        }
        values.insert(value.to_string());
        false
    }

    /// The key for an event with these tags (empty for no tags).
    pub fn key(&mut self, tags: &BTreeMap<String, String>) -> String {
        let mut out = String::new();
        for (name, value) in tags {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push('#');
            out.push_str(name);
            out.push('=');
            if self.is_grouped(name, value) {
                let bucket = xxhash_rust::xxh3::xxh3_64(value.as_bytes()) % u64::from(self.buckets);
                out.push('~');
                out.push_str(&bucket.to_string());
            } else {
                out.push_str(value);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn low_cardinality_tags_are_the_key() {
        let mut g = TagGrouping::new(10, 4);
        assert_eq!(
            g.key(&tags(&[("type", "web"), ("host", "a")])),
            "#host=a #type=web"
        );
        assert_eq!(g.key(&BTreeMap::new()), "");
    }

    #[test]
    fn a_tag_past_the_bound_is_hashed_into_buckets_and_others_stay() {
        let mut g = TagGrouping::new(10, 4);
        let mut keys = HashSet::new();
        for i in 0..1000 {
            let request = format!("req-{i}");
            keys.insert(g.key(&tags(&[("request", &request), ("type", "web")])));
        }
        // 10 real values, then at most 4 buckets.
        assert!(keys.len() <= 14, "{}", keys.len());
        assert!(keys.contains("#request=req-0 #type=web"));
        assert!(keys.iter().any(|k| k.starts_with("#request=~")));
        assert_eq!(g.grouped().collect::<Vec<_>>(), vec!["request"]);
        // Grouping is stable: the same value lands in the same bucket.
        let a = g.key(&tags(&[("request", "req-500")]));
        assert_eq!(a, g.key(&tags(&[("request", "req-500")])));
    }

    #[test]
    fn tag_names_are_bounded_too() {
        let mut g = TagGrouping::new(5, 2);
        for i in 0..100 {
            g.key(&tags(&[(&format!("t{i}"), "x")]));
        }
        assert!(g.values.len() + g.grouped.len() <= 5);
        assert_eq!(g.key(&tags(&[("t99", "x")])).len(), "#t99=~0".len());
    }
}
