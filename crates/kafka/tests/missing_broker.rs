//! Without its broker, a Kafka test fails and says how to install it; it never passes quietly.

use eddy_kafka::testing::{Broker, INSTALL_HINT};

#[test]
fn a_missing_broker_fails_the_test_with_the_way_to_install_it() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let missing = dir.path().join("tansu");
    let panic = std::panic::catch_unwind(|| Broker::start_binary(&missing))
        .err()
        .expect("no broker, no start");
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains(INSTALL_HINT), "{message}");
    assert!(message.contains("install-broker.sh"), "{message}");
}
