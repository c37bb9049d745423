//! Turning librdkafka's failures into the bus's typed errors.

use eddy_log::Error;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// An operation failed at the broker or in the client: [`Error::Broker`] naming the operation
/// (with its topic and partition) in `operation`.
pub(crate) fn broker(operation: impl Into<String>, message: impl ToString) -> Error {
    Error::Broker {
        bus: "kafka",
        operation: operation.into(),
        message: message.to_string(),
    }
}

/// The error code inside a librdkafka error, when it carries one.
pub(crate) fn code(error: &KafkaError) -> Option<RDKafkaErrorCode> {
    error.rdkafka_error_code()
}
