#!/usr/bin/env python3
"""PyTorch vs eigenformer, side by side in one run, at the GPT-2 124M shape (random weights).

Optional tool (Debian python3-torch; install libopenblas0-openmp too, or Debian's torch falls back to
the reference BLAS at ~3 GFLOP/s); not needed by the tests or CI.

    /usr/bin/python3 benchmarks/compare_torch.py --eigenformer build/eigenformer -p 64,256,1024 \
        -n 128 --depth 128 --threads 1,2 -r 3

With --attention T (e.g. 4096), it also times the attention core alone (12 heads, d = 64,
causal; no projections) on a synthetic n_ctx = T shape: PyTorch's eager attention (scores,
masked_fill, softmax, @ v) against build/bench_ops' BM_AttentionCore/T (tiled online softmax).

With --train B,T (e.g. 4,64), it also times one training step at the GPT-2 124M shape: PyTorch
autograd (forward, loss.backward(), clip_grad_norm_, torch.optim.AdamW with weight decay on the
matrices) against build/bench_train's BM_TrainStepGPT2/B/T (same work), each in its own
process, so the peak resident memory (max RSS) of each is reported too. --train-shape demo
compares at the demo model's shape instead (BM_TrainStepDemo, e.g. --train 16,128), and
--train-shape smollm2 at SmolLM2-135M's (a Llama: GQA, rotary, SwiGLU; --train 4,64), with two
eigenformer rows: the library's step (BM_TrainStepSmolLM2) and the trainer's that `eigenformer
train` runs (BM_TrainerStepSmolLM2: batch sampling and the two half-batch shards). Both sides take
one untimed warm-up step.

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
import sys
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


class TrainGPT2(nn.Module):
    """GPT-2 for training on [B, T] batches: tied LM head, causal attention, tanh GELU."""

    def __init__(self, L=12, H=12, C=768, V=50257, P=1024):
        super().__init__()
        self.H = H
        self.wte, self.wpe = nn.Embedding(V, C), nn.Embedding(P, C)
        self.blocks = nn.ModuleList(nn.ModuleDict({
            "ln_1": nn.LayerNorm(C), "c_attn": nn.Linear(C, 3 * C), "c_proj": nn.Linear(C, C),
            "ln_2": nn.LayerNorm(C), "c_fc": nn.Linear(C, 4 * C), "mlp_proj": nn.Linear(4 * C, C)})
            for _ in range(L))
        self.ln_f = nn.LayerNorm(C)

    def forward(self, ids, targets):
        B, T = ids.shape
        x = self.wte(ids) + self.wpe(torch.arange(T))
        C = x.shape[-1]
        d = C // self.H
        mask = torch.ones(T, T, dtype=torch.bool).tril()
        for b in self.blocks:
            q, k, v = b["c_attn"](b["ln_1"](x)).split(C, dim=-1)
            q, k, v = (t.view(B, T, self.H, d).transpose(1, 2) for t in (q, k, v))
            s = (q @ k.transpose(-1, -2) / math.sqrt(d)).masked_fill(~mask, float("-inf"))
            a = (F.softmax(s, dim=-1) @ v).transpose(1, 2).reshape(B, T, C)
            x = x + b["c_proj"](a)
            x = x + b["mlp_proj"](F.gelu(b["c_fc"](b["ln_2"](x)), approximate="tanh"))
        logits = self.ln_f(x) @ self.wte.weight.T
        return F.cross_entropy(logits.view(B * T, -1), targets.view(-1))


class RMSNorm(nn.Module):
    """transformers' LlamaRMSNorm (torch 1.13 has no nn.RMSNorm)."""

    def __init__(self, C, eps):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(C)), eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


class TrainLlama(nn.Module):
    """A Llama for training (transformers' LlamaForCausalLM, eager): RMSNorm, rotary positions
    (rotate_half), grouped-query attention (repeat_kv), SwiGLU, tied LM head, no biases."""

    def __init__(self, L, H, G, C, I, V, theta):
        super().__init__()
        self.H, self.G, self.d = H, G, C // H
        self.embed = nn.Embedding(V, C)
        self.layers = nn.ModuleList(nn.ModuleDict({
            "input_norm": RMSNorm(C, 1e-5), "q": nn.Linear(C, C, bias=False),
            "k": nn.Linear(C, G * self.d, bias=False), "v": nn.Linear(C, G * self.d, bias=False),
            "o": nn.Linear(C, C, bias=False), "post_norm": RMSNorm(C, 1e-5),
            "gate": nn.Linear(C, I, bias=False), "up": nn.Linear(C, I, bias=False),
            "down": nn.Linear(I, C, bias=False)}) for _ in range(L))
        self.norm = RMSNorm(C, 1e-5)
        self.inv_freq = 1.0 / theta ** (torch.arange(0, self.d, 2).float() / self.d)

    def forward(self, ids, targets):
        B, T = ids.shape
        H, G, d = self.H, self.G, self.d
        x = self.embed(ids)
        angles = torch.arange(T).float()[:, None] * self.inv_freq[None, :]
        cos, sin = torch.cat([angles, angles], -1).cos(), torch.cat([angles, angles], -1).sin()

        def rope(t):
            return t * cos + torch.cat([-t[..., d // 2:], t[..., :d // 2]], -1) * sin

        mask = torch.ones(T, T, dtype=torch.bool).tril()
        for b in self.layers:
            h = b["input_norm"](x)
            q = rope(b["q"](h).view(B, T, H, d).transpose(1, 2))
            k = rope(b["k"](h).view(B, T, G, d).transpose(1, 2)).repeat_interleave(H // G, 1)
            v = b["v"](h).view(B, T, G, d).transpose(1, 2).repeat_interleave(H // G, 1)
            s = (q @ k.transpose(-1, -2) / math.sqrt(d)).masked_fill(~mask, float("-inf"))
            x = x + b["o"]((F.softmax(s, dim=-1) @ v).transpose(1, 2).reshape(B, T, H * d))
            h = b["post_norm"](x)
            x = x + b["down"](F.silu(b["gate"](h)) * b["up"](h))
        logits = self.norm(x) @ self.embed.weight.T
        return F.cross_entropy(logits.view(B * T, -1), targets.view(-1))


TRAIN_SHAPES = {  # name: (layers, heads, C, V, n_ctx, bench_train cases)
    "gpt2": (12, 12, 768, 50257, 1024, ["BM_TrainStepGPT2"]),
    "demo": (4, 4, 128, 257, 128, ["BM_TrainStepDemo"]),
    # 3 kv heads, SwiGLU 1536; the library's step, and the trainer's that `train` runs (clipping,
    # and the two half-batch shards that make one process equal two MPI ranks bit for bit)
    "smollm2": (30, 9, 576, 49152, 2048, ["BM_TrainStepSmolLM2", "BM_TrainerStepSmolLM2"]),
}


def torch_train_worker(shape, B, T, threads, reps):
    """Runs in a child process: prints seconds per training step (mean after a warm-up)."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    L, H, C, V, P, _ = TRAIN_SHAPES[shape]
    if shape == "smollm2":
        model = TrainLlama(L, H, 3, C, 1536, V, 100000.0)
    else:
        model = TrainGPT2(L, H, C, V, P)
    decay = [p for p in model.parameters() if p.dim() == 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-4, betas=(0.9, 0.95), eps=1e-8)
    ids = torch.randint(0, V, (B, T))
    targets = torch.randint(0, V, (B, T))
    times = []
    for run in range(reps + 1):
        start = time.perf_counter()
        opt.zero_grad(set_to_none=False)
        loss = model(ids, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if run:
            times.append(time.perf_counter() - start)
    print(json.dumps({"seconds": statistics.mean(times)}))


def run_measured(cmd, env=None):
    """Runs cmd; returns (stdout, peak RSS of that process in MiB)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed with exit code {proc.returncode}")
    return out, usage.ru_maxrss / 1024.0


def compare_training(shape, B, T, threads, reps, bench_train):
    print()
    print(f"training step (forward + backward + AdamW), {shape} shape {TRAIN_SHAPES[shape][:5]}, "
          f"B = {B}, T = {T}, fp32")
    print("| threads | eigenformer case | PyTorch tok/s | eigenformer tok/s | ratio "
          "| PyTorch peak RSS MiB | eigenformer peak RSS MiB |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for t in threads:
        out, pt_rss = run_measured([sys.executable, __file__, "--torch-train-worker",
                                    f"{B},{T}", "--train-shape", shape, "--threads", str(t),
                                    "-r", str(reps)])
        pt_rate = B * T / json.loads(out)["seconds"]
        env = dict(os.environ, OMP_NUM_THREADS=str(t))
        for case in TRAIN_SHAPES[shape][5]:
            out, ef_rss = run_measured([bench_train, f"--benchmark_filter=^{case}/{B}/{T}(/|$)",
                                        f"--benchmark_repetitions={reps}",
                                        "--benchmark_format=json"], env)
            runs = [b for b in json.loads(out)["benchmarks"] if b.get("run_type") == "iteration"]
            ef_rate = statistics.mean(b["tokens/s"] for b in runs)
            print(f"| {t} | {case} | {pt_rate:.1f} | {ef_rate:.1f} | {ef_rate / pt_rate:.2f}x "
                  f"| {pt_rss:.0f} | {ef_rss:.0f} |")


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
    ap.add_argument("--train", default="",
                    help="also compare a training step at B,T (e.g. 4,64); --train-only skips the rest")
    ap.add_argument("--train-only", action="store_true")
    ap.add_argument("--train-shape", default="gpt2", choices=sorted(TRAIN_SHAPES),
                    help="gpt2 (124M, default) or demo (the demo model's shape)")
    ap.add_argument("--bench-train", default="build/bench_train")
    ap.add_argument("--torch-train-worker", default="", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.torch_train_worker:
        B, T = (int(x) for x in a.torch_train_worker.split(","))
        torch_train_worker(a.train_shape, B, T, int(a.threads), a.r)
        return
    if a.train_only:
        B, T = (int(x) for x in (a.train or "4,64").split(","))
        compare_training(a.train_shape, B, T, [int(x) for x in a.threads.split(",")], a.r,
                         a.bench_train)
        return
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

    if a.train:
        B, T = (int(x) for x in a.train.split(","))
        compare_training(a.train_shape, B, T, threads, a.r, a.bench_train)


if __name__ == "__main__":
    main()
