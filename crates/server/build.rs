//! Embeds the web UI's built assets (`ui/dist`, committed) so that `cargo build` needs no
//! Node.js: writes `ui_files.rs` into `OUT_DIR`, a table of (path, bytes) made of
//! `include_bytes!`, sorted by path so the output is the same on every machine.

use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let dist = manifest.join("../../ui/dist");
    // A directory is watched with everything under it.
    println!("cargo:rerun-if-changed={}", dist.display());
    let mut files = Vec::new();
    collect(&dist, &dist, &mut files);
    files.sort();
    let mut table = String::from("&[\n");
    for (path, absolute) in &files {
        table.push_str(&format!(
            "    ({path:?}, include_bytes!({:?}).as_slice()),\n",
            absolute.display().to_string()
        ));
    }
    table.push_str("]\n");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default()).join("ui_files.rs");
    if let Err(e) = std::fs::write(&out, table) {
        panic!("cannot write {}: {e}", out.display());
    }
}

/// Every file under `dir`, as its `/`-separated path relative to `root` and its absolute path.
fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(root, &path, files);
        } else if let Ok(relative) = path.strip_prefix(root) {
            let name = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            let absolute = path.canonicalize().unwrap_or(path.clone());
            files.push((name, absolute));
        }
    }
}
