//! Baselines: what the hardware and the tools people already use achieve on the same data.
//!
//! A missing tool is an error, never a made-up or blank number.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::error::{Error, IoContext, Result};
use crate::gen::Probe;

/// The external tools the baselines run, found on PATH.
#[derive(Debug, Clone)]
pub struct Tools {
    /// ripgrep.
    pub rg: PathBuf,
    /// zstd.
    pub zstd: PathBuf,
    /// gzip.
    pub gzip: PathBuf,
}

fn find(tool: &str, install: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::ToolMissing {
            tool: tool.to_string(),
            install: install.to_string(),
        })
}

impl Tools {
    /// Finds every tool, or fails naming the first one missing and how to install it.
    pub fn find() -> Result<Tools> {
        Ok(Tools {
            rg: find("rg", "apt-get install ripgrep")?,
            zstd: find("zstd", "apt-get install zstd")?,
            gzip: find("gzip", "apt-get install gzip")?,
        })
    }

    /// The tools' versions, for the report.
    pub fn versions(&self) -> String {
        [&self.rg, &self.zstd, &self.gzip]
            .iter()
            .map(|t| {
                Command::new(t)
                    .arg("--version")
                    .output()
                    .ok()
                    .and_then(|o| {
                        let text = if o.stdout.is_empty() {
                            o.stderr
                        } else {
                            o.stdout
                        };
                        String::from_utf8_lossy(&text)
                            .lines()
                            .next()
                            .map(str::to_string)
                    })
                    .unwrap_or_else(|| t.display().to_string())
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().to_string();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Counts the lines of `file` matching `probe` with `rg -c`; returns (count, seconds), and
/// fails if the count is not the true one.
pub fn rg_count(tools: &Tools, probe: &Probe, file: &Path) -> Result<(u64, f64)> {
    let mut flags = vec!["--no-mmap"];
    if !probe.regex {
        flags.push("--fixed-strings");
    }
    if probe.ignore_case {
        flags.push("--ignore-case");
    }
    let (count, secs) = rg_count_with(tools, &flags, &probe.pattern, file)?;
    if count != probe.count {
        return Err(Error::Mismatch {
            what: format!("rg count of {:?} in {}", probe.pattern, file.display()),
            expected: probe.count.to_string(),
            got: count.to_string(),
        });
    }
    Ok((count, secs))
}

/// Counts the lines of `file` matching `pattern` with `rg --count` and `flags`; returns
/// (count, seconds).
pub fn rg_count_with(
    tools: &Tools,
    flags: &[&str],
    pattern: &str,
    file: &Path,
) -> Result<(u64, f64)> {
    let mut cmd = Command::new(&tools.rg);
    cmd.args(["--no-config", "--count", "--no-filename"]);
    cmd.args(flags);
    cmd.arg("--regexp").arg(pattern).arg(file);
    let start = Instant::now();
    let out = cmd
        .output()
        .context(|| format!("running {}", describe(&cmd)))?;
    let secs = start.elapsed().as_secs_f64();
    // rg exits 1 when nothing matches.
    let count = match out.status.code() {
        Some(0) => String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<u64>()
            .map_err(|e| Error::ToolFailed {
                command: describe(&cmd),
                status: "0".into(),
                stderr: format!("unreadable count: {e}"),
            })?,
        Some(1) => 0,
        _ => {
            return Err(Error::ToolFailed {
                command: describe(&cmd),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).to_string(),
            })
        }
    };
    Ok((count, secs))
}

/// Compresses `file` with `tool args…` to a pipe; returns (compressed bytes, seconds).
pub fn compressed_size(tool: &Path, args: &[&str], file: &Path) -> Result<(u64, f64)> {
    let mut cmd = Command::new(tool);
    cmd.args(args)
        .arg(file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .context(|| format!("running {}", describe(&cmd)))?;
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| Error::Invalid("no stdout pipe".into()))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = stdout
            .read(&mut buf)
            .context(|| format!("reading from {}", describe(&cmd)))?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    let out = child
        .wait_with_output()
        .context(|| format!("waiting for {}", describe(&cmd)))?;
    let secs = start.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(Error::ToolFailed {
            command: describe(&cmd),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).to_string(),
        });
    }
    Ok((total, secs))
}

/// The disk's sequential write rate when every `batch_bytes` write is followed by fdatasync,
/// in bytes/s, measured on a scratch file in `dir`.
pub fn disk_fsync(dir: &Path, batch_bytes: usize, total_bytes: u64) -> Result<f64> {
    std::fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("disk-baseline.bin");
    let mut file =
        std::fs::File::create(&path).context(|| format!("creating {}", path.display()))?;
    let buf = vec![0x5au8; batch_bytes];
    let batches = (total_bytes / batch_bytes as u64).max(1);
    let start = Instant::now();
    for _ in 0..batches {
        file.write_all(&buf)
            .context(|| format!("writing {}", path.display()))?;
        file.sync_data()
            .context(|| format!("fsync of {}", path.display()))?;
    }
    let secs = start.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&path).context(|| format!("removing {}", path.display()))?;
    Ok(batches as f64 * batch_bytes as f64 / secs)
}

/// Memory read bandwidth in bytes/s: the best of three sums over a buffer larger than the caches.
pub fn memory_bandwidth() -> f64 {
    let words = 64usize << 20; // 512 MiB of u64
    let buf: Vec<u64> = (0..words as u64).collect();
    let mut best = 0f64;
    for _ in 0..3 {
        let start = Instant::now();
        let sum = buf.iter().fold(0u64, |a, &b| a.wrapping_add(b));
        let secs = start.elapsed().as_secs_f64();
        std::hint::black_box(sum);
        best = best.max((words * 8) as f64 / secs);
    }
    best
}
