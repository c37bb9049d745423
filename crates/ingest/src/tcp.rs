//! A TCP listener: events as lines (syslog also octet-counted), no answers.
//!
//! Each connection reads frames into a batch and stores the batch when it is full or when no
//! more bytes are buffered; it reads nothing more until the batch is durable. So when the bus
//! or the in-flight budget is full, the connection stops reading and the kernel pushes back on
//! the sender. Bad lines are counted and logged, and the connection goes on. A JSON listener
//! reads each line by [`crate::json_body`]'s rule (a line holding an array gives its elements).
//! Connections past `ingest.max_tcp_connections` are closed at once, counted and logged.
//!
//! With `token_first_line`, a connection's first line is a token that must allow ingest into the
//! listener's repository ([`TokenCheck`]); without one the connection is closed, counted and
//! logged, before any of its events is stored.
//!
//! With TLS ([`crate::tls`]) each connection first shakes hands, within `tls.handshake_timeout`,
//! in its own task (a slow handshake never holds the accept loop); then the same framing reads
//! the decrypted stream, so syslog over TLS (RFC 5425, octet-counted) needs nothing more.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use eddy_event::Parser;
use tokio::io::AsyncRead;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::ListenerConfig;
use crate::connlimit::ConnectionLimit;
use crate::framing::{Frame, FrameReader, Framing};
use crate::json_body;
use crate::metrics::{Door, RejectReason, SlowPhase};
use crate::tls::{self, Certificates, HandshakeError};
use crate::{Ingest, IngestError, Repository};

/// Events per stored batch at most.
pub const MAX_BATCH_EVENTS: usize = 1000;
/// Bytes per stored batch at most (beyond one frame).
pub const MAX_BATCH_BYTES: usize = 1 << 20;
const READ_BUFFER: usize = 64 << 10;

/// Whether a token sent on a connection allows sending events into a repository (the server's
/// one access check, behind this trait so the doors do not depend on it).
pub trait TokenCheck: Send + Sync + std::fmt::Debug {
    /// `Ok` if `token` may ingest into `repository`; else why not (never the token itself).
    fn may_ingest(&self, token: &str, repository: &str, peer: SocketAddr) -> Result<(), String>;
}

/// A bound TCP listener.
#[derive(Debug)]
pub struct TcpDoor {
    ingest: Arc<Ingest>,
    config: Arc<ListenerConfig>,
    repo: Arc<Repository>,
    listener: TcpListener,
    addr: SocketAddr,
    tls: Option<Arc<Certificates>>,
    tokens: Option<Arc<dyn TokenCheck>>,
}

impl TcpDoor {
    /// Binds the listener, which stores into `repo`, serving TLS with `tls` if given.
    pub async fn bind(
        ingest: Arc<Ingest>,
        repo: Arc<Repository>,
        config: ListenerConfig,
        tls: Option<Arc<Certificates>>,
    ) -> Result<TcpDoor, IngestError> {
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(IngestError::io(format!(
                "binding the TCP listener to {}",
                config.listen
            )))?;
        let addr = listener
            .local_addr()
            .map_err(IngestError::io("reading the bound address"))?;
        Ok(TcpDoor {
            ingest,
            config: Arc::new(config),
            repo,
            listener,
            addr,
            tls,
            tokens: None,
        })
    }

    /// Checks the first-line tokens of a `token_first_line` listener with `tokens` (without
    /// it, every such connection is refused).
    pub fn with_token_check(mut self, tokens: Arc<dyn TokenCheck>) -> TcpDoor {
        self.tokens = Some(tokens);
        self
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Accepts connections until `stop`; then lets each connection store what it has read.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let limit = ConnectionLimit::new(
            self.ingest.metrics.clone(),
            Door::Tcp,
            self.addr,
            self.ingest.config.max_tcp_connections,
        );
        let mut connections = JoinSet::new();
        loop {
            let accepted = tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                accepted = self.listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, peer)) => {
                    // At the limit the connection is closed at once (dropped).
                    let Some(slot) = limit.admit(peer) else {
                        continue;
                    };
                    let conn = Connection {
                        ingest: self.ingest.clone(),
                        config: self.config.clone(),
                        repo: self.repo.clone(),
                        peer,
                        tokens: self.tokens.clone(),
                    };
                    let stop = stop.clone();
                    let tls = self.tls.clone();
                    let listener = self.addr;
                    connections.spawn(async move {
                        let _ = stream.set_nodelay(true);
                        match tls {
                            None => conn.run(stream, stop).await,
                            Some(tls) => match tls::handshake(&tls, stream).await {
                                Ok(stream) => conn.run(stream, stop).await,
                                Err(e) => conn.handshake_failed(listener, &e),
                            },
                        }
                        drop(slot);
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(listener = %self.addr, error = %e, "accepting a TCP connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
            while connections.try_join_next().is_some() {}
        }
        // New clients are refused by the kernel from now on, not left waiting in the backlog.
        drop(self.listener);
        while connections.join_next().await.is_some() {}
    }
}

struct Connection {
    ingest: Arc<Ingest>,
    config: Arc<ListenerConfig>,
    repo: Arc<Repository>,
    peer: SocketAddr,
    tokens: Option<Arc<dyn TokenCheck>>,
}

impl Connection {
    fn handshake_failed(&self, listener: SocketAddr, e: &HandshakeError) {
        e.count(&self.ingest.metrics, Door::Tcp, listener);
        tracing::debug!(peer = %self.peer, %listener, error = %e, "closing a TCP connection");
    }

    async fn run<S: AsyncRead + Unpin>(self, stream: S, mut stop: watch::Receiver<bool>) {
        let framing = if self.config.parser == Parser::Syslog {
            Framing::Syslog
        } else {
            Framing::Lines
        };
        let max = self.ingest.max_event_bytes;
        let reader = tokio::io::BufReader::with_capacity(READ_BUFFER, stream);
        let mut frames = FrameReader::new(reader, framing, max);
        let mut frame = Vec::new();
        let mut batch = Vec::new();
        let mut bytes = 0;
        let mut received = Instant::now();
        let idle = self.ingest.config.tcp_idle_timeout;
        let mut unauthenticated = self.config.token_first_line;
        loop {
            let next = tokio::select! {
                next = tokio::time::timeout(idle, frames.next(&mut frame)) => match next {
                    Ok(next) => next,
                    Err(_) => {
                        self.ingest.metrics.timed_out(Door::Tcp, SlowPhase::Line);
                        tracing::debug!(peer = %self.peer, "closing a TCP connection that completed no line within ingest.tcp_idle_timeout");
                        break;
                    }
                },
                _ = stop.wait_for(|s| *s) => break,
            };
            match next {
                Ok(Some(Frame::Event)) if unauthenticated => {
                    if let Err(why) = self.authenticate(&frame) {
                        let ingest = &self.ingest;
                        ingest
                            .metrics
                            .rejected(Door::Tcp, &self.repo.name, RejectReason::Auth, 1);
                        tracing::warn!(peer = %self.peer, reason = %why, "closing a TCP connection whose first line is not a token that may send here");
                        return;
                    }
                    unauthenticated = false;
                }
                Ok(Some(Frame::Event)) => {
                    if batch.is_empty() {
                        received = Instant::now();
                    }
                    if !frame.iter().all(u8::is_ascii_whitespace) {
                        bytes += frame.len();
                        let text = String::from_utf8_lossy(&frame);
                        // Only an array needs the rule: any other line is one event.
                        if self.config.parser == Parser::Json && text.trim_start().starts_with('[')
                        {
                            batch.extend(json_body::texts(&text).into_iter().map(str::to_string));
                        } else {
                            batch.push(text.into_owned());
                        }
                    }
                }
                Ok(Some(Frame::TooLong(n))) => {
                    let ingest = &self.ingest;
                    ingest
                        .metrics
                        .rejected(Door::Tcp, &self.repo.name, RejectReason::TooLarge, 1);
                    ingest.warn_sometimes(|| tracing::warn!(peer = %self.peer, bytes = n, limit = max, "skipped a line over http.max_event_bytes"));
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(peer = %self.peer, error = %e, "closing a TCP connection that cannot be framed");
                    break;
                }
            }
            let full = batch.len() >= MAX_BATCH_EVENTS || bytes >= MAX_BATCH_BYTES;
            if !batch.is_empty() && (full || !frames.has_buffered()) {
                if !self
                    .flush(std::mem::take(&mut batch), bytes, received)
                    .await
                {
                    return;
                }
                bytes = 0;
            }
        }
        if !batch.is_empty() {
            self.flush(batch, bytes, received).await;
        }
    }

    /// Whether the first line `frame` is a token that may send into the listener's repository.
    fn authenticate(&self, frame: &[u8]) -> Result<(), String> {
        let token = std::str::from_utf8(frame)
            .map_err(|_| "the first line is not UTF-8".to_string())?
            .trim();
        match &self.tokens {
            Some(tokens) => tokens.may_ingest(token, &self.repo.name, self.peer),
            None => Err("this listener has no token check".to_string()),
        }
    }

    /// Stores a batch; false if the connection should close because the bus failed.
    async fn flush(&self, lines: Vec<String>, bytes: usize, received: Instant) -> bool {
        let permit = self.ingest.budget.acquire(bytes).await;
        let ingest = self.ingest.clone();
        let config = self.config.clone();
        let repo = self.repo.clone();
        let stored = tokio::task::spawn_blocking(move || {
            ingest.store_lines(Door::Tcp, &repo, &config, lines, bytes, received)
        })
        .await;
        drop(permit);
        match stored {
            Ok(Ok(_)) => true,
            Ok(Err(e)) => {
                tracing::error!(peer = %self.peer, error = %e, "closing a TCP connection: its events could not be stored");
                false
            }
            Err(e) => {
                tracing::error!(peer = %self.peer, error = %e, "closing a TCP connection: the store task failed");
                false
            }
        }
    }
}
