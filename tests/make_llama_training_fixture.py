#!/usr/bin/env python3
"""Builds tests/fixtures/train_llama/<case>/ with PyTorch autograd (Debian: python3-torch).

For each case, a small random Llama-family checkpoint in the Hugging Face layout (config.json + F32
model.safetensors), one batch of B x T tokens and targets, and what PyTorch computes for it:
  - the mean cross-entropy loss and every parameter's gradient, by autograd in float64 from the
    float32 weights (grads/model.safetensors, F64, Hugging Face names: q_proj/k_proj/v_proj and
    gate_proj/up_proj separate, as in the checkpoint);
  - one step of torch.optim.AdamW on the float32 parameters with those gradients, clipped by
    torch.nn.utils.clip_grad_norm_ (adamw_step1/model.safetensors), weight decay on matrices only.
The forward pass is make_llama_fixtures.reference_logits, written from transformers'
modeling_llama / modeling_qwen3 / modeling_mistral, independently of the C++ code. CI does not run
this script; its output is committed.

    /usr/bin/python3 tests/make_llama_training_fixture.py
"""
import json
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import write_safetensors  # noqa: E402
from make_training_fixture import ADAMW, torch_adamw_steps  # noqa: E402
from make_llama_fixtures import base, random_weights, reference_logits  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures", "train_llama")
B, T = 3, 8

CASES = [
    # Qwen3: q/k norms, head_dim != hidden / heads, GQA, untied head.
    ("qwen3", base("qwen3", hidden_size=24, intermediate_size=40, head_dim=8, vocab_size=31,
                   attention_bias=False, sliding_window=None, use_sliding_window=False)),
    # Mistral: a window shorter than T, multi-query attention, tied embeddings.
    ("mistral_tied", base("mistral", hidden_size=16, intermediate_size=24, vocab_size=29,
                          num_key_value_heads=1, sliding_window=3, tie_word_embeddings=True)),
    # Qwen2: q/k/v biases, GQA.
    ("qwen2", base("qwen2", hidden_size=16, intermediate_size=24, vocab_size=29,
                   rope_theta=1000000.0, sliding_window=4, use_sliding_window=False)),
]


def main():
    gen = torch.Generator().manual_seed(23)
    for name, cfg in CASES:
        weights = {k: v.float() for k, v in random_weights(cfg, gen, False).items()
                   if "rotary_emb" not in k}
        tokens = torch.randint(0, cfg["vocab_size"], (B, T + 1), generator=gen)
        inputs, targets = tokens[:, :T], tokens[:, 1:]

        w64 = {k: v.double().requires_grad_(True) for k, v in weights.items()}
        logits = torch.cat([reference_logits(cfg, w64, inputs[b].tolist()) for b in range(B)])
        loss = F.cross_entropy(logits, targets.reshape(-1))
        loss.backward()
        grads = {k: v.grad.detach().clone() for k, v in w64.items()}

        (stepped,), max_norm = torch_adamw_steps(weights, grads, 1)

        directory = os.path.join(OUT, name)
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
        write_safetensors(os.path.join(directory, "model.safetensors"), weights)
        # Each in a directory of its own, read as a checkpoint: grads/ and adamw_step1/.
        for sub, tensors in (("grads", grads),
                             ("adamw_step1", stepped)):
            os.makedirs(os.path.join(directory, sub), exist_ok=True)
            write_safetensors(os.path.join(directory, sub, "model.safetensors"), tensors)
        with open(os.path.join(directory, "batch.json"), "w") as f:
            json.dump({"B": B, "T": T, "tokens": inputs.reshape(-1).tolist(),
                       "targets": targets.reshape(-1).tolist(), "loss": loss.item(),
                       "adamw": {**ADAMW, "max_grad_norm": max_norm}}, f, indent=1)
        print(name, "loss", loss.item())


if __name__ == "__main__":
    main()
