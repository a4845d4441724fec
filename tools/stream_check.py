"""Does the streamed motion move like the offline one on the same speech? (issue #22)

    .venv/bin/python tools/stream_check.py SPEECH [--checkpoint DIR] [--precision P] [--seed S]
        [--chunk S] [--lookahead S] [--shown N] [--known N] [--fast] [--save STREAMED.npz]

Streams SPEECH through the live path (asynfusion/live.py's stream_file, at a microphone's pace as
`asynfusion stream` does; --fast feeds it as fast as it goes, which gives the same motion but no
latency worth reading), then generates the same speech offline with the same checkpoint, sampler,
precision and seed, and prints one JSON object:

    latency_p50_s, latency_p95_s, kept_up   the stream's report (real time only)
    speed_ratio        streamed / offline mean upper-body joint speed (realism.statistics)
    wrist_p95_ratio    streamed / offline 95th percentile of the wrists' speed
    lip_sync_streamed, lip_sync_offline, lip_sync_ratio
                       Pearson correlation of the jaw opening with the speech's loudness (metrics.lip_sync)
    boundary_ratio     the largest joint step into the first frame of a streamed piece / the 99th
                       percentile of the steps everywhere else; a frame's step is that of its fastest
                       upper-body joint (a piece is what one `feed` returned: the exact boundaries)
    worst_phase_ratio  the mean step at the phase of a piece where it is largest / the mean step

Issue #22's targets: speed and wrist p95 0.8-1.25, lip sync ratio >= 0.8, boundary ratio <= 1.5, kept up,
p95 latency < 1.0 s. Latency wants the machine to itself.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asynfusion.audio import SAMPLE_RATE, load_audio  # noqa: E402
from asynfusion.data.corpus.cues import loudness_envelope  # noqa: E402
from asynfusion.diffusion.registry import DEFAULT_SAMPLER  # noqa: E402
from asynfusion.evaluation.metrics import jaw_opening, joint_positions, lip_sync  # noqa: E402
from asynfusion.evaluation.realism import statistics  # noqa: E402
from asynfusion.live import LiveSession, stream_file  # noqa: E402
from asynfusion.motion import UPPER_BODY_JOINTS, Motion, save_motion  # noqa: E402
from asynfusion.pipeline import Pipeline  # noqa: E402
from asynfusion.request import Request  # noqa: E402
from asynfusion.settings import LiveSettings  # noqa: E402


def largest_joint_steps(motion: Motion) -> np.ndarray:
    """(T - 1,) the step from each frame to the next of the upper-body joint that moves most, m."""
    positions = joint_positions(motion.poses.astype(np.float64))[:, UPPER_BODY_JOINTS]
    return np.linalg.norm(np.diff(positions, axis=0), axis=-1).max(1)


def boundary_ratio(motion: Motion, boundaries: np.ndarray) -> float:
    """Largest step into a boundary frame (the step from b - 1 to b) / the 99th percentile of the others."""
    steps = largest_joint_steps(motion)
    at = np.zeros(len(steps), bool)
    at[boundaries[(boundaries > 0) & (boundaries <= len(steps))] - 1] = True
    return float(steps[at].max() / np.percentile(steps[~at], 99)) if at.any() else float("nan")


def worst_phase_ratio(motion: Motion, boundaries: np.ndarray) -> float:
    """The largest mean step at one phase of a piece (0: into its first frame, 1: into its second, ...)
    / the mean step: a hitch that comes back every chunk shows here, though no boundary step is large."""
    steps = largest_joint_steps(motion)
    frame = np.arange(1, len(steps) + 1)                 # steps[i] is the step into frame i + 1
    starts = np.concatenate([[0], boundaries])
    phase = frame - starts[np.searchsorted(starts, frame, side="right") - 1]
    counts = np.bincount(phase)
    means = np.bincount(phase, steps) / np.maximum(counts, 1)
    return float(means[(counts >= 10) & (np.arange(len(counts)) < frame[-1])].max() / steps.mean())


def compare(streamed: Motion, offline: Motion, samples: np.ndarray, boundaries: np.ndarray) -> dict:
    """The motion figures of the JSON: streamed against offline on the same speech."""
    frames = min(streamed.num_frames, offline.num_frames)
    loudness = loudness_envelope(samples, frames)
    rows, sync = {}, {}
    for name, motion in (("streamed", streamed), ("offline", offline)):
        motion = Motion(motion.poses[:frames], motion.expressions[:frames], expression_space=motion.expression_space)
        rows[name] = statistics(motion, None, name)
        sync[name] = lip_sync(jaw_opening(motion), loudness)
    return {
        "speed_ratio": round(rows["streamed"].upper_body_speed / rows["offline"].upper_body_speed, 3),
        "wrist_p95_ratio": round(rows["streamed"].wrist_speed_p95 / rows["offline"].wrist_speed_p95, 3),
        "lip_sync_streamed": round(sync["streamed"], 3), "lip_sync_offline": round(sync["offline"], 3),
        "lip_sync_ratio": round(sync["streamed"] / sync["offline"], 3),
        "boundary_ratio": round(boundary_ratio(streamed, boundaries), 3),
        "worst_phase_ratio": round(worst_phase_ratio(streamed, boundaries), 3),
        "speed_streamed": round(rows["streamed"].upper_body_speed, 4),
        "speed_offline": round(rows["offline"].upper_body_speed, 4),
        "wrist_p95_streamed": round(rows["streamed"].wrist_speed_p95, 3),
        "wrist_p95_offline": round(rows["offline"].wrist_speed_p95, 3),
    }


def check(speech: str, checkpoint: str | None, precision: str | None, seed: int, live: LiveSettings,
          sampler: str = DEFAULT_SAMPLER, realtime: bool = True, max_seconds: float = 70.0,
          save: str | None = None) -> dict:
    """Stream `speech`, generate it offline, and return the JSON's figures (`save`: the streamed .npz)."""
    samples = load_audio(speech, max_seconds)
    pipeline = Pipeline(checkpoint, precision)
    session = LiveSession(pipeline, sampler, seed=seed, live=live)
    starts = []
    report = stream_file(session, samples, realtime=realtime,
                         on_frames=lambda piece: starts.append(session.emitted - piece.num_frames))
    if save:
        save_motion(save, session.motion())
    offline, _ = pipeline.generate(Request(samples, sampler, seed=seed), count_flops=False)
    result = {"speech": speech, "checkpoint": str(pipeline.checkpoint.path or "in-memory"), "seed": seed,
              "realtime": realtime, **live.to_dict(), "shown_frames": report.shown_frames}  # as many as fit
    if realtime:
        result.update(latency_p50_s=report.latency_p50_s, latency_p95_s=report.latency_p95_s,
                      latency_max_s=report.latency_max_s, kept_up=report.kept_up, max_behind_s=report.max_behind_s)
    result.update(compare(session.motion(), offline, samples, np.array(starts[1:], np.int64)))
    result.update(frames=report.frames, windows=report.windows, seconds_sampling=report.seconds_sampling,
                  sampler=report.sampler, precision=report.precision, threads=report.threads,
                  audio_seconds=round(len(samples) / SAMPLE_RATE, 3))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("speech")
    parser.add_argument("--checkpoint", default=None, help="checkpoint folder (default: the shipped one)")
    parser.add_argument("--precision", default=None, choices=("auto", "bf16", "fp32"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sampler", default=DEFAULT_SAMPLER)
    parser.add_argument("--max-seconds", type=float, default=70.0)
    parser.add_argument("--fast", action="store_true", help="feed as fast as it goes: motion figures only")
    parser.add_argument("--save", default=None, help="also write the streamed motion to this .npz")
    default = LiveSettings.from_env()
    parser.add_argument("--chunk", type=float, default=default.chunk_s, help="seconds of new motion at a time")
    parser.add_argument("--lookahead", type=float, default=default.lookahead_s, help="seconds heard after a frame")
    parser.add_argument("--shown", type=int, default=default.shown_frames, help="shown frames a window starts with")
    parser.add_argument("--known", type=int, default=default.known_frames, help="the newest of them given as known")
    args = parser.parse_args()
    live = LiveSettings(args.chunk, args.lookahead, args.shown, args.known)
    print(json.dumps(check(args.speech, args.checkpoint, args.precision, args.seed, live, args.sampler,
                           not args.fast, args.max_seconds, args.save)))


if __name__ == "__main__":
    main()
