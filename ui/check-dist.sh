#!/usr/bin/env bash
# Checks that the committed ui/dist (what `cargo build` embeds) is exactly what a fresh
# `npm ci && npm run build` of ui/ makes: type-checks, builds into a scratch directory and
# compares. Exits 1 naming the files that differ. Needs ui/setup.sh to have run.
set -euo pipefail
cd "$(dirname "$0")"
fresh="$(mktemp -d)"
trap 'rm -rf "$fresh"' EXIT
npx tsc --noEmit
npx vite build --logLevel error --outDir "$fresh" --emptyOutDir
if ! diff -r "$fresh" dist >/dev/null; then
  echo "ui/dist differs from a fresh build of ui/; run 'npm run build' in ui/ and commit ui/dist:" >&2
  diff -rq "$fresh" dist >&2 || true
  exit 1
fi
echo "ui/dist matches a fresh build"
