//! Tokens and scopes: who a request is and whether it may do what it asks. Every route, door
//! and websocket asks [`AppState::check`] "does this caller hold what `Need` asks?"; the
//! router's guard ([`crate::access`]) asks it before a handler runs, and the protocol doors,
//! which learn their repository from the body, ask it once they know it.
//!
//! - A [`Scope`] is `ingest:<repo>`, `read:<repo>` (`<repo>` may be `*`: every repository),
//!   `admin` (the management API; it also reads every repository and the metrics),
//!   `metrics` (`GET /metrics`) or `*` (everything). A token holds one or more.
//! - Tokens made by eddy ([`Auth::create`]) are `eddy_` and 43 characters of base64url: 32
//!   random bytes. Only their SHA-256 is kept, in `<data_dir>/tokens.json` (mode 0600,
//!   replaced atomically and fsynced), with an id, a name, the scopes, when it was created and
//!   when it expires. 256 random bits make a dictionary or brute-force search hopeless, so a
//!   fast hash suffices: a slow password hash buys nothing for secrets nobody chose.
//!   A request's token is found by the SHA-256 of what it sent; the digests are then
//!   compared in constant time.
//! - Tokens of the configuration file (deprecated: `http.admin_tokens`, a repository's
//!   `tokens` and `read_tokens`, also those of repositories created through the API) keep
//!   working, mapped to `admin`, `ingest:<repo>` and `read:<repo>`.
//! - Without a token, a caller is `anonymous`. With no token anywhere, anonymous may do
//!   everything. Once a token has been created with `eddy token create`, anonymous may do
//!   nothing but the public routes. With only configuration tokens, the old per-surface rule
//!   holds: what no configured token guards is open (a repository without ingest tokens takes
//!   events from anyone, the management API is open while `http.admin_tokens` is empty,
//!   `/metrics` is open).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::http::{header, StatusCode};
use eddy_base::sync::{read, write};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cluster_state::{ClusterState, Kind};
use crate::config::{Config, RepositoryConfig};
use crate::http::{error, Reject};
use crate::limits::{Limiter, TokenLimits};
use crate::AppState;

/// What a secret made by eddy begins with, so that a leaked one is recognised (by people and
/// secret scanners).
pub const SECRET_PREFIX: &str = "eddy_";

/// The id of a caller that sent no token.
pub const ANONYMOUS: &str = "anonymous";

/// A set of repositories a scope covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repos {
    /// Every repository (`*`).
    Any,
    /// One repository.
    Named(String),
}

impl Repos {
    fn covers(&self, name: &str) -> bool {
        match self {
            Repos::Any => true,
            Repos::Named(n) => n == name,
        }
    }
}

/// A permission a token holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// `*`: everything.
    All,
    /// `admin`: the management API (repositories, tokens, pipelines, alerts, the registry's
    /// changes); also reads every repository and the metrics.
    Admin,
    /// `metrics`: `GET /metrics`.
    Metrics,
    /// `ingest:<repo>`: send events into the repositories.
    Ingest(Repos),
    /// `read:<repo>`: search, follow live, list fields of the repositories.
    Read(Repos),
}

impl FromStr for Scope {
    type Err = String;

    fn from_str(text: &str) -> Result<Scope, String> {
        let repos = |name: &str| -> Result<Repos, String> {
            if name == "*" {
                return Ok(Repos::Any);
            }
            eddy_log::validate_name("repository", name).map_err(|e| e.to_string())?;
            Ok(Repos::Named(name.to_string()))
        };
        match text.split_once(':') {
            None if text == "*" => Ok(Scope::All),
            None if text == "admin" => Ok(Scope::Admin),
            None if text == "metrics" => Ok(Scope::Metrics),
            Some(("ingest", name)) => Ok(Scope::Ingest(repos(name)?)),
            Some(("read", name)) => Ok(Scope::Read(repos(name)?)),
            _ => Err(format!(
                "scope {text:?}: expected ingest:<repository>, read:<repository> (or `*` for \
                 every repository), admin, metrics or *"
            )),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let repos = |r: &Repos| match r {
            Repos::Any => "*".to_string(),
            Repos::Named(n) => n.clone(),
        };
        match self {
            Scope::All => f.write_str("*"),
            Scope::Admin => f.write_str("admin"),
            Scope::Metrics => f.write_str("metrics"),
            Scope::Ingest(r) => write!(f, "ingest:{}", repos(r)),
            Scope::Read(r) => write!(f, "read:{}", repos(r)),
        }
    }
}

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need<'a> {
    /// The management API.
    Admin,
    /// `GET /metrics`.
    Metrics,
    /// Sending events into a repository.
    Ingest(&'a str),
    /// Reading a repository.
    Read(&'a str),
    /// Reading some repository (the web UI's dashboards and saved searches).
    AnyRead,
    /// Any valid token (the registry's lookups, a query's syntax check).
    Known,
}

impl fmt::Display for Need<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Need::Admin => f.write_str("admin"),
            Need::Metrics => f.write_str("metrics"),
            Need::Ingest(r) => write!(f, "ingest:{r}"),
            Need::Read(r) => write!(f, "read:{r}"),
            Need::AnyRead => f.write_str("read:<some repository>"),
            Need::Known => f.write_str("any valid token"),
        }
    }
}

impl Scope {
    /// Whether this scope grants `need`.
    pub fn grants(&self, need: Need<'_>) -> bool {
        match (self, need) {
            (_, Need::Known) | (Scope::All, _) => true,
            (Scope::Admin, Need::Admin | Need::Metrics | Need::Read(_) | Need::AnyRead) => true,
            (Scope::Metrics, Need::Metrics) => true,
            (Scope::Ingest(r), Need::Ingest(name)) => r.covers(name),
            (Scope::Read(r), Need::Read(name)) => r.covers(name),
            (Scope::Read(_), Need::AnyRead) => true,
            _ => false,
        }
    }
}

/// Parses scopes, naming each bad one; at least one is needed.
pub fn parse_scopes(texts: &[String]) -> Result<Vec<Scope>, String> {
    if texts.is_empty() {
        return Err(
            "give at least one scope (ingest:<repo>, read:<repo>, admin, metrics, *)".into(),
        );
    }
    let (good, bad): (Vec<_>, Vec<_>) = texts
        .iter()
        .map(|t| t.parse::<Scope>())
        .partition(Result::is_ok);
    if bad.is_empty() {
        Ok(good.into_iter().filter_map(Result::ok).collect())
    } else {
        Err(bad
            .into_iter()
            .filter_map(Result::err)
            .collect::<Vec<_>>()
            .join("; "))
    }
}

/// A token as `tokens.json` keeps it: never the secret, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRecord {
    /// Its id (`tok_` and 12 hex digits): what logs, the audit and `revoke` name it by.
    pub id: String,
    /// A name for people.
    pub name: String,
    /// Its scopes, as written (`ingest:web`).
    pub scopes: Vec<String>,
    /// When it was created, in seconds since the epoch.
    pub created: i64,
    /// When it stops working, in seconds since the epoch (none: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<i64>,
    /// Hex SHA-256 of the secret.
    pub sha256: String,
    /// Its own limits (each unset one is the server's default, `[limits]`).
    #[serde(default)]
    pub limits: TokenLimits,
}

impl TokenRecord {
    /// The record as the API and the CLI show it.
    pub fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "name": self.name,
            "scopes": self.scopes,
            "created": eddy_event::units::format_time(self.created.saturating_mul(1_000_000_000)),
            "expires": self.expires.map(|s| eddy_event::units::format_time(s.saturating_mul(1_000_000_000))),
            "limits": self.limits,
            "source": "api",
        })
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct TokensFile {
    version: u32,
    tokens: Vec<TokenRecord>,
}

/// Who sent a request: a token's id, scopes and limits (or `anonymous`).
#[derive(Debug)]
pub struct Principal {
    /// The token's id (`tok_…`, `config:…`), or [`ANONYMOUS`].
    pub id: String,
    scopes: Vec<Scope>,
    /// When it expires, in seconds since the epoch.
    expires: Option<i64>,
    /// Its limits and what it has used of them.
    pub limits: Arc<Limiter>,
}

impl Principal {
    /// Whether one of its scopes grants `need`.
    pub fn holds(&self, need: Need<'_>) -> bool {
        self.scopes.iter().any(|s| s.grants(need))
    }

    /// Whether this is the caller without a token.
    pub fn is_anonymous(&self) -> bool {
        self.id == ANONYMOUS
    }
}

/// Why a caller's token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No token was sent where one is needed.
    Missing,
    /// The token is not one eddy knows (or it was revoked).
    Unknown,
    /// The token `id` expired at this time (seconds since the epoch).
    Expired(String, i64),
    /// The token `id` lacks the scope.
    Lacking(String, String),
}

/// Who the caller of a request is, as the router's guard found out: kept in the request's
/// extensions for the handlers that check a scope themselves (the protocol doors).
#[derive(Debug, Clone)]
pub struct Caller(pub Result<Arc<Principal>, Denied>);

impl Caller {
    /// Whether it sent no token.
    pub fn is_anonymous(&self) -> bool {
        self.0.as_ref().is_ok_and(|p| p.is_anonymous())
    }
}

/// The tokens eddy knows: those it made (by SHA-256) and those of the configuration.
#[derive(Debug)]
pub struct Auth {
    path: PathBuf,
    defaults: TokenLimits,
    created: RwLock<Created>,
    legacy: RwLock<HashMap<[u8; 32], Arc<Principal>>>,
    anonymous: Arc<Principal>,
    /// On a shared bus, where the made tokens are kept instead of `tokens.json`, and the
    /// generation of it that `created` was built from.
    shared: Option<(Arc<ClusterState>, AtomicU64)>,
}

#[derive(Debug, Default)]
struct Created {
    records: BTreeMap<String, TokenRecord>,
    by_hash: HashMap<[u8; 32], Arc<Principal>>,
}

/// Why the token file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    /// Reading or writing it failed.
    #[error(transparent)]
    Io(#[from] eddy_base::io::IoError),
    /// It does not hold what eddy writes.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

fn sha256(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if text.len() != 64 {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Equality that takes as long whatever the bytes.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn now_secs() -> i64 {
    eddy_log::now_ns() / 1_000_000_000
}

/// The file of tokens made by eddy in a data directory.
pub fn tokens_file(data_dir: &Path) -> PathBuf {
    data_dir.join("tokens.json")
}

impl Auth {
    /// Reads `tokens.json` and maps the configuration's tokens (and those of `created`, the
    /// repositories made through the API) to scopes; warns once if any configuration token
    /// exists.
    ///
    /// With `shared` (a shared bus), the made tokens are the cluster's: those of `tokens.json`
    /// that it lacks are brought into it, and every node sees every node's tokens.
    pub fn open(
        config: &Config,
        created: &BTreeMap<String, RepositoryConfig>,
        shared: Option<Arc<ClusterState>>,
    ) -> Result<Auth, TokenFileError> {
        let path = tokens_file(&config.data_dir);
        let file: TokensFile = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| TokenFileError::Invalid {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => TokensFile::default(),
            Err(e) => {
                return Err(TokenFileError::Invalid {
                    path: path.display().to_string(),
                    reason: format!("cannot read it: {e}"),
                })
            }
        };
        let defaults = config.limits.clone();
        let auth = Auth {
            anonymous: Arc::new(Principal {
                id: ANONYMOUS.into(),
                scopes: Vec::new(),
                expires: None,
                limits: Arc::new(Limiter::new(ANONYMOUS, &defaults)),
            }),
            path,
            defaults,
            created: RwLock::new(Created::default()),
            legacy: RwLock::new(HashMap::new()),
            shared: shared.map(|s| (s, AtomicU64::new(u64::MAX))),
        };
        if let Some((state, _)) = &auth.shared {
            for record in &file.tokens {
                state.create(Kind::Token, &record.id, record).map_err(|e| {
                    TokenFileError::Invalid {
                        path: auth.path.display().to_string(),
                        reason: format!("cannot bring its tokens into the cluster: {e}"),
                    }
                })?;
            }
            auth.follow_shared();
        } else {
            let mut created_tokens = write(&auth.created);
            for record in file.tokens {
                let principal =
                    auth.principal_of(&record)
                        .map_err(|reason| TokenFileError::Invalid {
                            path: auth.path.display().to_string(),
                            reason,
                        })?;
                created_tokens.by_hash.insert(principal.0, principal.1);
                created_tokens.records.insert(record.id.clone(), record);
            }
        }
        for (i, t) in config.http.admin_tokens.iter().enumerate() {
            auth.add_legacy(t, format!("config:http.admin_tokens[{i}]"), Scope::Admin);
        }
        let repos = created
            .iter()
            .filter(|(name, _)| !config.repositories.contains_key(*name))
            .chain(&config.repositories);
        for (name, repo) in repos {
            auth.add_repository_tokens(name, repo);
        }
        if auth.has_legacy_tokens() {
            tracing::warn!(
                "tokens in the configuration file or repositories.json (http.admin_tokens, a \
                 repository's tokens and read_tokens) are deprecated: they keep working, mapped \
                 to the scopes admin, ingest:<repo> and read:<repo>; create scoped, hashed \
                 tokens with `eddy token create` instead (docs/security.md)"
            );
        }
        Ok(auth)
    }

    /// On a shared bus, rebuilds the made tokens from the cluster's if they changed; a token
    /// that stays keeps its principal (and so its rate limits).
    fn follow_shared(&self) {
        let Some((state, seen)) = &self.shared else {
            return;
        };
        let generation = state.generation();
        if seen.load(Ordering::Acquire) == generation {
            return;
        }
        let records: BTreeMap<String, TokenRecord> = state.all(Kind::Token);
        let mut created = write(&self.created);
        let kept: HashMap<String, ([u8; 32], Arc<Principal>)> = created
            .by_hash
            .iter()
            .map(|(hash, p)| (p.id.clone(), (*hash, p.clone())))
            .collect();
        let mut by_hash = HashMap::new();
        for record in records.values() {
            let unchanged = kept
                .get(&record.id)
                .filter(|_| created.records.get(&record.id) == Some(record));
            match unchanged {
                Some((hash, p)) => {
                    by_hash.insert(*hash, p.clone());
                }
                None => match self.principal_of(record) {
                    Ok((hash, p)) => {
                        by_hash.insert(hash, p);
                    }
                    Err(e) => tracing::error!("a token of the cluster's state is unusable: {e}"),
                },
            }
        }
        *created = Created { records, by_hash };
        seen.store(generation, Ordering::Release);
    }

    fn principal_of(&self, record: &TokenRecord) -> Result<([u8; 32], Arc<Principal>), String> {
        let hash = unhex(&record.sha256)
            .ok_or_else(|| format!("token {}: sha256 is not 64 hex digits", record.id))?;
        let scopes =
            parse_scopes(&record.scopes).map_err(|e| format!("token {}: {e}", record.id))?;
        let limits = record.limits.or(&self.defaults);
        Ok((
            hash,
            Arc::new(Principal {
                id: record.id.clone(),
                scopes,
                expires: record.expires,
                limits: Arc::new(Limiter::new(&record.id, &limits)),
            }),
        ))
    }

    fn add_legacy(&self, secret: &str, id: String, scope: Scope) {
        let mut legacy = write(&self.legacy);
        let hash = sha256(secret);
        let scopes = match legacy.get(&hash) {
            // One secret listed in several places holds every scope they give.
            Some(p) if !p.scopes.contains(&scope) => {
                let mut s = p.scopes.clone();
                s.push(scope);
                s
            }
            Some(_) => return,
            None => vec![scope],
        };
        let id = legacy.get(&hash).map_or(id, |p| p.id.clone());
        let limits = Arc::new(Limiter::new(&id, &self.defaults));
        legacy.insert(
            hash,
            Arc::new(Principal {
                id,
                scopes,
                expires: None,
                limits,
            }),
        );
    }

    /// Maps a repository's configured `tokens` and `read_tokens` (deprecated) to scopes.
    pub fn add_repository_tokens(&self, name: &str, repo: &RepositoryConfig) {
        for (i, t) in repo.tokens.iter().enumerate() {
            let id = format!("config:repositories.{name}.tokens[{i}]");
            self.add_legacy(t, id, Scope::Ingest(Repos::Named(name.into())));
        }
        for (i, t) in repo.read_tokens.iter().enumerate() {
            let id = format!("config:repositories.{name}.read_tokens[{i}]");
            self.add_legacy(t, id, Scope::Read(Repos::Named(name.into())));
        }
    }

    /// Whether any configuration token exists.
    pub fn has_legacy_tokens(&self) -> bool {
        !read(&self.legacy).is_empty()
    }

    /// Whether any token made by eddy exists (expired ones included): then every route but
    /// the public ones needs a token.
    pub fn has_created_tokens(&self) -> bool {
        self.follow_shared();
        !read(&self.created).records.is_empty()
    }

    /// Who `given` is: a known, unexpired token, or anonymous when nothing was given.
    pub fn identify(&self, given: Option<&str>) -> Result<Arc<Principal>, Denied> {
        let Some(given) = given.filter(|g| !g.is_empty()) else {
            return Ok(self.anonymous.clone());
        };
        let hash = sha256(given);
        self.follow_shared();
        let found = read(&self.created)
            .by_hash
            .get_key_value(&hash)
            .map(|(k, p)| (*k, p.clone()))
            .or_else(|| {
                read(&self.legacy)
                    .get_key_value(&hash)
                    .map(|(k, p)| (*k, p.clone()))
            });
        match found {
            Some((stored, p)) if constant_time_eq(&stored, &hash) => match p.expires {
                Some(at) if at <= now_secs() => Err(Denied::Expired(p.id.clone(), at)),
                _ => Ok(p),
            },
            _ => Err(Denied::Unknown),
        }
    }

    /// Makes a token: returns its record and its secret (shown once, never kept).
    pub fn create(
        &self,
        name: String,
        scopes: Vec<String>,
        expires: Option<i64>,
        limits: TokenLimits,
    ) -> Result<(TokenRecord, String), CreateError> {
        let parsed = parse_scopes(&scopes).map_err(CreateError::Invalid)?;
        let scopes = parsed.iter().map(Scope::to_string).collect();
        let secret_bytes: [u8; 32] = rand::random();
        let secret = {
            use base64::Engine;
            format!(
                "{SECRET_PREFIX}{}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret_bytes)
            )
        };
        let id_bytes: [u8; 6] = rand::random();
        let record = TokenRecord {
            id: format!("tok_{}", hex(&id_bytes)),
            name,
            scopes,
            created: now_secs(),
            expires,
            sha256: hex(&sha256(&secret)),
            limits,
        };
        let (hash, principal) = self.principal_of(&record).map_err(CreateError::Invalid)?;
        if let Some((state, _)) = &self.shared {
            state
                .put(Kind::Token, &record.id, &record)
                .map_err(|e| CreateError::Shared(e.to_string()))?;
            self.follow_shared();
            return Ok((record, secret));
        }
        let mut created = write(&self.created);
        let mut records = created.records.clone();
        records.insert(record.id.clone(), record.clone());
        self.save(&records)?;
        created.records = records;
        created.by_hash.insert(hash, principal);
        Ok((record, secret))
    }

    /// Removes token `id`: it stops working at once.
    pub fn revoke(&self, id: &str) -> Result<TokenRecord, CreateError> {
        if let Some((state, _)) = &self.shared {
            self.follow_shared();
            let record = read(&self.created).records.get(id).cloned();
            let record = record.ok_or_else(|| CreateError::NotFound(id.to_string()))?;
            state
                .remove(Kind::Token, id)
                .map_err(|e| CreateError::Shared(e.to_string()))?;
            self.follow_shared();
            return Ok(record);
        }
        let mut created = write(&self.created);
        let Some(record) = created.records.get(id).cloned() else {
            return Err(CreateError::NotFound(id.to_string()));
        };
        let mut records = created.records.clone();
        records.remove(id);
        self.save(&records)?;
        created.records = records;
        created.by_hash.retain(|_, p| p.id != id);
        Ok(record)
    }

    /// The tokens eddy made, and the configuration's (by where they are configured).
    pub fn list(&self) -> Vec<serde_json::Value> {
        self.follow_shared();
        let mut out: Vec<_> = read(&self.created)
            .records
            .values()
            .map(TokenRecord::describe)
            .collect();
        let mut legacy: Vec<_> = read(&self.legacy)
            .values()
            .map(|p| {
                serde_json::json!({
                    "id": p.id,
                    "name": p.id,
                    "scopes": p.scopes.iter().map(Scope::to_string).collect::<Vec<_>>(),
                    "source": "config",
                })
            })
            .collect();
        legacy.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
        out.extend(legacy);
        out
    }

    fn save(&self, records: &BTreeMap<String, TokenRecord>) -> Result<(), CreateError> {
        let file = TokensFile {
            version: 1,
            tokens: records.values().cloned().collect(),
        };
        let bytes =
            serde_json::to_vec_pretty(&file).map_err(|e| CreateError::Invalid(e.to_string()))?;
        // Only digests, but still nobody else's business.
        eddy_base::fs::replace_private_file(&self.path, &bytes).map_err(CreateError::Io)
    }
}

/// Why a token could not be made or revoked.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// The request is wrong (a bad scope, an expiry in the past).
    #[error("{0}")]
    Invalid(String),
    /// No token has this id.
    #[error("no token has the id {0:?}")]
    NotFound(String),
    /// `tokens.json` could not be written; nothing changed.
    #[error("could not write the token file: {0}")]
    Io(eddy_base::io::IoError),
    /// The cluster's shared state could not be written or read back.
    #[error("could not keep the change in the cluster's shared state: {0}")]
    Shared(String),
}

/// The token a request sent: `Authorization: Bearer`, `Splunk` (HEC), `Token` (Influx),
/// `ApiKey` (Elasticsearch: base64 of `id:key`, the key is the token), or basic auth's
/// password (clients that only speak basic auth, as Confluent's registry clients).
pub fn given_token(headers: &axum::http::HeaderMap) -> Option<String> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())?
        .trim();
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    match scheme.to_ascii_lowercase().as_str() {
        "bearer" | "splunk" | "token" => Some(rest.to_string()),
        "basic" => crate::http::basic_password(rest),
        "apikey" => {
            use base64::Engine;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .ok()
                .and_then(|d| String::from_utf8(d).ok());
            match decoded {
                Some(d) => Some(d.split_once(':').map_or(d.clone(), |(_, key)| key.into())),
                None => Some(rest.to_string()),
            }
        }
        _ => None,
    }
}

impl AppState {
    /// Whether the caller without a token may do `need` (see the module's documentation).
    fn anonymous_allows(&self, need: Need<'_>) -> bool {
        if self.auth.has_created_tokens() {
            return false;
        }
        if !self.auth.has_legacy_tokens() {
            return true;
        }
        let admin_open = self.config.http.admin_tokens.is_empty();
        let repo = |name: &str| self.repository(name);
        match need {
            Need::Metrics => true,
            Need::Admin | Need::Known => admin_open,
            Need::AnyRead => {
                admin_open
                    && self
                        .repositories()
                        .iter()
                        .all(|r| r.config.read_tokens.is_empty())
            }
            // An unknown repository is the handler's 404.
            Need::Ingest(name) => repo(name).is_none_or(|r| r.config.tokens.is_empty()),
            Need::Read(name) => {
                admin_open
                    && repo(name).is_none_or(|r| {
                        r.config.tokens.is_empty() && r.config.read_tokens.is_empty()
                    })
            }
        }
    }

    /// The one check: whether `caller` may do `need`. A refusal is `401` (no token where one is
    /// needed, an expired token; with `WWW-Authenticate: Bearer`) or `403` (an unknown token,
    /// a token without the scope), and an event in the audit; `route` says where, for it.
    pub fn check(
        &self,
        caller: &Caller,
        need: Need<'_>,
        route: &str,
    ) -> Result<Arc<Principal>, Reject> {
        let denied = match &caller.0 {
            Ok(p) if p.is_anonymous() => {
                if self.anonymous_allows(need) {
                    return Ok(p.clone());
                }
                Denied::Missing
            }
            Ok(p) if p.holds(need) => return Ok(p.clone()),
            Ok(p) => Denied::Lacking(p.id.clone(), need.to_string()),
            Err(d) => d.clone(),
        };
        self.audit.refused(&denied, route);
        Err(refusal(&denied))
    }
}

/// The check of a TCP listener's first-line tokens: the same scopes and audit as HTTP.
#[derive(Debug)]
pub struct ListenerTokens(pub std::sync::Weak<crate::AppState>);

impl eddy_ingest::tcp::TokenCheck for ListenerTokens {
    fn may_ingest(
        &self,
        token: &str,
        repository: &str,
        peer: std::net::SocketAddr,
    ) -> Result<(), String> {
        let state = self.0.upgrade().ok_or("the server is stopping")?;
        let caller = Caller(state.auth.identify(Some(token)));
        let route = format!("tcp listener, from {peer}");
        state
            .check(&caller, Need::Ingest(repository), &route)
            .map(drop)
            .map_err(|r| r.message())
    }
}

/// The answer to a refused caller.
pub fn refusal(denied: &Denied) -> Reject {
    match denied {
        Denied::Missing => {
            let mut r = error(
                StatusCode::UNAUTHORIZED,
                "a token is needed: Authorization: Bearer <token>",
            );
            r.challenge = true;
            r
        }
        Denied::Unknown => error(StatusCode::FORBIDDEN, "the token is not valid here"),
        Denied::Expired(id, at) => {
            let mut r = error(
                StatusCode::UNAUTHORIZED,
                format!(
                    "token {id} expired at {}; create a new one with `eddy token create`",
                    eddy_event::units::format_time(at.saturating_mul(1_000_000_000))
                ),
            );
            r.challenge = true;
            r
        }
        Denied::Lacking(id, need) => error(
            StatusCode::FORBIDDEN,
            format!("the token is not valid here: token {id} does not hold the scope {need}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_read_back_as_written_and_bad_ones_are_named() {
        for text in [
            "*",
            "admin",
            "metrics",
            "ingest:web",
            "read:*",
            "ingest:_alerts",
        ] {
            assert_eq!(text.parse::<Scope>().unwrap().to_string(), text);
        }
        for bad in [
            "ingest",
            "read:",
            "write:web",
            "ingest:../x",
            "read:a/b",
            "ingest:a\0",
        ] {
            assert!(bad.parse::<Scope>().is_err(), "{bad:?}");
        }
        let err = parse_scopes(&["admin".into(), "nope".into()]).unwrap_err();
        assert!(err.contains("nope"), "{err}");
    }

    #[test]
    fn each_scope_grants_what_it_says_and_no_more() {
        let web = |s: &str| s.parse::<Scope>().unwrap();
        assert!(web("ingest:web").grants(Need::Ingest("web")));
        assert!(!web("ingest:web").grants(Need::Read("web")));
        assert!(!web("ingest:web").grants(Need::Ingest("other")));
        assert!(web("ingest:*").grants(Need::Ingest("other")));
        assert!(web("read:web").grants(Need::Read("web")));
        assert!(web("read:web").grants(Need::AnyRead));
        assert!(!web("read:web").grants(Need::Admin));
        assert!(web("admin").grants(Need::Read("web")));
        assert!(!web("admin").grants(Need::Ingest("web")));
        assert!(web("metrics").grants(Need::Metrics));
        assert!(!web("metrics").grants(Need::Read("web")));
        assert!(web("*").grants(Need::Ingest("web")));
    }

    fn config(dir: &Path, extra: &str) -> Config {
        let mut c = Config::parse(extra).unwrap();
        c.data_dir = dir.to_path_buf();
        c
    }

    #[test]
    fn a_created_token_is_found_by_its_secret_kept_only_as_a_digest_and_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path(), "");
        let auth = Auth::open(&c, &BTreeMap::new(), None).unwrap();
        let (record, secret) = auth
            .create(
                "ci".into(),
                vec!["ingest:main".into()],
                None,
                TokenLimits::default(),
            )
            .unwrap();
        assert!(
            secret.starts_with(SECRET_PREFIX) && secret.len() == 48,
            "{secret}"
        );
        let p = auth.identify(Some(&secret)).unwrap();
        assert_eq!(p.id, record.id);
        assert!(p.holds(Need::Ingest("main")));
        assert_eq!(
            auth.identify(Some("eddy_wrong")).unwrap_err(),
            Denied::Unknown
        );
        let file = std::fs::read_to_string(tokens_file(dir.path())).unwrap();
        assert!(
            !file.contains(&secret) && file.contains(&record.sha256),
            "{file}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(tokens_file(dir.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Read back by a new process.
        let again = Auth::open(&c, &BTreeMap::new(), None).unwrap();
        assert_eq!(again.identify(Some(&secret)).unwrap().id, record.id);
        again.revoke(&record.id).unwrap();
        assert_eq!(again.identify(Some(&secret)).unwrap_err(), Denied::Unknown);
        let third = Auth::open(&c, &BTreeMap::new(), None).unwrap();
        assert_eq!(third.identify(Some(&secret)).unwrap_err(), Denied::Unknown);
    }

    #[test]
    fn an_expired_token_is_refused_by_its_id() {
        let dir = tempfile::tempdir().unwrap();
        let auth = Auth::open(&config(dir.path(), ""), &BTreeMap::new(), None).unwrap();
        let at = now_secs() - 1;
        let (record, secret) = auth
            .create(
                "old".into(),
                vec!["admin".into()],
                Some(at),
                TokenLimits::default(),
            )
            .unwrap();
        assert_eq!(
            auth.identify(Some(&secret)).unwrap_err(),
            Denied::Expired(record.id, at)
        );
    }

    #[test]
    fn configuration_tokens_map_to_scopes_and_one_secret_gathers_them() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(
            dir.path(),
            "[http]\nadmin_tokens = [\"admin-token-0123456789\"]\n[repositories.web]\ntokens = [\"admin-token-0123456789\"]\nread_tokens = [\"read-token-0123456789\"]\n",
        );
        let auth = Auth::open(&c, &BTreeMap::new(), None).unwrap();
        let admin = auth.identify(Some("admin-token-0123456789")).unwrap();
        assert!(admin.holds(Need::Admin) && admin.holds(Need::Ingest("web")));
        let reader = auth.identify(Some("read-token-0123456789")).unwrap();
        assert!(reader.holds(Need::Read("web")) && !reader.holds(Need::Ingest("web")));
        assert_eq!(reader.id, "config:repositories.web.read_tokens[0]");
    }
}
