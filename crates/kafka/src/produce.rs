//! Waiting for delivery reports: a produce call hands every record of its batch a shared
//! [`Delivery`], the producer's background thread reports each outcome into it, and the call
//! returns once all are in.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use eddy_base::sync::{lock, wait_timeout};
use eddy_log::AppendAck;
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::ClientContext;

/// The outcomes of one produce call's records.
#[derive(Default)]
pub(crate) struct Delivery {
    state: Mutex<DeliveryState>,
    changed: Condvar,
}

#[derive(Default)]
struct DeliveryState {
    /// Records handed to the producer and not reported yet.
    pending: usize,
    /// Per partition, the lowest and highest offset reported.
    offsets: BTreeMap<u32, (u64, u64)>,
    /// Records reported delivered without an offset: librdkafka's answer to a broker that
    /// called the batch a duplicate of one it already has (DUPLICATE_SEQUENCE_NUMBER).
    without_offset: usize,
    /// The first failure, with its partition.
    failure: Option<(i32, String)>,
}

/// How a produce call's wait ended.
pub(crate) enum Outcome {
    /// Every record is acknowledged: one ack per partition with a known offset, in partition
    /// order, and how many records were acknowledged without an offset.
    Acked(Vec<AppendAck>, usize),
    /// A record failed on this partition with this message.
    Failed(i32, String),
    /// Reports were still missing at the deadline.
    TimedOut(usize),
}

impl Delivery {
    /// Counts one more record handed to the producer.
    pub(crate) fn sent(&self) {
        lock(&self.state).pending += 1;
    }

    fn report(&self, partition: i32, result: Result<i64, String>) {
        let mut state = lock(&self.state);
        state.pending = state.pending.saturating_sub(1);
        match result {
            Ok(offset) => match (u32::try_from(partition), u64::try_from(offset)) {
                (Ok(p), Ok(o)) => {
                    let range = state.offsets.entry(p).or_insert((o, o));
                    range.0 = range.0.min(o);
                    range.1 = range.1.max(o);
                }
                // Delivered at an offset nobody knows: it must not widen the ack to offset 0.
                _ => state.without_offset += 1,
            },
            Err(message) => {
                state.failure.get_or_insert((partition, message));
            }
        }
        self.changed.notify_all();
    }

    /// Waits until every record sent is reported, or a failure, or `timeout`.
    pub(crate) fn wait(&self, timeout: Duration) -> Outcome {
        let deadline = Instant::now() + timeout;
        let mut state = lock(&self.state);
        loop {
            if let Some((p, message)) = &state.failure {
                return Outcome::Failed(*p, message.clone());
            }
            if state.pending == 0 {
                let acks = state
                    .offsets
                    .iter()
                    .map(|(&partition, &(base_offset, last_offset))| AppendAck {
                        partition,
                        base_offset,
                        last_offset,
                    })
                    .collect();
                return Outcome::Acked(acks, state.without_offset);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Outcome::TimedOut(state.pending);
            }
            state = wait_timeout(&self.changed, state, left);
        }
    }
}

/// The producer's context: routes each delivery report to its produce call's [`Delivery`].
pub(crate) struct DeliveryContext;

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Arc<Delivery>;

    fn delivery(&self, result: &DeliveryResult<'_>, delivery: Arc<Delivery>) {
        match result {
            Ok(message) => delivery.report(message.partition(), Ok(message.offset())),
            Err((error, message)) => delivery.report(message.partition(), Err(error.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_span_each_partitions_reported_offsets_in_partition_order() {
        let delivery = Delivery::default();
        for _ in 0..5 {
            delivery.sent();
        }
        delivery.report(2, Ok(11));
        delivery.report(0, Ok(4));
        delivery.report(2, Ok(10));
        delivery.report(0, Ok(5));
        assert!(matches!(
            delivery.wait(Duration::ZERO),
            Outcome::TimedOut(1)
        ));
        delivery.report(2, Ok(12));
        let Outcome::Acked(acks, 0) = delivery.wait(Duration::from_secs(60)) else {
            panic!("every record was reported");
        };
        let spans: Vec<(u32, u64, u64)> = acks
            .iter()
            .map(|a| (a.partition, a.base_offset, a.last_offset))
            .collect();
        assert_eq!(spans, vec![(0, 4, 5), (2, 10, 12)]);
    }

    #[test]
    fn a_record_delivered_without_an_offset_is_counted_not_taken_for_offset_0() {
        let delivery = Delivery::default();
        for _ in 0..3 {
            delivery.sent();
        }
        delivery.report(1, Ok(41));
        delivery.report(1, Ok(-1));
        delivery.report(1, Ok(42));
        let Outcome::Acked(acks, without_offset) = delivery.wait(Duration::from_secs(60)) else {
            panic!("every record was reported");
        };
        assert_eq!(without_offset, 1);
        assert_eq!(
            (acks[0].partition, acks[0].base_offset, acks[0].last_offset),
            (1, 41, 42)
        );
    }

    #[test]
    fn one_failed_record_fails_the_call_naming_its_partition() {
        let delivery = Delivery::default();
        delivery.sent();
        delivery.sent();
        delivery.report(1, Ok(0));
        delivery.report(3, Err("Broker: Not enough in-sync replicas".into()));
        match delivery.wait(Duration::from_secs(60)) {
            Outcome::Failed(3, message) => assert!(message.contains("in-sync"), "{message}"),
            _ => panic!("the failure is reported"),
        }
    }
}
