#!/usr/bin/env python3
"""Builds tests/fixtures/train_tiny/ with PyTorch autograd (Debian: python3-torch).

A tiny GPT-2 (config.json + F32 model.safetensors, tied head), one batch of B x T tokens and
targets, and what PyTorch computes for it:
  - the mean cross-entropy loss and every parameter's gradient, by autograd in float64 from the
    float32 weights (grads.safetensors, F64, Hugging Face names);
  - two steps of torch.optim.AdamW on float32 parameters with those gradients, clipped by
    torch.nn.utils.clip_grad_norm_ (adamw_step1/2.safetensors), weight decay on matrices only.
The model is written here from the Hugging Face GPT2LMHeadModel definition, independently of
the C++ code. CI does not run this script; its output is committed.

    /usr/bin/python3 tests/make_training_fixture.py
"""
import json
import math
import os

import torch
import torch.nn.functional as F

from make_fixtures import write_safetensors

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures", "train_tiny")

CFG = {"n_layer": 2, "n_head": 2, "n_embd": 16, "vocab_size": 29, "n_positions": 12,
       "n_ctx": 12, "layer_norm_epsilon": 1e-5}
B, T = 3, 8
ADAMW = {"lr": 1e-2, "beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "weight_decay": 0.1}


def init_weights(gen):
    C, V, P = CFG["n_embd"], CFG["vocab_size"], CFG["n_positions"]

    def randn(*shape, std):
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) * std).float()

    w = {"wte.weight": randn(V, C, std=0.3), "wpe.weight": randn(P, C, std=0.2)}
    for i in range(CFG["n_layer"]):
        p = f"h.{i}."
        w[p + "ln_1.weight"] = 1 + randn(C, std=0.1)
        w[p + "ln_1.bias"] = randn(C, std=0.1)
        w[p + "attn.c_attn.weight"] = randn(C, 3 * C, std=0.3)
        w[p + "attn.c_attn.bias"] = randn(3 * C, std=0.1)
        w[p + "attn.c_proj.weight"] = randn(C, C, std=0.2)
        w[p + "attn.c_proj.bias"] = randn(C, std=0.1)
        w[p + "ln_2.weight"] = 1 + randn(C, std=0.1)
        w[p + "ln_2.bias"] = randn(C, std=0.1)
        w[p + "mlp.c_fc.weight"] = randn(C, 4 * C, std=0.2)
        w[p + "mlp.c_fc.bias"] = randn(4 * C, std=0.1)
        w[p + "mlp.c_proj.weight"] = randn(4 * C, C, std=0.1)
        w[p + "mlp.c_proj.bias"] = randn(C, std=0.1)
    w["ln_f.weight"] = 1 + randn(C, std=0.1)
    w["ln_f.bias"] = randn(C, std=0.1)
    return w


def loss_fn(w, tokens, targets):
    """GPT2LMHeadModel's forward pass on [B, T] tokens and the mean cross-entropy."""
    C, nh, eps = CFG["n_embd"], CFG["n_head"], CFG["layer_norm_epsilon"]
    d = C // nh
    x = w["wte.weight"][tokens] + w["wpe.weight"][torch.arange(T)]  # [B, T, C]
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    for i in range(CFG["n_layer"]):
        p = f"h.{i}."
        h = F.layer_norm(x, (C,), w[p + "ln_1.weight"], w[p + "ln_1.bias"], eps)
        qkv = h @ w[p + "attn.c_attn.weight"] + w[p + "attn.c_attn.bias"]
        q, k, v = (t.view(B, T, nh, d).transpose(1, 2) for t in qkv.split(C, dim=-1))
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(d)
        scores = scores.masked_fill(~causal, float("-inf"))
        att = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(B, T, C)
        x = x + att @ w[p + "attn.c_proj.weight"] + w[p + "attn.c_proj.bias"]
        h = F.layer_norm(x, (C,), w[p + "ln_2.weight"], w[p + "ln_2.bias"], eps)
        h = F.gelu(h @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"], approximate="tanh")
        x = x + h @ w[p + "mlp.c_proj.weight"] + w[p + "mlp.c_proj.bias"]
    x = F.layer_norm(x, (C,), w["ln_f.weight"], w["ln_f.bias"], eps)
    logits = x @ w["wte.weight"].T  # tied head
    return F.cross_entropy(logits.reshape(B * T, -1), targets.reshape(-1))


def torch_adamw_steps(weights, grads, n_steps):
    """torch.optim.AdamW on float32 copies of `weights`, fed the (float32-rounded) autograd
    gradients each step after clip_grad_norm_ to half their norm (so that clipping is active),
    weight decay on matrices only. Returns the parameters after each step, and the max norm."""
    params = {k: v.clone().requires_grad_(True) for k, v in weights.items()}
    decay = [p for p in params.values() if p.dim() == 2]
    no_decay = [p for p in params.values() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": ADAMW["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=ADAMW["lr"], betas=(ADAMW["beta1"], ADAMW["beta2"]),
                            eps=ADAMW["eps"], foreach=False)
    norm = math.sqrt(sum(float((g.float().double() ** 2).sum()) for g in grads.values()))
    max_norm = 0.5 * norm
    steps = []
    for _ in range(n_steps):
        for k, p in params.items():
            p.grad = grads[k].float().clone()
        torch.nn.utils.clip_grad_norm_(list(params.values()), max_norm)
        opt.step()
        steps.append({k: p.detach().clone() for k, p in params.items()})
    return steps, max_norm


def main():
    gen = torch.Generator().manual_seed(7)
    weights = init_weights(gen)
    tokens = torch.randint(0, CFG["vocab_size"], (B, T + 1), generator=gen)
    inputs, targets = tokens[:, :T], tokens[:, 1:]

    w64 = {k: v.double().requires_grad_(True) for k, v in weights.items()}
    loss = loss_fn(w64, inputs, targets)
    loss.backward()
    grads = {k: v.grad.detach().clone() for k, v in w64.items()}

    steps, max_norm = torch_adamw_steps(weights, grads, 2)

    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "config.json"), "w") as f:
        json.dump({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
                   "activation_function": "gelu_new", "n_inner": None, **CFG}, f, indent=2)
    write_safetensors(os.path.join(OUT, "model.safetensors"), weights)
    write_safetensors(os.path.join(OUT, "grads.safetensors"), grads)
    for i, s in enumerate(steps):
        write_safetensors(os.path.join(OUT, f"adamw_step{i + 1}.safetensors"), s)
    with open(os.path.join(OUT, "batch.json"), "w") as f:
        json.dump({"B": B, "T": T, "tokens": inputs.reshape(-1).tolist(),
                   "targets": targets.reshape(-1).tolist(), "loss": loss.item(),
                   "adamw": {**ADAMW, "max_grad_norm": max_norm}}, f, indent=1)


if __name__ == "__main__":
    main()
