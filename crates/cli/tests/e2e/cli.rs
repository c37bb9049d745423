//! End-to-end tests of the `eddy` binary: real processes, a real data directory.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn eddy(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_eddy"));
    // By the environment: only the commands that open a data directory take --data-dir.
    c.env("EDDY_DATA_DIR", dir).env_remove("RUST_LOG");
    c
}

fn run(dir: &Path, args: &[&str], stdin: &str) -> Output {
    let mut command = eddy(dir);
    command.args(args);
    common::output_with_stdin(command, stdin)
}

fn ok(dir: &Path, args: &[&str], stdin: &str) -> String {
    let out = run(dir, args, stdin);
    assert!(
        out.status.success(),
        "eddy {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn fails(dir: &Path, args: &[&str], stdin: &str, code: i32) -> String {
    let out = run(dir, args, stdin);
    assert_eq!(out.status.code(), Some(code), "eddy {args:?}: {out:?}");
    String::from_utf8(out.stderr).unwrap()
}

fn lines(n: usize) -> String {
    (0..n).map(|i| format!("event {i}\n")).collect()
}

#[test]
fn every_subcommand_has_help() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["--help"],
        vec!["topic", "--help"],
        vec!["topic", "create", "--help"],
        vec!["topic", "list", "--help"],
        vec!["topic", "describe", "--help"],
        vec!["topic", "verify", "--help"],
        vec!["topic", "delete", "--help"],
        vec!["produce", "--help"],
        vec!["consume", "--help"],
        vec!["group", "--help"],
        vec!["group", "list", "--help"],
        vec!["group", "describe", "--help"],
        vec!["bench", "--help"],
        vec!["bench", "log", "--help"],
        vec!["schema", "--help"],
        vec!["schema", "register", "--help"],
        vec!["schema", "list", "--help"],
        vec!["schema", "show", "--help"],
        vec!["schema", "check", "--help"],
        vec!["schema", "diff", "--help"],
    ] {
        let out = ok(dir.path(), &args, "");
        assert!(out.contains("Usage:"), "{args:?}: {out}");
    }
    fails(dir.path(), &["no-such-command"], "", 2);
}

#[test]
fn http_clients_help_lists_only_their_own_options() {
    let dir = tempfile::tempdir().unwrap();
    let bus_flags = ["--data-dir", "--durability", "--linger", "--fsync-interval"];
    for command in ["send", "search", "tail", "schema", "bench"] {
        let out = ok(dir.path(), &[command, "--help"], "");
        for flag in bus_flags {
            assert!(
                !out.contains(flag),
                "`eddy {command} --help` lists {flag}:\n{out}"
            );
        }
    }
    // The commands that read the data directory take it, and only writers take durability.
    for command in ["consume", "group", "store", "serve"] {
        let out = ok(dir.path(), &[command, "--help"], "");
        assert!(out.contains("--data-dir"), "{command}: {out}");
        assert!(!out.contains("--durability"), "{command}: {out}");
    }
    for command in [vec!["produce"], vec!["topic", "create"]] {
        let out = ok(dir.path(), &[command.as_slice(), &["--help"]].concat(), "");
        assert!(
            out.contains("--durability") && out.contains("--fsync-interval"),
            "{out}"
        );
    }
}

#[test]
fn serve_help_points_to_the_example_config_and_docs() {
    let dir = tempfile::tempdir().unwrap();
    let out = ok(dir.path(), &["serve", "--help"], "");
    assert!(
        out.contains("eddy.example.toml") && out.contains("README"),
        "{out}"
    );
    assert!(!out.contains("config.rs"), "{out}");
}

#[test]
fn log_redirected_to_a_file_has_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["topic", "create", "web", "-v"], "");
    let log = String::from_utf8(out.stderr).unwrap();
    assert!(log.contains("created topic"), "{log}");
    assert!(
        !log.contains('\x1b'),
        "ANSI codes in a redirected log: {log:?}"
    );
}

#[test]
fn log_format_json_prints_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        dir.path(),
        &["topic", "create", "web", "-v", "--log-format", "json"],
        "",
    );
    let log = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "created topic" && l["level"] == "INFO"),
        "{log}"
    );
}

#[test]
fn durations_are_printed_with_a_space_before_the_unit() {
    let dir = tempfile::tempdir().unwrap();
    let out = ok(dir.path(), &["topic", "create", "web"], "");
    assert!(out.contains("retention 7 days"), "{out}");
}

#[test]
fn bench_gen_times_end_at_now_unless_given_a_start() {
    let dir = tempfile::tempdir().unwrap();
    let time_of = |line: &str| {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        eddy_event::units::parse_time(v["@timestamp"].as_str().unwrap()).unwrap()
    };
    let before = eddy_event::time::now_ns();
    let out = ok(
        dir.path(),
        &["bench", "gen", "--kind", "json", "--size", "200KiB"],
        "",
    );
    let after = eddy_event::time::now_ns();
    let last = time_of(out.lines().last().unwrap());
    // Millisecond precision: the last event lies in the run's millisecond range.
    assert!(
        last >= before - 1_000_000 && last <= after,
        "last event at {last}, run from {before} to {after}"
    );
    let first = time_of(out.lines().next().unwrap());
    assert!(
        first < last && last - first < 3_600_000_000_000,
        "{first}..{last}"
    );

    let out = ok(
        dir.path(),
        &[
            "bench",
            "gen",
            "--kind",
            "json",
            "--size",
            "10KiB",
            "--start",
            "2026-01-01T00:00:00Z",
        ],
        "",
    );
    let start = eddy_event::units::parse_time("2026-01-01T00:00:00Z").unwrap();
    let first = time_of(out.lines().next().unwrap());
    assert!(first >= start && first < start + 1_000_000_000, "{first}");
}

#[test]
fn produce_then_consume_from_beginning_offset_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["topic", "create", "web", "--partitions", "3"], "");
    let summary = ok(d, &["produce", "web", "--json"], &lines(5000));
    let summary: serde_json::Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(summary["records"], 5000);

    let all = ok(d, &["consume", "web"], "");
    let mut got: Vec<&str> = all.lines().collect();
    got.sort_unstable();
    let mut want: Vec<String> = (0..5000).map(|i| format!("event {i}")).collect();
    want.sort_unstable();
    assert_eq!(got, want);

    let json = ok(
        d,
        &[
            "consume",
            "web",
            "--partition",
            "1",
            "--offset",
            "10",
            "-n",
            "2",
            "--json",
        ],
        "",
    );
    let recs: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0]["offset"], 10);
    assert_eq!(recs[1]["offset"], 11);
    assert_eq!(recs[0]["partition"], 1);
    assert!(recs[0]["value"].as_str().unwrap().starts_with("event "));

    // Everything was written within the last hour, nothing in the future.
    assert_eq!(
        ok(d, &["consume", "web", "--since", "1h"], "")
            .lines()
            .count(),
        5000
    );
    assert_eq!(
        ok(
            d,
            &["consume", "web", "--since", "2200-01-01T00:00:00Z"],
            ""
        )
        .lines()
        .count(),
        0
    );

    let described: serde_json::Value =
        serde_json::from_str(&ok(d, &["topic", "describe", "web", "--json"], "")).unwrap();
    let ends: u64 = described["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["end_offset"].as_u64().unwrap())
        .sum();
    assert_eq!(ends, 5000);
    let listed = ok(d, &["topic", "list"], "");
    assert!(
        listed.contains("web") && listed.contains("5000"),
        "{listed}"
    );
}

#[test]
fn keys_and_groups() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let input: String = (0..100)
        .map(|i| format!("host-{}\tline {i}\n", i % 4))
        .collect();
    ok(
        d,
        &[
            "produce",
            "k",
            "--create",
            "--partitions",
            "4",
            "--key-separator",
            "\t",
        ],
        &input,
    );
    let json = ok(d, &["consume", "k", "--json"], "");
    for line in json.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["key"].as_str().unwrap().starts_with("host-"));
        assert!(v["value"].as_str().unwrap().starts_with("line "));
    }
    // A group resumes where it stopped and commits only what it printed.
    let first = ok(d, &["consume", "k", "--group", "g", "-n", "30"], "");
    let rest = ok(d, &["consume", "k", "--group", "g"], "");
    assert_eq!(first.lines().count() + rest.lines().count(), 100);
    assert_eq!(
        ok(d, &["consume", "k", "--group", "g"], "").lines().count(),
        0
    );
    let described: serde_json::Value =
        serde_json::from_str(&ok(d, &["group", "describe", "g", "--json"], "")).unwrap();
    for row in described.as_array().unwrap() {
        assert_eq!(row["lag"], 0);
    }
    assert!(ok(d, &["group", "list"], "").contains('g'));
}

#[test]
fn follow_in_one_process_sees_what_another_produces() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["topic", "create", "live"], "");
    let follower = eddy(d)
        .args([
            "consume",
            "live",
            "--offset",
            "0",
            "--follow",
            "-n",
            "3",
            "--idle-timeout",
            "60s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Give the follower a moment to open the log, then produce from a second process while it
    // waits; it must print the three new records and stop.
    std::thread::sleep(Duration::from_millis(300));
    ok(d, &["produce", "live"], "one\ntwo\nthree\n");
    let out = follower.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "one\ntwo\nthree\n");
}

#[test]
fn bad_input_gets_a_clear_error_and_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let err = fails(d, &["topic", "create", "bad/name"], "", 1);
    assert!(err.contains("bad/name") && err.contains("'/'"), "{err}");
    let err = fails(d, &["topic", "create", "t", "--partitions", "5000"], "", 1);
    assert!(
        err.contains("partitions = 5000") && err.contains("1..=1024"),
        "{err}"
    );
    ok(
        d,
        &[
            "topic",
            "create",
            "t",
            "--partitions",
            "2",
            "--max-record-bytes",
            "100",
        ],
        "",
    );
    let err = fails(d, &["consume", "t", "--partition", "9"], "", 1);
    assert!(
        err.contains("partition 9") && err.contains("2 partitions"),
        "{err}"
    );
    let err = fails(
        d,
        &["produce", "t"],
        &format!("ok\n{}\n", "x".repeat(500)),
        1,
    );
    assert!(
        err.contains("line 2 ") && err.contains("504 bytes") && err.contains("limit of 100"),
        "{err}"
    );
    let err = fails(d, &["produce", "missing"], "a\n", 1);
    assert!(err.contains("missing") && err.contains("--create"), "{err}");
    let err = fails(d, &["consume", "t", "--since", "whenever"], "", 2);
    assert!(err.contains("whenever"), "{err}");
    let err = fails(d, &["topic", "create", "t"], "", 1);
    assert!(err.contains("already exists"), "{err}");
}

#[test]
fn verify_names_the_corrupt_file_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(
        d,
        &[
            "produce",
            "v",
            "--create",
            "--segment-bytes",
            "4096",
            "--batch-size",
            "10",
        ],
        &lines(2000),
    );
    assert!(ok(d, &["topic", "verify", "v"], "").contains("intact"));
    let part = d.join("topics/v/0");
    let mut segs: Vec<_> = std::fs::read_dir(&part)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    segs.sort();
    let victim = &segs[1];
    let mut bytes = std::fs::read(victim).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(victim, bytes).unwrap();
    let out = run(d, &["topic", "verify", "v", "--json"], "");
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], false);
    let problem = report["problems"][0]["error"].as_str().unwrap();
    assert!(
        problem.contains(victim.file_name().unwrap().to_str().unwrap()),
        "{problem}"
    );
    // consume goes on past the damaged batch, names it, and exits 1 saying how much it missed.
    let out = run(d, &["consume", "v"], "");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(victim.file_name().unwrap().to_str().unwrap())
            && err.contains("10 record(s) could not be read"),
        "{err}"
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        2000 - 10
    );
}

#[test]
fn a_closed_pipe_is_a_normal_exit() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["produce", "p", "--create"], &lines(200_000));
    let mut child = eddy(d)
        .args(["consume", "p"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert_eq!(first, "event 0\n");
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bench_log_runs_on_tiny_data_and_writes_its_report_section() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let report = d.join("REPORT.md");
    std::fs::write(&report, "# report\n\n## Another section\n\nkept\n").unwrap();
    let scratch = d.join("scratch");
    let (r, s) = (report.to_str().unwrap(), scratch.to_str().unwrap());
    let mut args = tiny_bench_args("log", s, r);
    args.push("--json");
    let out = ok(d, &args, "");
    let text = std::fs::read_to_string(&report).unwrap();
    assert!(
        text.contains("## Another section") && text.contains("kept"),
        "other sections kept"
    );
    for figure in [
        "disk: sequential write",
        "append, 1 producer",
        "append, 4 producers",
        "read from offset 0",
        "follow the tail",
        "ack latency p50",
        "ack latency p99",
    ] {
        assert!(text.contains(figure), "missing {figure} in {text}");
    }
    assert!(!scratch.join("log").exists(), "scratch logs removed");
    let json: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    for row in json[0]["rows"].as_array().unwrap() {
        for run in row["figure"]["runs"].as_array().unwrap() {
            assert!(run.as_f64().unwrap() > 0.0, "{row}");
        }
    }
    // Run again: the section is replaced, not appended.
    ok(d, &tiny_bench_args("log", s, r), "");
    let again = std::fs::read_to_string(&report).unwrap();
    assert_eq!(again.matches("## Log (bus)").count(), 1);
}

/// `eddy bench <what>` on tiny data: one run, few records, a one-second latency run.
fn tiny_bench_args<'a>(what: &'a str, scratch: &'a str, report: &'a str) -> Vec<&'a str> {
    let mut args = vec![
        "bench",
        what,
        "--quick",
        "--runs",
        "1",
        "--records",
        "20000",
        "--latency-seconds",
        "1",
        "--dir",
        scratch,
        "--report",
        report,
    ];
    if what == "all" {
        args.extend(["--data-size", "300KiB"]);
    }
    args
}

#[test]
fn bench_all_runs_on_tiny_data_and_writes_every_section() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let report = d.join("REPORT.md");
    let scratch = d.join("scratch");
    let (r, s) = (report.to_str().unwrap(), scratch.to_str().unwrap());
    ok(d, &tiny_bench_args("all", s, r), "");
    let text = std::fs::read_to_string(&report).unwrap();
    for section in [
        "## Data",
        "## Physical limits",
        "## Log (bus)",
        "## Ingest (eddy serve)",
        "## Search",
        "## Compression",
        "## Queries",
        "## Figures of parts not built yet",
        "## Peers",
    ] {
        assert!(text.contains(section), "missing {section}");
    }
    for figure in [
        "HTTP ingest, 200-byte JSON events",
        "syslog over UDP: highest rate",
        "memory read bandwidth",
        "append, 4 producers",
        "rg ",
        "zstd -3 on access",
        "zstd -19 on json",
        "gzip -6 on statsd",
        "HTTP ingest",
        "needle, one event in a million",
    ] {
        assert!(text.contains(figure), "missing {figure}");
    }
    assert!(
        text.contains("- CPU:") && text.contains("- disk:"),
        "the machine is described"
    );
    assert!(text.contains("count checked"));
    // The peer runs where it is installed and says why not where it is not.
    let chdb = Command::new("python3")
        .args(["-c", "import chdb"])
        .output()
        .is_ok_and(|o| o.status.success());
    if chdb {
        assert!(
            text.contains("ClickHouse search, access") && text.contains("ClickHouse stored ratio"),
            "{text}"
        );
    } else {
        assert!(text.contains("pip install chdb-core"), "{text}");
    }
    // Generated data is kept for the next run; scratch logs are not.
    assert!(scratch.join("data/access.log").exists());
    assert!(!scratch.join("log").exists());
}

#[test]
fn bench_all_fails_loudly_when_a_baseline_tool_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let report = d.join("REPORT.md");
    let scratch = d.join("scratch");
    let (r, s) = (report.to_str().unwrap(), scratch.to_str().unwrap());
    let out = eddy(d)
        .args(tiny_bench_args("all", s, r))
        .env("PATH", d.join("empty-path"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`rg` is not installed") && err.contains("apt-get install ripgrep"),
        "{err}"
    );
    assert!(!report.exists(), "no report with made-up numbers");
}
