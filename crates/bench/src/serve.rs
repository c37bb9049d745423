//! A real `eddy serve` for a benchmark: a fresh directory with its config, the process, and
//! where it listens. Stopped with SIGKILL when dropped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::error::{Error, IoContext, Result};

/// A running `eddy serve`.
pub(crate) struct Serve {
    child: Child,
    /// Its HTTP door, `http://…`.
    pub(crate) http: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    /// Empties `dir` and writes `dir/eddy.toml`: `data_dir` under `dir`, then `settings`.
    pub(crate) fn fresh_config(dir: &Path, settings: &str) -> Result<PathBuf> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
        let config = dir.join("eddy.toml");
        std::fs::write(
            &config,
            format!("data_dir = {:?}\n{settings}", dir.join("data")),
        )
        .context(|| format!("writing {}", config.display()))?;
        Ok(config)
    }

    /// Starts `exe serve --config config`, with its stderr shown or not. Returns once it says
    /// where its HTTP door listens, with what follows each of `then` in the lines after it (the
    /// other doors' addresses); what it prints later is read and dropped, so that it never
    /// blocks on a full pipe.
    pub(crate) fn start(
        exe: &Path,
        config: &Path,
        show_stderr: bool,
        then: &[&str],
    ) -> Result<(Serve, Vec<String>)> {
        let mut child = Command::new(exe)
            .arg("serve")
            .arg("--config")
            .arg(config)
            .stdout(Stdio::piped())
            .stderr(match show_stderr {
                true => Stdio::inherit(),
                false => Stdio::null(),
            })
            .spawn()
            .context(|| format!("starting {} serve", exe.display()))?;
        let stdout = child.stdout.take();
        // Killed on any error below.
        let mut serve = Serve {
            child,
            http: String::new(),
        };
        let Some(stdout) = stdout else {
            return Err(Error::Invalid("no stdout from eddy serve".into()));
        };
        let mut lines = BufReader::new(stdout).lines();
        let mut next = |want: &str| -> Result<String> {
            let line = lines
                .next()
                .transpose()
                .context(|| "reading eddy serve's output".into())?
                .unwrap_or_default();
            line.trim()
                .strip_prefix(want)
                .map(str::to_string)
                .ok_or_else(|| {
                    Error::Invalid(format!("eddy serve said {line:?}, expected {want}…"))
                })
        };
        serve.http = next("listening on ")?;
        let addresses = then.iter().map(|want| next(want)).collect::<Result<_>>()?;
        std::thread::spawn(move || lines.for_each(drop));
        Ok((serve, addresses))
    }

    /// Its process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: nothing is flushed.
    pub(crate) fn kill(mut self) -> Result<()> {
        self.child.kill().context(|| "killing eddy serve".into())?;
        let _ = self.child.wait();
        Ok(())
    }
}

/// What each client thread of a load returned, a panic counted as an error.
pub(crate) fn joined<'scope, T: 'scope>(
    handles: Vec<std::thread::ScopedJoinHandle<'scope, Result<T>>>,
) -> impl Iterator<Item = Result<T>> + 'scope {
    handles.into_iter().map(|h| {
        h.join()
            .unwrap_or_else(|_| Err(Error::Invalid("a client thread panicked".into())))
    })
}

/// An HTTP client for a benchmark's requests: error statuses come back as answers.
pub(crate) fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(60)))
        .build()
        .into()
}

/// Posts an NDJSON `body` to `url`; anything but `200` is an error.
pub(crate) fn post_ndjson(agent: &ureq::Agent, url: &str, body: &[u8]) -> Result<()> {
    let resp = agent
        .post(url)
        .header("Content-Type", "application/x-ndjson")
        .send(body)
        .map_err(|e| Error::Invalid(format!("posting to eddy serve: {e}")))?;
    match resp.status().as_u16() {
        200 => Ok(()),
        s => Err(Error::Invalid(format!(
            "eddy serve answered {s} to a batch"
        ))),
    }
}

/// Posts NDJSON bodies of `per_body` events each (`body(client, n)`, eight per client, taken in
/// turn) to `url` at `rate` events/s from `clients` threads until `stop`; the events
/// acknowledged.
pub(crate) fn paced_load(
    url: &str,
    rate: u64,
    clients: usize,
    per_body: usize,
    body: impl Fn(usize, usize) -> Vec<u8> + Sync,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<u64> {
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};
    let per_client = Duration::from_secs_f64(per_body as f64 * clients as f64 / rate.max(1) as f64);
    let body = &body;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                s.spawn(move || -> Result<u64> {
                    let bodies: Vec<Vec<u8>> = (0..8).map(|b| body(c, b)).collect();
                    let agent = agent();
                    let start = Instant::now();
                    let mut sent = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let due = start + per_client * sent as u32;
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                        post_ndjson(&agent, url, &bodies[sent as usize % bodies.len()])?;
                        sent += 1;
                    }
                    Ok(sent * per_body as u64)
                })
            })
            .collect();
        joined(handles).sum()
    })
}
