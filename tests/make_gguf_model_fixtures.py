#!/usr/bin/env python3
"""Writes tests/fixtures/gguf_models/: GGUF files of the Llama-family and GPT-2 test checkpoints,
made by llama.cpp's own tools, and expected.json next to each with logits an independent float64
computation gives from the weights the GGUF file holds. For tests/test_gguf_model.cpp. Not run by
CI; its output is committed.

  /usr/bin/python3 tests/make_gguf_model_fixtures.py --llama-cpp /path/to/llama.cpp \
      [--quantize /path/to/llama-quantize]

How each file is made:
- llama.cpp's convert_hf_to_gguf.py converts the HF fixtures of tests/fixtures/llama (and the
  GPT-2 fixture) at --outtype f32/f16/bf16/q8_0. It runs in-process with set_vocab disabled (the
  fixtures carry no tokenizer files; the tokenizer-from-GGUF tests have their own files). For
  `mistral` it also writes llama.attention.sliding_window, which this converter version leaves out.
- qwen3 is newer than the converter of llama.cpp c392e50: that file is written here with gguf-py
  under the names later llama.cpp uses (qwen3 arch, attn_q_norm/attn_k_norm, key_length).
- llama-quantize makes Q4_0 and the k-quant files from F32 GGUFs; the k-quant model is 256 wide
  (k-quants need rows of 256).
The expected logits: the GGUF is read back with gguf-py's GGUFReader, every tensor dequantized
with gguf-py's quants.dequantize, llama files' q/k rows put back in HF order (the inverse of the
converter's permute, written here), Llama 3 scaling taken from rope_freqs, and the float64
reference of make_llama_fixtures.py / make_fixtures.py run on the result.
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_llama_fixtures as ml  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--llama-cpp", required=True)
ap.add_argument("--quantize", default=None)
args = ap.parse_args()
sys.path.insert(0, os.path.join(args.llama_cpp, "gguf-py"))
sys.path.insert(0, args.llama_cpp)
import gguf  # noqa: E402

# Debian's torch 1.13 lacks dtypes the converter names in a table; none is used here.
for missing in ("float8_e4m3fn", "float8_e5m2", "uint16", "uint32", "uint64"):
    if not hasattr(torch, missing):
        setattr(torch, missing, torch.float32)


class _SafeOpen:
    """The part of the `safetensors` package the converter uses (not installable here)."""

    def __init__(self, path, framework="pt", device="cpu"):
        with open(path, "rb") as f:
            blob = f.read()
        n = int.from_bytes(blob[:8], "little")
        self.header = {k: v for k, v in json.loads(blob[8:8 + n]).items() if k != "__metadata__"}
        self.data = blob[8 + n:]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def keys(self):
        return list(self.header)

    def get_tensor(self, name):
        e = self.header[name]
        a, b = e["data_offsets"]
        raw = np.frombuffer(self.data[a:b], dtype={"F32": np.float32, "F16": np.float16,
                                                   "BF16": np.int16}[e["dtype"]]).copy()
        t = torch.from_numpy(raw)
        if e["dtype"] == "BF16":
            t = t.view(torch.bfloat16)
        return t.reshape(e["shape"])


class _NoProgress:
    """tqdm (not installed) as the writer uses it: a progress bar that shows nothing."""

    def __init__(self, *a, **k):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, *a):
        pass

    def close(self):
        pass


sys.modules["tqdm"] = type(sys)("tqdm")
sys.modules["tqdm"].tqdm = _NoProgress
sys.modules["safetensors"] = type(sys)("safetensors")
sys.modules["safetensors"].safe_open = _SafeOpen
import convert_hf_to_gguf as conv  # noqa: E402

quantize_bin = args.quantize or os.path.join(args.llama_cpp, "build", "bin", "llama-quantize")
OUT = os.path.join(HERE, "fixtures", "gguf_models")
os.makedirs(OUT, exist_ok=True)

for cls in (conv.LlamaModel, conv.Qwen2Model, conv.GPT2Model):
    cls.set_vocab = lambda self: None
original_llama_params = conv.LlamaModel.set_gguf_parameters


def llama_params_with_window(self):
    original_llama_params(self)
    if self.hparams.get("model_type") == "mistral" and self.hparams.get("sliding_window"):
        self.gguf_writer.add_sliding_window(self.hparams["sliding_window"])


conv.LlamaModel.set_gguf_parameters = llama_params_with_window


def convert(hf_dir, out_path, outtype):
    sys.argv = ["convert_hf_to_gguf.py", hf_dir, "--outfile", out_path, "--outtype", outtype,
                "--no-lazy"]
    conv.main()


def quantize(src, dst, qtype, pure=False):
    cmd = [quantize_bin] + (["--pure"] if pure else []) + [src, dst, qtype, "1"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# ------------------------------------------------------------------ reading a GGUF back (gguf-py)
def field_value(reader, key):
    f = reader.fields.get(key)
    if f is None:
        return None
    v = f.parts[f.data[0]]
    if f.types[0] == gguf.GGUFValueType.STRING:
        return bytes(v).decode()
    return v.tolist()[0]


def read_tensors(reader):
    out = {}
    for t in reader.tensors:
        data = gguf.quants.dequantize(t.data, t.tensor_type)
        shape = [int(n) for n in reversed(t.shape.tolist())]  # ne reversed: [rows, cols]
        out[t.name] = (torch.tensor(np.array(data, dtype=np.float64)).reshape(shape),
                       t.tensor_type.name)
    return out


LLAMA_NAMES = {  # GGUF block tensor -> Hugging Face module
    "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm",
    "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}


def unpermute(m, heads):
    """File row h d + 2i + s -> HF row h d + s d/2 + i (the converter's permute, undone)."""
    n = m.shape[0]
    d = n // heads
    rest = m.shape[1:]
    return m.reshape(heads, d // 2, 2, *rest).transpose(1, 2).reshape(n, *rest)


def llama_family_reference(path, tokens):
    r = gguf.GGUFReader(path)
    arch = field_value(r, "general.architecture")
    k = lambda name: field_value(r, f"{arch}.{name}")  # noqa: E731
    t = read_tensors(r)
    C, H = k("embedding_length"), k("attention.head_count")
    G = k("attention.head_count_kv") or H
    d = k("attention.key_length") or C // H
    window = k("attention.sliding_window")
    cfg = {"model_type": "mistral" if window else arch, "hidden_size": C,
           "num_attention_heads": H, "num_key_value_heads": G, "head_dim": d,
           "rms_norm_eps": k("attention.layer_norm_rms_epsilon"),
           "rope_theta": k("rope.freq_base") or 10000.0, "num_hidden_layers": k("block_count"),
           "tie_word_embeddings": "output.weight" not in t, "sliding_window": window,
           "attention_bias": "blk.0.attn_q.bias" in t, "mlp_bias": "blk.0.ffn_up.bias" in t}
    if k("rope.scaling.type") == "linear":
        cfg["rope_scaling"] = {"type": "linear", "factor": k("rope.scaling.factor")}
    w = {"model.embed_tokens.weight": t["token_embd.weight"][0],
         "model.norm.weight": t["output_norm.weight"][0]}
    if "output.weight" in t:
        w["lm_head.weight"] = t["output.weight"][0]
    for name, (value, _) in t.items():
        if not name.startswith("blk."):
            continue
        _, layer, base, kind = name.split(".")
        if arch == "llama" and base in ("attn_q", "attn_k"):
            value = unpermute(value, H if base == "attn_q" else G)
        w[f"model.layers.{layer}.{LLAMA_NAMES[base]}.{kind}"] = value
    inverse = ml.inverse_frequencies
    if "rope_freqs.weight" in t:
        divisors = t["rope_freqs.weight"][0]
        ml.inverse_frequencies = lambda c, dd: inverse(c, dd) / divisors
    try:
        logits = ml.reference_logits(cfg, w, tokens)
    finally:
        ml.inverse_frequencies = inverse
    return logits, {n: ty for n, (_, ty) in t.items()}


def gpt2_reference(path, tokens):
    import make_fixtures as mf
    r = gguf.GGUFReader(path)
    t = read_tensors(r)
    cfg = {"n_embd": field_value(r, "gpt2.embedding_length"),
           "n_head": field_value(r, "gpt2.attention.head_count"),
           "n_layer": field_value(r, "gpt2.block_count"),
           "layer_norm_epsilon": field_value(r, "gpt2.attention.layer_norm_epsilon")}
    w = {"wte.weight": t["token_embd.weight"][0], "wpe.weight": t["position_embd.weight"][0],
         "ln_f.weight": t["output_norm.weight"][0], "ln_f.bias": t["output_norm.bias"][0]}
    names = {"attn_norm": "ln_1", "ffn_norm": "ln_2", "attn_qkv": "attn.c_attn",
             "attn_output": "attn.c_proj", "ffn_up": "mlp.c_fc", "ffn_down": "mlp.c_proj"}
    for name, (value, _) in t.items():
        if name.startswith("blk."):
            _, layer, base, kind = name.split(".")
            # Linear weights are stored [out, in]; GPT-2's Conv1D weights are [in, out].
            w[f"h.{layer}.{names[base]}.{kind}"] = value.T if value.dim() == 2 else value
    head = t["output.weight"][0] if "output.weight" in t else w["wte.weight"]
    return mf.reference_logits(cfg, w, tokens, head), {n: ty for n, (_, ty) in t.items()}


def write_expected(path, tokens, logits, types):
    with open(path[:-5] + ".json", "w") as f:
        json.dump({"tokens": tokens, "types": types, "logits": logits.tolist()}, f)


# ------------------------------------------------------------------ qwen3 by hand (gguf-py)
def read_safetensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + n])
    dtypes = {"F32": np.float32, "F16": np.float16}
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        a, b = e["data_offsets"]
        out[name] = np.frombuffer(blob[8 + n + a:8 + n + b], dtype=dtypes[e["dtype"]]).reshape(
            e["shape"]).copy()
    return out


def write_qwen3(hf_dir, out_path):
    cfg = json.load(open(os.path.join(hf_dir, "config.json")))
    w = read_safetensors(os.path.join(hf_dir, "model.safetensors"))
    g = gguf.GGUFWriter(out_path, "qwen3")
    g.add_block_count(cfg["num_hidden_layers"])
    g.add_context_length(cfg["max_position_embeddings"])
    g.add_embedding_length(cfg["hidden_size"])
    g.add_feed_forward_length(cfg["intermediate_size"])
    g.add_head_count(cfg["num_attention_heads"])
    g.add_head_count_kv(cfg["num_key_value_heads"])
    g.add_key_length(cfg["head_dim"])
    g.add_value_length(cfg["head_dim"])
    g.add_rope_freq_base(cfg["rope_theta"])
    g.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    g.add_bos_token_id(cfg["bos_token_id"])
    g.add_eos_token_id(cfg["eos_token_id"])
    g.add_tensor("token_embd.weight", w["model.embed_tokens.weight"].astype(np.float16))
    g.add_tensor("output_norm.weight", w["model.norm.weight"].astype(np.float32))
    for layer in range(cfg["num_hidden_layers"]):
        for gg, hf in LLAMA_NAMES.items():
            v = w[f"model.layers.{layer}.{hf}.weight"]
            g.add_tensor(f"blk.{layer}.{gg}.weight",
                         v.astype(np.float16 if v.ndim == 2 else np.float32))
    g.write_header_to_file()
    g.write_kv_data_to_file()
    g.write_tensors_to_file()
    g.close()


def tokens_of(hf_dir):
    return json.load(open(os.path.join(hf_dir, "expected.json")))["tokens"]


def main():
    llama_dir = os.path.join(HERE, "fixtures", "llama")
    tmp = tempfile.mkdtemp()
    files = []  # (gguf path, tokens)
    conversions = [
        ("llama_gqa", ["f32", "q8_0"]),
        ("llama3_scaled_mqa_tied", ["f32"]),
        ("llama_biases_linear_rope", ["f32", "f16"]),
        ("qwen2_window_disabled_bf16", ["bf16"]),
        ("mistral_window_sharded", ["f32"]),
    ]
    for name, types in conversions:
        # A copy whose config.json names its architecture (which the converter dispatches on).
        src = os.path.join(tmp, name)
        shutil.copytree(os.path.join(llama_dir, name), src)
        cfg = json.load(open(os.path.join(src, "config.json")))
        cfg.setdefault("architectures", [{"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM",
                                          "mistral": "MistralForCausalLM"}[cfg["model_type"]]])
        json.dump(cfg, open(os.path.join(src, "config.json"), "w"))
        for outtype in types:
            out = os.path.join(OUT, f"{name}.{outtype}.gguf")
            convert(src, out, outtype)
            files.append((out, tokens_of(os.path.join(llama_dir, name))))
    out = os.path.join(OUT, "qwen3_qknorm.f16.gguf")
    write_qwen3(os.path.join(llama_dir, "qwen3_qknorm_tied_extra_head_f16"), out)
    files.append((out, tokens_of(os.path.join(llama_dir, "qwen3_qknorm_tied_extra_head_f16"))))

    # llama-quantize's types on a 256-wide llama model (k-quants need rows of 256, Q4_0 of 32:
    # the small fixtures' MLP rows of 48 are neither), converted to F32 (not kept) and quantized.
    cfg = ml.base("llama", architectures=["LlamaForCausalLM"], hidden_size=256,
                  intermediate_size=512, num_attention_heads=4, num_key_value_heads=2,
                  vocab_size=256, num_hidden_layers=2, attention_bias=False, mlp_bias=False)
    gen = torch.Generator().manual_seed(23)
    kdir = os.path.join(tmp, "llama_256")
    ml.write_checkpoint(kdir, cfg, ml.random_weights(cfg, gen, False), torch.float32, 1)
    kf32 = os.path.join(tmp, "llama_256.f32.gguf")
    convert(kdir, kf32, "f32")
    ktokens = torch.randint(0, 256, (12,), generator=gen).tolist()
    for qtype, pure in (("Q4_0", True), ("Q4_K_M", False), ("Q5_K_M", False), ("Q6_K", True)):
        out = os.path.join(OUT, f"llama_256.{qtype.lower()}.gguf")
        quantize(kf32, out, qtype, pure)
        files.append((out, ktokens))

    gpt2_dir = os.path.join(HERE, "fixtures", "tiny_f32")
    for outtype in ("f32", "q8_0"):
        out = os.path.join(OUT, f"gpt2_tiny.{outtype}.gguf")
        convert(gpt2_dir, out, outtype)
        cases = json.load(open(os.path.join(gpt2_dir, "expected.json")))["cases"]
        files.append((out, max((c["tokens"] for c in cases), key=len)))

    for path, tokens in files:
        is_gpt2 = os.path.basename(path).startswith("gpt2")
        logits, types = (gpt2_reference if is_gpt2 else llama_family_reference)(path, tokens)
        write_expected(path, tokens, logits, types)
        print(os.path.basename(path), sorted(set(types.values())))
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
