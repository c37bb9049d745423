//! eddy's schema registry: contracts for producers (see `docs/architecture.md`, "schema").
//!
//! - [`schema`]: a [`Schema`] of either kind, which [`avro`] and [`json`] parse (or refuse with
//!   a [`SchemaError`], from [`error`]);
//! - [`avro`]: Avro schemas, their Parsing Canonical Form and fingerprints;
//! - [`json`]: JSON Schemas, their normalised form, validation with field paths;
//! - [`compat`]: whether one schema can read data written with another, every reason it cannot
//!   (an [`Incompatibility`], with the path of the field), and the compatibility modes built on
//!   that ([`json_compat`] for JSON Schemas);
//! - [`registry`]: subjects and versions, kept as a journal in eddy's own bus;
//! - [`gate`]: the gatekeeper, checking JSON events ([`avro_json`]) and decoding binary Avro in
//!   its three [`framing`]s for a repository bound to a subject.

#![deny(missing_docs)]

pub mod avro;
pub mod avro_json;
pub mod compat;
pub mod error;
pub mod framing;
pub mod gate;
pub mod incompatibility;
pub mod json;
pub mod json_compat;
pub mod registry;
pub mod schema;

pub use avro::AvroSchema;
pub use compat::Compatibility;
pub use error::SchemaError;
pub use incompatibility::Incompatibility;
pub use json::JsonSchema;
pub use registry::{Registry, RegistryError};
pub use schema::{Schema, SchemaType};
