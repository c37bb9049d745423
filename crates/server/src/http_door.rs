//! The HTTP door's connections: accepting them under `http.max_connections`, serving each with
//! hyper's HTTP/1 (headers must arrive within `http.header_read_timeout`), timing request
//! bodies ([`TimedBody`]: `http.body_idle_timeout` between chunks, `http.body_timeout` for
//! the whole), and on shutdown letting each connection finish its request (the caller cuts
//! those still open at `shutdown_timeout`).
//!
//! A slow client therefore holds a connection slot for a bounded time, and memory only for the
//! bytes it has sent (the ingest handler charges the in-flight budget as bytes arrive).
//!
//! With `[tls]`, each connection shakes hands in its own task within `tls.handshake_timeout`
//! (so a half-sent hello never holds the accept loop), then hyper serves the decrypted stream:
//! every route and websocket is then HTTPS. A hand loop over `tokio_rustls` rather than
//! `axum-server`, because this loop already owns what TLS must fit into: the connection limit,
//! the header timeout, the graceful shutdown and the metrics.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::Router;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};

use crate::{AppState, ServerError};
use eddy_ingest::connlimit::ConnectionLimit;
use eddy_ingest::metrics::{IngestMetrics, SlowPhase};
use eddy_ingest::tls::{self, Certificates};
use eddy_ingest::Door;

/// The answer to a connection refused at the limit, written if the socket takes it at once.
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\nretry-after: 1\r\ncontent-type: text/plain\r\ncontent-length: 46\r\n\r\neddy is at http.max_connections; retry later.\n";

/// The bound HTTP door.
#[derive(Debug)]
pub struct HttpDoor {
    state: Arc<AppState>,
    listener: TcpListener,
    addr: SocketAddr,
    tls: Option<Arc<Certificates>>,
}

impl HttpDoor {
    /// Binds `http.listen`, to serve HTTPS with `tls` if given.
    pub async fn bind(
        state: Arc<AppState>,
        tls: Option<Arc<Certificates>>,
    ) -> Result<HttpDoor, ServerError> {
        let listen = state.config.http.listen;
        let listener = TcpListener::bind(listen)
            .await
            .map_err(ServerError::io(format!(
                "binding the HTTP door to {listen}"
            )))?;
        let addr = listener
            .local_addr()
            .map_err(ServerError::io("reading the bound address"))?;
        Ok(HttpDoor {
            state,
            listener,
            addr,
            tls,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves connections until `stop`; then lets each finish the request it is in and waits
    /// for them (the caller's deadline cuts the rest by dropping this future).
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let http = &self.state.config.http;
        let limit = ConnectionLimit::new(
            self.state.ingest.metrics.clone(),
            Door::Http,
            self.addr,
            http.max_connections,
        );
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(http.header_read_timeout)
            .keep_alive(true);
        let router = crate::router(self.state.clone());
        let mut connections = JoinSet::new();
        loop {
            let accepted = tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                accepted = self.listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(listener = %self.addr, error = %e, "accepting an HTTP connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Some(slot) = limit.admit(peer) else {
                // Best effort: a plain HTTP client that reads gets a 503, not a bare close (a
                // TLS client could not read it).
                if self.tls.is_none() {
                    let _ = stream.try_write(REFUSED);
                }
                continue;
            };
            let builder = builder.clone();
            let router = router.clone();
            let tls = self.tls.clone();
            let listener = self.addr;
            let metrics = self.state.ingest.metrics.clone();
            let stop = stop.clone();
            connections.spawn(async move {
                let _ = stream.set_nodelay(true);
                let served = match tls {
                    None => serve_connection(builder, stream, router, stop).await,
                    Some(tls) => match tls::handshake(&tls, stream).await {
                        Ok(stream) => serve_connection(builder, stream, router, stop).await,
                        Err(e) => {
                            e.count(&metrics, Door::Http, listener);
                            tracing::debug!(%peer, error = %e, "HTTPS connection refused");
                            return;
                        }
                    },
                };
                match served {
                    Err(e) if e.is_timeout() => metrics.timed_out(Door::Http, SlowPhase::Headers),
                    Err(e) => tracing::debug!(%peer, error = %e, "HTTP connection ended"),
                    Ok(()) => {}
                }
                drop(slot);
            });
            while connections.try_join_next().is_some() {}
        }
        // New clients are refused by the kernel from now on, not left waiting in the backlog.
        drop(self.listener);
        while connections.join_next().await.is_some() {}
    }
}

/// Serves one connection's requests until it closes; after `stop`, idle connections close at
/// once and one inside a request finishes it first.
async fn serve_connection<S>(
    builder: hyper::server::conn::http1::Builder,
    stream: S,
    router: Router,
    mut stop: watch::Receiver<bool>,
) -> hyper::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = builder
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(router))
        .with_upgrades();
    tokio::pin!(conn);
    let early = tokio::select! {
        served = conn.as_mut() => Some(served),
        _ = stop.wait_for(|s| *s) => None,
    };
    match early {
        Some(served) => served,
        None => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    }
}

/// Why a request body was cut.
#[derive(Debug, Clone, Copy, thiserror::Error)]
pub enum BodyTimeout {
    /// Nothing arrived for this long.
    #[error("the body sent nothing for {} (http.body_idle_timeout)", eddy_event::units::format_duration(*.0))]
    Idle(Duration),
    /// The whole body did not arrive within this.
    #[error("the body did not arrive whole within {} (http.body_timeout)", eddy_event::units::format_duration(*.0))]
    Whole(Duration),
}

impl BodyTimeout {
    /// The timeout somewhere in `error`'s chain of sources, if it is one.
    pub fn find(error: &(dyn std::error::Error + 'static)) -> Option<BodyTimeout> {
        let mut at = Some(error);
        while let Some(e) = at {
            if let Some(t) = e.downcast_ref::<BodyTimeout>() {
                return Some(*t);
            }
            at = e.source();
        }
        None
    }
}

/// A request body that fails with [`BodyTimeout`] when its client stalls or dawdles.
pub struct TimedBody {
    inner: Body,
    idle: Duration,
    whole: Duration,
    idle_timer: Pin<Box<Sleep>>,
    deadline: Pin<Box<Sleep>>,
    expired: Option<BodyTimeout>,
    metrics: Arc<IngestMetrics>,
}

impl TimedBody {
    /// Times `inner` from now.
    pub fn new(
        inner: Body,
        idle: Duration,
        whole: Duration,
        metrics: Arc<IngestMetrics>,
    ) -> TimedBody {
        let now = Instant::now();
        TimedBody {
            inner,
            idle,
            whole,
            idle_timer: Box::pin(tokio::time::sleep_until(now + idle)),
            deadline: Box::pin(tokio::time::sleep_until(now + whole)),
            expired: None,
            metrics,
        }
    }
}

impl http_body::Body for TimedBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        // Never end normally after a timeout: a cut body must not pass for a whole one.
        if let Some(t) = this.expired {
            return Poll::Ready(Some(Err(Box::new(t))));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let next = Instant::now() + this.idle;
                this.idle_timer.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let expired = if this.deadline.as_mut().poll(cx).is_ready() {
                    BodyTimeout::Whole(this.whole)
                } else if this.idle_timer.as_mut().poll(cx).is_ready() {
                    BodyTimeout::Idle(this.idle)
                } else {
                    return Poll::Pending;
                };
                this.expired = Some(expired);
                this.metrics.timed_out(Door::Http, SlowPhase::Body);
                Poll::Ready(Some(Err(Box::new(expired))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.expired.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Middleware: every request body with content is timed (the routes read bodies in their own
/// ways; none may be held open forever).
pub async fn time_bodies(State(state): State<Arc<AppState>>, request: Request) -> Request {
    if http_body::Body::is_end_stream(request.body()) {
        return request;
    }
    let http = &state.config.http;
    let (idle, whole) = (http.body_idle_timeout, http.body_timeout);
    let metrics = state.ingest.metrics.clone();
    request.map(|body| Body::new(TimedBody::new(body, idle, whole, metrics)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// A body sending one byte after each gap, then ending.
    struct Trickle {
        gaps: std::vec::IntoIter<Duration>,
        sleep: Option<Pin<Box<Sleep>>>,
    }

    impl http_body::Body for Trickle {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
            if self.sleep.is_none() {
                let Some(gap) = self.gaps.next() else {
                    return Poll::Ready(None);
                };
                self.sleep = Some(Box::pin(tokio::time::sleep(gap)));
            }
            match self.sleep.as_mut().map(|s| s.as_mut().poll(cx)) {
                Some(Poll::Ready(())) => {
                    self.sleep = None;
                    Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"x")))))
                }
                _ => Poll::Pending,
            }
        }
    }

    async fn read(gaps: Vec<Duration>, idle: Duration, whole: Duration) -> Result<usize, String> {
        let body = Body::new(Trickle {
            gaps: gaps.into_iter(),
            sleep: None,
        });
        let timed = TimedBody::new(body, idle, whole, crate::metrics::Metrics::new().ingest);
        let mut timed = Body::new(timed);
        let mut n = 0;
        while let Some(frame) = timed.frame().await {
            match frame {
                Ok(f) => n += f.into_data().map_or(0, |d| d.len()),
                Err(e) => {
                    let t = BodyTimeout::find(&e).ok_or_else(|| format!("not a timeout: {e}"))?;
                    return Err(t.to_string());
                }
            }
        }
        Ok(n)
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    #[test]
    fn a_body_that_stalls_is_cut_by_the_idle_timeout() {
        let got = runtime().block_on(read(
            vec![Duration::ZERO, Duration::from_secs(3600)],
            Duration::from_millis(50),
            Duration::from_secs(3600),
        ));
        assert_eq!(
            got,
            Err("the body sent nothing for 50 ms (http.body_idle_timeout)".into())
        );
    }

    #[test]
    fn a_body_that_trickles_forever_is_cut_by_the_whole_body_deadline() {
        // A byte every 10 ms keeps the hour-long idle timer happy; the deadline still ends it.
        let got = runtime().block_on(read(
            vec![Duration::from_millis(10); 1_000_000],
            Duration::from_secs(3600),
            Duration::from_millis(100),
        ));
        assert_eq!(
            got,
            Err("the body did not arrive whole within 100 ms (http.body_timeout)".into())
        );
    }

    #[test]
    fn the_refusal_at_the_connection_limit_is_a_well_formed_503() {
        let text = std::str::from_utf8(REFUSED).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
    }

    #[test]
    fn a_prompt_body_passes_whole() {
        let got = runtime().block_on(read(
            vec![Duration::ZERO; 100],
            Duration::from_secs(3600),
            Duration::from_secs(3600),
        ));
        assert_eq!(got, Ok(100));
    }
}
