//! Fault test: a writer in a child process is killed with SIGKILL at random moments while it
//! appends and acknowledges; after each kill the log is reopened and checked:
//! - every acknowledged record is present, at its acknowledged offset, byte for byte;
//! - every record present is a whole record that some writer really appended (nothing half
//!   visible, nothing garbled), offsets are dense, and each writer's records are in its order.
//!
//! The child is this test binary itself, re-run to run only the ignored test `crash_child_writer`
//! with `EDDY_CRASH_CHILD` set (alone, it fails: it cannot pass by doing nothing). Iterations:
//! `EDDY_CRASH_ITERATIONS` (default 40); seed: `EDDY_CRASH_SEED` (default random, printed).
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use eddy_log::{Log, PartitionChoice, Record, TopicConfig};
use rand::{Rng, SeedableRng};

const TOPIC: &str = "crash";
const PARTITIONS: u32 = 2;
const WRITERS: u32 = 4;

fn topic_config() -> TopicConfig {
    TopicConfig {
        partitions: PARTITIONS,
        segment_bytes: 64 * 1024,
        index_interval_bytes: 1024,
        retention_ms: None,
        ..TopicConfig::default()
    }
}

/// The exact bytes of record (generation, writer, seq): length and content derive from the id.
fn expected_value(generation: u32, writer: u32, seq: u64) -> Vec<u8> {
    let mut x =
        (u64::from(generation) << 48) ^ (u64::from(writer) << 40) ^ seq ^ 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let len = 10 + (next() % 300) as usize;
    (0..len).map(|_| (next() & 0xff) as u8).collect()
}

fn key(generation: u32, writer: u32, seq: u64) -> String {
    format!("{generation}:{writer}:{seq}")
}

/// The child: appends batches from several threads and prints an ACK line after each append.
#[test]
#[ignore = "the child process of acknowledged_records_survive_sigkill, which runs it"]
fn crash_child_writer() {
    let dir = std::env::var("EDDY_CRASH_CHILD").expect(
        "EDDY_CRASH_CHILD (the log directory) is set by acknowledged_records_survive_sigkill",
    );
    let generation: u32 = std::env::var("EDDY_CRASH_GENERATION")
        .unwrap()
        .parse()
        .unwrap();
    let log = Log::open(&dir).unwrap();
    let topic = log.topic_or_create(TOPIC, topic_config()).unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    for writer in 0..WRITERS {
        let topic = topic.clone();
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut rng = rand::rngs::StdRng::seed_from_u64(u64::from(generation * 100 + writer));
            let mut seq = 0u64;
            loop {
                let n = rng.random_range(1..=40u64);
                let batch: Vec<Record> = (seq..seq + n)
                    .map(|s| {
                        Record::new(expected_value(generation, writer, s))
                            .with_key(key(generation, writer, s))
                    })
                    .collect();
                let ack = topic
                    .produce(batch, PartitionChoice::Explicit(writer % PARTITIONS))
                    .unwrap()[0];
                if tx
                    .send(format!(
                        "ACK {writer} {seq} {n} {} {}",
                        ack.partition, ack.base_offset
                    ))
                    .is_err()
                {
                    return;
                }
                seq += n;
            }
        });
    }
    drop(tx);
    let mut out = std::io::stdout().lock();
    for line in rx {
        writeln!(out, "{line}").unwrap();
        out.flush().unwrap();
    }
}

struct Ack {
    generation: u32,
    writer: u32,
    seq: u64,
    count: u64,
    partition: u32,
    base_offset: u64,
}

fn run_child(dir: &Path, generation: u32, rng: &mut impl Rng) -> Vec<Ack> {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "crash_child_writer",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("EDDY_CRASH_CHILD", dir)
        .env("EDDY_CRASH_GENERATION", generation.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Wait for the first acknowledgement (the child has opened and recovered the log), then
    // kill at a random moment while the writers are busy.
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while lines.iter().all(|l: &String| !l.starts_with("ACK")) {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(l) => lines.push(l),
            Err(_) => panic!("child wrote no acknowledgement within 60 s: {lines:?}"),
        }
    }
    std::thread::sleep(Duration::from_millis(rng.random_range(0..120)));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    reader.join().unwrap();
    lines.extend(rx.try_iter());
    lines
        .iter()
        .filter_map(|l| {
            let f: Vec<&str> = l.strip_prefix("ACK ")?.split(' ').collect();
            Some(Ack {
                generation,
                writer: f[0].parse().ok()?,
                seq: f[1].parse().ok()?,
                count: f[2].parse().ok()?,
                partition: f[3].parse().ok()?,
                base_offset: f[4].parse().ok()?,
            })
        })
        .collect()
}

fn check(dir: &Path, acks: &[Ack]) -> u64 {
    let log = Log::open(dir).unwrap();
    let topic = log.topic(TOPIC).unwrap();
    let mut total = 0;
    for partition in 0..PARTITIONS {
        let mut reader = topic.reader(partition, 0).unwrap();
        let mut by_offset: HashMap<u64, String> = HashMap::new();
        let mut next_seq: HashMap<(u32, u32), u64> = HashMap::new();
        let mut expected_offset = 0;
        loop {
            let batch = reader.poll().unwrap();
            if batch.is_empty() {
                break;
            }
            for r in batch {
                assert_eq!(r.offset, expected_offset, "offsets must be dense");
                expected_offset += 1;
                let k = String::from_utf8(r.key.clone().unwrap().to_vec()).unwrap();
                let parts: Vec<u64> = k.split(':').map(|p| p.parse().unwrap()).collect();
                let (g, w, s) = (parts[0] as u32, parts[1] as u32, parts[2]);
                assert_eq!(
                    r.value.as_ref(),
                    expected_value(g, w, s).as_slice(),
                    "record {k} garbled"
                );
                let want = next_seq.entry((g, w)).or_insert(0);
                assert_eq!(s, *want, "writer {g}:{w} records out of order or missing");
                *want += 1;
                by_offset.insert(r.offset, k);
            }
        }
        for a in acks.iter().filter(|a| a.partition == partition) {
            for i in 0..a.count {
                let offset = a.base_offset + i;
                let want = key(a.generation, a.writer, a.seq + i);
                assert_eq!(
                    by_offset.get(&offset),
                    Some(&want),
                    "acknowledged record {want} missing at {partition}/{offset}"
                );
            }
        }
        total += expected_offset;
    }
    total
}

#[test]
fn acknowledged_records_survive_sigkill() {
    let iterations: u32 = std::env::var("EDDY_CRASH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let seed: u64 = std::env::var("EDDY_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("crash test: {iterations} iterations, EDDY_CRASH_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut acks = Vec::new();
    for generation in 0..iterations {
        let new = run_child(dir.path(), generation, &mut rng);
        assert!(!new.is_empty());
        acks.extend(new);
        let total = check(dir.path(), &acks);
        assert!(total >= acks.iter().map(|a| a.count).sum::<u64>());
    }
    eprintln!(
        "crash test: {} acknowledged batches, {} records, all present",
        acks.len(),
        acks.iter().map(|a| a.count).sum::<u64>()
    );
}
