//! [`Incompatibility`]: one reason a schema cannot read data of another, as the Avro and the
//! JSON Schema compatibility checks both report it.

use std::fmt;

/// One reason a schema cannot read data of another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incompatibility {
    /// Where: the record's name then field names, `[]` for array items, `{}` for map values.
    pub path: String,
    /// What changed, from the old schema to the new.
    pub reason: String,
    /// Which data cannot be read then.
    pub consequence: String,
}

impl fmt::Display for Incompatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}; {}", self.path, self.reason, self.consequence)
    }
}
