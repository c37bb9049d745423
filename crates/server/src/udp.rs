//! A UDP listener: one event per datagram (statsd: one per line of a datagram).
//!
//! One task receives datagrams into a bounded queue, another stores them in batches. When the
//! queue is full (the bus or the in-flight budget cannot keep up), datagrams are dropped and
//! counted in `eddy_ingest_dropped_datagrams_total`; memory stays bounded.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use eddy_event::Parser;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use crate::config::ListenerConfig;
use crate::metrics::Door;
use crate::pipeline::Repository;
use crate::tcp::{listener_repository, MAX_BATCH_EVENTS};
use crate::{AppState, ServerError};

/// Receive buffer asked of the kernel, to ride out bursts while a batch is being stored.
const SOCKET_BUFFER: usize = 8 << 20;
/// Largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;

/// A bound UDP listener.
#[derive(Debug)]
pub struct UdpDoor {
    state: Arc<AppState>,
    config: Arc<ListenerConfig>,
    repo: Arc<Repository>,
    socket: UdpSocket,
    addr: SocketAddr,
}

impl UdpDoor {
    /// Binds the listener.
    pub async fn bind(
        state: Arc<AppState>,
        config: ListenerConfig,
    ) -> Result<UdpDoor, ServerError> {
        let repo = listener_repository(&state, &config)?;
        let context = format!("binding the UDP listener to {}", config.listen);
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(config.listen),
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )
        .map_err(ServerError::io(context.clone()))?;
        // Best effort: the kernel caps it at net.core.rmem_max.
        let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
        socket
            .set_nonblocking(true)
            .map_err(ServerError::io(context.clone()))?;
        socket
            .bind(&config.listen.into())
            .map_err(ServerError::io(context.clone()))?;
        let socket = UdpSocket::from_std(socket.into()).map_err(ServerError::io(context))?;
        let addr = socket
            .local_addr()
            .map_err(ServerError::io("reading the bound address"))?;
        Ok(UdpDoor {
            state,
            config: Arc::new(config),
            repo,
            socket,
            addr,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Receives until `stop`, then stores what is queued.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let (tx, rx) = mpsc::channel::<Vec<u8>>(self.state.config.ingest.udp_queue_datagrams);
        let storer = tokio::spawn(store_queued(
            self.state.clone(),
            self.config.clone(),
            self.repo.clone(),
            rx,
        ));
        let listener = self.addr.to_string();
        let metrics = &self.state.ingest.metrics;
        let depth = metrics.queue_gauge(&listener);
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let received = tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                r = self.socket.recv_from(&mut buf) => r,
            };
            match received {
                Ok((n, _peer)) => {
                    if tx.try_send(buf[..n].to_vec()).is_err() {
                        metrics.dropped(Door::Udp, &listener);
                    }
                    depth.set((tx.max_capacity() - tx.capacity()) as i64);
                }
                Err(e) => {
                    tracing::warn!(listener = %self.addr, error = %e, "receiving a datagram failed");
                }
            }
        }
        drop(tx);
        let _ = storer.await;
        depth.set(0);
    }
}

async fn store_queued(
    state: Arc<AppState>,
    config: Arc<ListenerConfig>,
    repo: Arc<Repository>,
    mut rx: mpsc::Receiver<Vec<u8>>,
) {
    let mut datagrams = Vec::with_capacity(MAX_BATCH_EVENTS);
    while rx.recv_many(&mut datagrams, MAX_BATCH_EVENTS).await > 0 {
        let received = Instant::now();
        let lines = split(&config, datagrams.drain(..));
        let bytes = lines.iter().map(String::len).sum();
        let permit = state.ingest.budget.acquire(bytes).await;
        let (state, config, repo) = (state.clone(), config.clone(), repo.clone());
        let stored = tokio::task::spawn_blocking(move || {
            state
                .ingest
                .store_lines(Door::Udp, &repo, &config, lines, bytes, received)
        })
        .await;
        drop(permit);
        if let Ok(Err(e)) = stored {
            tracing::error!(error = %e, "datagrams could not be stored");
        }
    }
}

/// The lines of datagrams: statsd packs several metrics per datagram, one per line; other
/// formats take the whole datagram as one event.
fn split(config: &ListenerConfig, datagrams: impl Iterator<Item = Vec<u8>>) -> Vec<String> {
    let mut lines = Vec::new();
    for d in datagrams {
        let text = String::from_utf8_lossy(&d);
        if config.parser == Parser::Statsd {
            lines.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_string),
            );
        } else {
            let text = text.trim_end_matches(['\r', '\n', '\0']);
            if !text.trim().is_empty() {
                lines.push(text.to_string());
            }
        }
    }
    lines
}
