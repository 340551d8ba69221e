#!/usr/bin/env bash
# The 494M table of the README: every spec under specs/494m-*.toml, one trial per configuration (2 measured steps
# after a warm-up), appended to results/<machine-id>/trials.jsonl. Run on a quiet machine (minutes per trial);
# --resume skips configurations already measured with this commit's keys.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
for spec in specs/494m-*.toml; do
  echo "== $spec ($(date -u +%H:%M:%S))"
  "$BIN/cpugrpo" sweep --spec "$spec" --resume "$@"
done
