//! Silences: matchers over an alert's labels (its rule as `alert`, its group's labels) with an
//! end. A notice that a silence matches is still stored in `_alerts`, marked `silenced`, but goes
//! to no channel. When the silence ends (it expires or is removed), each rule whose notices it
//! muted sends a `silence_expired` notice per group it muted, saying whether the group is still
//! firing. Kept in `alerts/silences.json` in the data directory (replaced atomically, fsynced).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use eddy_base::io::{IoContext, IoError};
use eddy_base::sync::lock;
use serde::{Deserialize, Serialize};

use super::channel::label_text;

/// One label matcher: `host=web-1`, `host!=web-1`, `host=~web-.*`, `host!~web-.*`. A value
/// may be quoted as a JSON string (`host="web 1 "`), which it must be to keep spaces at its
/// ends or to begin with `"` (or with `~` after `=`); [`Matcher`]'s `Display` quotes exactly
/// then, so a printed matcher parses back to itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Matcher {
    /// The label (`alert` is the rule's name).
    pub label: String,
    /// `=`, `!=`, `=~` or `!~`.
    pub op: String,
    /// The value, or the regular expression (anchored at both ends).
    pub value: String,
}

impl Matcher {
    /// Parses `label<op>value`, naming what is wrong.
    pub fn parse(text: &str) -> Result<Matcher, String> {
        let at = text
            .find(['=', '!'])
            .ok_or_else(|| format!("matcher {text:?}: expected label=value, label!=value, label=~regex or label!~regex"))?;
        let (label, rest) = text.split_at(at);
        let op = ["=~", "!~", "!=", "="]
            .into_iter()
            .find(|op| rest.starts_with(op))
            .ok_or_else(|| format!("matcher {text:?}: expected = != =~ or !~ after {label:?}"))?;
        let label = label.trim();
        if label.is_empty() {
            return Err(format!("matcher {text:?} names no label"));
        }
        let value = rest[op.len()..].trim();
        let value = match value.starts_with('"') {
            true => serde_json::from_str::<String>(value).map_err(|e| {
                format!("matcher {text:?}: the quoted value is not a JSON string ({e})")
            })?,
            false => value.to_string(),
        };
        let m = Matcher {
            label: label.to_string(),
            op: op.to_string(),
            value,
        };
        m.regex().map_err(|e| format!("matcher {text:?}: {e}"))?;
        Ok(m)
    }

    /// Whether the value must be quoted to read back as itself.
    fn needs_quotes(&self) -> bool {
        let v = &self.value;
        v.trim() != v || v.starts_with('"') || (self.op == "=" && v.starts_with('~'))
    }

    fn regex(&self) -> Result<Option<regex::Regex>, regex::Error> {
        match self.op.as_str() {
            "=~" | "!~" => regex::Regex::new(&format!("^(?:{})$", self.value)).map(Some),
            _ => Ok(None),
        }
    }

    /// Whether an alert of rule `alert` with `labels` matches (a missing label is "").
    pub fn matches(
        &self,
        alert: &str,
        labels: &serde_json::Map<String, serde_json::Value>,
    ) -> bool {
        let value = if self.label == "alert" {
            alert.to_string()
        } else {
            labels.get(&self.label).map(label_text).unwrap_or_default()
        };
        match self.op.as_str() {
            "=" => value == self.value,
            "!=" => value != self.value,
            op => {
                let found = self
                    .regex()
                    .ok()
                    .flatten()
                    .is_some_and(|r| r.is_match(&value));
                found == (op == "=~")
            }
        }
    }
}

impl std::fmt::Display for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.label, self.op)?;
        match self.needs_quotes() {
            true => write!(f, "{}", serde_json::Value::from(self.value.as_str())),
            false => f.write_str(&self.value),
        }
    }
}

/// A silence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    /// Its id.
    pub id: String,
    /// All must match.
    pub matchers: Vec<Matcher>,
    /// When it was made, ns.
    pub starts_at: i64,
    /// When it ends, ns.
    pub ends_at: i64,
    /// Why, by whom.
    #[serde(default)]
    pub comment: String,
}

impl Silence {
    /// Whether it mutes an alert of rule `alert` with `labels` at `now`.
    pub fn mutes(
        &self,
        alert: &str,
        labels: &serde_json::Map<String, serde_json::Value>,
        now: i64,
    ) -> bool {
        now < self.ends_at && self.matchers.iter().all(|m| m.matches(alert, labels))
    }
}

/// Every silence of a server, kept on disk.
#[derive(Debug)]
pub struct Silences {
    path: PathBuf,
    list: Mutex<Vec<Silence>>,
}

impl Silences {
    /// The silences kept under `data_dir` (none if there is no file yet).
    pub fn open(data_dir: &Path) -> Result<Silences, IoError> {
        let path = data_dir.join("alerts").join("silences.json");
        let list = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(std::io::Error::other)
                .context(|| format!("reading {}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).context(|| format!("reading {}", path.display())),
        };
        Ok(Silences {
            path,
            list: Mutex::new(list),
        })
    }

    /// Silences kept nowhere (tests, `eddy alert test`).
    pub fn in_memory() -> Silences {
        Silences {
            path: PathBuf::new(),
            list: Mutex::new(Vec::new()),
        }
    }

    fn save(&self, list: &[Silence]) -> Result<(), IoError> {
        if self.path.as_os_str().is_empty() {
            return Ok(());
        }
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
        }
        let bytes = serde_json::to_vec_pretty(list)
            .map_err(std::io::Error::other)
            .context(|| format!("encoding {}", self.path.display()))?;
        eddy_base::fs::replace_file(&self.path, &bytes)
    }

    /// Adds a silence (kept before it counts).
    pub fn add(&self, silence: Silence) -> Result<(), IoError> {
        let mut list = lock(&self.list);
        let mut next = list.clone();
        next.push(silence);
        self.save(&next)?;
        *list = next;
        Ok(())
    }

    /// Removes silence `id` (it ends now); `false` if there is none.
    pub fn remove(&self, id: &str) -> Result<bool, IoError> {
        let mut list = lock(&self.list);
        let next: Vec<Silence> = list.iter().filter(|s| s.id != id).cloned().collect();
        if next.len() == list.len() {
            return Ok(false);
        }
        self.save(&next)?;
        *list = next;
        Ok(true)
    }

    /// The silences, those that have not ended first.
    pub fn list(&self) -> Vec<Silence> {
        lock(&self.list).clone()
    }

    /// The first silence muting an alert of `alert` with `labels` at `now`.
    pub fn muting(
        &self,
        alert: &str,
        labels: &serde_json::Map<String, serde_json::Value>,
        now: i64,
    ) -> Option<Silence> {
        lock(&self.list)
            .iter()
            .find(|s| s.mutes(alert, labels, now))
            .cloned()
    }

    /// Whether silence `id` is still in force at `now`.
    pub fn active(&self, id: &str, now: i64) -> bool {
        lock(&self.list)
            .iter()
            .any(|s| s.id == id && now < s.ends_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn labels(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn matchers_parse_and_match_labels_and_the_rule() {
        let host = labels(json!({"host": "web-1", "code": 500}));
        for (text, hit) in [
            ("host=web-1", true),
            ("host!=web-1", false),
            ("host=~web-.*", true),
            ("host!~web-.*", false),
            ("code=500", true),
            ("alert=errors", true),
            ("alert=~err", false),
            ("dc=", true),
        ] {
            let m = Matcher::parse(text).unwrap();
            assert_eq!(m.matches("errors", &host), hit, "{text}");
        }
        assert!(Matcher::parse("host")
            .unwrap_err()
            .contains("expected label=value"));
        assert!(Matcher::parse("=x").unwrap_err().contains("names no label"));
        assert!(Matcher::parse("host=~(").is_err());
        let quoted = Matcher::parse(r#"host = " web 1""#).unwrap();
        assert_eq!(quoted.value, " web 1");
        assert_eq!(quoted.to_string(), r#"host=" web 1""#);
        assert!(Matcher::parse(r#"host="open"#)
            .unwrap_err()
            .contains("not a JSON string"));
    }

    /// A label as `parse` can give one: no `=` or `!`, no spaces at its ends, not empty.
    fn label() -> impl Strategy<Value = String> {
        "[^=!]{1,12}".prop_filter("trimmed and not empty", |l| {
            !l.trim().is_empty() && l.trim() == l
        })
    }

    fn op() -> impl Strategy<Value = &'static str> {
        prop_oneof![Just("="), Just("!="), Just("=~"), Just("!~")]
    }

    proptest! {
        #[test]
        fn any_text_parses_or_is_refused_without_panicking(text in "\\PC{0,40}") {
            let _ = Matcher::parse(&text);
        }

        #[test]
        fn text_made_of_matcher_characters_parses_or_is_refused_without_panicking(
            text in "[a-z =!~\"\\\\.*()\\[\\]]{0,24}"
        ) {
            if let Ok(m) = Matcher::parse(&text) {
                prop_assert_eq!(Matcher::parse(&m.to_string()), Ok(m));
            }
        }

        #[test]
        fn a_printed_matcher_parses_back_to_itself(
            label in label(),
            op in op(),
            value in "\\PC{0,16}",
        ) {
            // A regular expression's value is one that compiles.
            let value = match op {
                "=~" | "!~" => regex::escape(&value),
                _ => value,
            };
            let m = Matcher { label, op: op.to_string(), value };
            let printed = m.to_string();
            prop_assert_eq!(Matcher::parse(&printed), Ok(m), "{}", printed);
        }
    }

    #[test]
    fn a_silence_is_kept_and_ends() {
        let dir = tempfile::tempdir().unwrap();
        let silences = Silences::open(dir.path()).unwrap();
        silences
            .add(Silence {
                id: "s1".into(),
                matchers: vec![Matcher::parse("host=web-1").unwrap()],
                starts_at: 0,
                ends_at: 10,
                comment: String::new(),
            })
            .unwrap();
        let again = Silences::open(dir.path()).unwrap();
        let host = labels(json!({"host": "web-1"}));
        assert_eq!(again.muting("errors", &host, 5).unwrap().id, "s1");
        assert!(again.muting("errors", &host, 10).is_none());
        assert!(again.remove("s1").unwrap());
        assert!(!again.remove("s1").unwrap());
        assert!(Silences::open(dir.path()).unwrap().list().is_empty());
    }
}
