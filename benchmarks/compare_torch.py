#!/usr/bin/env python3
"""PyTorch vs eigenformer, side by side in one run, at the GPT-2 124M shape (random weights).

Optional tool (Debian python3-torch; install libopenblas0-openmp too, or Debian's torch falls back to
the reference BLAS at ~3 GFLOP/s); not needed by the tests or CI.

    /usr/bin/python3 benchmarks/compare_torch.py --eigenformer build/eigenformer -p 64,256,1024 \
        -n 128 --depth 128 --threads 1,2 -r 3

With --attention T (e.g. 4096), it also times the attention core alone (12 heads, d = 64,
causal; no projections) on a synthetic n_ctx = T shape: PyTorch's eager attention (scores,
masked_fill, softmax, @ v) against build/bench_ops' BM_AttentionCore/T (tiled online softmax).

PyTorch side: an eager GPT-2 (nn.Linear/LayerNorm, F.softmax over the keys with a causal mask,
tanh GELU), fp32, torch.inference_mode(). Prefill returns the logits of the last position only
(as `eigenformer bench`'s ppN); generation runs one token at a time with a preallocated KV cache
after a --depth-token prompt that is not timed (tgN).
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, C, H):
        super().__init__()
        self.H = H
        self.ln_1, self.ln_2 = nn.LayerNorm(C), nn.LayerNorm(C)
        self.c_attn, self.c_proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
        self.c_fc, self.mlp_proj = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)

    def forward(self, x, cache, n_past):
        T, C = x.shape
        d = C // self.H
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=-1)
        keys, values = cache
        keys[n_past:n_past + T] = k
        values[n_past:n_past + T] = v
        k, v = keys[:n_past + T], values[:n_past + T]
        q, k, v = (t.view(-1, self.H, d).transpose(0, 1) for t in (q, k, v))
        s = q @ k.transpose(-1, -2) / math.sqrt(d)
        if T > 1:
            mask = torch.ones(T, n_past + T, dtype=torch.bool).tril(n_past)
            s = s.masked_fill(~mask, float("-inf"))
        a = (F.softmax(s, dim=-1) @ v).transpose(0, 1).reshape(T, C)
        x = x + self.c_proj(a)
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT2(nn.Module):
    def __init__(self, L=12, H=12, C=768, V=50257, P=1024):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(V, C), nn.Embedding(P, C)
        self.blocks = nn.ModuleList(Block(C, H) for _ in range(L))
        self.ln_f = nn.LayerNorm(C)
        self.caches = [(torch.zeros(P, C), torch.zeros(P, C)) for _ in range(L)]

    def forward(self, ids, n_past=0):
        x = self.wte(ids) + self.wpe(torch.arange(n_past, n_past + len(ids)))
        for block, cache in zip(self.blocks, self.caches):
            x = block(x, cache, n_past)
        return self.ln_f(x[-1:]) @ self.wte.weight.T  # last position only


def torch_results(model, prompts, gens, depth, threads, reps):
    out = []
    for t in threads:
        torch.set_num_threads(t)
        for p in prompts:
            ids = torch.arange(p) % 50257
            rates = []
            for run in range(reps + 1):
                start = time.perf_counter()
                model(ids)
                if run:
                    rates.append(p / (time.perf_counter() - start))
            out.append(("pp%d" % p, t, statistics.mean(rates)))
        for n in gens:
            rates = []
            for run in range(reps + 1):
                logits = model(torch.arange(max(depth, 1)) % 50257)
                pos = max(depth, 1)
                start = time.perf_counter()
                for _ in range(n):
                    nxt = logits.argmax(-1)
                    logits = model(nxt, pos)
                    pos += 1
                if run:
                    rates.append(n / (time.perf_counter() - start))
            out.append(("tg%d" % n, t, statistics.mean(rates)))
    return out


def torch_attention(T, threads, reps, C=768, H=12):
    """Seconds per call of eager causal attention on q, k, v [T x C]."""
    torch.set_num_threads(threads)
    d = C // H
    q, k, v = (torch.randn(T, C).view(T, H, d).transpose(0, 1) for _ in range(3))
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    times = []
    for run in range(reps + 1):
        start = time.perf_counter()
        s = (q @ k.transpose(-1, -2) / math.sqrt(d)).masked_fill(~mask, float("-inf"))
        (F.softmax(s, dim=-1) @ v).transpose(0, 1).reshape(T, C)
        if run:
            times.append(time.perf_counter() - start)
    return statistics.mean(times)


def eigenformer_attention(bench_ops, T, threads, reps):
    """Seconds per call of BM_AttentionCore/T."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    run = subprocess.run([bench_ops, f"--benchmark_filter=BM_AttentionCore/{T}$",
                          f"--benchmark_repetitions={reps}", "--benchmark_format=json"],
                         capture_output=True, text=True, check=True, env=env)
    runs = [b for b in json.loads(run.stdout)["benchmarks"] if b.get("run_type") == "iteration"]
    scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}
    return statistics.mean(b["real_time"] * scale[b["time_unit"]] for b in runs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--eigenformer", default="build/eigenformer")
    ap.add_argument("-p", default="64,256,1024")
    ap.add_argument("-n", default="128")
    ap.add_argument("--depth", type=int, default=128)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("-r", type=int, default=3)
    ap.add_argument("--attention", type=int, default=0,
                    help="also compare the attention core at this T (e.g. 4096)")
    ap.add_argument("--bench-ops", default="build/bench_ops")
    a = ap.parse_args()
    prompts = [int(x) for x in a.p.split(",")]
    gens = [int(x) for x in a.n.split(",")]
    threads = [int(x) for x in a.threads.split(",")]

    ef = subprocess.run([a.eigenformer, "bench", "--shape", "gpt2", "-p", a.p, "-n", a.n,
                         "--depth", str(a.depth), "--threads", a.threads, "-r", str(a.r), "--json"],
                        capture_output=True, text=True, check=True)
    ef_rate = {}
    for line in ef.stdout.splitlines():
        j = json.loads(line)
        ef_rate[(j["test"], j["threads"])] = j["tokens_per_s"]

    with torch.inference_mode():
        model = GPT2().eval()
        pt = torch_results(model, prompts, gens, a.depth, threads, a.r)

    print(f"torch {torch.__version__}, GPT-2 124M shape, fp32, depth {a.depth} for tg, "
          f"mean of {a.r} runs after a warm-up")
    print("| test | threads | PyTorch tok/s | eigenformer tok/s | ratio |")
    print("|---|---:|---:|---:|---:|")
    for test, t, rate in pt:
        mine = ef_rate.get((test, t), float("nan"))
        print(f"| {test} | {t} | {rate:.1f} | {mine:.1f} | {mine / rate:.2f}x |")

    if a.attention:
        print()
        print(f"attention core, T = {a.attention}, 12 heads of 64, causal")
        print("| threads | PyTorch eager ms | eigenformer tiled ms | speed-up |")
        print("|---:|---:|---:|---:|")
        for t in threads:
            with torch.inference_mode():
                pt_s = torch_attention(a.attention, t, a.r)
            ef_s = eigenformer_attention(a.bench_ops, a.attention, t, a.r)
            print(f"| {t} | {pt_s * 1e3:.1f} | {ef_s * 1e3:.1f} | {pt_s / ef_s:.2f}x |")


if __name__ == "__main__":
    main()
