//! The data directory's `LOCK` file: one writing process at a time (flock), readers beside it.

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
        (_, true) => Err(Error::Locked {
            dir: dir.to_path_buf(),
        }),
        (lock, false) => Ok(lock),
    }
}
