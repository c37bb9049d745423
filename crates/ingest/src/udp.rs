//! A UDP listener: one event per datagram (statsd: one per line of a datagram).
//!
//! One task receives datagrams into a bounded queue, another stores them in batches. When the
//! queue is full (the bus or the in-flight budget cannot keep up), datagrams are dropped and
//! counted in `eddy_ingest_dropped_datagrams_total`; memory stays bounded. Datagrams the kernel
//! drops before eddy reads them (its socket buffer full) are read from `/proc/net/udp` on Linux
//! every second into `eddy_ingest_kernel_dropped_datagrams`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use eddy_event::Parser;
use prometheus_client::metrics::gauge::Gauge;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use crate::config::ListenerConfig;
use crate::json_body;
use crate::metrics::Door;
use crate::tcp::MAX_BATCH_EVENTS;
use crate::{Ingest, IngestError, Repository, StoreError};

/// Receive buffer asked of the kernel, to ride out bursts while a batch is being stored.
const SOCKET_BUFFER: usize = 8 << 20;
/// Batches being parsed and stored at once, per listener.
const BATCHES_IN_FLIGHT: usize = 4;
/// Largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;

/// A bound UDP listener.
#[derive(Debug)]
pub struct UdpDoor {
    ingest: Arc<Ingest>,
    config: Arc<ListenerConfig>,
    repo: Arc<Repository>,
    socket: UdpSocket,
    addr: SocketAddr,
}

impl UdpDoor {
    /// Binds the listener, which stores into `repo`.
    pub async fn bind(
        ingest: Arc<Ingest>,
        repo: Arc<Repository>,
        config: ListenerConfig,
    ) -> Result<UdpDoor, IngestError> {
        let context = format!("binding the UDP listener to {}", config.listen);
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(config.listen),
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )
        .map_err(IngestError::io(context.clone()))?;
        // Best effort: the kernel caps it at net.core.rmem_max.
        let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
        socket
            .set_nonblocking(true)
            .map_err(IngestError::io(context.clone()))?;
        socket
            .bind(&config.listen.into())
            .map_err(IngestError::io(context.clone()))?;
        let socket = UdpSocket::from_std(socket.into()).map_err(IngestError::io(context))?;
        let addr = socket
            .local_addr()
            .map_err(IngestError::io("reading the bound address"))?;
        Ok(UdpDoor {
            ingest,
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
        let (tx, rx) = mpsc::channel::<Vec<u8>>(self.ingest.config.udp_queue_datagrams);
        let listener = self.addr.to_string();
        let metrics = &self.ingest.metrics;
        let depth = metrics.queue_gauge(&listener);
        let storer = tokio::spawn(store_queued(
            self.ingest.clone(),
            self.config.clone(),
            self.repo.clone(),
            rx,
            depth.clone(),
        ));
        let queued = |tx: &mpsc::Sender<Vec<u8>>| (tx.max_capacity() - tx.capacity()) as i64;
        let kernel = KernelDrops::of(&self.socket);
        let kernel_gauge = metrics.kernel_drop_gauge(&listener);
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let received = tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                _ = tick.tick() => {
                    // The storer lowers the depth as it drains; this corrects a receive's
                    // reading that raced with a drain, so an idle queue reads 0.
                    depth.set(queued(&tx));
                    if let Some(n) = kernel.as_ref().and_then(KernelDrops::read) {
                        kernel_gauge.set(i64::try_from(n).unwrap_or(i64::MAX));
                    }
                    continue;
                }
                r = self.socket.recv_from(&mut buf) => r,
            };
            match received {
                Ok((n, _peer)) => {
                    if tx.try_send(buf[..n].to_vec()).is_err() {
                        metrics.dropped(Door::Udp, &listener);
                    }
                    depth.set(queued(&tx));
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
    ingest: Arc<Ingest>,
    config: Arc<ListenerConfig>,
    repo: Arc<Repository>,
    mut rx: mpsc::Receiver<Vec<u8>>,
    depth: Gauge,
) {
    // Datagrams carry no order to keep: batches are parsed and stored side by side, so one
    // batch's fsync does not leave the queue unattended.
    let mut storing = tokio::task::JoinSet::new();
    let mut datagrams = Vec::with_capacity(MAX_BATCH_EVENTS);
    while rx.recv_many(&mut datagrams, MAX_BATCH_EVENTS).await > 0 {
        depth.set(rx.len() as i64);
        let received = Instant::now();
        let lines = split(&config, datagrams.drain(..));
        let bytes = lines.iter().map(String::len).sum();
        let permit = ingest.budget.acquire(bytes).await;
        while storing.len() >= BATCHES_IN_FLIGHT {
            log_failure(storing.join_next().await);
        }
        let (ingest, config, repo) = (ingest.clone(), config.clone(), repo.clone());
        storing.spawn_blocking(move || {
            let stored = ingest.store_lines(Door::Udp, &repo, &config, lines, bytes, received);
            drop(permit);
            stored.map(|_| ())
        });
    }
    while let Some(done) = storing.join_next().await {
        log_failure(Some(done));
    }
}

fn log_failure(done: Option<Result<Result<(), StoreError>, tokio::task::JoinError>>) {
    match done {
        Some(Ok(Err(e))) => tracing::error!(error = %e, "datagrams could not be stored"),
        Some(Err(e)) => tracing::error!(error = %e, "a store task failed"),
        _ => {}
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
        } else if config.parser == Parser::Json {
            // A datagram is a body: a document (an array gives its elements) or NDJSON lines.
            let text = text.trim_end_matches(['\r', '\n', '\0']);
            if text.trim_start().starts_with('[') || text.contains('\n') {
                lines.extend(json_body::texts(text).into_iter().map(str::to_string));
            } else if !text.trim().is_empty() {
                lines.push(text.to_string());
            }
        } else {
            let text = text.trim_end_matches(['\r', '\n', '\0']);
            if !text.trim().is_empty() {
                lines.push(text.to_string());
            }
        }
    }
    lines
}

/// The kernel's count of datagrams dropped for one socket, from `/proc/net/udp` and `udp6`
/// (Linux), found by the socket's inode.
struct KernelDrops {
    inode: String,
}

impl KernelDrops {
    fn of(socket: &UdpSocket) -> Option<KernelDrops> {
        use std::os::fd::AsRawFd;
        let link = std::fs::read_link(format!("/proc/self/fd/{}", socket.as_raw_fd())).ok()?;
        let link = link.to_str()?;
        let inode = link.strip_prefix("socket:[")?.strip_suffix(']')?;
        Some(KernelDrops {
            inode: inode.to_string(),
        })
    }

    fn read(&self) -> Option<u64> {
        ["/proc/net/udp", "/proc/net/udp6"].iter().find_map(|path| {
            let table = std::fs::read_to_string(path).ok()?;
            parse_drops(&table, &self.inode)
        })
    }
}

/// The `drops` column of the row whose `inode` column is `inode`.
fn parse_drops(table: &str, inode: &str) -> Option<u64> {
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next()?.split_whitespace().collect();
    // The header splits "tm->when" and "tx_queue rx_queue" like the rows do, except that
    // rows join "tx_queue:rx_queue" and "tr:tm->when": count columns from the end instead.
    let from_end = |name: &str| header.iter().rev().position(|h| *h == name);
    let (inode_col, drops_col) = (from_end("inode")?, from_end("drops")?);
    lines.find_map(|row| {
        let cols: Vec<&str> = row.split_whitespace().collect();
        let at = |from_end: usize| cols.len().checked_sub(from_end + 1).map(|i| cols[i]);
        (at(inode_col)? == inode).then(|| at(drops_col)?.parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_the_drops_of_one_socket_from_proc_net_udp() {
        let table = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops            \n\
 1221: 0100007F:1FBD 00000000:0000 07 00000000:00000000 00 00000000:00000000     0        0 4242 2 0000000000000000 17\n\
 1222: 0100007F:1FBE 00000000:0000 07 00000000:00000000 00 00000000:00000000     0        0 4343 2 0000000000000000 0\n";
        assert_eq!(parse_drops(table, "4242"), Some(17));
        assert_eq!(parse_drops(table, "4343"), Some(0));
        assert_eq!(parse_drops(table, "1"), None);
        assert_eq!(parse_drops("", "1"), None);
    }

    fn listener(parser: Parser) -> ListenerConfig {
        ListenerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            repository: "main".into(),
            parser,
            tags: Default::default(),
            tls: None,
            token_first_line: false,
        }
    }

    const PARSERS: [Parser; 6] = [
        Parser::Json,
        Parser::Kv,
        Parser::Accesslog,
        Parser::Syslog,
        Parser::Statsd,
        Parser::None,
    ];

    /// Every line of the datagrams is an event or a refusal with a column inside the line.
    fn check(parser: Parser, datagrams: Vec<Vec<u8>>) -> Result<(), TestCaseError> {
        for line in split(&listener(parser), datagrams.into_iter()) {
            prop_assert!(!line.trim().is_empty());
            if let Err(e) = parser.parse(&line, 0) {
                prop_assert!(
                    (1..=line.len() + 1).contains(&e.column),
                    "{:?}: column {} of {:?}: {}",
                    parser,
                    e.column,
                    line,
                    e
                );
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_datagrams_give_events_or_placed_refusals(
            datagrams in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 0..6),
        ) {
            for parser in PARSERS {
                check(parser, datagrams.clone())?;
            }
        }

        #[test]
        fn mutated_statsd_and_json_datagrams_give_events_or_placed_refusals(
            edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        ) {
            let samples: [&[u8]; 2] = [
                b"checkout.orders:1|c|#region:eu\nlatency:320|ms|@0.5\nusers:42|s|#a:b,c\n",
                b"[{\"a\":1,\"#env\":\"prod\"},\n {\"b\":[1,2,{\"c\":null}]}]",
            ];
            for sample in samples {
                let mut d = sample.to_vec();
                for &(at, byte) in &edits {
                    let at = at % d.len();
                    d[at] = byte;
                }
                for parser in PARSERS {
                    check(parser, vec![d.clone()])?;
                }
            }
        }
    }

    #[test]
    fn a_json_datagram_is_a_body_a_document_or_ndjson() {
        let lines = split(
            &listener(Parser::Json),
            vec![
                b"[{\"a\":1},{\"a\":2}]".to_vec(),
                b"{\"b\":1}\n{\"b\":2}\n".to_vec(),
                b"{\"c\":1}".to_vec(),
            ]
            .into_iter(),
        );
        assert_eq!(
            lines,
            vec![
                r#"{"a":1}"#,
                r#"{"a":2}"#,
                r#"{"b":1}"#,
                r#"{"b":2}"#,
                r#"{"c":1}"#
            ]
        );
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn finds_its_own_socket_in_proc() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let k = KernelDrops::of(&socket).unwrap();
            assert_eq!(k.read(), Some(0));
        });
    }
}
