//! [`KafkaMember`]: one member of a consumer group, there for ownership, not records.
//!
//! The consumer subscribes with an eager assignment strategy (`range`), so every rebalance
//! first revokes all of a member's partitions, in librdkafka's rebalance callback, before the
//! member rejoins; the group coordinator hands out the next assignment only once every member
//! has rejoined. The handler hears `Revoked` in that callback, on the thread calling
//! [`GroupMember::poll`], so a partition is never owned by two handlers at once. Assigned
//! partitions are paused at once: the member fetches nothing, and anything fetched before the
//! pause is dropped. Dropping a member leaves the group at once (rather than after the session
//! timeout); its handler hears the final `Revoked` during the drop. A member that does not poll
//! for the session timeout is counted gone, like a dead one: its partitions move without its
//! handler being asked first, and it hears `Revoked` at its next poll, so work on a partition
//! must not outlive the thread that polls.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use eddy_base::sync::lock;
use eddy_log::{GroupMember, Membership, Result};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::topic_partition_list::TopicPartitionList;
use rdkafka::ClientContext;

use crate::bus::{apply_properties, consumer_config};
use crate::config::KafkaConfig;
use crate::error::{broker, code};

/// The consumer behind a member; the bus commits through it while the member lives.
pub(crate) type MemberConsumer = BaseConsumer<MemberContext>;

/// The rebalance callbacks' state.
pub(crate) struct MemberContext {
    topic: String,
    on_change: Mutex<Box<dyn FnMut(Membership) + Send>>,
    owned: Mutex<Vec<u32>>,
}

impl MemberContext {
    fn partitions(&self, list: &TopicPartitionList) -> Vec<u32> {
        let mut partitions: Vec<u32> = list
            .elements_for_topic(&self.topic)
            .iter()
            .filter_map(|e| u32::try_from(e.partition()).ok())
            .collect();
        partitions.sort_unstable();
        partitions
    }
}

impl ClientContext for MemberContext {}

impl ConsumerContext for MemberContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let revoked = self.partitions(list);
            lock(&self.owned).retain(|p| !revoked.contains(p));
            if !revoked.is_empty() {
                (lock(&self.on_change))(Membership::Revoked(revoked));
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                if let Err(e) = consumer.pause(list) {
                    tracing::warn!(topic = %self.topic, "pausing assigned partitions failed: {e}");
                }
                let assigned = self.partitions(list);
                {
                    let mut owned = lock(&self.owned);
                    owned.extend(&assigned);
                    owned.sort_unstable();
                    owned.dedup();
                }
                if !assigned.is_empty() {
                    (lock(&self.on_change))(Membership::Assigned(assigned));
                }
            }
            Rebalance::Error(e) => {
                tracing::warn!(topic = %self.topic, "consumer group rebalance failed: {e}");
            }
            Rebalance::Revoke(_) => {}
        }
    }
}

/// A member of a group on one topic.
pub(crate) struct KafkaMember {
    consumer: Arc<MemberConsumer>,
    group: String,
}

impl KafkaMember {
    pub(crate) fn join(
        config: &KafkaConfig,
        group: &str,
        topic: &str,
        on_change: Box<dyn FnMut(Membership) + Send>,
    ) -> Result<KafkaMember> {
        let operation = || format!("joining group {group:?} on topic {topic:?}");
        let mut client = consumer_config(config, group);
        client
            // Eager: all of a member's partitions are revoked before anyone is assigned.
            .set("partition.assignment.strategy", "range")
            .set(
                "session.timeout.ms",
                config.session_timeout.as_millis().to_string(),
            )
            // librdkafka heartbeats from its own thread, so a member that stops polling would
            // keep its partitions for max.poll.interval.ms (5 minutes by default): make that
            // the session timeout too, as the contract's "poll, or count as gone" wants.
            .set(
                "max.poll.interval.ms",
                config.session_timeout.as_millis().to_string(),
            )
            // A member fetches nothing; should it start before the pause, from the end.
            .set("auto.offset.reset", "latest");
        apply_properties(&mut client, config);
        let context = MemberContext {
            topic: topic.to_string(),
            on_change: Mutex::new(on_change),
            owned: Mutex::new(Vec::new()),
        };
        let consumer: MemberConsumer = client
            .create_with_context(context)
            .map_err(|e| broker(operation(), e))?;
        consumer
            .subscribe(&[topic])
            .map_err(|e| broker(operation(), e))?;
        Ok(KafkaMember {
            consumer: Arc::new(consumer),
            group: group.to_string(),
        })
    }

    /// The consumer, for commits on the group's behalf while this member lives.
    pub(crate) fn consumer(&self) -> Weak<MemberConsumer> {
        Arc::downgrade(&self.consumer)
    }
}

impl GroupMember for KafkaMember {
    fn poll(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.consumer.poll(left) {
                // Fetched before its partition was paused: records are not a member's business.
                Some(Ok(_)) | None => {}
                Some(Err(e)) if code(&e) == Some(RDKafkaErrorCode::Fatal) => {
                    return Err(broker(format!("polling group {:?}", self.group), e));
                }
                // librdkafka retries what it reports here (a broker gone for a while, a
                // coordinator moving); the member stays in the group or rejoins by itself.
                Some(Err(e)) => {
                    tracing::warn!(group = %self.group, "consumer group member: {e}");
                }
            }
            if Instant::now() >= deadline {
                return Ok(());
            }
        }
    }

    fn owned(&self) -> Vec<u32> {
        lock(&self.consumer.context().owned).clone()
    }
}
