#!/usr/bin/env bash
# Installs the benchmark baselines' tools (ripgrep, zstd, gzip) with apt-get if any is missing.
# Idempotent: does nothing when all are there. The test suite's benchmark-runner test needs them.
set -euo pipefail
missing=()
for pair in rg:ripgrep zstd:zstd gzip:gzip; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair##*:}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing baseline tools: ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
$sudo apt-get update -qq
$sudo apt-get install -y -qq "${missing[@]}"
