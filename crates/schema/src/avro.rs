//! Avro schemas: parsing (by the `apache-avro` crate), the Parsing Canonical Form and the
//! fingerprints the three framings name a schema by.

use apache_avro::rabin::Rabin;
use apache_avro::Schema;
use sha2::Sha256;

use crate::error::SchemaError;

/// A parsed Avro schema with its canonical form and fingerprints.
#[derive(Debug, Clone)]
pub struct AvroSchema {
    schema: Schema,
    canonical: String,
    sha256: [u8; 32],
    crc64: [u8; 8],
}

impl AvroSchema {
    /// Parses the JSON text of a schema.
    pub fn parse(text: &str) -> Result<AvroSchema, SchemaError> {
        let schema = Schema::parse_str(text).map_err(|e| SchemaError::Invalid {
            kind: "AVRO",
            reason: e.to_string(),
        })?;
        let canonical = schema.canonical_form();
        let sha256 = fixed(&schema.fingerprint::<Sha256>().bytes);
        let crc64 = fixed(&schema.fingerprint::<Rabin>().bytes);
        Ok(AvroSchema {
            schema,
            canonical,
            sha256,
            crc64,
        })
    }

    /// The schema as `apache-avro` models it.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The Parsing Canonical Form: what two texts of the same schema have in common.
    pub fn canonical_form(&self) -> &str {
        &self.canonical
    }

    /// SHA-256 of the canonical form (the Gilt framing's `0x81` + 32 bytes).
    pub fn sha256(&self) -> [u8; 32] {
        self.sha256
    }

    /// `value` in Avro's binary encoding (a datum, without framing).
    pub fn encode(&self, value: apache_avro::types::Value) -> Result<Vec<u8>, SchemaError> {
        apache_avro::writer::datum::GenericDatumWriter::builder(&self.schema)
            .build()
            .and_then(|w| w.write_value_to_vec(value))
            .map_err(|e| SchemaError::Invalid {
                kind: "AVRO",
                reason: format!("the value does not encode: {e}"),
            })
    }

    /// CRC-64-AVRO (Rabin) of the canonical form, little-endian as single-object encoding
    /// writes it after `C3 01`.
    pub fn crc64(&self) -> [u8; 8] {
        self.crc64
    }
}

/// The first `N` bytes of `bytes` (digests have exactly `N`).
fn fixed<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    let n = bytes.len().min(N);
    out[..n].copy_from_slice(&bytes[..n]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_schema_written_twice_has_one_form_and_fingerprint() {
        let a = AvroSchema::parse(
            r#"{"type": "record", "name": "Order", "doc": "an order",
                "fields": [{"name": "id", "type": "long"}, {"name": "total", "type": "double", "default": 0}]}"#,
        )
        .unwrap();
        let b = AvroSchema::parse(
            r#"{"name":"Order","type":"record","fields":[{"type":"long","name":"id"},{"name":"total","type":"double"}]}"#,
        )
        .unwrap();
        assert_eq!(a.canonical_form(), b.canonical_form());
        assert_eq!(
            a.canonical_form(),
            r#"{"name":"Order","type":"record","fields":[{"name":"id","type":"long"},{"name":"total","type":"double"}]}"#
        );
        assert_eq!(a.sha256(), b.sha256());
        assert_eq!(a.crc64(), b.crc64());
    }

    #[test]
    fn the_crc64_of_a_primitive_is_the_specifications() {
        // From the Avro specification's test vectors: "int" has Rabin fingerprint
        // 0x7275d51a3f395c8f, written little-endian.
        let int = AvroSchema::parse(r#""int""#).unwrap();
        assert_eq!(u64::from_le_bytes(int.crc64()), 0x7275_d51a_3f39_5c8f);
    }

    #[test]
    fn bad_schemas_say_why() {
        let e = AvroSchema::parse(r#"{"type": "record", "name": "X"}"#).unwrap_err();
        assert!(e.to_string().contains("AVRO"), "{e}");
        assert!(AvroSchema::parse("not json").is_err());
    }
}
