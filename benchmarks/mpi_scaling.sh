#!/usr/bin/env bash
# Data-parallel scaling of `eigenformer train` on this machine: 1 process x 1 thread against
# `mpirun -np 2` x 1 thread (and 1 process x 2 threads), at the demo model's shape (4 layers,
# C = 128, bytes vocabulary, B = 16, T = 128), on the demo's text. Prints each run's training
# tokens/s (steps only, no evaluation) and the ratio.
#   bash benchmarks/mpi_scaling.sh [build/eigenformer] [steps]
set -euo pipefail
program=${1:-build/eigenformer}
steps=${2:-30}
here=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
head -c 2000000 "$here/examples/demo/kjv.txt" > "$tmp/text.txt"
rate() { sed -n 's/.* in this run, \([0-9]*\) tok\/s.*/\1/p'; }
one=$("$program" train --data "$tmp/text.txt" --out "$tmp/a" --steps "$steps" --eval-every 100000 \
      --threads 1 2>&1 | rate)
two=$(mpirun --oversubscribe -np 2 "$program" train --data "$tmp/text.txt" --out "$tmp/b" \
      --steps "$steps" --eval-every 100000 --threads 1 2>&1 | rate)
threads=$("$program" train --data "$tmp/text.txt" --out "$tmp/c" --steps "$steps" \
          --eval-every 100000 --threads 2 2>&1 | rate)
cmp -s "$tmp/a/model.safetensors" "$tmp/b/model.safetensors" && same=yes || same=no
echo "1 rank x 1 thread:  $one tok/s"
echo "2 ranks x 1 thread: $two tok/s ($(awk "BEGIN {printf \"%.2f\", $two / $one}")x; weights bit-identical: $same)"
echo "1 rank x 2 threads: $threads tok/s ($(awk "BEGIN {printf \"%.2f\", $threads / $one}")x)"
