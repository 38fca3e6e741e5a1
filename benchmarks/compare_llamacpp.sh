#!/usr/bin/env bash
# Quantized GGUF files side by side: eigenformer bench and llama.cpp's llama-bench on the same
# files, same threads, one run, plus the machine's ceilings (../shared/limits) in that run.
# Builds nothing: give a llama.cpp source tree whose build/bin has llama-bench and
# llama-quantize (built from source).
#   bash benchmarks/compare_llamacpp.sh LLAMA_CPP_DIR [shapes=smollm2-135m,gpt2] [threads=1,2] \
#        [types=F32,Q8_0,Q4_0,Q4_K_M]
# For each shape: an F32 GGUF with random weights (make_random_gguf.py with llama.cpp's gguf-py;
# gpt2: eigenformer init + eigenformer quantize --dtype f32),
# llama-quantize to each type (and `eigenformer quantize` too: its tensors are compared with
# llama-quantize's and llama-bench loads its file), then pp256, pp1024 and tg64 on both programs. Our
# tg64 is measured after a 128-token prompt (--depth 128, the issue's target); llama-bench c392e50 has no depth option,
# so its tg64 starts from an empty context (the easier case for it). Ratio = ours / llama.cpp.
# Needs: build/eigenformer, /usr/bin/python3 with numpy and python3-sentencepiece.
set -euo pipefail
llama=${1:?usage: compare_llamacpp.sh LLAMA_CPP_DIR [shapes] [threads] [types]}
shapes=${2:-smollm2-135m,gpt2}
threads=${3:-1,2}
types=${4:-F32,Q8_0,Q4_0,Q4_K_M}
here="$(cd "$(dirname "$0")/.." && pwd)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
limits="$here/../shared/limits/run.sh"
if [ -f "$limits" ]; then bash "$limits" 2>&1 | grep -E "threads=|clock|GB/s" | head -8; fi
for shape in ${shapes//,/ }; do
  if [ "$shape" = gpt2 ]; then
    # GPT-2 124M: random weights from `eigenformer init`, a placeholder byte-level vocabulary of
    # 50257 tokens (speed does not depend on what they spell), converted by `eigenformer
    # quantize --dtype f32` (gguf-py's converter needs the real tokenizer files).
    "$here/build/eigenformer" init --out "$work/gpt2" --arch gpt2 --layers 12 --heads 12 \
      --embd 768 --ctx 1024 --vocab 50257 >/dev/null
    /usr/bin/python3 - "$work/gpt2" <<'EOF2'
import json, sys
alphabet = [chr(c) for c in range(33, 127)] + [chr(c) for c in range(161, 173)] + \
    [chr(c) for c in range(174, 256)]
alphabet += [chr(256 + i) for i in range(256 - len(alphabet))]
vocab = {t: i for i, t in enumerate(alphabet)}
vocab.update({"t%d" % i: i for i in range(256, 50256)})
vocab["<|endoftext|>"] = 50256
json.dump(vocab, open(sys.argv[1] + "/vocab.json", "w"))
open(sys.argv[1] + "/merges.txt", "w").write("#version: 0.2\n")
EOF2
    "$here/build/eigenformer" quantize --model "$work/gpt2" --out "$work/$shape.F32.gguf" \
      --dtype f32 >/dev/null
  else
    /usr/bin/python3 "$here/benchmarks/make_random_gguf.py" --gguf-py "$llama/gguf-py" \
      --shape "$shape" --type f32 --out "$work/$shape.F32.gguf" >/dev/null
  fi
  for type in ${types//,/ }; do
    [ "$type" = F32 ] && continue
    "$llama/build/bin/llama-quantize" "$work/$shape.F32.gguf" "$work/$shape.$type.gguf" "$type" \
      >/dev/null 2>&1
    # Our own quantizer on the same file: the same tensors as llama-quantize's, and llama.cpp
    # loads the file (a 1-token llama-bench run).
    "$here/build/eigenformer" quantize --model "$work/$shape.F32.gguf" \
      --out "$work/ours.$shape.$type.gguf" --dtype "${type,,}" >/dev/null
    /usr/bin/python3 - "$llama/gguf-py" "$work/ours.$shape.$type.gguf" "$work/$shape.$type.gguf" <<'EOF2'
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np
from gguf import GGUFReader
a, b = ({t.name: t for t in GGUFReader(p).tensors} for p in sys.argv[2:4])
same = a.keys() == b.keys() and all(
    a[n].tensor_type == b[n].tensor_type and
    np.array_equal(np.asarray(a[n].data).view(np.uint8), np.asarray(b[n].data).view(np.uint8))
    for n in a)
print("# eigenformer quantize vs llama-quantize, %s: %d tensors, %s" %
      (sys.argv[3].rsplit("/", 1)[1], len(a), "identical" if same else "DIFFERENT"))
EOF2
    if "$llama/build/bin/llama-bench" -m "$work/ours.$shape.$type.gguf" -p 0 -n 1 -r 1 \
      >/dev/null 2>&1; then
      echo "# llama-bench loads eigenformer's $shape.$type.gguf"
    else
      echo "# llama-bench FAILED to load eigenformer's $shape.$type.gguf"
    fi
    rm -f "$work/ours.$shape.$type.gguf"
  done
  for t in ${threads//,/ }; do
    for type in ${types//,/ }; do
      file="$work/$shape.$type.gguf"
      "$here/build/eigenformer" bench --model "$file" -p 256,1024 -n 64 --depth 128 --threads "$t" \
        -r 3 --json 2>/dev/null | sed "s/^/ours $shape $type /" >>"$work/results"
      "$llama/build/bin/llama-bench" -m "$file" -p 256,1024 -n 64 -t "$t" -r 3 -o jsonl 2>/dev/null |
        sed "s/^/llama $shape $type /" >>"$work/results"
    done
  done
  ls -l "$work"/"$shape".*.gguf | awk '{print "#", $5, $NF}' >>"$work/results"
done
/usr/bin/python3 - "$work/results" <<'EOF'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    if line.startswith("#"):
        print(line.rstrip())
        continue
    who, shape, qtype, text = line.split(" ", 3)
    j = json.loads(text)
    if who == "ours":
        test = "pp%d" % j["n_prompt"] if j["n_prompt"] else "tg%d" % j["n_gen"]
        rate, threads = j["tokens_per_s"], j["threads"]
    else:
        test = "pp%d" % j["n_prompt"] if j["n_prompt"] else "tg%d" % j["n_gen"]
        rate, threads = j["avg_ts"], j["n_threads"]
    rows.setdefault((shape, qtype, threads, test), {})[who] = rate
print("| shape | type | threads | test | eigenformer tok/s | llama.cpp tok/s | ratio |")
print("|---|---|---:|---|---:|---:|---:|")
for (shape, qtype, threads, test), r in rows.items():
    ours, theirs = r.get("ours"), r.get("llama")
    ratio = "%.2fx" % (ours / theirs) if ours and theirs else "-"
    print("| %s | %s | %d | %s | %s | %s | %s |" % (shape, qtype, threads, test,
          "%.1f" % ours if ours else "-", "%.1f" % theirs if theirs else "-", ratio))
EOF
