//! Scratch measurement: block layout and level against zstd -3 over the whole file.
#![allow(clippy::unwrap_used)]
use std::io::BufRead;
use std::time::Instant;

use eddy_store::{BlockBuilder, Compression};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = &args[1];
    let parser: eddy_event::Parser = args[2].parse().unwrap();
    let limit: usize = args[3].parse().unwrap();
    let bits: usize = args.get(4).map(|s| s.parse().unwrap()).unwrap_or(10);
    let f = std::io::BufReader::new(std::fs::File::open(path).unwrap());
    let mut events = Vec::new();
    let mut raw = Vec::new();
    for line in f.lines() {
        let line = line.unwrap();
        raw.extend_from_slice(line.as_bytes());
        raw.push(b'\n');
        events.push(parser.parse(&line, 1_700_000_000_000_000_000).unwrap());
        if raw.len() > limit {
            break;
        }
    }
    let t = Instant::now();
    let whole = zstd::bulk::compress(&raw, 3).unwrap().len();
    println!(
        "file {} MB, zstd-3 whole {:.2}x in {:.2}s",
        raw.len() / 1_000_000,
        raw.len() as f64 / whole as f64,
        t.elapsed().as_secs_f64()
    );
    for level in [0, 5] {
        let t = Instant::now();
        let (mut stored, mut blooms, mut payload, mut push_t) = (0usize, 0usize, 0usize, 0f64);
        let mut b = BlockBuilder::new();
        for e in &events {
            let t0 = Instant::now();
            b.push(e);
            push_t += t0.elapsed().as_secs_f64();
            if b.payload_len() >= 1 << 20 {
                let (s, sum, bloom) = std::mem::take(&mut b).finish(
                    if level == 0 {
                        Compression::ZstdAuto
                    } else {
                        Compression::Zstd(level)
                    },
                    bits,
                );
                stored += s.len();
                blooms += bloom.byte_len();
                payload += sum.raw_len as usize;
            }
        }
        let el = t.elapsed().as_secs_f64();
        println!(
            "zstd-{level}: ratio {:.2}x (blocks only {:.2}x), bloom {:.2}% of raw, payload/raw {:.3}, {:.0} MB/s total, push {:.0} MB/s",
            raw.len() as f64 / (stored + blooms) as f64,
            raw.len() as f64 / stored as f64,
            100.0 * blooms as f64 / raw.len() as f64,
            payload as f64 / raw.len() as f64,
            raw.len() as f64 / el / 1e6,
            raw.len() as f64 / push_t / 1e6,
        );
    }
}
