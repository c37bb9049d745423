//! A schema of either kind the registry holds, as the Confluent API names them: `AVRO` (the
//! default) and `JSON`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::avro::AvroSchema;
use crate::error::SchemaError;
use crate::json::JsonSchema;

/// The kind of a schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum SchemaType {
    /// Apache Avro.
    #[default]
    Avro,
    /// JSON Schema.
    Json,
}

impl SchemaType {
    /// The name in the Confluent API.
    pub fn name(self) -> &'static str {
        match self {
            SchemaType::Avro => "AVRO",
            SchemaType::Json => "JSON",
        }
    }

    /// Whether this is the default (the Confluent API leaves `schemaType` out then).
    pub fn is_default(&self) -> bool {
        *self == SchemaType::Avro
    }
}

impl fmt::Display for SchemaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SchemaType {
    type Err = String;

    fn from_str(s: &str) -> Result<SchemaType, String> {
        match s.to_ascii_uppercase().as_str() {
            "AVRO" => Ok(SchemaType::Avro),
            "JSON" => Ok(SchemaType::Json),
            other => Err(format!(
                "schema type {other:?} is not supported; AVRO or JSON"
            )),
        }
    }
}

/// A parsed schema.
#[derive(Debug)]
pub enum Schema {
    /// An Avro schema.
    Avro(AvroSchema),
    /// A JSON Schema.
    Json(JsonSchema),
}

impl Schema {
    /// Parses `text` as a schema of `kind`.
    pub fn parse(kind: SchemaType, text: &str) -> Result<Schema, SchemaError> {
        Ok(match kind {
            SchemaType::Avro => Schema::Avro(AvroSchema::parse(text)?),
            SchemaType::Json => Schema::Json(JsonSchema::parse(text)?),
        })
    }

    /// Its kind.
    pub fn kind(&self) -> SchemaType {
        match self {
            Schema::Avro(_) => SchemaType::Avro,
            Schema::Json(_) => SchemaType::Json,
        }
    }

    /// The canonical (Avro) or normalised (JSON) form.
    pub fn canonical_form(&self) -> &str {
        match self {
            Schema::Avro(s) => s.canonical_form(),
            Schema::Json(s) => s.canonical_form(),
        }
    }

    /// SHA-256 of the canonical form.
    pub fn sha256(&self) -> [u8; 32] {
        match self {
            Schema::Avro(s) => s.sha256(),
            Schema::Json(s) => s.sha256(),
        }
    }

    /// The Avro schema, if it is one.
    pub fn as_avro(&self) -> Option<&AvroSchema> {
        match self {
            Schema::Avro(s) => Some(s),
            Schema::Json(_) => None,
        }
    }
}
