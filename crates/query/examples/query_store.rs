//! Runs one query over a repository's store directory several times and prints each run's wall
//! time and the answer's first rows: a harness for profiling the engine on real segments
//! (`perf record cargo run --release --example query_store -- DIR QUERY`).

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use eddy_store::{RepoStore, StoreConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(query)) = (args.next(), args.next()) else {
        return Err("usage: query_store STORE_DIR QUERY [RUNS]".into());
    };
    let runs: usize = args.next().map_or(Ok(5), |r| r.parse())?;
    let store = RepoStore::open(
        "profile",
        std::path::Path::new(&dir),
        StoreConfig::default(),
    )?;
    let prepared = eddy_query::prepare(&query, eddy_query::engine::DEFAULT_LIMIT)?;
    let options = eddy_query::Options::default();
    let cancel = AtomicBool::new(false);
    for _ in 0..runs {
        let start = Instant::now();
        let answer = eddy_query::run(&store, &prepared, &options, &cancel, &|_| {});
        let ms = start.elapsed().as_secs_f64() * 1e3;
        let events = answer.progress.events_scanned;
        println!(
            "{ms:.1} ms, {events} events, {:.1} M events/s, {} rows, first {:?}, warnings {:?}",
            events as f64 / ms / 1e3,
            answer.rows.len(),
            answer.rows.first(),
            answer.warnings
        );
    }
    Ok(())
}
