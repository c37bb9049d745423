//! The benchmark harness's error type.

/// What can stop a benchmark run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file operation failed; its context says which, with the path.
    #[error(transparent)]
    Io(#[from] eddy_base::io::IoError),
    /// A baseline tool is not installed; the report must not print a made-up number instead.
    #[error("baseline tool `{tool}` is not installed (not found on PATH); install it with `{install}` or run bench/run.sh, which does")]
    ToolMissing {
        /// The command.
        tool: String,
        /// How to install it.
        install: String,
    },
    /// The Kafka-protocol broker a benchmark starts on loopback is not installed or did not
    /// start; the message says how to install it.
    #[error(transparent)]
    Broker(#[from] eddy_kafka::testing::StartError),
    /// A baseline tool ran but failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    ToolFailed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// A result disagrees with the truth the generator recorded.
    #[error("{what}: expected {expected}, got {got}")]
    Mismatch {
        /// Which result.
        what: String,
        /// The true value.
        expected: String,
        /// The measured value.
        got: String,
    },
    /// The log under test failed.
    #[error(transparent)]
    Log(#[from] eddy_log::Error),
    /// A setting or input is invalid.
    #[error("{0}")]
    Invalid(String),
}

/// The harness's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) use eddy_base::io::IoContext;
