"""The paper's tables on the held-out split: `python -m asynfusion eval --data DIR [--checkpoint DIR] ...`.

    Table 1  ground truth, the rule-based baseline and each sampler of the checkpoint:
             FMD / FED / FGD, BA, Div, lip-sync, calm in pauses (jaw, arms), face-body coherence
    Table 2  the interaction ablation: the checkpoint and each --ablation checkpoint (rows named by
             their config.interaction), with the default sampler when all have its weights
    Table 3  every sampler of the registry: generation seconds summed over clips, and FMD
    Seeds    a few clips generated with two seeds: how far the gestures differ, and the lip-sync of each

Every generated clip is compared with the ground truth of the same clips (metrics.py); Fréchet
distances use the latents of the shipped motion autoencoder (autoencoder.py, or
$ASYNFUSION_AUTOENCODER). Deterministic: fixed seeds for the model and for the baseline. Each clip is
sampled from its own seed (seeding.clip_seed): independent draws, like the data's clips; one seed for
every clip would give every clip the same starting noise and collapse the spread across clips (on
checkpoint v8, DDIM seed 0: FMD 20.2 instead of 3.3, Div 9.5 instead of 12.4).
"""

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..audio import SAMPLE_RATE
from ..data.baseline import animate, loudness_envelope
from ..data.beat2 import Clip, expression_space, load_clips
from ..diffusion.registry import DEFAULT_SAMPLER, SAMPLERS, best_available
from ..errors import InputError
from ..motion import GESTURE_JOINTS, UPPER_BODY_JOINTS, Motion
from ..seeding import clip_seed
from . import metrics
from .autoencoder import MotionAutoencoder, load_autoencoder

SPLIT = "test"
SEEDS = (0, 1)          # the seed-variety check generates each of its clips with both
SEED_CLIPS = 3          # ... on this many clips
BASELINE_SEED = 1_000_000  # the corpus animated clip i with seed i (corpus/make.py): the baseline must not replay it
DIV_WINDOW = 64         # frames per window of the diversity measure


@dataclass
class Reference:
    """What every method is scored against: the held-out clips and their ground truth."""

    clips: list[Clip]
    loudness: list[np.ndarray]        # per clip (T,), what the jaw should follow
    onsets: list[np.ndarray]          # per clip, audio onset times (s)
    latents: dict[str, np.ndarray]    # ground-truth autoencoder latents per branch
    upper_body_speed: np.ndarray      # (13,) mean ground-truth speed per upper-body joint (BA's normalizer)


@dataclass
class Method:
    """One row's motions on the reference clips and what generating them cost."""

    name: str
    motions: list[Motion]
    clip_seconds: list[float] = field(default_factory=list)  # generation time of each clip
    info: dict = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return float(sum(self.clip_seconds)) if self.clip_seconds else float("nan")


# ----------------------------------------------------------------------------
# Scoring
# ----------------------------------------------------------------------------
def build_reference(clips: list[Clip], autoencoder: MotionAutoencoder) -> Reference:
    motions = [clip.motion for clip in clips]
    positions = [metrics.joint_positions(m.poses)[:, UPPER_BODY_JOINTS] for m in motions]
    return Reference(
        clips=clips,
        loudness=[loudness_envelope(clip.samples, clip.motion.num_frames) for clip in clips],
        onsets=[metrics.audio_onsets(clip.samples) for clip in clips],
        latents=autoencoder.latents(*autoencoder.motion_windows(motions)),
        upper_body_speed=np.concatenate([metrics.speed(p) for p in positions]).mean(0))


def fid_scores(motions: list[Motion], reference: Reference, autoencoder: MotionAutoencoder) -> dict[str, float]:
    """FMD (both latents), FED (expression) and FGD (gesture) against the ground truth."""
    latents = autoencoder.latents(*autoencoder.motion_windows(motions))
    if min(len(latents["gesture"]), len(reference.latents["gesture"])) < 2:
        return {"fmd": float("nan"), "fed": float("nan"), "fgd": float("nan")}

    def both(x):
        return np.concatenate([x["expression"], x["gesture"]], axis=1)
    return {"fmd": metrics.frechet_distance(both(latents), both(reference.latents)),
            "fed": metrics.frechet_distance(latents["expression"], reference.latents["expression"]),
            "fgd": metrics.frechet_distance(latents["gesture"], reference.latents["gesture"])}


def score(motions: list[Motion], reference: Reference, autoencoder: MotionAutoencoder,
          distances: bool = True) -> dict[str, float]:
    """Every Table-1 metric of one method's motions (aligned with reference.clips)."""
    ba, lips, calm_jaw, calm_arms, intensity, energy, windows = [], [], [], [], [], [], []
    for motion, loudness, onsets in zip(motions, reference.loudness, reference.onsets):
        positions = metrics.joint_positions(motion.poses)
        jaw = metrics.jaw_opening(motion)
        ba.append(metrics.beat_alignment(onsets, metrics.speed(positions[:, UPPER_BODY_JOINTS]),
                                         reference.upper_body_speed))
        lips.append(metrics.lip_sync(jaw, loudness))
        jaw_ratio, arm_ratio = metrics.calm_in_pauses(jaw, positions, loudness)
        calm_jaw.append(jaw_ratio)
        calm_arms.append(arm_ratio)
        intensity.append(metrics.expression_intensity(motion))
        energy.append(metrics.gesture_energy(positions))
        gesture = positions[:, GESTURE_JOINTS]
        windows += [gesture[s:s + DIV_WINDOW] for s in range(0, len(gesture) - DIV_WINDOW + 1, DIV_WINDOW)]
    row = fid_scores(motions, reference, autoencoder) if distances else \
        {"fmd": float("nan"), "fed": float("nan"), "fgd": float("nan")}
    return {**row, "ba": _mean(ba),
            "div": metrics.l1_diversity(np.stack(windows)) if windows else float("nan"),
            "lip_sync": _mean(lips), "calm_jaw": _mean(calm_jaw), "calm_arms": _mean(calm_arms),
            "coherence": metrics.coherence(intensity, energy)}


def _mean(values) -> float:
    values = [v for v in values if not math.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


# ----------------------------------------------------------------------------
# Generating
# ----------------------------------------------------------------------------
def rule_based(clips: list[Clip]) -> Method:
    motions, seconds = [], []
    for i, clip in enumerate(clips):
        start = time.perf_counter()
        motions.append(animate(clip.samples, seed=BASELINE_SEED + i))
        seconds.append(time.perf_counter() - start)
    return Method("rule-based", motions, seconds)


class Generator:
    """A checkpoint's pipeline with its audio features computed once per clip, reused by every sampler and seed."""

    def __init__(self, checkpoint, clips: list[Clip]):
        from ..pipeline import Pipeline
        from ..request import Request

        self.pipeline = Pipeline(checkpoint)
        self.clips = clips
        self.features = [self.pipeline.features(clip.samples) for clip in clips]
        self.cache: dict[tuple[str, int], Method] = {}
        warm_up = clips[0].samples[:SAMPLE_RATE]  # first calls pay one-off setup: keep it out of Table 3's timings
        for sampler in SAMPLERS:
            self.pipeline.generate(Request(warm_up, sampler))

    @property
    def label(self) -> str:
        path = self.pipeline.checkpoint.path
        return f"{path}" + ("" if self.pipeline.checkpoint.trained else " (UNTRAINED)")

    def generate(self, sampler: str, seed: int = 0, num_clips: int | None = None) -> Method:
        """The first `num_clips` clips (default all) with one sampler and seed; cached."""
        key = (sampler, seed)
        cached = self.cache.get(key)
        count = len(self.clips) if num_clips is None else num_clips
        if cached is not None and len(cached.motions) >= count:
            return Method(cached.name, cached.motions[:count], cached.clip_seconds[:count], cached.info)
        motions, seconds, info = [], [], {}
        from ..request import Request

        pairs = list(zip(self.clips, self.features))[:count]
        for i, (clip, features) in enumerate(_progress(pairs, f"{sampler} seed {seed}")):
            request = Request(clip.samples, sampler, seed=clip_seed(seed, i))
            motion, report = self.pipeline.generate(request, features=features)
            motions.append(motion)
            seconds.append(report.seconds_total)
            info = {"steps_expression": report.sampling.steps_expression,
                    "steps_gesture": report.sampling.steps_gesture}
        method = Method(f"{sampler} {info['steps_expression']}/{info['steps_gesture']}", motions, seconds, info)
        self.cache[key] = method
        return method


def _progress(items, description: str):
    from tqdm import tqdm

    return tqdm(items, desc=description, leave=False, file=sys.stderr, mininterval=2.0)


# ----------------------------------------------------------------------------
# The tables
# ----------------------------------------------------------------------------
def evaluate(data: str, checkpoint: str | None = None, ablations: list[str] = (), num_clips: int = 0,
             autoencoder: str | None = None) -> dict:
    """All tables as one JSON-ready dict; `num_clips` > 0 keeps the first clips of the held-out split."""
    from ..checkpoint import load_checkpoint

    start = time.perf_counter()
    space = expression_space(data)
    encoder = load_autoencoder(autoencoder)
    if encoder.config.expression_space != space:
        raise InputError(f"the motion autoencoder was trained on '{encoder.config.expression_space}' expressions, "
                         f"{data} has '{space}': train one on it "
                         f"(python -m asynfusion.evaluation.autoencoder --data {data})")
    clips = load_clips(data, SPLIT)
    clips = clips[:num_clips] if num_clips > 0 else clips
    if not clips:
        raise InputError(f"no '{SPLIT}' clips in {data}")
    checkpoints = [load_checkpoint(path) for path in [checkpoint, *ablations]]
    for loaded in checkpoints:
        if loaded.config.expression_space != space:
            raise InputError(f"checkpoint {loaded.path} generates '{loaded.config.expression_space}' expressions, "
                             f"{data} has '{space}'")
    reference = build_reference(clips, encoder)
    first = Generator(checkpoints[0], clips)

    # Table 1 (and the timings of Table 3)
    truth = Method("ground truth", [clip.motion for clip in clips])
    sampled = [first.generate(sampler) for sampler in SAMPLERS]
    table1 = [{"method": truth.name, **score(truth.motions, reference, encoder, distances=False)}]
    for method in [rule_based(clips), *sampled]:
        table1.append({"method": method.name, **score(method.motions, reference, encoder)})
    fmd = {row["method"]: row["fmd"] for row in table1}

    # Table 2: one sampler for every variant, the best all of them can run
    sampler = best_available(set.intersection(*(set(c.models) for c in checkpoints)))
    table2 = []
    for loaded, generator in zip(checkpoints, [first, *(Generator(c, clips) for c in checkpoints[1:])]):
        method = generator.generate(sampler)
        row = score(method.motions, reference, encoder)
        table2.append({"interaction": loaded.config.interaction, "checkpoint": generator.label,
                       "sampler": method.name, "trained": loaded.trained,
                       **{k: row[k] for k in ("fmd", "fed", "fgd", "coherence")}})

    # Table 3
    table3 = [{"sampler": m.name, "steps_expression": m.info["steps_expression"],
               "steps_gesture": m.info["steps_gesture"], "seconds": m.seconds,
               "seconds_per_clip": m.seconds / len(clips), "fmd": fmd[m.name]} for m in sampled]

    # Gesture variety across seeds, lips in sync with each
    count = min(SEED_CLIPS, len(clips))
    runs = [first.generate(DEFAULT_SAMPLER, seed, count) for seed in SEEDS]
    seeds = []
    for i in range(count):
        gestures = [metrics.joint_positions(run.motions[i].poses)[:, GESTURE_JOINTS] for run in runs]
        seeds.append({"clip": clips[i].id, "gesture_l1": metrics.l1_diversity(np.stack(gestures)),
                      **{f"lip_sync_seed{seed}": metrics.lip_sync(metrics.jaw_opening(run.motions[i]),
                                                                   reference.loudness[i])
                         for seed, run in zip(SEEDS, runs)}})

    return {"data": str(data), "split": SPLIT, "clips": [clip.id for clip in clips],
            "audio_seconds": round(sum(len(clip.samples) for clip in clips) / SAMPLE_RATE, 2),
            "checkpoint": first.label, "trained": checkpoints[0].trained,
            "autoencoder": str(encoder.info.get("trained_on", "?")), "table1": table1, "table2": table2,
            "table3": table3, "seeds": seeds, "ablation_sampler": sampler,
            "wall_seconds": round(time.perf_counter() - start, 1)}


def _cell(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):  # untrained models reach distances in the millions: keep the columns short
        return f"{value:.3g}" if abs(value) >= 1e4 else f"{value:.{digits}f}"
    return str(value)


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def format_tables(report: dict) -> str:
    """The report as markdown: a heading and a table per section."""
    n = len(report["clips"])
    out = [f"Held-out '{report['split']}' split of {report['data']}: {n} clips, {report['audio_seconds']:.1f} s of "
           f"audio. Checkpoint: {report['checkpoint']}. FMD/FED/FGD in the latent space of the motion autoencoder "
           f"trained on {report['autoencoder']}.", ""]
    out += ["### Table 1: quality (↓ lower is better, ↑ higher)", "",
            _table(["method", "FMD ↓", "FED ↓", "FGD ↓", "BA ↑", "Div", "lip-sync ↑", "calm jaw ↓", "calm arms ↓",
                    "coherence"],
                   [[r["method"], r["fmd"], r["fed"], r["fgd"], r["ba"], r["div"], r["lip_sync"], r["calm_jaw"],
                     r["calm_arms"], r["coherence"]] for r in report["table1"]]),
            "", "BA: EMAGE's beat alignment (sigma 0.3 s). Div: mean pairwise L1 of 64-frame windows of upper-body "
            "and finger joint positions (m). lip-sync: correlation of jaw opening with loudness. calm: speed in "
            "pauses / in speech. coherence: correlation across clips of brow+smile intensity and wrist speed.", ""]
    out += [f"### Table 2: interaction ablation ({report['ablation_sampler']})", "",
            _table(["interaction", "checkpoint", "FMD ↓", "FED ↓", "FGD ↓", "coherence"],
                   [[r["interaction"], r["checkpoint"], r["fmd"], r["fed"], r["fgd"], r["coherence"]]
                    for r in report["table2"]]), ""]
    out += [f"### Table 3: samplers (generation time summed over {n} clips)", "",
            _table(["sampler", "steps E/G", "seconds", "s / clip", "FMD ↓"],
                   [[r["sampler"], f"{r['steps_expression']}/{r['steps_gesture']}", r["seconds"],
                     r["seconds_per_clip"], r["fmd"]] for r in report["table3"]]), ""]
    seeds = report["seeds"]
    means = ["mean", *(float(np.mean([s[k] for s in seeds])) for k in list(seeds[0])[1:])] if seeds else []
    label = SAMPLERS[DEFAULT_SAMPLER].label
    out += [f"### Seeds {SEEDS[0]} vs {SEEDS[1]} ({label}): gestures differ, lips stay in sync", "",
            _table(["clip", "gesture L1 between seeds", *(f"lip-sync seed {s}" for s in SEEDS)],
                   [list(s.values()) for s in seeds] + ([means] if seeds else [])), ""]
    out.append(f"eval wall time: {report['wall_seconds']:.1f} s")
    return "\n".join(out)


def _json_ready(value):
    """NaN is not JSON: write null."""
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    return value


def main(args) -> None:
    """The `eval` command: print the tables; with --json also write them there."""
    report = evaluate(args.data, args.checkpoint, args.ablation, args.clips, autoencoder=args.autoencoder)
    print(format_tables(report))
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(_json_ready(report), indent=2) + "\n")
        print(f"tables written to {path}")
