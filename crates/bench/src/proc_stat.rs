//! What a benchmark's server processes spent, from Linux's `/proc`: CPU time per process and
//! per thread (so that it can be split by thread name), resident memory, and a process's
//! children. Anything unreadable (a process that exited, another OS) reads as nothing.

use std::collections::BTreeMap;
use std::path::Path;

/// `/proc` reports CPU time in USER_HZ ticks, which the kernel fixes at 100 a second on every
/// architecture eddy builds for.
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU seconds of one process at one moment.
#[derive(Debug, Clone, Default)]
pub(crate) struct CpuSample {
    /// User and system time of the whole process, exited threads included.
    pub(crate) total: f64,
    /// Per live thread id: its name and user and system time.
    threads: BTreeMap<u32, (String, f64)>,
}

impl CpuSample {
    /// Reads process `pid` and its threads now.
    pub(crate) fn read(pid: u32) -> CpuSample {
        let total = stat_of(format!("/proc/{pid}/stat")).map_or(0.0, |(_, _, cpu)| cpu);
        let mut threads = BTreeMap::new();
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for task in tasks.flatten() {
                let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
                    continue;
                };
                if let Some((name, _, cpu)) = stat_of(task.path().join("stat")) {
                    threads.insert(tid, (name, cpu));
                }
            }
        }
        CpuSample { total, threads }
    }

    /// CPU seconds of the whole process since `before`.
    pub(crate) fn total_since(&self, before: &CpuSample) -> f64 {
        (self.total - before.total).max(0.0)
    }

    /// CPU seconds since `before` of the threads alive now whose name `matches` (a thread
    /// started since counts whole; one that exited since is not counted).
    pub(crate) fn threads_since(&self, before: &CpuSample, matches: impl Fn(&str) -> bool) -> f64 {
        self.threads
            .iter()
            .filter(|(_, (name, _))| matches(name))
            .map(|(tid, (_, cpu))| {
                let earlier = before.threads.get(tid).map_or(0.0, |(_, c)| *c);
                (cpu - earlier).max(0.0)
            })
            .sum()
    }
}

/// Name, parent id and CPU seconds (user + system) from a `stat` file.
fn stat_of(path: impl AsRef<Path>) -> Option<(String, u32, f64)> {
    parse_stat(&std::fs::read_to_string(path).ok()?)
}

/// Parses `pid (name) state ppid … utime stime …`. The name may hold spaces and parentheses,
/// so the fields are counted from the last `)`.
fn parse_stat(text: &str) -> Option<(String, u32, f64)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let name = text.get(open + 1..close)?.to_string();
    let fields: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // Fields 4 (ppid), 14 (utime) and 15 (stime) of proc(5), counted after the name's.
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((name, ppid, (utime + stime) as f64 / TICKS_PER_SECOND))
}

/// Resident memory of process `pid` in bytes (`VmRSS`).
pub(crate) fn resident_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// The child processes of this process that run `binary`.
pub(crate) fn children_running(binary: &Path) -> Vec<u32> {
    let me = std::process::id();
    let Ok(binary) = std::fs::canonicalize(binary) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| stat_of(format!("/proc/{pid}/stat")).is_some_and(|(_, ppid, _)| ppid == me))
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == binary))
        .collect()
}

/// The load average over the last minute, from `/proc/loadavg`.
pub(crate) fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_whose_name_holds_spaces_and_parentheses_parses() {
        let line = "4242 (rdk:broker (1) x) S 17 4242 17 0 -1 4194304 1 0 0 0 250 50 0 0 20 0 9 0";
        let (name, ppid, cpu) = parse_stat(line).unwrap();
        assert_eq!((name.as_str(), ppid), ("rdk:broker (1) x", 17));
        assert!((cpu - 3.0).abs() < 1e-9, "{cpu}");
        assert_eq!(parse_stat("4242 (cut short) S 1"), None);
    }

    #[test]
    fn this_process_has_cpu_time_threads_and_memory() {
        let busy: u64 = (0..3_000_000u64).map(|i| i.wrapping_mul(i) % 7).sum();
        assert!(busy > 0);
        let sample = CpuSample::read(std::process::id());
        assert!(!sample.threads.is_empty());
        assert!(sample.total >= sample.threads_since(&CpuSample::default(), |_| true) - 0.05);
        assert!(resident_bytes(std::process::id()).is_some_and(|b| b > 0));
        assert_eq!(CpuSample::read(u32::MAX).total, 0.0);
    }
}
