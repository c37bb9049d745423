//! `eddy topic repair`: cutting damaged stretches out of a topic's segment files, deliberately.
//!
//! Readers can already skip damage ([`crate::PartitionReader::skip_damage`]); a repair makes it
//! permanent so that verification passes again and nothing has to skip. Each damaged segment is
//! split around its damage: the good part before it keeps the file's name, each good part after
//! a stretch becomes a segment of its own named by its first offset, and the damaged bytes are
//! kept aside in `damaged/` for whoever wants to look at them. Offsets are never renumbered: the
//! records lost stay a gap.
//!
//! Crash safety: the new files are written as `<name>.repair` and fsynced, then a journal
//! (`repair.json`: renames and removals) is written atomically, then it is carried out and
//! deleted. Opening the partition finishes a journal that exists and deletes `.repair` files
//! that have none, so a crash at any point leaves either the old files or the new ones.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use eddy_base::fs::{replace_file, sync_dir};
use serde::{Deserialize, Serialize};

use crate::damage::Damage;
use crate::error::{Error, IoContext, IoError, Result};
use crate::partition::segment_bases;
use crate::segment::{log_path, Segment};

const JOURNAL: &str = "repair.json";
const TEMP_SUFFIX: &str = "repair";

/// What a repair did (or, in a dry run, would do) about one damaged stretch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Repair {
    /// The partition.
    pub partition: u32,
    /// The damage cut out.
    pub damage: Damage,
    /// Where its bytes are kept.
    pub kept_in: PathBuf,
}

/// The renames and removals that finish a repair, written before any of them is done.
#[derive(Debug, Serialize, Deserialize)]
struct Journal {
    /// File names in the partition directory to delete.
    remove: Vec<String>,
    /// `(from, to)` file names: the new segment files into place.
    rename: Vec<(String, String)>,
}

/// Cuts every damaged stretch out of `topic`'s partitions in the log at `dir`, which must not be
/// open in another process. With `dry_run`, only says what it would do.
pub fn repair_topic(dir: &Path, topic: &str, dry_run: bool) -> Result<Vec<Repair>> {
    let _lock = crate::lock::lock_for_writing(dir)?;
    let topic_dir = dir.join("topics").join(topic);
    if !topic_dir.join("topic.json").is_file() {
        return Err(Error::UnknownTopic(topic.to_string()));
    }
    let config = crate::TopicConfig::read(&topic_dir.join("topic.json"))?;
    let mut repairs = Vec::new();
    for partition in 0..config.partitions {
        let pdir = topic_dir.join(partition.to_string());
        if !pdir.is_dir() {
            continue;
        }
        finish(&pdir)?;
        let bases = segment_bases(&pdir)?;
        for (i, &base) in bases.iter().enumerate() {
            let segment = Segment::open_sealed(&pdir, base, config.index_interval_bytes, false)?;
            let damage = segment.verify(bases.get(i + 1).copied())?;
            drop(segment);
            if damage.is_empty() {
                continue;
            }
            let kept = pdir.join("damaged");
            let plan: Vec<Repair> = damage
                .into_iter()
                .map(|d| Repair {
                    partition,
                    kept_in: kept.join(format!("{base:020}-{}.bin", d.bytes.start)),
                    damage: d,
                })
                .collect();
            if !dry_run {
                split(&pdir, base, &plan)?;
                tracing::info!(file = %log_path(&pdir, base).display(), stretches = plan.len(), "cut damage out of a segment");
            }
            repairs.extend(plan);
        }
    }
    Ok(repairs)
}

/// Splits segment `base` around the damage in `plan` (in file order).
fn split(pdir: &Path, base: u64, plan: &[Repair]) -> Result<()> {
    let source = log_path(pdir, base);
    let mut file = File::open(&source).context(|| format!("opening {}", source.display()))?;
    let len = file
        .metadata()
        .context(|| format!("stat {}", source.display()))?
        .len();
    let kept = pdir.join("damaged");
    std::fs::create_dir_all(&kept).context(|| format!("creating {}", kept.display()))?;
    let mut journal = Journal {
        remove: vec![index_name(base, "index"), index_name(base, "timeindex")],
        rename: Vec::new(),
    };
    // The good parts: (first byte, end byte, base offset).
    let mut parts = Vec::new();
    let mut from = (0u64, base);
    for r in plan {
        parts.push((from.0, r.damage.bytes.start, from.1));
        copy_range(&mut file, &source, r.damage.bytes.clone(), &r.kept_in)?;
        from = (r.damage.bytes.end, r.damage.offsets.end);
    }
    parts.push((from.0, len, from.1));
    let name = |base: u64| format!("{base:020}.log");
    if parts.first().is_some_and(|&(start, end, _)| start == end) {
        journal.remove.push(name(base));
    }
    for &(start, end, part_base) in parts.iter().filter(|p| p.0 < p.1) {
        let temp = format!("{}.{TEMP_SUFFIX}", name(part_base));
        copy_range(&mut file, &source, start..end, &pdir.join(&temp))?;
        journal.rename.push((temp, name(part_base)));
    }
    sync_dir(&kept)?;
    sync_dir(pdir)?;
    let body = serde_json::to_vec(&journal).map_err(|e| Error::BadMetadata {
        path: pdir.join(JOURNAL),
        reason: e.to_string(),
    })?;
    replace_file(&pdir.join(JOURNAL), &body)?;
    finish(pdir)
}

fn index_name(base: u64, kind: &str) -> String {
    format!("{base:020}.{kind}")
}

/// Copies bytes `range` of `file` to a new, fsynced file at `to`.
fn copy_range(file: &mut File, path: &Path, range: std::ops::Range<u64>, to: &Path) -> Result<()> {
    file.seek(SeekFrom::Start(range.start))
        .context(|| format!("seeking in {}", path.display()))?;
    let mut out = File::create(to).context(|| format!("creating {}", to.display()))?;
    std::io::copy(&mut file.take(range.end - range.start), &mut out)
        .context(|| format!("copying {} to {}", path.display(), to.display()))?;
    Ok(out
        .sync_all()
        .context(|| format!("fsync of {}", to.display()))?)
}

/// Finishes a repair of the partition in `pdir` that a crash cut short, or forgets one that had
/// not reached its journal. Called before a partition's segments are opened for writing.
pub(crate) fn finish(pdir: &Path) -> Result<()> {
    let journal_path = pdir.join(JOURNAL);
    match std::fs::read(&journal_path) {
        Ok(bytes) => {
            let journal: Journal =
                serde_json::from_slice(&bytes).map_err(|e| Error::BadMetadata {
                    path: journal_path.clone(),
                    reason: e.to_string(),
                })?;
            for name in &journal.remove {
                match std::fs::remove_file(pdir.join(name)) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(Error::Io(IoError {
                            context: format!("removing {}", pdir.join(name).display()),
                            source: e,
                        }))
                    }
                    _ => {}
                }
            }
            for (from, to) in &journal.rename {
                let (from, to) = (pdir.join(from), pdir.join(to));
                if from.exists() {
                    std::fs::rename(&from, &to)
                        .context(|| format!("renaming {} to {}", from.display(), to.display()))?;
                }
            }
            sync_dir(pdir)?;
            std::fs::remove_file(&journal_path)
                .context(|| format!("removing {}", journal_path.display()))?;
            sync_dir(pdir)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let entries =
                std::fs::read_dir(pdir).context(|| format!("listing {}", pdir.display()))?;
            for entry in entries.flatten() {
                let path = entry.path();
                let stray = path
                    .extension()
                    .is_some_and(|x| x == TEMP_SUFFIX || x == "tmp");
                if stray {
                    tracing::info!(file = %path.display(), "removing the file of a repair cut short");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        Err(e) => {
            return Err(Error::Io(IoError {
                context: format!("reading {}", journal_path.display()),
                source: e,
            }))
        }
    }
    Ok(())
}
