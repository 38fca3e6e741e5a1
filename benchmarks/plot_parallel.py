#!/usr/bin/env python3
"""Draws aggregate decode tokens/s against sequences decoded together into a PNG.

Optional tool (Debian python3-matplotlib). Reads the JSON lines of
`eigenformer bench-parallel --json` (one or more shapes, stdin or files):

    for s in gpt2 smollm2-135m; do ./build/eigenformer bench-parallel --shape $s --json; done \\
        | tee /tmp/parallel.jsonl | /usr/bin/python3 benchmarks/plot_parallel.py --out docs/parallel_decode.png
"""
import argparse
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="*", help="bench-parallel --json output (default: stdin)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    lines = []
    for f in a.files or [None]:
        lines += (open(f) if f else sys.stdin).read().splitlines()
    series = {}  # model -> [(parallel, tokens/s, itl p50)]
    machine = ""
    for line in lines:
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        series.setdefault(r["model"], []).append(
            (r["parallel"], r["decode_tokens_per_s"], r["itl_ms_p50"]))
        machine = "%s, %d threads" % (r["dtype"], r["threads"])
    if not series:
        sys.exit("no bench-parallel --json lines in the input")
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for model, points in sorted(series.items()):
        points.sort()
        xs = [p for p, _, _ in points]
        ys = [r for _, r, _ in points]
        line, = ax.plot(xs, ys, marker="o", label=model)
        single = dict((p, r) for p, r, _ in points).get(1)
        if single:
            ax.plot(xs, [single * x for x in xs], ls=":", color=line.get_color(), alpha=0.5)
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted({p for pts in series.values() for p, _, _ in pts}))
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel("sequences decoded together")
    ax.set_ylabel("aggregate decode tokens/s")
    ax.set_title("Continuous batching (%s); dotted: P x one sequence" % machine, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(a.out)


if __name__ == "__main__":
    main()
