//! I/O errors that say what was being done.
//!
//! An operating system error alone ("No such file or directory") does not say which file or
//! which step; [`IoContext::context`] wraps it into an [`IoError`] whose text is
//! `"{context}: {source}"`, e.g. `fsync of /data/bus/groups/ingest.json.12.tmp: Input/output
//! error`. Each library crate's error type converts an `IoError` into its own I/O variant with
//! `From`, so `?` does the rest.

/// An I/O error and what was being done when it happened.
#[derive(Debug, thiserror::Error)]
#[error("{context}: {source}")]
pub struct IoError {
    /// What was being done, including the path (e.g. "creating /data/x.tmp").
    pub context: String,
    /// The operating system's error.
    #[source]
    pub source: std::io::Error,
}

/// Attaches "what was being done" to an I/O error.
pub trait IoContext<T> {
    /// The result, its error wrapped with the context `f` describes (called only on error).
    fn context(self, f: impl FnOnce() -> String) -> Result<T, IoError>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn context(self, f: impl FnOnce() -> String) -> Result<T, IoError> {
        self.map_err(|source| IoError {
            context: f(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_comes_before_the_operating_systems_words() {
        let failed: std::io::Result<()> = Err(std::io::Error::other("disk on fire"));
        let e = failed.context(|| "reading x".into()).unwrap_err();
        assert_eq!(e.to_string(), "reading x: disk on fire");
        assert_eq!(
            std::error::Error::source(&e).map(ToString::to_string),
            Some("disk on fire".into())
        );
    }

    #[test]
    fn context_is_not_built_on_success() {
        let ok: std::io::Result<u8> = Ok(7);
        assert_eq!(ok.context(|| unreachable!()).unwrap(), 7);
    }
}
