#!/usr/bin/env python3
"""Writes tests/fixtures/gguf_models/gpt2_tiny.llama_quantize.{q8_0,q4_0,q4_k_m}.gguf: llama.cpp's
llama-quantize run on gpt2_tiny.f32.gguf, for tests/test_gguf_quantize.cpp (`eigenformer
quantize` must write the same tensors). Not run by CI.
  /usr/bin/python3 tests/make_quantize_fixtures.py --llama-cpp /path/to/llama.cpp
(llama.cpp built from source: build/bin/llama-quantize.)
"""
import argparse
import os
import subprocess

ap = argparse.ArgumentParser()
ap.add_argument("--llama-cpp", required=True)
args = ap.parse_args()
here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "gguf_models")
for qtype in ("Q8_0", "Q4_0", "Q4_K_M"):
    out = os.path.join(here, f"gpt2_tiny.llama_quantize.{qtype.lower()}.gguf")
    subprocess.run([os.path.join(args.llama_cpp, "build", "bin", "llama-quantize"),
                    os.path.join(here, "gpt2_tiny.f32.gguf"), out, qtype, "1"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print("wrote", out)
