#!/usr/bin/env python3
"""Where a step's GPU time goes, from a Kineto trace written by `parcae-train --profile`.

  trace_summary.py TRACE.json [--steps N]

Prints kernel time per step by category and by the ATen operator that launched the kernel,
launches per step, and the fraction of the traced window in which the GPU ran no kernel.
"""
import argparse
import bisect
import collections
import json

AUTOGRAD_PREFIX = "autograd::engine::evaluate_function:"


def category(name):
    n = name.lower()
    if "parcae" in n or "rms_norm" in n or "attention_inputs" in n or "relu_squared" in n \
            or "softmax_cross_entropy" in n:
        return "fused (ours)"
    # Before the matrix multiplies: cuDNN's attention kernels are named like them (sm90_, wgmma).
    if "flash" in n or "fmha" in n or "cudnn" in n or "sdpa" in n or "attention" in n:
        return "attention"
    if "nvjet" in n or "gemm" in n or "cutlass" in n or "xmma" in n or "sm90_" in n:
        return "matrix multiplies"
    if "adam" in n or "multi_tensor" in n or "foreach" in n:
        return "optimizer (multi-tensor)"
    if "copy" in n or "cast" in n:
        return "copies and casts"
    if "reduce" in n or "norm" in n or "softmax" in n:
        return "reductions, norms, softmax"
    if "elementwise" in n or "vectorized" in n or "unrolled" in n:
        return "element-wise"
    return "other"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trace")
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps in the trace")
    parser.add_argument("--top", type=int, default=40, help="rows of the per-node table")
    args = parser.parse_args()
    with open(args.trace) as f:
        events = json.load(f)["traceEvents"]

    kernels = [e for e in events if e.get("cat") == "kernel" and "dur" in e]
    runtime = {e["args"]["correlation"]: e for e in events
               if e.get("cat") == "cuda_runtime" and "correlation" in e.get("args", {})}
    ops = sorted((e for e in events if e.get("cat") == "cpu_op" and "dur" in e),
                 key=lambda e: e["ts"])
    # The innermost operator around each launch, on the launching thread.
    by_thread = collections.defaultdict(list)
    for op in ops:
        by_thread[op["tid"]].append(op)
    starts = {tid: [op["ts"] for op in lst] for tid, lst in by_thread.items()}

    def enclosing(launch):
        """The operators around a launch on its thread, innermost first."""
        lst, ts = by_thread.get(launch["tid"], []), starts.get(launch["tid"], [])
        around = []
        last = bisect.bisect_right(ts, launch["ts"]) - 1
        for i in range(last, max(-1, last - 400), -1):
            op = lst[i]
            if op["ts"] <= launch["ts"] <= op["ts"] + op["dur"]:
                around.append(op)
        return sorted(around, key=lambda op: op["dur"])

    def node(around):
        """The autograd node that ran the launch, or "forward"."""
        for op in around:
            if op["name"].startswith(AUTOGRAD_PREFIX):
                return op["name"][len(AUTOGRAD_PREFIX):].strip()
        return "forward"

    def shapes(op):
        dims = op.get("args", {}).get("Input Dims")
        return str([d for d in dims if d]) if dims else ""

    by_category = collections.Counter()
    by_operator = collections.Counter()
    launches_by_operator = collections.Counter()
    by_node_operator = collections.Counter()
    launches_by_node_operator = collections.Counter()
    for k in kernels:
        cat = category(k["name"])
        by_category[cat] += k["dur"]
        launch = runtime.get(k.get("args", {}).get("correlation"))
        around = enclosing(launch) if launch else []
        op = around[0]["name"] if around else "(no operator)" if launch else "(unknown)"
        by_operator[op] += k["dur"]
        launches_by_operator[op] += 1
        if cat not in ("matrix multiplies", "attention"):
            where = (node(around), op, shapes(around[0]) if around else "")
            by_node_operator[where] += k["dur"]
            launches_by_node_operator[where] += 1

    begin = min(k["ts"] for k in kernels)
    end = max(k["ts"] + k["dur"] for k in kernels)
    busy, cursor = 0.0, begin
    for k in sorted(kernels, key=lambda k: k["ts"]):
        start, stop = max(k["ts"], cursor), k["ts"] + k["dur"]
        if stop > start:
            busy += stop - start
            cursor = stop
    steps = args.steps
    total = sum(by_category.values())
    print(f"{len(kernels) / steps:.0f} kernels per step, {(end - begin) / 1e3 / steps:.1f} ms "
          f"per step from first to last kernel, GPU idle {100 * (1 - busy / (end - begin)):.1f}%")
    print(f"kernel time per step: {total / 1e3 / steps:.1f} ms")
    for name, us in by_category.most_common():
        print(f"  {name:28s} {us / 1e3 / steps:8.2f} ms  {100 * us / total:5.1f}%")
    print("by launching operator (top 20):")
    for name, us in by_operator.most_common(20):
        print(f"  {name:40s} {us / 1e3 / steps:8.2f} ms  {launches_by_operator[name] / steps:6.0f} launches")
    print(f"outside matrix multiplies and attention, by autograd node, operator and input shapes "
          f"(top {args.top}):")
    for (where, name, dims), us in by_node_operator.most_common(args.top):
        launches = launches_by_node_operator[(where, name, dims)] / steps
        print(f"  {us / 1e3 / steps:7.2f} ms {launches:5.0f}x  {where} / {name} {dims}")


if __name__ == "__main__":
    main()
