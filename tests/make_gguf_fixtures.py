#!/usr/bin/env python3
"""Writes tests/fixtures/gguf/*.gguf with llama.cpp's own gguf-py (an independent writer), and
tests/fixtures/gguf/*.json with what each file holds, for tests/test_gguf.cpp. Not run by CI.
  /usr/bin/python3 tests/make_gguf_fixtures.py --gguf-py /path/to/llama.cpp/gguf-py
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
import gguf  # noqa: E402

out_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "gguf")
os.makedirs(out_dir, exist_ok=True)
rng = np.random.default_rng(7)

path = os.path.join(out_dir, "metadata_and_floats.gguf")
w = gguf.GGUFWriter(path, "llama")
w.add_uint32("test.u32", 4000000000)
w.add_int32("test.i32", -123456)
w.add_uint64("test.u64", 1 << 40)
w.add_int64("test.i64", -(1 << 40))
w.add_float32("test.f32", 0.15625)
w.add_float64("test.f64", 1e-300)
w.add_bool("test.bool", True)
w.add_uint8("test.u8", 200)
w.add_int8("test.i8", -100)
w.add_uint16("test.u16", 65000)
w.add_int16("test.i16", -32000)
w.add_string("test.string", "héllo ▁wörld")
w.add_array("test.strings", ["a", "", "ĠĠ", "<|im_start|>"])
w.add_array("test.ints", [1, -2, 3])
w.add_array("test.floats", [0.5, -1.25])
w.add_context_length(2048)
w.add_rope_freq_base(10000.0)
tensors = {
    "a.f32": rng.standard_normal((3, 5)).astype(np.float32),
    "b.f16": rng.standard_normal((2, 64)).astype(np.float16),
    "c.vec": rng.standard_normal((7,)).astype(np.float32),
}
for name, t in tensors.items():
    w.add_tensor(name, t)
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
expected = {
    "tensors": {
        name: {"ne": list(reversed(t.shape)), "type": "F16" if t.dtype == np.float16 else "F32",
               "values": [float(v) for v in t.astype(np.float64).ravel()]}
        for name, t in tensors.items()
    }
}
with open(path[:-5] + ".json", "w") as f:
    json.dump(expected, f)
print("wrote", path)
