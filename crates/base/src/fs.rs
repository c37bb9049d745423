//! Durable file-system changes: replacing a file whole, and making a directory's entries durable.
//!
//! Policy for [`replace_file`]: readers see the old contents or the new, never a mix, and once
//! it returns the new contents survive a crash. It writes a temporary file beside the target
//! (`<name>.<pid>.tmp`: same directory, so the rename stays on one file system; the pid keeps
//! two processes from writing one temporary file), fsyncs it, renames it over the target and
//! fsyncs the directory so the rename itself is durable. A crash before the rename leaves the
//! temporary file behind; its owner removes `*.tmp` files when it next opens the directory.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::io::{IoContext, IoError};

/// Replaces `path` with `bytes` atomically and durably (see the module doc).
pub fn replace_file(path: &Path, bytes: &[u8]) -> Result<(), IoError> {
    replace(path, bytes, None)
}

/// The trimmed text of a one-line file written with [`replace_file`] (an id); `None` when there
/// is no such file.
pub fn read_line_file(path: &Path) -> Result<Option<String>, IoError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text.trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).context(|| format!("reading {}", path.display())),
    }
}

/// [`replace_file`] for a file that may hold secrets: on Unix the new file is readable and
/// writable by its owner only (mode 0600).
pub fn replace_private_file(path: &Path, bytes: &[u8]) -> Result<(), IoError> {
    replace(path, bytes, Some(0o600))
}

/// The temporary file [`replace_file`] writes before renaming it over `path`.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp", std::process::id()));
    path.with_file_name(name)
}

fn replace(path: &Path, bytes: &[u8], mode: Option<u32>) -> Result<(), IoError> {
    let tmp = temp_path(path);
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if let Some(mode) = mode {
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
        }
        #[cfg(not(unix))]
        let _ = mode;
        let mut f = options
            .open(&tmp)
            .context(|| format!("creating {}", tmp.display()))?;
        f.write_all(bytes)
            .context(|| format!("writing {}", tmp.display()))?;
        f.sync_all()
            .context(|| format!("fsync of {}", tmp.display()))?;
    }
    std::fs::rename(&tmp, path)
        .context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    sync_dir(parent_dir(path))
}

/// The directory holding `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Fsyncs the directory `dir`, so a file created, renamed or removed in it stays so after a
/// crash (the file's own fsync does not cover its directory entry).
pub fn sync_dir(dir: &Path) -> Result<(), IoError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .context(|| format!("fsync of directory {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_file_creates_then_replaces_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("topic.json");
        replace_file(&path, b"first").unwrap();
        replace_file(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["topic.json"]);
    }

    #[test]
    fn temporary_file_sits_beside_the_target_and_ends_in_tmp() {
        let tmp = temp_path(Path::new("/data/groups/ingest.json"));
        assert_eq!(tmp.parent(), Some(Path::new("/data/groups")));
        assert_eq!(tmp.extension().unwrap(), "tmp");
        let name = tmp.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("ingest.json."), "{name}");
    }

    #[cfg(unix)]
    #[test]
    fn private_file_is_for_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        replace_private_file(&path, b"secret").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn failure_names_the_step_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("x.json");
        let e = replace_file(&path, b"x").unwrap_err();
        assert!(e.context.starts_with("creating "), "{e}");
        assert!(e.context.contains("x.json."), "{e}");
        assert_eq!(e.source.kind(), std::io::ErrorKind::NotFound);
    }

    #[test]
    fn sync_dir_of_a_missing_directory_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let e = sync_dir(&dir.path().join("gone")).unwrap_err();
        assert!(e.to_string().starts_with("fsync of directory "), "{e}");
        assert!(e.to_string().contains("gone"), "{e}");
    }
}
