#!/usr/bin/env python3
"""Trainer throughput on one GPU: parcae-train against the plain-PyTorch peer, in one run.

Trains each configuration with parcae-train (fused kernels, and the ATen compositions for the
loss check), with the peer (eager and torch.compile) and, when given, with a baseline build of
parcae-train; measures a bf16 GEMM ceiling; prints one table and writes every figure as JSON.

  trainer_bench.py --trainer build-gpu/bin/parcae-train --peer PATH --out DIR
                   [--baseline BIN] [--steps 40] [--only NAME,...] [--no-peer]

Configurations (65,536 tokens per optimizer step, bf16):
  transformer-140m     Transformer-140M, 32 x 2048
  parcae-140m-mu8      Parcae-140M, mu_rec 8 / mu_bwd 4, per-sequence depths, 32 x 2048
  parcae-140m-mu4      Parcae-140M, mu_rec 4 / mu_bwd 2, per-sequence depths, 32 x 2048
  small-mu4            the study's byte-level Parcae (width 256, context 256, 5.1M parameters),
                       mu_rec 4, micro-batch 64; one trainer, and four packed on the GPU

The peer samples one depth per micro-batch; parcae-train keeps per-sequence depths. Model FLOPs
per token are sweeps::model_flops_per_token (docs/flops.md), the same for both; MFU and HFU use
a peak of 989 TFLOP/s. Text is byte-level, from the machine's licence files, so that the loss
check sees a loss that falls.
"""
import argparse
import glob
import json
import os
import random
import statistics
import struct
import subprocess
import sys
import time

PEAK_FLOPS = 989e12
BATCH_TOKENS = 65536

CONFIGS = {
    "transformer-140m": {
        "model": "transformer-140m",
        "micro": 32,
        "peer": ["--model", "gpt", "--layers", "6"],
        "label": "Transformer-140M",
    },
    "parcae-140m-mu8": {
        "model": {"preset": "parcae-140m", "mean_recurrence": 8, "mean_backward": 4},
        "micro": 32,
        "peer": ["--model", "parcae", "--plc", "2/2/2", "--mu", "8", "--bwd", "4"],
        "label": "Parcae-140M mu8/4",
    },
    "parcae-140m-mu4": {
        "model": {"preset": "parcae-140m", "mean_recurrence": 4, "mean_backward": 2},
        "micro": 32,
        "peer": ["--model", "parcae", "--plc", "2/2/2", "--mu", "4", "--bwd", "2"],
        "label": "Parcae-140M mu4/2",
    },
    "small-mu4": {
        "model": {
            "preset": "parcae-tiny", "name": "parcae-d256", "d_model": 256, "n_heads": 4,
            "head_dim": 64, "d_ff": 1024, "vocab_size": 256, "context_length": 256,
            "n_prelude": 2, "n_recurrent": 2, "n_coda": 2, "mean_recurrence": 4,
        },
        "micro": 64,
        "peer": None,
        "label": "study d256 mu4",
        "packed": 4,
    },
}


def log(message):
    print(f"trainer-bench: {message}", file=sys.stderr, flush=True)


def write_shard(path, data):
    header = struct.pack("<256i", 20240520, 1, len(data), *([0] * 253))
    with open(path, "wb") as f:
        f.write(header)
        f.write(struct.pack("<%dH" % len(data), *data))


def make_text_shards(folder):
    """Byte-level shards of the machine's licence texts, topped up with generated sentences."""
    os.makedirs(folder, exist_ok=True)
    train, val = os.path.join(folder, "train_000000.bin"), os.path.join(folder, "val_000000.bin")
    if os.path.exists(train) and os.path.exists(val):
        return train, val
    parts = []
    for pattern in ("/usr/share/common-licenses/*", "/usr/share/doc/*/copyright",
                    os.path.join(os.path.dirname(os.__file__), "*.py")):
        for path in sorted(glob.glob(pattern)):
            try:
                with open(path, "rb") as f:
                    parts.append(f.read())
            except OSError:
                pass
    text = b"\n".join(parts)[:6_000_000]
    rng = random.Random(0)
    words = [b"the cat", b"a dog", b"sees", b"follows", b"the moon", b"a red apple", b"seven"]
    while len(text) < 4_000_000:
        text += b" ".join(rng.choice(words) for _ in range(6)) + b". "
    split = len(text) - len(text) // 20
    write_shard(train, text[:split])
    write_shard(val, text[split:])
    log(f"{split:,} training and {len(text) - split:,} validation bytes in {folder}")
    return train, val


def job_file(folder, name, config, steps, shards):
    model = config["model"]
    mu = model.get("mean_recurrence") if isinstance(model, dict) else None
    job = {
        "sweep": "trainer-bench", "cell": name, "train_tokens": steps * BATCH_TOKENS, "seed": 1,
        "model": model,
        "training": {"batch_tokens": BATCH_TOKENS, "micro_batch_size": config["micro"],
                     "precision": "bf16"},
        "eval": {"depths": [mu] if mu else [1], "interval_steps": 0, "val_sequences": 16},
        "data": {"train_shards": [shards[0]], "val_shards": [shards[1]]},
        "device": "cuda",
    }
    path = os.path.join(folder, f"{name}.json")
    with open(path, "w") as f:
        json.dump(job, f, indent=1)
    return path


def read_events(path):
    events = {"step": [], "start": None, "done": None, "error": None}
    with open(path) as f:
        for line in f:
            event = json.loads(line)
            kind = event.get("event")
            if kind == "step":
                events["step"].append(event)
            elif kind in ("start", "done", "error"):
                events[kind] = event
    return events


def summarise_trainer(events, warmup, model_flops=None):
    steps = events["step"][warmup:]
    if not steps or events["done"] is None:
        return {"error": (events["error"] or {}).get("message", "no done event")}
    tps = statistics.median(s["tokens_per_s"] for s in steps)
    # Builds older than the model_flops_per_token field take the figure of the current build.
    model_flops = events["start"].get("model_flops_per_token", model_flops)
    executed = [s.get("executed_model_flops_per_token", model_flops) for s in steps]
    return {
        "tokens_per_s": tps,
        "mfu": model_flops * tps / PEAK_FLOPS,
        "hfu": statistics.mean(executed) * tps / PEAK_FLOPS,
        "peak_gib": events["done"]["peak_memory_bytes"] / 2**30,
        "loss_last": events["step"][-1]["loss"],
        "steps": len(events["step"]),
        "mean_depth": statistics.mean(s.get("mean_depth", 1.0) for s in steps),
        "executed_depth": statistics.mean(s.get("executed_depth", 1.0) for s in steps),
        "model_flops_per_token": model_flops,
    }


def run_trainer(binary, job, out_dir, extra=(), wait=True):
    if os.path.exists(out_dir):
        subprocess.run(["rm", "-rf", out_dir], check=True)
    os.makedirs(out_dir)
    command = [binary, "--job", job, "--out", out_dir, *extra]
    log_file = open(os.path.join(out_dir, "stderr.log"), "w")
    process = subprocess.Popen(command, stderr=log_file, stdout=log_file)
    if not wait:
        return process
    process.wait()
    return process


def trainer_result(out_dir, warmup, returncode, model_flops=None):
    path = os.path.join(out_dir, "events.jsonl")
    if not os.path.exists(path):
        return {"error": f"exit {returncode}, no events"}
    result = summarise_trainer(read_events(path), warmup, model_flops)
    result["exit"] = returncode
    return result


def gemm_ceiling():
    import torch
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(20):
        a @ b
    end.record()
    torch.cuda.synchronize()
    seconds = start.elapsed_time(end) / 1e3
    return {"tflops": 20 * 2 * 8192**3 / seconds / 1e12, "device": torch.cuda.get_device_name(),
            "torch": torch.__version__}


def run_peer(peer, args, mode, out_file, label, timeout):
    command = [sys.executable, peer, "run", *args, "--mode", mode, "--mb", "32", "--out", out_file,
               "--label", label]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    try:
        subprocess.run(command, env=env, timeout=timeout, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout} s"}
    records = []
    if os.path.exists(out_file):
        with open(out_file) as f:
            records = [json.loads(line) for line in f if line.strip()]
    for record in reversed(records):
        if record.get("label") == label and record.get("mode") == mode:
            if "error" in record:
                return {"error": record["error"]}
            return {"tokens_per_s": record["tokens_per_s"],
                    "peak_gib": record.get("peak_mem_alloc_GiB"),
                    "peer_mfu": record.get("mfu_ours"),
                    "loss_last": record.get("final_loss")}
    return {"error": "no result"}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trainer", default="build-gpu/bin/parcae-train")
    parser.add_argument("--baseline", help="another parcae-train build, run on the same jobs")
    parser.add_argument("--peer-configs", default="",
                        help="comma-separated configurations for the peer (default: all)")
    parser.add_argument("--baseline-configs", default="",
                        help="comma-separated configurations for the baseline (default: all)")
    parser.add_argument("--peer", default=os.path.join(os.path.dirname(__file__),
                                                       "../../shared/peers/pytorch_bench.py"))
    parser.add_argument("--out", default="build-gpu/trainer-bench")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=10, help="steps left out of the medians")
    parser.add_argument("--only", default="", help="comma-separated configuration names")
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--no-aten", action="store_true", help="skip the ATen loss check")
    parser.add_argument("--profile", action="store_true", help="Kineto trace of 3 fused steps")
    args = parser.parse_args()

    names = [n for n in args.only.split(",") if n] or list(CONFIGS)
    os.makedirs(args.out, exist_ok=True)
    shards = make_text_shards(os.path.abspath(os.path.join(args.out, "data")))
    results = {"date": time.strftime("%Y-%m-%d"), "steps": args.steps, "warmup": args.warmup,
               "configs": {}}
    try:
        results["gemm"] = gemm_ceiling()
        log(f"bf16 GEMM 8192^3: {results['gemm']['tflops']:.0f} TFLOP/s on "
            f"{results['gemm']['device']}")
    except Exception as error:  # no torch or no GPU: the table still has the trainer's figures
        results["gemm"] = {"error": repr(error)}

    for name in names:
        config = CONFIGS[name]
        entry = results["configs"].setdefault(name, {"label": config["label"]})
        job = job_file(args.out, name, config, args.steps, shards)
        extra = []
        if args.profile:
            extra = ["--profile", os.path.join(args.out, f"{name}.trace.json")]
        started = time.time()
        process = run_trainer(args.trainer, job, os.path.join(args.out, name, "fused"), extra)
        entry["fused"] = trainer_result(os.path.join(args.out, name, "fused"), args.warmup,
                                        process.returncode)
        log(f"{name} fused: {entry['fused']} ({time.time() - started:.0f} s)")
        if not args.no_aten:
            process = run_trainer(args.trainer, job, os.path.join(args.out, name, "aten"),
                                  ["--kernels", "aten"])
            entry["aten"] = trainer_result(os.path.join(args.out, name, "aten"), args.warmup,
                                           process.returncode)
            log(f"{name} aten: {entry['aten']}")
        baseline_names = [n for n in args.baseline_configs.split(",") if n] or names
        if args.baseline and name in baseline_names:
            process = run_trainer(args.baseline, job, os.path.join(args.out, name, "baseline"))
            entry["baseline"] = trainer_result(os.path.join(args.out, name, "baseline"),
                                               args.warmup, process.returncode,
                                               entry["fused"].get("model_flops_per_token"))
            log(f"{name} baseline: {entry['baseline']}")
        if config.get("packed"):
            processes = [run_trainer(args.trainer, job,
                                     os.path.join(args.out, name, f"packed{i}"), wait=False)
                         for i in range(config["packed"])]
            for p in processes:
                p.wait()
            parts = [trainer_result(os.path.join(args.out, name, f"packed{i}"), args.warmup,
                                    p.returncode) for i, p in enumerate(processes)]
            entry["packed"] = {"trainers": len(parts),
                               "tokens_per_s": sum(p.get("tokens_per_s", 0.0) for p in parts),
                               "parts": parts}
            log(f"{name} packed x{len(parts)}: {entry['packed']['tokens_per_s']:,.0f} tokens/s")
        peer_names = [n for n in args.peer_configs.split(",") if n] or names
        if config["peer"] and not args.no_peer and name in peer_names:
            for mode, timeout in (("eager", 180), ("compile", 300)):
                entry[mode] = run_peer(args.peer, config["peer"], mode,
                                       os.path.join(args.out, "peer.jsonl"), name, timeout)
                log(f"{name} peer {mode}: {entry[mode]}")

    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    print_table(results)


def fmt(value, spec):
    return format(value, spec) if isinstance(value, (int, float)) else "-"


def print_table(results):
    gemm = results.get("gemm", {})
    print(f"device: {gemm.get('device', '?')}, torch {gemm.get('torch', '?')}, "
          f"bf16 GEMM ceiling {fmt(gemm.get('tflops'), '.0f')} TFLOP/s; "
          f"{results['steps']} steps, medians after {results['warmup']}")
    print("| configuration | ours tok/s | MFU | HFU | peak GiB | eager tok/s | compile tok/s | "
          "ours/eager | ours/compile | compile GiB | loss fused / aten |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, entry in results["configs"].items():
        ours = entry.get("fused", {})
        eager, compiled = entry.get("eager", {}), entry.get("compile", {})
        tps = ours.get("tokens_per_s")
        ratio = lambda other: fmt(tps / other["tokens_per_s"], ".2f") \
            if tps and other.get("tokens_per_s") else "-"
        aten = entry.get("aten", {})
        print(f"| {entry['label']} | {fmt(tps, ',.0f')} | {fmt(ours.get('mfu', None) and 100 * ours['mfu'], '.1f')}% "
              f"| {fmt(ours.get('hfu', None) and 100 * ours['hfu'], '.1f')}% | {fmt(ours.get('peak_gib'), '.1f')} "
              f"| {fmt(eager.get('tokens_per_s'), ',.0f')} | {fmt(compiled.get('tokens_per_s'), ',.0f')} "
              f"| {ratio(eager)} | {ratio(compiled)} | {fmt(compiled.get('peak_gib'), '.1f')} "
              f"| {fmt(ours.get('loss_last'), '.4f')} / {fmt(aten.get('loss_last'), '.4f')} |")
    for name, entry in results["configs"].items():
        if "baseline" in entry and entry["baseline"].get("tokens_per_s"):
            base = entry["baseline"]["tokens_per_s"]
            tps = entry.get("fused", {}).get("tokens_per_s", 0.0)
            print(f"{entry['label']}: baseline build {base:,.0f} tokens/s, this build "
                  f"{tps:,.0f} ({tps / base:.2f}x)")
        if "packed" in entry:
            print(f"{entry['label']}: {entry['packed']['trainers']} trainers packed on the GPU "
                  f"{entry['packed']['tokens_per_s']:,.0f} tokens/s together")
        if "aten" in entry and entry["aten"].get("tokens_per_s"):
            print(f"{entry['label']}: ATen compositions {entry['aten']['tokens_per_s']:,.0f} "
                  f"tokens/s, loss after {entry['aten']['steps']} steps "
                  f"{entry['aten']['loss_last']:.4f} (fused {entry['fused'].get('loss_last', float('nan')):.4f})")


if __name__ == "__main__":
    main()
