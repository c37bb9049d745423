//! [`SchemaError`]: what can go wrong with a schema's text.

/// What can go wrong with a schema.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The text is not a schema of its kind.
    #[error("invalid {kind} schema: {reason}")]
    Invalid {
        /// `AVRO` or `JSON`.
        kind: &'static str,
        /// The parser's reason.
        reason: String,
    },
}
