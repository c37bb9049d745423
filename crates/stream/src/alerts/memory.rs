//! A rule's memory on a shared bus: what the node on duty knows of a rule (each group's phase
//! and since when, the last notification times that repeats and the throttle count from, the
//! notices not yet delivered), kept on the bus so that the node that takes the duty over
//! continues from it instead of from nothing.
//!
//! The node on duty publishes the rule's whole memory to [`MEMORY_TOPIC`] (one partition,
//! keyed by the rule's name) whenever it changed, before it delivers a notice that change
//! queued; a node that gains the duty reads the latest readable record of the rule before its
//! first evaluation ([`MemoryTopic::latest`]). Each record is one JSON object:
//!
//! ```text
//! {"version": 1, "rule": "errors", "published_at": <ns>, "memory": { …the rule's state file… }}
//! ```
//!
//! `memory` is what `alerts/<rule>.json` holds on the embedded bus. A record that does not
//! decode, of another version or of another rule than its key says, is logged with its topic
//! and offset and passed over; the record before it is used.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use eddy_log::{Bus, PartitionChoice, Record, StoredRecord, TopicConfig};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The one-partition topic of the alert rules' memories, keyed by rule name.
pub const MEMORY_TOPIC: &str = "_alert_memory";

/// The version of the records this build writes and reads.
pub const VERSION: u32 = 1;

/// How many records the first look back from the topic's end reads; each further look reads
/// four times more (a topic without compaction holds every publication).
const FIRST_LOOK_BACK: u64 = 256;

/// Why a memory could not be published or read.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// The bus failed.
    #[error("{MEMORY_TOPIC}: {0}")]
    Bus(#[from] eddy_log::Error),
    /// The memory could not be encoded.
    #[error("encoding the memory of alert {rule:?}: {error}")]
    Encode {
        /// The rule.
        rule: String,
        /// Why.
        error: serde_json::Error,
    },
}

/// A record of [`MEMORY_TOPIC`].
#[derive(Debug, Serialize, Deserialize)]
struct Envelope<T> {
    version: u32,
    rule: String,
    /// When it was published, ns.
    published_at: i64,
    memory: T,
}

/// Only the head of a record: read first, so a record of another version is told apart from
/// a damaged one.
#[derive(Debug, Deserialize)]
struct Head {
    version: u32,
    rule: String,
}

/// Encodes `memory` of rule `rule` as a record value of [`MEMORY_TOPIC`].
pub fn encode(rule: &str, memory: &impl Serialize) -> Result<Vec<u8>, MemoryError> {
    serde_json::to_vec(&Envelope {
        version: VERSION,
        rule: rule.to_string(),
        published_at: eddy_log::now_ns(),
        memory,
    })
    .map_err(|error| MemoryError::Encode {
        rule: rule.to_string(),
        error,
    })
}

/// Decodes a record value of [`MEMORY_TOPIC`] said to be rule `rule`'s memory.
pub fn decode<T: DeserializeOwned>(rule: &str, value: &[u8]) -> Result<T, String> {
    let head: Head = serde_json::from_slice(value).map_err(|e| format!("not a memory: {e}"))?;
    if head.version != VERSION {
        return Err(format!(
            "version {} (this build reads version {VERSION})",
            head.version
        ));
    }
    if head.rule != rule {
        return Err(format!(
            "the memory of alert {:?} under the key {rule:?}",
            head.rule
        ));
    }
    let envelope: Envelope<T> =
        serde_json::from_slice(value).map_err(|e| format!("a damaged memory: {e}"))?;
    Ok(envelope.memory)
}

/// The rules' memories on a shared bus.
pub struct MemoryTopic {
    bus: Arc<dyn Bus>,
    /// The topic was made sure of.
    ensured: AtomicBool,
}

impl std::fmt::Debug for MemoryTopic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MemoryTopic({})", self.bus.kind())
    }
}

impl MemoryTopic {
    /// The memories kept on `bus`.
    pub fn new(bus: Arc<dyn Bus>) -> MemoryTopic {
        MemoryTopic {
            bus,
            ensured: AtomicBool::new(false),
        }
    }

    fn ensure(&self) -> Result<(), MemoryError> {
        if !self.ensured.load(Ordering::Acquire) {
            self.bus
                .ensure_topic(MEMORY_TOPIC, &TopicConfig::compacted_journal())?;
            self.ensured.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Appends `value` (from [`encode`]) as rule `rule`'s latest memory, durably; its offset.
    pub fn publish(&self, rule: &str, value: Vec<u8>) -> Result<u64, MemoryError> {
        self.ensure()?;
        let record = Record::new(value).with_key(rule.to_string());
        let acks = self
            .bus
            .produce(MEMORY_TOPIC, vec![record], PartitionChoice::Explicit(0))?;
        Ok(acks.first().map_or(0, |a| a.base_offset))
    }

    /// Rule `rule`'s latest readable memory with its offset; `None` if the topic holds none.
    /// Reads back from the topic's end, a stretch at a time, so that the cost is what was
    /// published since the rule's last record, not the topic's whole history.
    pub fn latest<T: DeserializeOwned>(&self, rule: &str) -> Result<Option<(u64, T)>, MemoryError> {
        self.ensure()?;
        let (first, end) = self.bus.offsets(MEMORY_TOPIC, 0)?;
        let mut upto = end;
        let mut stretch = FIRST_LOOK_BACK;
        while upto > first {
            let from = upto.saturating_sub(stretch).max(first);
            let mut found = None;
            eddy_log::read_range(&*self.bus, MEMORY_TOPIC, 0, from, upto, &mut |r| {
                if let Some(m) = read_record(rule, &r) {
                    found = Some((r.offset, m));
                }
                true
            })?;
            if found.is_some() {
                return Ok(found);
            }
            upto = from;
            stretch = stretch.saturating_mul(4);
        }
        Ok(None)
    }
}

/// Record `r`'s memory if it is rule `rule`'s and readable; an unreadable one is logged.
fn read_record<T: DeserializeOwned>(rule: &str, r: &StoredRecord) -> Option<T> {
    if r.key.as_deref() != Some(rule.as_bytes()) {
        return None;
    }
    match decode(rule, &r.value) {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::error!(
                topic = MEMORY_TOPIC,
                offset = r.offset,
                alert = %rule,
                "an alert rule's memory that cannot be read, passed over: {e}"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Memo {
        n: u64,
    }

    fn topic() -> (tempfile::TempDir, MemoryTopic) {
        let dir = tempfile::tempdir().unwrap();
        let log = eddy_log::Log::open(dir.path()).unwrap();
        let bus: Arc<dyn Bus> = Arc::new(log);
        (dir, MemoryTopic::new(bus))
    }

    fn publish_raw(t: &MemoryTopic, key: &str, value: &[u8]) {
        t.ensure().unwrap();
        t.bus
            .produce(
                MEMORY_TOPIC,
                vec![Record::new(value.to_vec()).with_key(key.to_string())],
                PartitionChoice::Explicit(0),
            )
            .unwrap();
    }

    #[test]
    fn a_rule_with_no_memory_on_the_bus_reads_none() {
        let (_dir, t) = topic();
        assert_eq!(t.latest::<Memo>("errors").unwrap(), None);
        t.publish("other", encode("other", &Memo { n: 1 }).unwrap())
            .unwrap();
        assert_eq!(t.latest::<Memo>("errors").unwrap(), None);
    }

    #[test]
    fn the_latest_memory_of_the_rule_is_read_among_other_rules() {
        let (_dir, t) = topic();
        for n in 0..3 {
            t.publish("errors", encode("errors", &Memo { n }).unwrap())
                .unwrap();
            t.publish("other", encode("other", &Memo { n: 100 + n }).unwrap())
                .unwrap();
        }
        assert_eq!(t.latest("errors").unwrap(), Some((4, Memo { n: 2 })));
        assert_eq!(t.latest("other").unwrap(), Some((5, Memo { n: 102 })));
    }

    #[test]
    fn a_memory_far_back_behind_other_rules_is_found() {
        let (_dir, t) = topic();
        t.publish("quiet", encode("quiet", &Memo { n: 7 }).unwrap())
            .unwrap();
        // More than a few looks back of other rules' publications after it.
        for n in 0..(FIRST_LOOK_BACK * 6) {
            t.publish("busy", encode("busy", &Memo { n }).unwrap())
                .unwrap();
        }
        assert_eq!(t.latest("quiet").unwrap(), Some((0, Memo { n: 7 })));
    }

    #[test]
    fn damaged_and_foreign_records_are_passed_over_for_the_one_before() {
        let (_dir, t) = topic();
        t.publish("errors", encode("errors", &Memo { n: 1 }).unwrap())
            .unwrap();
        // Not JSON; a later version; another rule's memory under this key; a memory whose
        // content does not decode.
        publish_raw(&t, "errors", b"\x00\x01garbage");
        publish_raw(
            &t,
            "errors",
            br#"{"version":2,"rule":"errors","memory":{}}"#,
        );
        publish_raw(&t, "errors", &encode("other", &Memo { n: 9 }).unwrap());
        publish_raw(
            &t,
            "errors",
            br#"{"version":1,"rule":"errors","published_at":0,"memory":{"n":"x"}}"#,
        );
        assert_eq!(t.latest("errors").unwrap(), Some((0, Memo { n: 1 })));
    }

    #[test]
    fn decoding_says_what_is_wrong_with_a_record() {
        let e = decode::<Memo>("errors", br#"{"version":2,"rule":"errors"}"#).unwrap_err();
        assert!(e.contains("version 2"), "{e}");
        let e = decode::<Memo>("errors", &encode("other", &Memo { n: 1 }).unwrap()).unwrap_err();
        assert!(e.contains("\"other\""), "{e}");
        let e = decode::<Memo>("errors", b"{").unwrap_err();
        assert!(e.contains("not a memory"), "{e}");
    }
}
