//! Figures, report sections and the report file.
//!
//! Every figure keeps all its runs and is printed as median, min and max. A section is a
//! Markdown table between `<!-- bench:<id>:start -->` and `<!-- bench:<id>:end -->` markers, so
//! one benchmark can replace its own section of `bench/REPORT.md` and keep the others.

use std::fmt::Write as _;
use std::path::Path;

use crate::error::{IoContext, Result};

/// One measured figure: the value of each run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Figure {
    /// What was measured.
    pub name: String,
    /// Unit: `records/s`, `MB/s`, `GB/s`, `µs`, `s`, `ratio`, `lines`.
    pub unit: String,
    /// One value per run.
    pub runs: Vec<f64>,
}

impl Figure {
    /// An empty figure.
    pub fn new(name: &str, unit: &str) -> Figure {
        Figure {
            name: name.to_string(),
            unit: unit.to_string(),
            runs: Vec::new(),
        }
    }

    /// A figure measured once.
    pub fn once(name: &str, unit: &str, value: f64) -> Figure {
        Figure {
            runs: vec![value],
            ..Figure::new(name, unit)
        }
    }

    fn sorted(&self) -> Vec<f64> {
        let mut v = self.runs.clone();
        v.sort_by(f64::total_cmp);
        v
    }

    /// Median of the runs (NaN if none).
    pub fn median(&self) -> f64 {
        let v = self.sorted();
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }

    /// Smallest run.
    pub fn min(&self) -> f64 {
        self.sorted().first().copied().unwrap_or(f64::NAN)
    }

    /// Largest run.
    pub fn max(&self) -> f64 {
        self.sorted().last().copied().unwrap_or(f64::NAN)
    }
}

/// Formats a value in its unit for people.
pub fn format_value(v: f64, unit: &str) -> String {
    if v.is_nan() {
        return "missing".to_string();
    }
    match unit {
        "records/s" | "events/s" | "lines/s" if v < 1e6 => format!("{:.1} k {unit}", v / 1e3),
        "records/s" | "events/s" | "lines/s" => format!("{:.2} M {unit}", v / 1e6),
        "MB/s" => format!("{:.0} MB/s", v / 1e6),
        "GB/s" => format!("{:.2} GB/s", v / 1e9),
        "MB" => format!("{:.1} MB", v / 1e6),
        "µs" => format!("{v:.0} µs"),
        "ms" => format!("{v:.1} ms"),
        "s" => format!("{v:.2} s"),
        "ratio" => format!("{v:.2}×"),
        "lines" | "count" => format!("{v:.0}"),
        _ => format!("{v:.2} {unit}"),
    }
}

/// A row of a section's table: a figure and what it is compared with.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    /// The figure.
    pub figure: Figure,
    /// The baseline it is compared with, as text (empty if none).
    pub baseline: String,
    /// eddy ÷ baseline, as text (empty if none).
    pub ratio: String,
    /// The goal an issue sets, as text (empty if none).
    pub goal: String,
}

impl Row {
    /// A row without baseline or goal.
    pub fn plain(figure: Figure) -> Row {
        Row {
            figure,
            baseline: String::new(),
            ratio: String::new(),
            goal: String::new(),
        }
    }
}

/// A section of the report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Section {
    /// Marker id, e.g. `log`.
    pub id: String,
    /// Heading.
    pub title: String,
    /// Text before the table.
    pub intro: String,
    /// The table.
    pub rows: Vec<Row>,
    /// Text after the table.
    pub notes: String,
}

impl Section {
    /// The section as Markdown, between its markers.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "<!-- bench:{}:start -->", self.id);
        let _ = writeln!(s, "## {}\n", self.title);
        if !self.intro.is_empty() {
            let _ = writeln!(s, "{}\n", self.intro.trim_end());
        }
        if !self.rows.is_empty() {
            let _ = writeln!(
                s,
                "| figure | median | min | max | baseline | ratio | goal |"
            );
            let _ = writeln!(s, "|---|---|---|---|---|---|---|");
            for r in &self.rows {
                let f = &r.figure;
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} | {} |",
                    f.name,
                    format_value(f.median(), &f.unit),
                    format_value(f.min(), &f.unit),
                    format_value(f.max(), &f.unit),
                    r.baseline,
                    r.ratio,
                    r.goal
                );
            }
            s.push('\n');
        }
        if !self.notes.is_empty() {
            let _ = writeln!(s, "{}\n", self.notes.trim_end());
        }
        let _ = writeln!(s, "<!-- bench:{}:end -->", self.id);
        s
    }
}

/// Writes a whole new report: `header`, then every section in order.
pub fn write_report(path: &Path, header: &str, sections: &[Section]) -> Result<()> {
    let _ = std::fs::remove_file(path);
    update_report(path, header, sections)
}

/// Replaces each section's part of the report (or appends it), keeping everything else. A
/// missing report starts with `header`.
pub fn update_report(path: &Path, header: &str, sections: &[Section]) -> Result<()> {
    let mut text = std::fs::read_to_string(path).unwrap_or_else(|_| header.to_string());
    for section in sections {
        let (start, end) = (
            format!("<!-- bench:{}:start -->", section.id),
            format!("<!-- bench:{}:end -->", section.id),
        );
        let body = section.markdown();
        text = match (text.find(&start), text.find(&end)) {
            (Some(a), Some(b)) if b > a => {
                let tail = &text[b + end.len()..];
                format!("{}\n\n{}{}", text[..a].trim_end(), body.trim_end(), tail)
            }
            _ => format!("{}\n\n{}", text.trim_end(), body),
        };
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).context(|| format!("creating {}", parent.display()))?;
    }
    let text = format!("{}\n", text.trim_end());
    Ok(std::fs::write(path, text).context(|| format!("writing {}", path.display()))?)
}

fn first_value(path: &str, prefix: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
}

/// The device and file system holding `dir`, from /proc/mounts (longest matching mount point).
fn disk_of(dir: &Path) -> Option<String> {
    let abs = std::fs::canonicalize(dir).ok()?;
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && abs.starts_with(f[1])).then(|| {
                (
                    f[1].len(),
                    format!("{} ({}, mounted at {})", f[0], f[2], f[1]),
                )
            })
        })
        .max_by_key(|(n, _)| *n)
        .map(|(_, s)| s)
}

fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// One line naming the eddy version, commit, time and mode of a measurement.
pub fn provenance(mode: &str, runs: usize) -> String {
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    format!(
        "eddy {} (commit {}), measured {now}, {mode} mode, {runs} runs per figure (median, min, max).",
        env!("CARGO_PKG_VERSION"),
        git_commit()
    )
}

/// The machine: CPU, cores, memory, the disk holding `dir`, kernel — as Markdown list items.
pub fn machine(dir: &Path) -> String {
    let cpu = first_value("/proc/cpuinfo", "model name").unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = first_value("/proc/meminfo", "MemTotal").unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let disk = disk_of(dir).unwrap_or_else(|| "unknown".into());
    format!("- CPU: {cpu}\n- cores: {cores}\n- memory: {mem}\n- disk: {disk}\n- kernel: {kernel}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_min_max() {
        let f = Figure {
            runs: vec![3.0, 1.0, 2.0, 10.0],
            ..Figure::new("x", "s")
        };
        assert_eq!((f.median(), f.min(), f.max()), (2.5, 1.0, 10.0));
        assert!(Figure::new("y", "s").median().is_nan());
        assert_eq!(format_value(f64::NAN, "s"), "missing");
    }

    #[test]
    fn sections_replace_their_own_part_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("R.md");
        let sec = |id: &str, v: f64| Section {
            id: id.into(),
            title: id.into(),
            intro: String::new(),
            rows: vec![Row::plain(Figure::once("f", "s", v))],
            notes: String::new(),
        };
        update_report(&path, "# head\n", &[sec("a", 1.0), sec("b", 2.0)]).unwrap();
        update_report(&path, "# head\n", &[sec("a", 5.0)]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# head"));
        assert!(text.contains("5.00 s") && !text.contains("1.00 s") && text.contains("2.00 s"));
        assert_eq!(text.matches("bench:a:start").count(), 1);
        assert!(text.find("bench:a:start") < text.find("bench:b:start"));
    }
}
