#!/usr/bin/env python3
"""Writes tests/fixtures/quant/k_quantize.json: float32 rows of 256 and the Q4_K, Q5_K and Q6_K
super-blocks llama.cpp's llama-quantize makes of them, for tests/test_k_quants.cpp (our
quantize_row_q4_k / q5_k / q6_k must give the same bytes). Not run by CI.

The rows go into a one-layer llama GGUF (written with llama.cpp's gguf-py) as blk.0.attn_q,
which `llama-quantize --pure` turns into each type; gguf-py reads the blocks back.
  /usr/bin/python3 tests/make_k_quant_fixtures.py --llama-cpp /path/to/llama.cpp
(llama.cpp built from source: build/bin/llama-quantize.)
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("--llama-cpp", required=True)
args = ap.parse_args()
sys.path.insert(0, os.path.join(args.llama_cpp, "gguf-py"))
import gguf  # noqa: E402

HIDDEN, VOCAB = 256, 260
rng = np.random.default_rng(12)


def normal(n, scale=1.0):
    return rng.standard_normal(n) * scale


rows = [normal(256, 0.02) for _ in range(16)]                      # plain weights
rows += [normal(256) * np.exp(normal(256)) for _ in range(4)]      # heavy tails
rows += [rng.uniform(0, 1, 256) for _ in range(2)]                 # all positive: min 0
rows += [-rng.uniform(0, 1, 256) for _ in range(2)]                # all negative
rows.append(np.zeros(256))                                         # all zero
r = normal(256)
r[:32] = 0.0                                                       # a zero sub-block
r[32:64] = 0.5                                                     # a constant one: max == min
r[64:80] = -0.25
rows.append(r)
rows += [normal(256, 1e-20), normal(256, 1e-8), normal(256, 1e4)]  # tiny, small, large
rows += [rng.integers(-8, 8, 256).astype(float) for _ in range(3)]  # exact grid points, ties
for _ in range(4):                                                 # one outlier per sub-block
    r = normal(256, 0.01)
    r[rng.integers(0, 16, 16) + np.arange(16) * 16] = 5.0 * rng.choice([-1, 1], 16)
    rows.append(r)
for _ in range(4):                                                 # sparse
    r = normal(256)
    r[rng.random(256) < 0.7] = 0.0
    rows.append(r)
rows += [normal(256) for _ in range(24)]
x = np.stack(rows).astype(np.float32)
n_rows = len(rows)

with tempfile.TemporaryDirectory() as tmp:
    src = os.path.join(tmp, "rows.f32.gguf")
    w = gguf.GGUFWriter(src, "llama")
    w.add_context_length(64)
    w.add_embedding_length(HIDDEN)
    w.add_block_count(1)
    w.add_feed_forward_length(HIDDEN)
    w.add_head_count(4)
    w.add_head_count_kv(4)
    w.add_rope_dimension_count(64)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(VOCAB)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + ["t"]
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * VOCAB)
    w.add_token_types([gguf.TokenType.UNKNOWN] + [gguf.TokenType.CONTROL] * 2 +
                      [gguf.TokenType.BYTE] * 256 + [gguf.TokenType.NORMAL])
    q = np.concatenate([x, normal((HIDDEN - n_rows) * HIDDEN, 0.02).reshape(-1, HIDDEN)])
    w.add_tensor("token_embd.weight", normal(VOCAB * HIDDEN, 0.02).reshape(VOCAB, HIDDEN).astype(np.float32))
    w.add_tensor("blk.0.attn_norm.weight", np.ones(HIDDEN, np.float32))
    w.add_tensor("blk.0.attn_q.weight", q.astype(np.float32))
    for name in ("attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"):
        w.add_tensor(f"blk.0.{name}.weight", normal(HIDDEN * HIDDEN, 0.02).reshape(HIDDEN, HIDDEN).astype(np.float32))
    w.add_tensor("blk.0.ffn_norm.weight", np.ones(HIDDEN, np.float32))
    w.add_tensor("output_norm.weight", np.ones(HIDDEN, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    cases = {}
    for qtype in ("Q4_K", "Q5_K", "Q6_K"):
        dst = os.path.join(tmp, f"rows.{qtype}.gguf")
        subprocess.run([os.path.join(args.llama_cpp, "build", "bin", "llama-quantize"), "--pure",
                        src, dst, qtype, "1"], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        reader = gguf.GGUFReader(dst)
        t = next(t for t in reader.tensors if t.name == "blk.0.attn_q.weight")
        assert t.tensor_type.name == qtype, t.tensor_type.name
        data = np.asarray(t.data, dtype=np.uint8).reshape(HIDDEN, -1)[:n_rows]
        cases[qtype] = [bytes(row).hex() for row in data]

head = subprocess.run(["git", "-C", args.llama_cpp, "rev-parse", "--short", "HEAD"],
                      capture_output=True, text=True).stdout.strip()
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "quant",
                   "k_quantize.json")
with open(out, "w") as f:
    json.dump({"source": f"llama.cpp {head} llama-quantize --pure",
               "rows": [bytes(row.tobytes()).hex() for row in x],
               "q4_k": cases["Q4_K"], "q5_k": cases["Q5_K"], "q6_k": cases["Q6_K"]}, f)
print(n_rows, "rows ->", out)
