#!/usr/bin/env bash
# What the web UI's build and browser test need, installed only if missing (idempotent):
# Debian's chromium (the browser test's headless browser), Node.js and npm (from apt-get when
# absent), and ui/node_modules from package-lock.json (`npm ci`, again when the lock changed).
set -euo pipefail
cd "$(dirname "$0")"
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing for the web UI: ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "${missing[@]}"
fi
# npm ci writes node_modules/.package-lock.json; a lock newer than it means a fresh install.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "installing the web UI's packages (npm ci in ui/)" >&2
  npm ci --no-audit --no-fund --loglevel=error
fi
