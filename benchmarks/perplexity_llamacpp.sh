#!/usr/bin/env bash
# Accuracy of the quantized types, side by side with llama.cpp on the same GGUF files: perplexity
# and mean KL divergence from the F32 file, as llama.cpp's llama-perplexity --kl-divergence reports
# them, and `eigenformer perplexity` (the same chunks, the same scored positions).
#   bash benchmarks/perplexity_llamacpp.sh LLAMA_CPP_DIR [model=examples/demo/model] \
#        [text=held-out tail of examples/demo/kjv.txt] [ctx=128] [types=Q8_0,Q4_0,Q4_K_M] \
#        [llama_batch=ctx]
# llama_batch is llama-perplexity's -b: 1 keeps llama.cpp on its one-row kernels (on AMX
# machines c392e50's AMX Q4_0 path, used for batches, gives this model a perplexity of ~10).
# Builds nothing: LLAMA_CPP_DIR/build/bin needs llama-perplexity and llama-quantize. The model is
# a Hugging Face directory, converted to an F32 GGUF by `eigenformer quantize --dtype f32` (gguf-py
# cannot write the empty merge list of the demo's byte vocabulary); llama-quantize makes each type
# from it. The default text is the 10% of the demo's training text its training run held out
# (train --eval-fraction 0.1: the last 10% of the bytes). Needs: build/eigenformer.
set -euo pipefail
llama=${1:?usage: perplexity_llamacpp.sh LLAMA_CPP_DIR [model] [text] [ctx] [types]}
here="$(cd "$(dirname "$0")/.." && pwd)"
model=${2:-$here/examples/demo/model}
text=${3:-}
ctx=${4:-128}
types=${5:-Q8_0,Q4_0,Q4_K_M}
batch=${6:-$ctx}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ -z "$text" ]; then
  text=$work/held_out.txt
  size=$(stat -c %s "$here/examples/demo/kjv.txt")
  tail -c $((size / 10)) "$here/examples/demo/kjv.txt" >"$text"
fi
"$here/build/eigenformer" quantize --model "$model" --out "$work/F32.gguf" --dtype f32 >/dev/null
bin=$llama/build/bin
"$bin/llama-perplexity" -m "$work/F32.gguf" -f "$text" -c "$ctx" -b "$batch" \
  --kl-divergence-base "$work/base.kld" >"$work/F32.log" 2>&1
llama_f32=$(sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p' "$work/F32.log")
ours_f32=$("$here/build/eigenformer" perplexity --model "$work/F32.gguf" --text "$text" \
  --ctx "$ctx" | sed -n 's/^PPL = \([0-9.]*\).*/\1/p')
printf '%-7s | %-22s | %-22s | %-22s\n' type "PPL ours / llama.cpp" "mean KLD ours / llama.cpp" \
  "same top ours / llama.cpp"
printf '%-7s | %-22s | %-22s | %-22s\n' F32 "$ours_f32 / $llama_f32" "-" "-"
for type in ${types//,/ }; do
  "$bin/llama-quantize" "$work/F32.gguf" "$work/$type.gguf" "$type" >/dev/null 2>&1
  "$bin/llama-perplexity" -m "$work/$type.gguf" -f "$text" -c "$ctx" -b "$batch" \
    --kl-divergence-base "$work/base.kld" --kl-divergence >"$work/$type.log" 2>&1
  if ! "$here/build/eigenformer" perplexity --model "$work/$type.gguf" \
    --reference "$work/F32.gguf" --text "$text" --ctx "$ctx" >"$work/$type.ours" 2>&1; then
    printf '%-7s | eigenformer: %s\n' "$type" "$(tail -1 "$work/$type.ours")"
    continue
  fi
  lp=$(sed -n 's/^Mean PPL(Q) *: *\([0-9.]*\).*/\1/p' "$work/$type.log")
  lk=$(sed -n 's/^Mean *KLD: *\([0-9.]*\).*/\1/p' "$work/$type.log")
  lt=$(sed -n 's/^Same top p: *\([0-9.]*\).*/\1/p' "$work/$type.log")
  op=$(sed -n 's/^PPL = \([0-9.]*\).*/\1/p' "$work/$type.ours")
  ok=$(sed -n 's/^Mean KLD = \([0-9.]*\).*/\1/p' "$work/$type.ours")
  ot=$(sed -n 's/^Same top = \([0-9.]*\).*/\1/p' "$work/$type.ours")
  printf '%-7s | %-22s | %-22s | %-22s\n' "$type" "$op / $lp" "$ok / $lk" "$ot / $lt %"
done
