//! `eddy serve`: loads the configuration, then runs the server until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use eddy_server::Config;

use crate::DataDir;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML configuration file. Every key is optional; eddy.example.toml in the repository lists
    /// each with its default, and the README's `eddy serve` section explains them. Without it:
    /// repository `main` without tokens, HTTP on 127.0.0.1:7280, data in --data-dir.
    #[arg(short, long)]
    config: Option<PathBuf>,
    /// Listen address of the HTTP door, overriding the configuration (port 0 picks one).
    #[arg(long)]
    listen: Option<SocketAddr>,
    #[command(flatten)]
    dir: DataDir,
}

pub fn run(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    // The doors go through request-sized buffers (a body, its records, its batches) that the
    // allocator hands back to the kernel and takes again: with transparent huge pages every
    // fresh fault zeroed 2 MiB, 13–18 % of the CPU of JSON ingest (`eddy bench ingest
    // --end-to-end-only` under perf; 1 % without). Only this process's pages: a setting a
    // server can still refuse (then nothing changes).
    #[cfg(target_os = "linux")]
    let _ = rustix::thread::disable_transparent_huge_pages(true);
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config {
            data_dir: args.dir.data_dir.clone(),
            ..Config::default()
        },
    };
    if let Some(listen) = args.listen {
        config.http.listen = listen;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("eddy-serve")
        .build()
        .context("starting the async runtime")?;
    // Signal handlers go in before the addresses are announced.
    let shutdown = {
        let _in_runtime = runtime.enter();
        eddy_server::shutdown_signal()
    };
    runtime.block_on(eddy_server::serve(config, shutdown, |bound| {
        // Scripts and tests read these lines to find the ports.
        let scheme = if bound.tls { "https" } else { "http" };
        println!("listening on {scheme}://{}", bound.http);
        for (addr, tls) in bound.tcp.iter().zip(&bound.tcp_tls) {
            let scheme = if *tls { "tls" } else { "tcp" };
            println!("listening on {scheme}://{addr}");
        }
        for addr in &bound.udp {
            println!("listening on udp://{addr}");
        }
    }))?;
    Ok(ExitCode::SUCCESS)
}
