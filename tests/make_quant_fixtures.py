#!/usr/bin/env python3
"""Writes tests/fixtures/quant/blocks.json: float32 rows and their Q8_0, Q4_0, Q5_0 and Q5_1 blocks as
llama.cpp's gguf-py (gguf/quants.py, "bit-exact with ggml-quants.c") computes them, for
tests/test_quant_blocks.cpp. Not run by CI.
  /usr/bin/python3 tests/make_quant_fixtures.py --gguf-py /path/to/llama.cpp/gguf-py
"""
import argparse
import json
import os
import sys

import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("--gguf-py", required=True)
args = ap.parse_args()
sys.path.insert(0, args.gguf_py)
from gguf import quants, GGMLQuantizationType  # noqa: E402

rng = np.random.default_rng(11)
rows = []
rows.append(rng.standard_normal(32 * 64))                       # plain weights
rows.append(rng.standard_normal(32 * 16) * 1e-3)                # small weights
rows.append(rng.standard_normal(32 * 16) * 300.0)               # large weights
rows.append(np.zeros(64))                                        # all-zero blocks
ties = np.zeros(64)
ties[:32] = np.arange(32) - 15.5                                 # q8_0 ties after scaling
ties[32:] = (np.arange(32) % 17) - 8                             # exact q4_0 grid points
ties5 = np.zeros(64)
ties5[:32] = (np.arange(32) % 33) - 16                           # exact q5_0 grid points
ties5[32:] = np.arange(32) - 16.5 + 0.25
rows.append(ties)
rows.append(ties5)
exact = np.zeros(64)
exact[0] = 127.0                                                 # q8_0 scale 1: x / d exact,
exact[1:32] = (np.arange(31) - 15) + 0.5                         # so these are true ties
exact[32] = -8.0                                                 # q4_0 scale 1
exact[33:64] = (np.arange(31) % 16) - 8 + 0.5
rows.append(exact)
signs = rng.standard_normal(64)
signs[3], signs[20] = 4.0, -4.0                                  # equal magnitudes, first wins
signs[40], signs[50] = -7.0, 7.0
rows.append(signs)
rows.append(rng.integers(-128, 128, 32 * 8) / 7.0)              # many exact ratios
spiky = rng.standard_normal(32 * 8) * 0.01
spiky[::32] = 5.0                                                # one outlier per block
rows.append(spiky)

cases = []
for r in rows:
    x = np.asarray(r, dtype=np.float32)
    blocks = x.reshape(-1, 32)
    q8 = quants.quantize(blocks, GGMLQuantizationType.Q8_0)
    q4 = quants.quantize(blocks, GGMLQuantizationType.Q4_0)
    q5 = quants.quantize(blocks, GGMLQuantizationType.Q5_0)
    q51 = quants.quantize(blocks, GGMLQuantizationType.Q5_1)
    cases.append({
        "x_bits": [int(v) for v in x.view(np.uint32)],
        "q8_0": bytes(np.asarray(q8, dtype=np.uint8).ravel()).hex(),
        "q4_0": bytes(np.asarray(q4, dtype=np.uint8).ravel()).hex(),
        "q8_0_dequantized_bits": [int(v) for v in quants.dequantize(q8, GGMLQuantizationType.Q8_0).astype(np.float32).ravel().view(np.uint32)],
        "q4_0_dequantized_bits": [int(v) for v in quants.dequantize(q4, GGMLQuantizationType.Q4_0).astype(np.float32).ravel().view(np.uint32)],
        "q5_0": bytes(np.asarray(q5, dtype=np.uint8).ravel()).hex(),
        "q5_0_dequantized_bits": [int(v) for v in quants.dequantize(q5, GGMLQuantizationType.Q5_0).astype(np.float32).ravel().view(np.uint32)],
        "q5_1": bytes(np.asarray(q51, dtype=np.uint8).ravel()).hex(),
        "q5_1_dequantized_bits": [int(v) for v in quants.dequantize(q51, GGMLQuantizationType.Q5_1).astype(np.float32).ravel().view(np.uint32)],
    })
# k-quant super-blocks: random bytes with finite fp16 scales, so every bit of the packed 6-bit
# scales/mins, the fifth bits and the 2-bit pairs is exercised; dequantized by gguf-py.
k_cases = []
for qtype, size, scale_offsets in ((GGMLQuantizationType.Q4_K, 144, (0, 2)),
                                   (GGMLQuantizationType.Q5_K, 176, (0, 2)),
                                   (GGMLQuantizationType.Q6_K, 210, (208,))):
    blocks = rng.integers(0, 256, (3, size), dtype=np.uint8)
    for b in range(3):
        for off in scale_offsets:  # fp16 scale in [2^-12, 2^-4): finite, normal, of both signs
            bits = np.float16(rng.uniform(2.0 ** -12, 2.0 ** -4) * rng.choice([-1, 1]))
            blocks[b, off:off + 2] = np.frombuffer(bits.tobytes(), dtype=np.uint8)
    y = quants.dequantize(blocks.reshape(-1), qtype).astype(np.float32).ravel()
    k_cases.append({"type": qtype.name, "blocks": bytes(blocks.ravel()).hex(),
                    "dequantized_bits": [int(v) for v in y.view(np.uint32)]})

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "quant")
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "blocks.json"), "w") as f:
    json.dump({"source": "llama.cpp c392e50 gguf-py quants.py", "cases": cases,
               "k_quants": k_cases}, f)
print(len(cases), "rows")
