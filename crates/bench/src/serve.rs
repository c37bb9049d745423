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
