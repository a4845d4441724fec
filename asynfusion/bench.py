"""`python -m asynfusion bench AUDIO`: the paper's efficiency tables (3 and 4) on this machine.

Median seconds of each sampler after a warm-up, NFE, counted FLOPs and seconds per branch, the
real-time factor, and the machine it ran on.
"""

import json
import os
import platform
import statistics
from pathlib import Path


def machine_description() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    threads = torch.get_num_threads()
    return f"{cpu}; {os.cpu_count()} cores, torch {torch.__version__} with {threads} threads; GPU: {gpu}"


def bench_rows(pipeline, samples, repeats: int, samplers=("ddim", "sync-lcm", "async-lcm")) -> list[dict]:
    """Median over `repeats` timed runs of each sampler, after one warm-up run each."""
    features = pipeline.features(samples)
    rows = []
    for name in samplers:
        pipeline.generate(samples, name, features=features)  # warm-up
        runs = [pipeline.generate(samples, name, features=features)[1].row() for _ in range(repeats)]
        row = dict(runs[0])
        for key in ("seconds_expression", "seconds_gesture", "seconds_total", "realtime_factor"):
            row[key] = round(statistics.median(r[key] for r in runs), 4)
        rows.append(row)
    return rows


def run_bench(args) -> None:
    from .audio import load_audio
    from .pipeline import Pipeline

    samples = load_audio(args.audio, args.max_seconds)
    pipeline = Pipeline(args.checkpoint, args.precision)
    rows = bench_rows(pipeline, samples, args.repeats)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"machine: {machine_description()}")
    print(f"checkpoint: {pipeline.checkpoint.path} (trained on: {pipeline.checkpoint.info.get('trained_on')}); "
          f"precision {args.precision}; median of {args.repeats} runs after a warm-up")
    header = f"{'sampler':<10} {'steps E/G':>9} {'NFE E+G':>8} {'s expr':>8} {'s gest':>8} {'s total':>8} " \
             f"{'GFLOPs':>8} {'RTF':>7} {'speed-up':>8}"
    print(header)
    print("-" * len(header))
    ddim = next((r["seconds_total"] for r in rows if r["sampler"] == "ddim"), None)
    for r in rows:
        speedup = f"{ddim / r['seconds_total']:.2f}x" if ddim else "-"
        print(f"{r['sampler']:<10} {r['steps_expression']:>4}/{r['steps_gesture']:<4} "
              f"{r['nfe_expression']:>3}+{r['nfe_gesture']:<4} {r['seconds_expression']:>8.3f} "
              f"{r['seconds_gesture']:>8.3f} {r['seconds_total']:>8.3f} {r['gflops']:>8.1f} "
              f"{r['realtime_factor']:>7.4f} {speedup:>8}")
    print(f"audio: {rows[0]['audio_seconds']:.2f} s")
