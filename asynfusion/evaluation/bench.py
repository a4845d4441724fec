"""`python -m asynfusion bench AUDIO`: the paper's efficiency tables (3 and 4) on this machine.

For DDIM 25/25, sync LCM 8/8 and async LCM 4/8: network evaluations, seconds and counted FLOPs
per branch, feature / sampling / stitching seconds, total generation seconds and the real-time
factor, each the median of `--repeats` runs after a warm-up. Then what each interaction variant of
the same model costs with async LCM (the cost only: the variants' weights are untrained), and the
rendering rate of the mesh video. The machine (CPU model, cores, torch threads, GPU) is printed
with the results, and `--json` gives all of it as one object.
"""

import json
import os
import platform
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

MEDIAN_KEYS = ("seconds_expression", "seconds_gesture", "seconds_features", "seconds_sampling", "seconds_stitch",
               "seconds_total", "realtime_factor")


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


def matmul_peak(size: int = 1024, repeats: int = 5, budget: float = 1.0) -> dict[str, float]:
    """Measured GEMM rate of this machine in GFLOP/s, bf16 and fp32 (the best of up to `repeats` runs
    after a warm-up, within about `budget` seconds per format).

    The ceiling the sampler's FLOP rate is compared with: its matmuls are far smaller (192-wide
    layers), so it reaches a fraction of this. On a CPU without bf16 units one bf16 GEMM takes
    seconds; that first run is then the measurement (its one-off setup is noise at that length).
    """
    import torch

    rates = {}
    for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
        seconds = []
        while len(seconds) <= repeats and sum(seconds) < budget:
            start = time.perf_counter()
            torch.matmul(a, b)
            seconds.append(time.perf_counter() - start)
        best = min(seconds[1:]) if len(seconds) > 1 else seconds[0]
        rates[name] = round(2 * size**3 / best / 1e9, 1)
    return rates


def median_row(runs: list[dict]) -> dict:
    row = dict(runs[0])
    for key in MEDIAN_KEYS:
        row[key] = round(statistics.median(r[key] for r in runs), 4)
    row["threads"] = statistics.mode(r["threads"] for r in runs)  # what most of the runs had
    return row


def timed_rows(pipelines: list, samples, samplers: list[str], features, repeats: int) -> list[dict]:
    """One median row per (pipeline, sampler) pair, after one warm-up run each.

    The timed runs are interleaved (round robin over the pairs, `repeats` rounds), so a machine whose
    speed drifts during the benchmark (a busy neighbour, frequency scaling) slows every pair alike
    and the ratios between them stay fair.
    """
    from ..request import Request

    pairs = [(pipeline, Request(samples, sampler)) for pipeline, sampler in zip(pipelines, samplers)]
    for pipeline, request in pairs:
        pipeline.generate(request, features=features)  # warm-up: first calls pay one-off setup
    runs = [[] for _ in pairs]
    for _ in range(repeats):
        for i, (pipeline, request) in enumerate(pairs):
            runs[i].append(pipeline.generate(request, features=features)[1].row())
    return [median_row(r) for r in runs]


def bench_rows(pipeline, samples, repeats: int, samplers: list[str] | None = None) -> list[dict]:
    """Median rows of each sampler (default: every one in the registry); the audio features are
    computed once and timed once."""
    from ..diffusion.registry import SAMPLERS

    samplers = list(SAMPLERS) if samplers is None else samplers
    start = time.perf_counter()
    features = pipeline.features(samples)
    seconds_features = time.perf_counter() - start
    rows = timed_rows([pipeline] * len(samplers), samples, list(samplers), features, repeats)
    for row in rows:
        # the runs reused precomputed features: count the (warm) extraction once, as a real run pays it
        row["seconds_features"] = round(seconds_features, 4)
        row["seconds_total"] = round(row["seconds_total"] + seconds_features, 4)
        row["realtime_factor"] = round(row["seconds_total"] / row["audio_seconds"], 4)
    return rows


def interaction_rows(pipeline, samples, repeats: int, sampler: str | None = None) -> list[dict]:
    """What each interaction variant of this checkpoint's architecture costs with one sampler.

    The variants are built with untrained weights: time and FLOPs of dense layers do not depend on
    the values, so this is their cost, not their quality (quality: `eval --ablation`).
    """
    from ..checkpoint import untrained_checkpoint
    from ..config import INTERACTIONS
    from ..diffusion.registry import DEFAULT_SAMPLER
    from ..pipeline import Pipeline

    sampler = sampler or DEFAULT_SAMPLER
    features = pipeline.features(samples)
    variants = [Pipeline(untrained_checkpoint(replace(pipeline.config, interaction=interaction)),
                         pipeline.precision.name, device=str(pipeline.device)) for interaction in INTERACTIONS]
    rows = timed_rows(variants, samples, [sampler] * len(variants), features, repeats)
    return [{"interaction": interaction, "sampler": sampler, "seconds_sampling": row["seconds_sampling"],
             "gflops": row["gflops"],
             "parameters_millions": round(variant.checkpoint.models["diffusion"].num_parameters() / 1e6, 2)}
            for interaction, variant, row in zip(INTERACTIONS, variants, rows)]


def render_row(pipeline, samples, seconds: float, size: int, body: str | None = None) -> dict:
    """Render the default sampler's motion of the first `seconds` of the clip to an mp4 with its audio:
    frames per second."""
    import soundfile

    from ..audio import SAMPLE_RATE
    from ..render import render_video
    from ..request import Request

    clip = samples[: int(seconds * SAMPLE_RATE)]
    motion, _ = pipeline.generate(Request(clip))
    with tempfile.TemporaryDirectory(prefix="asynfusion-bench-") as folder:
        audio = Path(folder) / "clip.wav"
        soundfile.write(audio, clip, SAMPLE_RATE)
        stats = render_video([motion], str(audio), Path(folder) / "clip.mp4", body_path=body, size=size,
                             progress=lambda done, total: None)
    return {"size": size, "frames": stats["frames"], "seconds": round(stats["seconds"], 3),
            "fps": round(stats["fps"], 1), "video_seconds": round(stats["video_seconds"], 2)}


def run_bench(args) -> None:
    from ..audio import load_audio
    from ..pipeline import Pipeline

    samples = load_audio(args.audio, args.max_seconds)
    pipeline = Pipeline(args.checkpoint, args.precision)
    report = {
        "machine": machine_description(),
        "matmul_gflops_per_second": matmul_peak(),
        "checkpoint": str(pipeline.checkpoint.path),
        "trained_on": pipeline.checkpoint.info.get("trained_on"),
        "precision": pipeline.precision.name,
        "precision_reason": pipeline.precision.reason,
        "repeats": args.repeats,
        "samplers": bench_rows(pipeline, samples, args.repeats),
        "interactions": [] if args.no_variants else interaction_rows(pipeline, samples, args.repeats),
        "render": None if args.render_seconds <= 0 else
        render_row(pipeline, samples, args.render_seconds, args.size, args.body),
    }
    print(json.dumps(report, indent=2) if args.json else format_report(report))


def threads_used(rows: list[dict]) -> str:
    """'2', or '1-2' where other work held a core during some runs (the pipeline then samples on fewer)."""
    used = sorted({r.get("threads", 0) for r in rows})
    return str(used[0]) if len(used) == 1 else f"{used[0]}-{used[-1]} (fewer while other work held the cores)"


def format_report(report: dict) -> str:
    from ..diffusion.registry import REFERENCE_SAMPLER, SAMPLERS

    rows = report["samplers"]
    lines = [f"machine: {report['machine']}",
             f"precision: {report['precision']} ({report['precision_reason']}); torch threads for sampling: "
             f"{threads_used(rows)}",
             f"checkpoint: {report['checkpoint']} (trained on: {report['trained_on']}); median of "
             f"{report['repeats']} runs after a warm-up; audio {rows[0]['audio_seconds']:.2f} s", ""]
    peak = report["matmul_gflops_per_second"]
    lines.insert(1, f"measured matmul peak (1024x1024 GEMM): bf16 {peak['bf16']:.0f} GFLOP/s, "
                    f"fp32 {peak['fp32']:.0f} GFLOP/s")
    header = (f"{'sampler':<10} {'steps E/G':>9} {'NFE E+G':>8} {'s expr':>7} {'s gest':>7} {'s feat':>7} "
              f"{'s stitch':>8} {'s total':>8} {'GFLOP E':>8} {'GFLOP G':>8} {'GFLOP/s':>8} {'RTF':>7} "
              f"{'vs ' + SAMPLERS[REFERENCE_SAMPLER].label:>8}")
    lines += [header, "-" * len(header)]
    reference = next((r["seconds_total"] for r in rows if r["sampler"] == REFERENCE_SAMPLER), None)
    for r in rows:
        speedup = f"{reference / r['seconds_total']:.2f}x" if reference else "-"
        lines.append(
            f"{r['sampler']:<10} {r['steps_expression']:>4}/{r['steps_gesture']:<4} "
            f"{r['nfe_expression']:>3}+{r['nfe_gesture']:<4} {r['seconds_expression']:>7.3f} "
            f"{r['seconds_gesture']:>7.3f} {r['seconds_features']:>7.3f} {r['seconds_stitch']:>8.3f} "
            f"{r['seconds_total']:>8.3f} {r['gflops_expression']:>8.1f} {r['gflops_gesture']:>8.1f} "
            f"{r['gflops'] / max(r['seconds_sampling'], 1e-9):>8.0f} {r['realtime_factor']:>7.4f} {speedup:>8}")
    for r in rows:
        if r.get("guidance", "none") != "none":
            lines.append(f"{r['sampler']}: classifier-free guidance {r['guidance']}: a guided step evaluates each "
                         "window with and without its audio (both counted in NFE, seconds and GFLOPs)")
    if report["interactions"]:
        base = next(r["seconds_sampling"] for r in report["interactions"] if r["interaction"] == "none")
        lines += ["", f"interaction variants ({report['interactions'][0]['sampler']}, cost only: untrained weights)",
                  f"{'interaction':<12} {'params (M)':>10} {'GFLOPs':>8} {'s sampling':>10} {'vs none':>8}"]
        for r in report["interactions"]:
            lines.append(f"{r['interaction']:<12} {r['parameters_millions']:>10.2f} {r['gflops']:>8.1f} "
                         f"{r['seconds_sampling']:>10.3f} {r['seconds_sampling'] / base:>7.2f}x")
    if report["render"]:
        r = report["render"]
        lines += ["", f"rendering: {r['frames']} frames ({r['video_seconds']:.1f} s of video) at {r['size']} px in "
                  f"{r['seconds']:.2f} s = {r['fps']:.1f} fps (mesh, H.264 + AAC)"]
    return "\n".join(lines)
