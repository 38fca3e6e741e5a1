#!/usr/bin/env python3
"""Draws prefill tokens/s against T for eigenformer and PyTorch into a PNG.

Optional tool (Debian python3-matplotlib, python3-torch with libopenblas0-openmp).
Reads the table printed by compare_torch.py (stdin or a file) and writes the picture:

    /usr/bin/python3 benchmarks/compare_torch.py -p 64,128,256,512,1024 -n 128 --threads 2 -r 3 \
        | tee /tmp/cmp.md | /usr/bin/python3 benchmarks/plot.py --out docs/prefill.png
"""
import argparse
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("table", nargs="?", help="compare_torch.py output (default: stdin)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    text = open(a.table).read() if a.table else sys.stdin.read()
    series = {}  # threads -> [(T, torch, eigenformer)]
    for m in re.finditer(r"^\| pp(\d+) \| (\d+) \| ([\d.]+) \| ([\d.]+) \|", text, re.M):
        T, t, pt, ef = int(m[1]), int(m[2]), float(m[3]), float(m[4])
        series.setdefault(t, []).append((T, pt, ef))
    if not series:
        sys.exit("plot.py: no ppN rows in the input")
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for t, rows in sorted(series.items()):
        rows.sort()
        Ts = [r[0] for r in rows]
        ax.plot(Ts, [r[2] for r in rows], "o-", label=f"eigenformer, {t} thread(s)")
        ax.plot(Ts, [r[1] for r in rows], "s--", label=f"PyTorch, {t} thread(s)")
    top = max(max(r[1], r[2]) for rows in series.values() for r in rows)
    ax.set_ylim(0, top * 1.45)  # room for the legend above the curves
    ax.set_xscale("log", base=2)
    ax.set_xlabel("prompt length T (tokens)")
    ax.set_ylabel("prefill tokens/s")
    ax.set_title("GPT-2 124M shape, fp32, CPU")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(a.out, dpi=120)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
