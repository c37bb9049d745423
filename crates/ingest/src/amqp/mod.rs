//! The AMQP 0-9-1 collector: eddy consumes a queue on a broker (RabbitMQ) into a repository.
//!
//! Each message is read like an HTTP body ([`message`]), checked by the gatekeeper, and
//! stored by [`Ingest::store`] like any door's events; only then is it acknowledged. So:
//!
//! - **Nothing acknowledged is lost**: a message is acked only once its events are durable in
//!   the bus. If eddy dies first, the broker delivers it again.
//! - **Nothing is stored twice** when messages carry ids (`message-id`, or the header named by
//!   `id_header`): a redelivered message's events have the ids of the first delivery, which the
//!   de-duplication window (rebuilt from the bus at start) recognises.
//! - **Back-pressure**: the broker hands out at most `prefetch` unacknowledged messages (QoS),
//!   and the collector takes room in the in-flight budget before storing, so when the bus is
//!   behind the broker stops delivering and the messages wait in the queue.
//! - **A malformed message** (or one the schema refuses) is rejected without requeue, counted
//!   and logged; the broker dead-letters it if the queue has a dead-letter exchange. The
//!   collector goes on with the next.
//! - **A broker that is down, refuses or drops the connection** is retried with back-off
//!   (`reconnect_delay` doubling up to `reconnect_max_delay`), each failure logged and counted.
//!
//! Messages are taken in batches of what has arrived (at most `prefetch`), stored in one
//! append, and acknowledged with one multiple-ack.

pub mod config;
pub mod message;
pub mod metrics;

use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy_event::Event;
use futures_util::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, BasicRejectOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use tokio::sync::watch;

use crate::body::{self, Refusal};
use crate::metrics::{Door, RejectReason};
use crate::{add_tags, Ingest, Repository};
pub use config::AmqpConfig;
use message::Malformed;
use metrics::Outcome;

/// The longest wait for a broker to accept a connection and log in.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a collector stopped consuming (it reconnects after a back-off).
#[derive(Debug, thiserror::Error)]
pub enum AmqpError {
    /// The URL does not parse (checked at start, so only a bug gets here).
    #[error("the URL is invalid: {0}")]
    Url(String),
    /// The broker could not be reached, or refused the login.
    #[error("cannot connect to {broker}: {source}")]
    Connect {
        /// The broker, without credentials.
        broker: String,
        /// Why.
        source: lapin::Error,
    },
    /// The broker did not complete the connection within [`CONNECT_TIMEOUT`].
    #[error(
        "{broker} did not answer within {}",
        eddy_event::units::format_duration(CONNECT_TIMEOUT)
    )]
    ConnectTimeout {
        /// The broker, without credentials.
        broker: String,
    },
    /// The queue could not be set up: opened, declared, limited (QoS) or consumed.
    #[error("cannot {step} queue {queue:?}: {source}")]
    Queue {
        /// What was being done.
        step: &'static str,
        /// The queue.
        queue: String,
        /// Why.
        source: lapin::Error,
    },
    /// The connection or channel broke while consuming.
    #[error("the connection broke while consuming: {0}")]
    Lost(lapin::Error),
    /// An acknowledgement could not be sent (the channel is closed); the broker delivers the
    /// messages again.
    #[error("the channel closed before messages could be settled")]
    Closed,
    /// The broker cancelled the consumer (the queue was deleted, say).
    #[error("the broker cancelled the consumer of queue {0:?}")]
    Cancelled(String),
}

/// One configured collector, ready to run.
#[derive(Debug)]
pub struct AmqpCollector {
    ingest: Arc<Ingest>,
    repo: Arc<Repository>,
    config: Arc<AmqpConfig>,
}

impl AmqpCollector {
    /// A collector of `config`'s queue into `repo`.
    pub fn new(ingest: Arc<Ingest>, repo: Arc<Repository>, config: AmqpConfig) -> AmqpCollector {
        AmqpCollector {
            ingest,
            repo,
            config: Arc::new(config),
        }
    }

    /// Consumes until `stop`, reconnecting with back-off whenever the broker is unreachable or
    /// the connection breaks. On `stop`, the batch being stored is finished and acknowledged.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let name = self.config.name().to_string();
        let metrics = &self.ingest.metrics.amqp;
        metrics.connected(&name, false);
        let mut delay = self.config.reconnect_delay;
        while !*stop.borrow() {
            let Err(e) = self.consume(&mut stop, &mut delay).await else {
                break;
            };
            metrics.connected(&name, false);
            metrics.connection_failed(&name);
            tracing::warn!(
                collector = %name,
                broker = %self.config.broker(),
                error = %e,
                retry_in = %eddy_event::units::format_duration(delay),
                "AMQP collector: not consuming; retrying"
            );
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                () = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(self.config.reconnect_max_delay);
        }
        metrics.connected(&name, false);
    }

    /// One connection: set up, then consume until `stop` (Ok) or a failure (Err). Resets
    /// `delay` once consuming.
    async fn consume(
        &self,
        stop: &mut watch::Receiver<bool>,
        delay: &mut Duration,
    ) -> Result<(), AmqpError> {
        let config = &self.config;
        let name = config.name();
        let uri = config.uri().map_err(AmqpError::Url)?;
        let properties = ConnectionProperties::default()
            .with_connection_name(format!("eddy collector {name}").into());
        let connecting = Connection::connect_uri(uri, properties);
        let connected = tokio::select! {
            _ = stop.wait_for(|s| *s) => return Ok(()),
            connected = tokio::time::timeout(CONNECT_TIMEOUT, connecting) => connected,
        };
        let connection = connected
            .map_err(|_| AmqpError::ConnectTimeout {
                broker: config.broker(),
            })?
            .map_err(|source| AmqpError::Connect {
                broker: config.broker(),
                source,
            })?;
        let consumed = self.consume_on(&connection, stop, delay).await;
        // Whether stopping or failing, the connection goes (its unacknowledged deliveries go
        // back to the queue); a dead one answers at once, a stuck one is not waited for.
        let close = connection.close(200, "eddy collector stopping".into());
        let _ = tokio::time::timeout(Duration::from_secs(2), close).await;
        consumed
    }

    /// Sets up the channel and consumes on `connection` until `stop` (Ok) or a failure (Err).
    async fn consume_on(
        &self,
        connection: &Connection,
        stop: &mut watch::Receiver<bool>,
        delay: &mut Duration,
    ) -> Result<(), AmqpError> {
        let config = &self.config;
        let name = config.name();
        let queue_error = |step| {
            let queue = config.queue.clone();
            move |source| AmqpError::Queue {
                step,
                queue,
                source,
            }
        };
        let channel = connection
            .create_channel()
            .await
            .map_err(queue_error("open a channel for"))?;
        channel
            .basic_qos(config.prefetch, BasicQosOptions::default())
            .await
            .map_err(queue_error("set the prefetch of"))?;
        if config.declare {
            let options = QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            };
            channel
                .queue_declare(config.queue.as_str().into(), options, FieldTable::default())
                .await
                .map_err(queue_error("declare"))?;
        }
        let mut consumer = channel
            .basic_consume(
                config.queue.as_str().into(),
                format!("eddy-{name}").into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(queue_error("consume from"))?;
        *delay = config.reconnect_delay;
        self.ingest.metrics.amqp.connected(name, true);
        tracing::info!(collector = %name, broker = %config.broker(), queue = %config.queue, repository = %self.repo.name, "AMQP collector: consuming");
        loop {
            let first = tokio::select! {
                _ = stop.wait_for(|s| *s) => return Ok(()),
                first = consumer.next() => first,
            };
            let mut batch = vec![delivered(first, config)?];
            // Whatever else has already arrived joins the batch, without waiting for more.
            let mut broke = None;
            while batch.len() < usize::from(config.prefetch) {
                match consumer.next().now_or_never() {
                    None => break,
                    Some(next) => match delivered(next, config) {
                        Ok(d) => batch.push(d),
                        Err(e) => {
                            broke = Some(e);
                            break;
                        }
                    },
                }
            }
            self.settle(batch).await?;
            if let Some(e) = broke {
                return Err(e);
            }
        }
    }

    /// Stores a batch's good messages and acknowledges them; rejects the bad ones.
    async fn settle(&self, batch: Vec<Delivery>) -> Result<(), AmqpError> {
        let received = Instant::now();
        let now = eddy_log::now_ns();
        let name = self.config.name();
        let metrics = &self.ingest.metrics;
        let mut good = 0;
        let mut last_good = None;
        let mut events = Vec::new();
        let mut bytes = 0;
        for delivery in batch {
            match self.read(&delivery, now) {
                Ok(mut read) => {
                    for e in &mut read {
                        add_tags(e, &self.config.tags);
                    }
                    events.append(&mut read);
                    bytes += delivery.data.len();
                    good += 1;
                    last_good = Some(delivery);
                }
                Err(why) => {
                    let (reason, n) = reject_reason(&why);
                    metrics.rejected(Door::Amqp, &self.repo.name, reason, n);
                    metrics.amqp.messages(name, Outcome::Rejected, 1);
                    let id =
                        message::message_id(&delivery.properties, self.config.id_header.as_deref());
                    self.ingest.warn_sometimes(|| {
                        tracing::warn!(
                            collector = %name,
                            queue = %self.config.queue,
                            message_id = id.as_deref().unwrap_or("(none)"),
                            bytes = delivery.data.len(),
                            error = %describe(&why),
                            "AMQP collector: rejected a message without requeue (dead-lettered if the queue has a dead-letter exchange)"
                        );
                    });
                    let rejected = delivery
                        .acker
                        .reject(BasicRejectOptions { requeue: false })
                        .await
                        .map_err(AmqpError::Lost)?;
                    if !rejected {
                        return Err(AmqpError::Closed);
                    }
                }
            }
        }
        let Some(last) = last_good else {
            return Ok(());
        };
        let permit = self.ingest.budget.acquire(bytes).await;
        let (ingest, repo) = (self.ingest.clone(), self.repo.clone());
        let stored = tokio::task::spawn_blocking(move || {
            ingest.store(Door::Amqp, &repo, events, bytes, received)
        })
        .await;
        drop(permit);
        let multiple = true;
        let settled = match stored {
            Ok(Ok(_)) => {
                metrics.amqp.messages(name, Outcome::Acked, good);
                last.acker.ack(BasicAckOptions { multiple }).await
            }
            failed => {
                let error = match failed {
                    Ok(Err(e)) => e.to_string(),
                    Err(e) => e.to_string(),
                    Ok(Ok(_)) => String::new(),
                };
                metrics.rejected(Door::Amqp, &self.repo.name, RejectReason::Bus, good);
                metrics.amqp.messages(name, Outcome::Requeued, good);
                tracing::error!(collector = %name, messages = good, %error, "AMQP collector: could not store messages; requeued them");
                // A failing bus is not hammered with the same messages at once.
                tokio::time::sleep(self.config.reconnect_delay).await;
                last.acker
                    .nack(BasicNackOptions {
                        multiple,
                        requeue: true,
                    })
                    .await
            }
        };
        match settled {
            Ok(true) => Ok(()),
            Ok(false) => Err(AmqpError::Closed),
            Err(e) => Err(AmqpError::Lost(e)),
        }
    }

    /// A message's events, checked by the gatekeeper.
    fn read(&self, delivery: &Delivery, now: i64) -> Result<Vec<Event>, Malformed> {
        let content_type = delivery
            .properties
            .content_type()
            .as_ref()
            .map(|c| c.as_str().to_ascii_lowercase())
            .unwrap_or_default();
        let id = message::message_id(&delivery.properties, self.config.id_header.as_deref());
        let max_event = self.ingest.max_event_bytes;
        let mut events = if body::is_avro(&content_type) {
            let mut events = body::avro(&self.repo, &delivery.data, max_event, now)?;
            if let Some(id) = &id {
                message::assign_ids(&mut events, id)?;
            }
            events
        } else {
            message::events(
                &delivery.data,
                &content_type,
                self.config.parser,
                max_event,
                now,
                id.as_deref(),
            )?
        };
        body::gatekeep(&self.repo, &mut events)?;
        Ok(events)
    }
}

/// A delivery, or why consuming ended.
fn delivered(
    next: Option<lapin::Result<Delivery>>,
    config: &AmqpConfig,
) -> Result<Delivery, AmqpError> {
    match next {
        Some(Ok(d)) => Ok(d),
        Some(Err(e)) => Err(AmqpError::Lost(e)),
        None => Err(AmqpError::Cancelled(config.queue.clone())),
    }
}

/// The metrics' reason for a refused message, and the events it counts (1 if unreadable).
fn reject_reason(why: &Malformed) -> (RejectReason, usize) {
    match why {
        Malformed::Body(r @ (Refusal::SchemaMismatch { .. } | Refusal::NoContract { .. })) => {
            (RejectReason::Schema, r.events())
        }
        Malformed::Body(r @ (Refusal::EventTooLarge { .. } | Refusal::BodyTooLarge { .. })) => {
            (RejectReason::TooLarge, r.events())
        }
        Malformed::Body(r) => (RejectReason::Parse, r.events()),
        Malformed::Id(_) => (RejectReason::Parse, 1),
    }
}

/// The refusal with its first detail (which line, where, why), for the log.
fn describe(why: &Malformed) -> String {
    match why {
        Malformed::Body(Refusal::InvalidEvents { bad, .. }) => match bad.first() {
            Some(first) => format!("{why}; line {}: {}", first.line, first.error),
            None => why.to_string(),
        },
        Malformed::Body(Refusal::SchemaMismatch { refused, .. }) => {
            match refused.first().and_then(|(i, r)| r.first().map(|r| (i, r))) {
                Some((i, r)) => format!("{why}; event {}: {r}", i + 1),
                None => why.to_string(),
            }
        }
        _ => why.to_string(),
    }
}
