//! What the test broker (tansu 0.6.0) gets wrong, pinned: the crate's documentation and
//! docs/scale-out.md ("The test broker's gaps") explain eddy's benchmark results by it. When a
//! test here fails, the broker changed: update those pages.

use std::time::Duration;

use eddy_kafka::testing::Broker;
use eddy_kafka::KafkaBus;
use eddy_log::{Bus, PartitionChoice, Record, TopicConfig};

/// librdkafka bumps an idempotent producer's epoch itself after a message times out (KIP-360);
/// Kafka accepts the higher epoch, tansu fences the producer: every later produce fails. (What
/// follows, the epoch wrapping after 32,767 bumps and tansu answering "duplicate" to batches it
/// never stored, takes a minute of fenced produces and is not pinned here.)
#[test]
fn after_a_message_timed_out_the_test_broker_fences_the_producer() {
    let broker = Broker::start();
    let mut config = broker.config();
    config.delivery_timeout = Duration::from_secs(2);
    config.request_timeout = Duration::from_secs(2);
    let bus = KafkaBus::connect(config).expect("a bus");
    let topic = TopicConfig {
        partitions: 1,
        ..TopicConfig::default()
    };
    bus.ensure_topic("t", &topic).expect("the topic");
    let produce = || bus.produce("t", vec![Record::new("e")], PartitionChoice::Explicit(0));
    produce().expect("a produce before the stall");

    broker.pause();
    let timed_out = produce();
    broker.resume();
    let message = timed_out.expect_err("nothing answered").to_string();
    assert!(message.contains("MessageTimedOut"), "{message}");

    // Each fenced batch makes librdkafka bump the epoch again, which tansu fences again: the
    // producer stays refused (on Kafka the first produce after the bump succeeds).
    for attempt in 0..3 {
        let after = produce().expect_err("tansu fences the bumped epoch");
        assert!(
            after.to_string().contains("ProducerFenced"),
            "attempt {attempt}: {after}"
        );
    }
}
