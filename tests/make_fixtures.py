#!/usr/bin/env python3
"""Builds the golden fixtures under tests/fixtures/ with PyTorch (Debian: python3-torch).

Each fixture is a small random GPT-2 in the Hugging Face layout (config.json + model.safetensors)
plus expected.json: token sequences and the logits an independent float64 PyTorch implementation
of GPT2LMHeadModel computes for them from the weights exactly as stored (after rounding to the
file's dtype). CI does not run this script; its output is committed.

    /usr/bin/python3 tests/make_fixtures.py
"""
import json
import math
import os
import struct

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures")

DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
          torch.float64: "F64", torch.uint8: "U8", torch.bool: "BOOL"}


def write_safetensors(path, tensors):
    """Writes {name: tensor} in the safetensors format (sorted names, contiguous data)."""
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        flat = t.reshape(-1)
        if t.dtype == torch.bfloat16:  # numpy has no bfloat16: write its bit patterns
            flat = flat.view(torch.int16)
        elif t.dtype == torch.bool:
            flat = flat.to(torch.uint8)
        raw = flat.numpy().astype(flat.numpy().dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def random_gpt2(cfg, gen):
    """Random weights with magnitudes large enough that attention is far from uniform."""
    C, V, P, L = cfg["n_embd"], cfg["vocab_size"], cfg["n_positions"], cfg["n_layer"]
    H = 4 * C

    def randn(*shape, std=1.0):
        return torch.randn(*shape, generator=gen, dtype=torch.float64) * std

    w = {"wte.weight": randn(V, C, std=0.5), "wpe.weight": randn(P, C, std=0.3)}
    for i in range(L):
        p = f"h.{i}."
        w[p + "ln_1.weight"] = 1 + randn(C, std=0.2)
        w[p + "ln_1.bias"] = randn(C, std=0.1)
        w[p + "attn.c_attn.weight"] = randn(C, 3 * C, std=0.6 / math.sqrt(C) * 2)
        w[p + "attn.c_attn.bias"] = randn(3 * C, std=0.1)
        w[p + "attn.c_proj.weight"] = randn(C, C, std=1 / math.sqrt(C))
        w[p + "attn.c_proj.bias"] = randn(C, std=0.1)
        w[p + "ln_2.weight"] = 1 + randn(C, std=0.2)
        w[p + "ln_2.bias"] = randn(C, std=0.1)
        w[p + "mlp.c_fc.weight"] = randn(C, H, std=1 / math.sqrt(C))
        w[p + "mlp.c_fc.bias"] = randn(H, std=0.1)
        w[p + "mlp.c_proj.weight"] = randn(H, C, std=1 / math.sqrt(H))
        w[p + "mlp.c_proj.bias"] = randn(C, std=0.1)
    w["ln_f.weight"] = 1 + randn(C, std=0.2)
    w["ln_f.bias"] = randn(C, std=0.1)
    return w


def reference_logits(cfg, w, tokens, lm_head):
    """GPT2LMHeadModel's forward pass in float64, written from the Hugging Face definition."""
    C, nh, eps = cfg["n_embd"], cfg["n_head"], cfg["layer_norm_epsilon"]
    d = C // nh
    ids = torch.tensor(tokens)
    T = len(tokens)
    x = w["wte.weight"][ids] + w["wpe.weight"][torch.arange(T)]
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    for i in range(cfg["n_layer"]):
        p = f"h.{i}."
        h = F.layer_norm(x, (C,), w[p + "ln_1.weight"], w[p + "ln_1.bias"], eps)
        qkv = h @ w[p + "attn.c_attn.weight"] + w[p + "attn.c_attn.bias"]
        q, k, v = qkv.split(C, dim=-1)
        q, k, v = (t.view(T, nh, d).transpose(0, 1) for t in (q, k, v))  # [nh, T, d]
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(d)
        scores = scores.masked_fill(~causal, float("-inf"))
        att = torch.softmax(scores, dim=-1) @ v  # softmax over keys
        att = att.transpose(0, 1).reshape(T, C)
        x = x + att @ w[p + "attn.c_proj.weight"] + w[p + "attn.c_proj.bias"]
        h = F.layer_norm(x, (C,), w[p + "ln_2.weight"], w[p + "ln_2.bias"], eps)
        h = F.gelu(h @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"], approximate="tanh")
        x = x + h @ w[p + "mlp.c_proj.weight"] + w[p + "mlp.c_proj.bias"]
    x = F.layer_norm(x, (C,), w["ln_f.weight"], w["ln_f.bias"], eps)
    return x @ lm_head.T


def make(name, cfg, dtype, prefix, buffers, untied_head, seed):
    gen = torch.Generator().manual_seed(seed)
    w = random_gpt2(cfg, gen)
    # Round to the storage dtype, then compute the reference from exactly those values.
    w = {k: v.to(dtype).to(torch.float64) for k, v in w.items()}
    lm_head = w["wte.weight"]
    stored = {prefix + k: v.to(dtype) for k, v in w.items()}
    if untied_head:
        lm_head = (torch.randn(cfg["vocab_size"], cfg["n_embd"], generator=gen,
                               dtype=torch.float64) * 0.5).to(dtype).to(torch.float64)
        stored["lm_head.weight"] = lm_head.to(dtype)
    if buffers:
        P = cfg["n_positions"]
        for i in range(cfg["n_layer"]):
            # As in the original gpt2 upload: the causal mask as a float buffer, plus masked_bias.
            stored[f"{prefix}h.{i}.attn.bias"] = buffers(torch.tril(torch.ones(P, P)).view(1, 1, P, P))
            stored[f"{prefix}h.{i}.attn.masked_bias"] = torch.tensor(-1e4, dtype=torch.float32)

    gen_tokens = torch.Generator().manual_seed(seed + 1)
    V, P = cfg["vocab_size"], cfg["n_positions"]
    cases = []
    for T in (1, 7, P):
        tokens = torch.randint(0, V, (T,), generator=gen_tokens).tolist()
        logits = reference_logits(cfg, w, tokens, lm_head)
        cases.append({"tokens": tokens, "logits": logits.tolist()})

    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    hf_config = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
                 "activation_function": "gelu_new", "n_inner": None, **cfg}
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(hf_config, f, indent=2)
    write_safetensors(os.path.join(d, "model.safetensors"), stored)
    with open(os.path.join(d, "expected.json"), "w") as f:
        json.dump({"dtype": DTYPES[dtype], "cases": cases}, f)


def main():
    cfg = {"n_layer": 2, "n_head": 4, "n_embd": 32, "vocab_size": 101, "n_positions": 24,
           "n_ctx": 24, "layer_norm_epsilon": 1e-5}
    # The original "gpt2" upload: bare keys, tied head, F32.
    make("tiny_f32", cfg, torch.float32, "", None, False, seed=1)
    # A typical fine-tune: "transformer." prefix, stored mask buffers, its own lm_head, BF16.
    make("tiny_bf16_prefixed", cfg, torch.bfloat16, "transformer.",
         lambda m: m.to(torch.float32), True, seed=2)
    # F16 with uint8 mask buffers and a different shape (3 layers, 2 heads, C = 24, eps 1e-6).
    cfg16 = {"n_layer": 3, "n_head": 2, "n_embd": 24, "vocab_size": 67, "n_positions": 16,
             "n_ctx": 16, "layer_norm_epsilon": 1e-6}
    make("tiny_f16", cfg16, torch.float16, "", lambda m: m.to(torch.uint8), False, seed=3)


if __name__ == "__main__":
    main()
