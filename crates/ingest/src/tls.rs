//! TLS for the doors that listen on TCP: the HTTP door (with its websockets, the registry and
//! the protocol doors) and the `[[tcp]]` listeners (syslog over TLS is RFC 5425: octet-counted
//! frames inside the TLS stream, which [`crate::framing`] already reads).
//!
//! - [`TlsConfig`] is the `[tls]` section: a certificate chain and a private key (PEM files),
//!   and optionally `client_ca`, whose certificates must sign every client's (mTLS).
//! - [`Certificates`] holds the rustls configuration in force and hands out
//!   [`tokio_rustls::TlsAcceptor`]s. [`Certificates::watch`] reads the files every
//!   `reload_interval` and, when their bytes change, builds a new configuration: new
//!   connections get the new certificate, open ones keep the one they shook hands with, and a
//!   bad new file is logged while the old configuration stays in force.
//! - [`handshake`] bounds a TLS handshake by `handshake_timeout`, so a client that opens a
//!   connection and sends half a hello holds its slot for a bounded time.
//!
//! Only rustls with the *ring* provider: no OpenSSL.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use eddy_base::sync::{lock, read, write};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio_rustls::server::TlsStream;

use crate::config::duration;
use crate::metrics::{Door, IngestMetrics, SlowPhase};

/// The `[tls]` section of `eddy serve`'s configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of the server's certificate chain (its own certificate first). With `key`, every
    /// TCP door serves TLS (a `[[tcp]]` listener may opt out with `tls = false`).
    pub cert: Option<PathBuf>,
    /// PEM file of the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// PEM file of the certificate authorities that sign clients' certificates. When set, every
    /// TLS client must present a certificate signed by one of them (mutual TLS).
    pub client_ca: Option<PathBuf>,
    /// How often the files are read for changes (5 s); new connections get what changed.
    #[serde(deserialize_with = "duration")]
    pub reload_interval: Duration,
    /// A TLS handshake must complete within this (10 s) of the connection opening; else the
    /// connection is closed and counted as timed out (`phase="handshake"`).
    #[serde(deserialize_with = "duration")]
    pub handshake_timeout: Duration,
    /// Let `eddy serve` start although tokens are configured and a door listens on a
    /// non-loopback address without TLS (tokens and events then cross the network in clear).
    pub allow_insecure: bool,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert: None,
            key: None,
            client_ca: None,
            reload_interval: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(10),
            allow_insecure: false,
        }
    }
}

impl TlsConfig {
    /// Whether the doors serve TLS (a certificate and a key are configured).
    pub fn enabled(&self) -> bool {
        self.cert.is_some() && self.key.is_some()
    }

    /// What is wrong with these settings, each problem naming its key.
    pub fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match (&self.cert, &self.key) {
            (Some(_), None) => problems.push("tls.cert is set without tls.key".to_string()),
            (None, Some(_)) => problems.push("tls.key is set without tls.cert".to_string()),
            _ => {}
        }
        if self.client_ca.is_some() && !self.enabled() {
            problems.push("tls.client_ca needs tls.cert and tls.key".to_string());
        }
        for (what, d) in [
            ("tls.reload_interval", self.reload_interval),
            ("tls.handshake_timeout", self.handshake_timeout),
        ] {
            if d.is_zero() {
                problems.push(format!("{what} must be longer than 0s"));
            }
        }
        problems
    }
}

/// Why the TLS configuration could not be built from its files.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("tls.{key}: cannot read {}: {source}", path.display())]
    Read {
        /// The setting that names the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A file holds no usable PEM section of the kind needed.
    #[error("tls.{key}: {} holds no {what} in PEM form{}", path.display(), detail.as_ref().map(|d| format!(" ({d})")).unwrap_or_default())]
    NoPem {
        /// The setting that names the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What was looked for.
        what: &'static str,
        /// The PEM parser's complaint, if it had one.
        detail: Option<String>,
    },
    /// The client certificate authorities could not be used.
    #[error("tls.client_ca: {}: {reason}", path.display())]
    ClientCa {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// rustls refused the certificate and key (for instance, the key does not match).
    #[error("tls.cert {} with tls.key {}: {source}", cert.display(), key.display())]
    Refused {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls' reason.
        #[source]
        source: rustls::Error,
    },
}

/// The bytes of the configured files, as last read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileBytes {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

/// What a look at the files found.
#[derive(Debug)]
pub enum Reload {
    /// The files hold what they held.
    Unchanged,
    /// The files changed and the new configuration is in force for new connections.
    Reloaded,
    /// The files changed (or could not be read) and the new ones are not usable; the
    /// configuration in force stays.
    Refused(TlsError),
}

/// The TLS configuration in force, reloaded from its files when they change.
#[derive(Debug)]
pub struct Certificates {
    config: TlsConfig,
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<ServerConfig>>,
    /// The bytes behind `current`, or the last bytes found unusable (not to retry them).
    seen: Mutex<FileBytes>,
    /// The last refusal logged, not to repeat it every interval.
    last_refusal: Mutex<Option<String>>,
}

impl Certificates {
    /// Reads and checks the files of `config`; `None` if TLS is not configured.
    pub fn load(config: &TlsConfig) -> Result<Option<Arc<Certificates>>, TlsError> {
        let (Some(cert), Some(key)) = (&config.cert, &config.key) else {
            return Ok(None);
        };
        let bytes = read_files(config, cert, key)?;
        let server = server_config(config, cert, key, &bytes)?;
        Ok(Some(Arc::new(Certificates {
            config: config.clone(),
            cert: cert.clone(),
            key: key.clone(),
            current: RwLock::new(Arc::new(server)),
            seen: Mutex::new(bytes),
            last_refusal: Mutex::new(None),
        })))
    }

    /// An acceptor with the configuration in force now.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(read(&self.current).clone())
    }

    /// How long a handshake may take.
    pub fn handshake_timeout(&self) -> Duration {
        self.config.handshake_timeout
    }

    /// Reads the files; if their bytes changed, builds and puts in force a new configuration.
    pub fn reload_if_changed(&self) -> Reload {
        let bytes = match read_files(&self.config, &self.cert, &self.key) {
            Ok(b) => b,
            Err(e) => return Reload::Refused(e),
        };
        let mut seen = lock(&self.seen);
        if *seen == bytes {
            return Reload::Unchanged;
        }
        // Remembered either way: unusable bytes are not tried again until they change.
        *seen = bytes.clone();
        match server_config(&self.config, &self.cert, &self.key, &bytes) {
            Ok(server) => {
                *write(&self.current) = Arc::new(server);
                Reload::Reloaded
            }
            Err(e) => Reload::Refused(e),
        }
    }

    /// Looks at the files every `reload_interval` until `stop`, logging and counting what
    /// changed (`eddy_ingest_tls_reloads_total`).
    pub async fn watch(
        self: Arc<Self>,
        metrics: Arc<IngestMetrics>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(self.config.reload_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = tick.tick() => {}
            }
            let this = self.clone();
            let Ok(outcome) = tokio::task::spawn_blocking(move || this.reload_if_changed()).await
            else {
                continue;
            };
            match outcome {
                Reload::Unchanged => {}
                Reload::Reloaded => {
                    metrics.tls_reloaded(true);
                    *lock(&self.last_refusal) = None;
                    tracing::info!(cert = %self.cert.display(), key = %self.key.display(), "TLS: new certificate files in force for new connections");
                }
                Reload::Refused(e) => {
                    let message = e.to_string();
                    let mut last = lock(&self.last_refusal);
                    if last.as_deref() != Some(message.as_str()) {
                        metrics.tls_reloaded(false);
                        tracing::error!(error = %message, "TLS: the changed certificate files are not usable; the previous ones stay in force");
                        *last = Some(message);
                    }
                }
            }
        }
    }
}

fn read_file(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        key,
        path: path.to_path_buf(),
        source,
    })
}

fn read_files(config: &TlsConfig, cert: &Path, key: &Path) -> Result<FileBytes, TlsError> {
    Ok(FileBytes {
        cert: read_file("cert", cert)?,
        key: read_file("key", key)?,
        client_ca: config
            .client_ca
            .as_deref()
            .map(|p| read_file("client_ca", p))
            .transpose()?,
    })
}

/// The certificates of a PEM file, or why there are none.
fn certificates(
    key: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let no_pem = |detail: Option<String>| TlsError::NoPem {
        key,
        path: path.to_path_buf(),
        what: "certificate",
        detail,
    };
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| no_pem(Some(e.to_string())))?;
    if certs.is_empty() {
        return Err(no_pem(None));
    }
    Ok(certs)
}

/// rustls' server configuration from the files' bytes.
fn server_config(
    config: &TlsConfig,
    cert_path: &Path,
    key_path: &Path,
    bytes: &FileBytes,
) -> Result<ServerConfig, TlsError> {
    let chain = certificates("cert", cert_path, &bytes.cert)?;
    let key = PrivateKeyDer::from_pem_slice(&bytes.key).map_err(|e| TlsError::NoPem {
        key: "key",
        path: key_path.to_path_buf(),
        what: "private key",
        detail: Some(e.to_string()),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let refused = |source| TlsError::Refused {
        cert: cert_path.to_path_buf(),
        key: key_path.to_path_buf(),
        source,
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(refused)?;
    let builder = match (&config.client_ca, &bytes.client_ca) {
        (Some(path), Some(pem)) => {
            let mut roots = RootCertStore::empty();
            for ca in certificates("client_ca", path, pem)? {
                roots.add(ca).map_err(|e| TlsError::ClientCa {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::ClientCa {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    builder.with_single_cert(chain, key).map_err(refused)
}

/// Why a TLS connection did not open.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The client did not complete the handshake in time.
    #[error("the TLS handshake did not complete within {} (tls.handshake_timeout)", eddy_event::units::format_duration(*.0))]
    TimedOut(Duration),
    /// The handshake failed (not TLS, no or a bad client certificate, …).
    #[error("the TLS handshake failed: {0}")]
    Failed(#[from] std::io::Error),
}

impl HandshakeError {
    /// Counts it for `door` on `listener`: a timeout with the slow clients, else as a failed
    /// handshake.
    pub fn count(&self, metrics: &IngestMetrics, door: Door, listener: SocketAddr) {
        match self {
            HandshakeError::TimedOut(_) => metrics.timed_out(door, SlowPhase::Handshake),
            HandshakeError::Failed(_) => metrics.tls_handshake_failed(door, &listener.to_string()),
        }
    }
}

/// Shakes hands over `stream` with the configuration in force, within the handshake timeout.
pub async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    certificates: &Certificates,
    stream: S,
) -> Result<TlsStream<S>, HandshakeError> {
    let timeout = certificates.handshake_timeout();
    match tokio::time::timeout(timeout, certificates.acceptor().accept(stream)).await {
        Ok(shaken) => Ok(shaken?),
        Err(_) => Err(HandshakeError::TimedOut(timeout)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cert_and_key_go_together_and_client_ca_needs_both() {
        let c = TlsConfig {
            cert: Some("c.pem".into()),
            ..TlsConfig::default()
        };
        assert_eq!(c.check(), vec!["tls.cert is set without tls.key"]);
        let c = TlsConfig {
            client_ca: Some("ca.pem".into()),
            handshake_timeout: Duration::ZERO,
            ..TlsConfig::default()
        };
        assert_eq!(
            c.check(),
            vec![
                "tls.client_ca needs tls.cert and tls.key",
                "tls.handshake_timeout must be longer than 0s"
            ]
        );
        assert!(TlsConfig::default().check().is_empty());
        assert!(!TlsConfig::default().enabled());
    }

    #[test]
    fn unreadable_or_empty_files_are_refused_naming_the_key_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        let config = TlsConfig {
            cert: Some(cert.clone()),
            key: Some(key.clone()),
            ..TlsConfig::default()
        };
        let err = Certificates::load(&config).unwrap_err().to_string();
        assert!(err.starts_with("tls.cert: cannot read "), "{err}");
        assert!(err.contains("cert.pem"), "{err}");
        std::fs::write(&cert, "not a certificate\n").unwrap();
        std::fs::write(&key, "not a key\n").unwrap();
        let err = Certificates::load(&config).unwrap_err().to_string();
        assert!(
            err.contains("tls.cert:") && err.contains("holds no certificate in PEM form"),
            "{err}"
        );
        assert!(Certificates::load(&TlsConfig::default()).unwrap().is_none());
    }
}
