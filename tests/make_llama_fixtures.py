#!/usr/bin/env python3
"""Builds the Llama-family golden fixtures under tests/fixtures/llama/ with PyTorch (Debian:
python3-torch; `transformers` is not installable here).

Each fixture is a small random checkpoint in the Hugging Face layout of its family (config.json +
model.safetensors, or shards with model.safetensors.index.json) plus expected.json: a token
sequence, the logits an independent float64 implementation computes for it from the weights
exactly as stored (after rounding to the file's dtype), and the greedy continuation of its prompt.
The implementation below is written from transformers' modeling_llama / modeling_qwen2 /
modeling_qwen3 / modeling_mistral (RMSNorm, rotate_half RoPE with default/linear/llama3 inverse
frequencies, repeat_kv, q/k norms, the sliding-window mask, SwiGLU), not from eigenformer.
CI does not run this script; its output is committed.

    /usr/bin/python3 tests/make_llama_fixtures.py [OUT_DIR]

One fixture per family and per trap: GQA mapping, MQA, Qwen2's biases with a disabled window,
Qwen3's q/k norms with head_dim != hidden/heads, llama3 rope scaling with a small original
context, Mistral's window crossed while decoding, tied embeddings with and without lm_head.weight
in the file, sharded and F16/BF16 files.
"""
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import write_safetensors  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


# ----------------------------------------------------------------------------- the reference
def inverse_frequencies(cfg, d):
    theta = cfg.get("rope_theta", 10000.0)
    inv = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    rs = cfg.get("rope_scaling")
    if not rs:
        return inv
    kind = rs.get("rope_type", rs.get("type"))
    if kind == "linear":
        return inv / rs["factor"]
    assert kind == "llama3"
    factor, low, high = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
    old = rs["original_max_position_embeddings"]
    low_wavelen, high_wavelen = old / low, old / high
    wavelen = 2 * math.pi / inv
    scaled = torch.where(wavelen > low_wavelen, inv / factor, inv)
    smooth = (old / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return torch.where(medium, smoothed, scaled)


def rms_norm(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def reference_logits(cfg, w, ids):
    """Float64 forward pass of a LlamaForCausalLM-style model over the whole sequence."""
    mt = cfg["model_type"]
    C, H = cfg["hidden_size"], cfg["num_attention_heads"]
    G = cfg.get("num_key_value_heads", H)
    d = cfg.get("head_dim") or C // H
    eps = cfg["rms_norm_eps"]
    T = len(ids)
    window = cfg.get("sliding_window") if mt == "mistral" else None
    qkv_bias = True if mt == "qwen2" else cfg.get("attention_bias", False)
    o_bias = False if mt == "qwen2" else cfg.get("attention_bias", False)
    mlp_bias = cfg.get("mlp_bias", False) if mt == "llama" else False

    x = w["model.embed_tokens.weight"][torch.tensor(ids)]
    pos = torch.arange(T, dtype=torch.float64)
    freqs = pos[:, None] * inverse_frequencies(cfg, d)[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos(), emb.sin()  # [T, d]
    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    visible = j <= i
    if window:
        visible = visible & (j > i - window)

    def linear(h, name, bias):
        y = h @ w[name + ".weight"].T
        return y + w[name + ".bias"] if bias else y

    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        h = rms_norm(x, w[p + "input_layernorm.weight"], eps)
        q = linear(h, p + "self_attn.q_proj", qkv_bias).view(T, H, d).transpose(0, 1)
        k = linear(h, p + "self_attn.k_proj", qkv_bias).view(T, G, d).transpose(0, 1)
        v = linear(h, p + "self_attn.v_proj", qkv_bias).view(T, G, d).transpose(0, 1)
        if mt == "qwen3":
            q = rms_norm(q, w[p + "self_attn.q_norm.weight"], eps)
            k = rms_norm(k, w[p + "self_attn.k_norm.weight"], eps)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(H // G, dim=0)  # repeat_kv: head h reads kv head h // (H / G)
        v = v.repeat_interleave(H // G, dim=0)
        scores = q @ k.transpose(-1, -2) / math.sqrt(d)
        scores = scores.masked_fill(~visible, float("-inf"))
        o = torch.softmax(scores, dim=-1) @ v  # [H, T, d]
        o = o.transpose(0, 1).reshape(T, H * d)
        x = x + linear(o, p + "self_attn.o_proj", o_bias)
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        gate = linear(h, p + "mlp.gate_proj", mlp_bias)
        up = linear(h, p + "mlp.up_proj", mlp_bias)
        x = x + linear(gate * torch.sigmoid(gate) * up, p + "mlp.down_proj", mlp_bias)
    x = rms_norm(x, w["model.norm.weight"], eps)
    head = w["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else w["lm_head.weight"]
    return x @ head.T


# ----------------------------------------------------------------------------- the checkpoints
def random_weights(cfg, gen, extra_lm_head):
    mt = cfg["model_type"]
    C, H, V = cfg["hidden_size"], cfg["num_attention_heads"], cfg["vocab_size"]
    G = cfg.get("num_key_value_heads", H)
    d = cfg.get("head_dim") or C // H
    I = cfg["intermediate_size"]
    qkv_bias = True if mt == "qwen2" else cfg.get("attention_bias", False)
    o_bias = False if mt == "qwen2" else cfg.get("attention_bias", False)
    mlp_bias = cfg.get("mlp_bias", False) if mt == "llama" else False

    def randn(*shape, std=1.0):
        return torch.randn(*shape, generator=gen, dtype=torch.float64) * std

    def gain(n):
        return 1.0 + randn(n, std=0.2)

    w = {"model.embed_tokens.weight": randn(V, C, std=1.0)}
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        w[p + "input_layernorm.weight"] = gain(C)
        w[p + "post_attention_layernorm.weight"] = gain(C)
        for name, rows in (("q", H * d), ("k", G * d), ("v", G * d)):
            w[p + f"self_attn.{name}_proj.weight"] = randn(rows, C, std=0.35)
            if qkv_bias:
                w[p + f"self_attn.{name}_proj.bias"] = randn(rows, std=0.3)
        w[p + "self_attn.o_proj.weight"] = randn(C, H * d, std=0.2)
        if o_bias:
            w[p + "self_attn.o_proj.bias"] = randn(C, std=0.1)
        if mt == "qwen3":
            w[p + "self_attn.q_norm.weight"] = gain(d)
            w[p + "self_attn.k_norm.weight"] = gain(d)
        w[p + "mlp.gate_proj.weight"] = randn(I, C, std=0.3)
        w[p + "mlp.up_proj.weight"] = randn(I, C, std=0.3)
        w[p + "mlp.down_proj.weight"] = randn(C, I, std=0.15)
        if mlp_bias:
            w[p + "mlp.gate_proj.bias"] = randn(I, std=0.1)
            w[p + "mlp.up_proj.bias"] = randn(I, std=0.1)
            w[p + "mlp.down_proj.bias"] = randn(C, std=0.1)
    w["model.norm.weight"] = gain(C)
    if not cfg.get("tie_word_embeddings") or extra_lm_head:
        # With a tied config this tensor must be ignored: the config decides.
        w["lm_head.weight"] = randn(V, C, std=0.3)
    # An extra buffer real checkpoints sometimes carry; loaders ignore it.
    w["model.layers.0.self_attn.rotary_emb.inv_freq"] = randn(d // 2)
    return w


def write_checkpoint(directory, cfg, weights, dtype, shards):
    os.makedirs(directory, exist_ok=True)
    stored = {k: v.to(dtype) for k, v in weights.items()}
    names = sorted(stored)
    if shards == 1:
        write_safetensors(os.path.join(directory, "model.safetensors"), stored)
    else:
        weight_map = {}
        per = (len(names) + shards - 1) // shards
        for s in range(shards):
            file = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
            part = {n: stored[n] for n in names[s * per:(s + 1) * per]}
            write_safetensors(os.path.join(directory, file), part)
            weight_map.update({n: file for n in part})
        with open(os.path.join(directory, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": 0}, "weight_map": weight_map}, f, indent=1)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    # The reference sees the weights exactly as stored.
    return {k: v.to(torch.float64) for k, v in stored.items()}


def greedy(cfg, w, prompt, n_new):
    ids = list(prompt)
    for _ in range(n_new):
        ids.append(int(reference_logits(cfg, w, ids)[-1].argmax()))
    return ids


def base(model_type, **kw):
    cfg = {"model_type": model_type, "hidden_size": 32, "intermediate_size": 48,
           "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
           "vocab_size": 97, "max_position_embeddings": 64, "rms_norm_eps": 1e-6,
           "rope_theta": 10000.0, "hidden_act": "silu", "tie_word_embeddings": False,
           "bos_token_id": 1, "eos_token_id": 2}
    cfg.update(kw)
    return cfg


CASES = [
    # name, config, dtype, shards, extra lm_head in a tied file, sequence length
    ("llama_gqa", base("llama", architectures=["LlamaForCausalLM"], attention_bias=False,
                       mlp_bias=False), torch.float32, 1, False),
    ("llama3_scaled_mqa_tied", base("llama", num_key_value_heads=1, rope_theta=500000.0,
                                    head_dim=16, hidden_size=48, tie_word_embeddings=True,
                                    rope_scaling={"rope_type": "llama3", "factor": 8.0,
                                                  "low_freq_factor": 1.0,
                                                  "high_freq_factor": 4.0,
                                                  "original_max_position_embeddings": 16}),
     torch.float32, 1, False),
    ("llama_biases_linear_rope", base("llama", attention_bias=True, mlp_bias=True,
                                      num_key_value_heads=4,
                                      rope_scaling={"type": "linear", "factor": 2.0}),
     torch.float32, 1, False),
    ("qwen2_window_disabled_bf16", base("qwen2", attention_bias=False, sliding_window=4,
                                        use_sliding_window=False, max_window_layers=1,
                                        rope_theta=1000000.0), torch.bfloat16, 1, False),
    ("qwen3_qknorm_tied_extra_head_f16", base("qwen3", head_dim=16, attention_bias=False,
                                              tie_word_embeddings=True, sliding_window=None,
                                              use_sliding_window=False),
     torch.float16, 1, True),
    ("mistral_window_sharded", base("mistral", sliding_window=5, num_key_value_heads=1),
     torch.float32, 3, False),
]


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "fixtures", "llama")
    gen = torch.Generator().manual_seed(11)
    for name, cfg, dtype, shards, extra_head in CASES:
        directory = os.path.join(out, name)
        w = write_checkpoint(directory, cfg, random_weights(cfg, gen, extra_head), dtype, shards)
        prompt = torch.randint(0, cfg["vocab_size"], (6,), generator=gen).tolist()
        ids = greedy(cfg, w, prompt, 14)  # 20 tokens: every window above is crossed
        logits = reference_logits(cfg, w, ids)
        with open(os.path.join(directory, "expected.json"), "w") as f:
            json.dump({"dtype": {torch.float32: "F32", torch.float16: "F16",
                                 torch.bfloat16: "BF16"}[dtype],
                       "prompt_length": len(prompt), "tokens": ids,
                       "logits": logits.tolist()}, f)
        print(name, "tokens", ids)


if __name__ == "__main__":
    main()
