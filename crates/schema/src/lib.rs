//! eddy's schema registry: contracts for producers (see `ARCHITECTURE.md`, "schema").
//!
//! - [`avro`]: Avro schemas, their Parsing Canonical Form and fingerprints;
//! - [`json`]: JSON Schemas, their normalised form, validation with field paths;
//! - [`compat`]: whether one schema can read data written with another, every reason it cannot
//!   with the path of the field, and the compatibility modes built on that ([`json_compat`] for
//!   JSON Schemas);
//! - [`registry`]: subjects and versions, kept as a journal in eddy's own bus;
//! - [`gate`]: the gatekeeper, checking JSON events ([`avro_json`]) and decoding binary Avro in
//!   its three [`framing`]s for a repository bound to a subject.

pub mod avro;
pub mod avro_json;
pub mod compat;
pub mod framing;
pub mod gate;
pub mod json;
pub mod json_compat;
pub mod registry;
pub mod schema;

pub use avro::AvroSchema;
pub use compat::{Compatibility, Incompatibility};
pub use json::JsonSchema;
pub use registry::{Registry, RegistryError};
pub use schema::{Schema, SchemaType};

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
