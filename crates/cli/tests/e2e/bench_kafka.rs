//! `eddy bench kafka`: the real binary runs the same small load into the embedded bus, one
//! node on a Kafka-protocol broker, three nodes on one broker and a batching producer, and
//! writes its own section of the report and the JSON; without a broker it fails with the
//! install hint. Nothing here looks at speed.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

fn bench_kafka(dir: &Path, report: &Path, extra_env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_eddy"));
    command
        // A count that stops short is reported after 5 s, not a minute: the test checks the
        // section, not the broker's counts.
        .args(["bench", "kafka", "--quick", "--json", "--size", "64KiB"])
        .args(["--stall-seconds", "5"])
        .arg("--dir")
        .arg(dir)
        .arg("--report")
        .arg(report);
    for (key, value) in extra_env {
        command.env(key, value);
    }
    command.output().unwrap()
}

#[test]
fn without_a_broker_the_kafka_benchmark_fails_with_the_install_hint() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("REPORT.md");
    let missing = dir.path().join("no-such-broker");
    let out = bench_kafka(
        &dir.path().join("work"),
        &report,
        &[("EDDY_KAFKA_BROKER", missing.to_str().unwrap())],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("install-broker.sh") && stderr.contains("no-such-broker"),
        "{stderr}"
    );
    assert!(!report.exists());
}

#[test]
fn the_kafka_benchmark_writes_its_section_with_every_setup_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("REPORT.md");
    std::fs::write(
        &report,
        "# report\n\n<!-- bench:ingest:start -->\nkept\n<!-- bench:ingest:end -->\n",
    )
    .unwrap();
    let out = bench_kafka(&dir.path().join("work"), &report, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let text = std::fs::read_to_string(&report).unwrap();
    assert!(
        text.contains("<!-- bench:ingest:start -->\nkept\n"),
        "{text}"
    );
    let section = &text[text.find("<!-- bench:kafka:start -->").unwrap()..];
    assert!(section.contains("<!-- bench:kafka:end -->"), "{section}");
    for setup in [
        "(a) one node, embedded bus",
        "(b) one node on Kafka",
        "(c) three nodes on Kafka",
        "(d) one node on Kafka",
    ] {
        for load in ["access lines", "JSON events"] {
            assert!(
                section.contains(&format!("{load} — {setup}")),
                "no {load} row of {setup}: {section}"
            );
        }
    }
    assert!(section.contains("batch.num.messages=1"), "{section}");

    // The JSON is the last line: the section, each figure with its runs.
    let json: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let rows = json[0]["rows"].as_array().unwrap();
    assert_eq!(json[0]["id"], "kafka");
    // Each setup and load has its count check (a figure, like the others: not asserted, since
    // the test broker's own faults would show there).
    let counted = rows
        .iter()
        .filter(|r| {
            r["figure"]["name"]
                .as_str()
                .unwrap()
                .ends_with("events counted − events acknowledged")
        })
        .count();
    assert_eq!(counted, 8, "{json}");
}
