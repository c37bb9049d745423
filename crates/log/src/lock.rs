//! The data directory's `LOCK` file: one writing process at a time (flock), readers beside it.
//! The writer keeps its process id in the file, so a second one can say who holds it.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, IoContext, IoError, Result};

/// Opens `<dir>/LOCK` and tries to take it: the file, and whether another process holds it.
pub(crate) fn try_lock(dir: &Path) -> Result<(std::fs::File, bool)> {
    let lock_path = dir.join("LOCK");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .context(|| format!("opening {}", lock_path.display()))?;
    let writer_running = match lock.try_lock() {
        Ok(()) => false,
        Err(std::fs::TryLockError::WouldBlock) => true,
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(Error::Io(IoError {
                context: format!("locking {}", lock_path.display()),
                source: e,
            }))
        }
    };
    Ok((lock, writer_running))
}

/// Writes this process's id into the lock file it holds; only for a message, so a failure is
/// logged and not an error.
pub(crate) fn record_holder(mut lock: &std::fs::File) {
    let written = lock
        .set_len(0)
        .and_then(|()| lock.write_all(std::process::id().to_string().as_bytes()));
    if let Err(e) = written {
        tracing::debug!(error = %e, "could not write the process id into the LOCK file");
    }
}

/// The process id the writer holding `<dir>/LOCK` wrote into it, if it can be read.
pub(crate) fn holder(dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(dir.join("LOCK")).ok()?;
    text.trim().parse().ok()
}

/// The error for a data directory another writer holds.
pub(crate) fn locked(dir: &Path) -> Error {
    Error::Locked {
        dir: dir.to_path_buf(),
        holder: holder(dir),
    }
}

/// Takes the data directory for this process alone, as a writer does (for offline work such as
/// a repair); held until the file is dropped.
pub(crate) fn lock_for_writing(dir: &Path) -> Result<std::fs::File> {
    if !dir.join("LOCK").exists() {
        return Err(Error::Io(IoError {
            context: format!("opening the log in {}", dir.display()),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no eddy log there"),
        }));
    }
    match try_lock(dir)? {
        (_, true) => Err(locked(dir)),
        (lock, false) => {
            record_holder(&lock);
            Ok(lock)
        }
    }
}
