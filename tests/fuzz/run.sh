#!/usr/bin/env bash
# Runs every fuzz target for a bounded time on a copy of its committed seed corpus; fails on the
# first crash, sanitizer report, leak or hang (-timeout), leaving the input in
# BUILD_DIR/fuzz-artifacts/ to turn into a regression test.
#   bash tests/fuzz/run.sh BUILD_DIR [seconds per target, default 60]
set -euo pipefail
build=$(cd "${1:?usage: run.sh BUILD_DIR [seconds]}" && pwd)
seconds=${2:-60}
here="$(cd "$(dirname "$0")" && pwd)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$build/fuzz-artifacts"
for name in safetensors gguf hf_config tokenizer_files tokenizer_encode token_ids hf_tokenizer; do
  mkdir -p "$work/$name"
  cp -r "$here/corpus/$name/." "$work/$name/"
  if ! "$build/tests/fuzz/fuzz_$name" "$work/$name" -max_total_time="$seconds" -timeout=10 \
      -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
      -artifact_prefix="$build/fuzz-artifacts/$name-" >"$work/$name.log" 2>&1; then
    tail -40 "$work/$name.log"
    echo "fuzz_$name: FAILED (input saved under $build/fuzz-artifacts/)"
    exit 1
  fi
  runs=$(grep -o "stat::number_of_executed_units: *[0-9]*" "$work/$name.log" | grep -o "[0-9]*$")
  echo "fuzz_$name: ${seconds}s, ${runs} executions, no findings"
done
