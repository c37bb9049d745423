//! `eddy serve`'s configuration: a TOML file whose structs are the schema and the docs.
//!
//! Every key has a default, so an empty file (or none) is a working configuration: one
//! repository `main` that accepts events without a token, on 127.0.0.1:7280. Unknown keys are
//! errors, and [`Config::validate`] reports every problem at once before anything starts.
//!
//! ```toml
//! data_dir = "eddy-data"
//!
//! [http]
//! listen = "127.0.0.1:7280"
//! max_body_bytes = 33554432
//! max_event_bytes = 1048576
//!
//! [repositories.web]
//! partitions = 4
//! tokens = ["a-long-random-ingest-token"]
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Directory of the bus (and later the segment store).
    pub data_dir: PathBuf,
    /// The HTTP door.
    pub http: HttpConfig,
    /// Repositories by name; each is a topic `repo.<name>` of the bus.
    pub repositories: BTreeMap<String, RepositoryConfig>,
}

/// The HTTP door.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on. Port 0 picks a free port (it is logged).
    pub listen: SocketAddr,
    /// Largest request body after decompression, in bytes; larger requests get 413.
    pub max_body_bytes: usize,
    /// Largest single event (one line, or one element of a JSON array), in bytes; 413 beyond.
    pub max_event_bytes: usize,
}

/// One repository.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RepositoryConfig {
    /// Partitions of its bus topic (fixed once created).
    pub partitions: u32,
    /// Ingest tokens accepted as `Authorization: Bearer <token>`. Empty: no token needed.
    pub tokens: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("eddy-data"),
            http: HttpConfig::default(),
            repositories: BTreeMap::from([("main".to_string(), RepositoryConfig::default())]),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 7280)),
            max_body_bytes: 32 << 20,
            max_event_bytes: 1 << 20,
        }
    }
}

impl Default for RepositoryConfig {
    fn default() -> Self {
        RepositoryConfig {
            partitions: 4,
            tokens: Vec::new(),
        }
    }
}

/// Everything wrong with a configuration, each problem on its own line.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration{}:\n  - {}", source_name.as_ref().map(|p| format!(" in {p}")).unwrap_or_default(), problems.join("\n  - "))]
pub struct ConfigError {
    /// The file, if the configuration came from one.
    pub source_name: Option<String>,
    /// The problems.
    pub problems: Vec<String>,
}

/// Shortest ingest token accepted: shorter ones are guessable.
pub const MIN_TOKEN_LEN: usize = 16;

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let name = Some(path.display().to_string());
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            source_name: name.clone(),
            problems: vec![format!("cannot read the file: {e}")],
        })?;
        Config::parse(&text).map_err(|mut e| {
            e.source_name = name;
            e
        })
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError {
            source_name: None,
            problems: vec![e.to_string().trim_end().replace('\n', "\n    ")],
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every setting and reports all problems at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if self.http.max_event_bytes == 0 || self.http.max_event_bytes > self.http.max_body_bytes {
            problems.push(format!(
                "http.max_event_bytes = {} must be between 1 and http.max_body_bytes ({})",
                self.http.max_event_bytes, self.http.max_body_bytes
            ));
        }
        if self.repositories.is_empty() {
            problems
                .push("no repositories: add at least one [repositories.<name>] table".to_string());
        }
        for (name, repo) in &self.repositories {
            if let Err(e) = eddy_log::validate_name("repository", name) {
                problems.push(format!("repositories.{name}: {e}"));
            }
            if repo.partitions == 0 || repo.partitions > eddy_log::MAX_PARTITIONS {
                problems.push(format!(
                    "repositories.{name}.partitions = {} must be 1..={}",
                    repo.partitions,
                    eddy_log::MAX_PARTITIONS
                ));
            }
            for (i, token) in repo.tokens.iter().enumerate() {
                if token.len() < MIN_TOKEN_LEN {
                    // Never print the token itself.
                    problems.push(format!(
                        "repositories.{name}.tokens[{i}] is {} characters; tokens need at least {MIN_TOKEN_LEN}",
                        token.len()
                    ));
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError {
                source_name: None,
                problems,
            })
        }
    }
}

/// The bus topic of a repository.
pub fn topic_of(repository: &str) -> String {
    format!("repo.{repository}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_a_working_default() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.http.listen.port(), 7280);
        assert!(c.repositories.contains_key("main"));
    }

    #[test]
    fn every_problem_is_reported_at_once_and_tokens_are_not_printed() {
        let err = Config::parse(
            r#"
            [http]
            max_event_bytes = 0
            [repositories."bad/name"]
            [repositories.web]
            partitions = 0
            tokens = ["short-secret"]
            "#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("max_event_bytes = 0"), "{err}");
        assert!(err.contains("repositories.bad/name"), "{err}");
        assert!(err.contains("repositories.web.partitions = 0"), "{err}");
        assert!(err.contains("tokens[0] is 12 characters"), "{err}");
        assert!(!err.contains("short-secret"), "{err}");
    }

    #[test]
    fn unknown_keys_and_bad_types_name_the_place() {
        let err = Config::parse("[http]\nlisen = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("lisen"), "{err}");
        let err = Config::parse("[http]\nlisten = \"not an address\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2"), "{err}");
    }
}
