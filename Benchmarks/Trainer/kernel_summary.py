"""Kernel-time summary of an Nsight Compute CSV (ncu --csv --metrics gpu__time_duration.sum).

usage: python kernel_summary.py ncu.csv [--steps 2] [--top 25]

Sums each kernel's duration by name (arguments and template parameters dropped), divides by
the number of training steps the profiled run took, and prints the kernels by time with their
share of the total kernel time. Under ncu kernels run one at a time with no overlap, so the
sum is the step's kernel time without launch gaps, not its wall time.
"""
import argparse
import csv
import re
import sys
from collections import defaultdict

UNITS = {"second": 1e3, "s": 1e3, "msecond": 1.0, "ms": 1.0, "usecond": 1e-3, "us": 1e-3, "nsecond": 1e-6, "ns": 1e-6}


def short(name):
    name = re.sub(r"\(.*\)$", "", name.strip())  # arguments
    depth, out = 0, []
    for ch in name:  # template parameters
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        elif depth == 0:
            out.append(ch)
    name = "".join(out).strip()
    name = re.sub(r"^(void|static)\s+", "", name)
    return name[:90]


def category(name):
    n = name.lower()
    if any(k in n for k in ("gemm", "xmma", "cutlass", "cublas", "sm90_", "sm80_", "gemv", "splitk")):
        return "matmul (cuBLAS)"
    return "other"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("csv")
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--top", type=int, default=25)
    a = p.parse_args()
    lines = open(a.csv, errors="replace").read().splitlines()
    start = next((i for i, l in enumerate(lines) if l.startswith('"ID"')), None)
    if start is None:
        sys.exit("no CSV header in " + a.csv)
    rows = csv.DictReader([l for l in lines[start:] if l.startswith('"')])
    total, calls, by_cat = defaultdict(float), defaultdict(int), defaultdict(float)
    for r in rows:
        if r.get("Metric Name") != "gpu__time_duration.sum":
            continue
        ms = float(r["Metric Value"].replace(",", "")) * UNITS.get(r["Metric Unit"].strip(), float("nan"))
        k = short(r["Kernel Name"])
        total[k] += ms
        calls[k] += 1
        by_cat[category(k)] += ms
    all_ms = sum(total.values())
    if not total:
        sys.exit("no kernel durations in " + a.csv)
    s = a.steps
    print(f"kernel time per step {all_ms / s:.2f} ms over {sum(calls.values()) / s:.0f} launches "
          f"(mean of {s} profiled steps, kernels serialized by ncu)")
    for c, ms in sorted(by_cat.items(), key=lambda kv: -kv[1]):
        print(f"  {c:<20} {ms / s:9.2f} ms {100 * ms / all_ms:6.1f} %")
    print(f"{'kernel':<90} {'calls':>6} {'ms/step':>9} {'share':>7}")
    for k, ms in sorted(total.items(), key=lambda kv: -kv[1])[: a.top]:
        print(f"{k:<90} {calls[k] / s:6.1f} {ms / s:9.3f} {100 * ms / all_ms:6.1f} %")


if __name__ == "__main__":
    main()
