#!/usr/bin/env bash
# Side by side on this machine: eigenformer bench and llama.cpp's llama-bench at a Llama-family
# shape with random weights (F32, F16, BF16 GGUF files written by make_random_gguf.py with
# llama.cpp's own gguf-py), plus the machine's ceilings (../shared/limits) in the same run.
# Builds nothing: give a llama.cpp source tree whose build/bin has llama-bench.
#   bash benchmarks/compare_llamacpp_shape.sh LLAMA_CPP_DIR [shape=smollm2-135m] [threads=1,2]
# Needs: build/eigenformer, /usr/bin/python3 with numpy and python3-sentencepiece (gguf-py
# imports it). llama-bench's tg128 starts from an empty context; eigenformer's tg128 is measured
# after a 128-token prompt (--depth 128), the harder case.
set -euo pipefail
llama=${1:?usage: compare_llamacpp_shape.sh LLAMA_CPP_DIR [shape] [threads]}
shape=${2:-smollm2-135m}
threads=${3:-1,2}
here="$(cd "$(dirname "$0")/.." && pwd)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for t in f32 f16 bf16; do
  /usr/bin/python3 "$here/benchmarks/make_random_gguf.py" --gguf-py "$llama/gguf-py" \
    --shape "$shape" --type "$t" --out "$work/$t.gguf" >/dev/null
done
limits="$here/../shared/limits/run.sh"
if [ -f "$limits" ]; then bash "$limits" 2>&1 | grep -E "threads=2|clock"; fi
for t in ${threads//,/ }; do
  "$here/build/eigenformer" bench --shape "$shape" -p 256 -n 128 --depth 128 --threads "$t" \
    --dtype f32,bf16,bf16mix -r 3 2>/dev/null | grep "^| $shape"
  "$llama/build/bin/llama-bench" -m "$work/f32.gguf,$work/f16.gguf,$work/bf16.gguf" -p 256 \
    -n 128 -t "$t" -r 3 2>/dev/null | grep "^| llama"
done
