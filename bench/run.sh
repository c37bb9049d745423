#!/usr/bin/env bash
# Generates the benchmark data, runs every benchmark and baseline, and writes bench/REPORT.md.
#   bench/run.sh --quick     about two minutes
#   bench/run.sh             full: over 1 GB of generated data (zstd -19 alone takes minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
bench/setup.sh --peers
exec cargo run --release -p eddy -- bench all "$@"
