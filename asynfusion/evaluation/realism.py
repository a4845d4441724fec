"""How human does the motion look? Kinematic statistics against a real motion capture.

For any motions on the same speech as a capture (BEAT2 layout), measured on one skeleton (the
shipped body's, joints relative to the pelvis with the global orientation applied, y up, 30 fps):

    upper_body_speed  mean |frame-to-frame displacement| x 30 over frames and the 13 upper-body joints
                      EMAGE uses (spine1-3, neck, collars, head, shoulders, elbows, wrists), m/s
    wrist_speed_p95   95th percentile of both wrists' speeds, m/s
    wrist_reach       standard deviation over time of each wrist's position, mean of both wrists x 3 axes, m
    hand_height       mean height of the wrists above the pelvis, m
    jaw_depth         in speech frames, mean |2-8 Hz band-passed jaw opening| / mean jaw opening:
                      does the mouth open and close per syllable, or stay open
    frechet           Fréchet distance between 64-frame windows (stride 16) of kinematic features of the
                      motion and of the capture, features z-scored by the capture's windows
    frechet_vs_still  that distance over the distance of a still pose (the capture's most typical
                      frame, held): 0 is the capture itself, 1 is no motion at all

Two reference rows come with every table: the capture's first half against its second half (the
floor: how far one take of the same speaker is from another) and the still pose.
"""

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.signal import butter, sosfiltfilt

from ..audio import SAMPLE_RATE
from ..data.corpus.cues import SPEECH_LOUDNESS
from ..errors import InputError
from ..motion import FPS, JOINT, NUM_JOINTS, UPPER_BODY_JOINTS, Motion
from .metrics import frechet_distance, jaw_opening, joint_positions

WINDOW, STRIDE = 64, 16
WRISTS = [JOINT["left_wrist"], JOINT["right_wrist"]]
ELBOWS = [JOINT["left_elbow"], JOINT["right_elbow"]]
HEAD_NECK = [JOINT["neck"], JOINT["head"]]
JAW_BAND_HZ = (2.0, 8.0)  # syllable rate: the mouth opens and closes 2-8 times a second in speech


@dataclass
class RealismRow:
    label: str
    upper_body_speed: float
    wrist_speed_p95: float
    wrist_reach: float
    hand_height: float
    jaw_depth: float
    frechet: float = float("nan")
    frechet_vs_still: float = float("nan")


# ----------------------------------------------------------------------------
# The statistics
# ----------------------------------------------------------------------------
def positions_of(motion: Motion) -> np.ndarray:
    """(T, 55, 3) joint positions relative to the pelvis, global orientation applied (y up)."""
    return joint_positions(motion.poses.astype(np.float64))


def jaw_depth(jaw: np.ndarray, speech: np.ndarray) -> float:
    """Mean |2-8 Hz band of the jaw opening| over its mean, in speech frames; nan without speech."""
    if speech.sum() < FPS or len(jaw) < 4 * FPS:
        return float("nan")
    sos = butter(2, JAW_BAND_HZ, btype="bandpass", fs=FPS, output="sos")
    band = sosfiltfilt(sos, jaw - jaw.mean())
    return float(np.abs(band[speech]).mean() / max(jaw[speech].mean(), 1e-6))


def statistics(motion: Motion, speech: np.ndarray | None, label: str) -> RealismRow:
    """The kinematic row of one motion; `speech` is a (T,) mask of speech frames (None: no jaw depth)."""
    positions = positions_of(motion)
    upper = np.linalg.norm(np.diff(positions[:, UPPER_BODY_JOINTS], axis=0), axis=-1) * FPS  # (T-1, 13)
    wrist_speed = np.linalg.norm(np.diff(positions[:, WRISTS], axis=0), axis=-1) * FPS      # (T-1, 2)
    depth = float("nan")
    if speech is not None:
        n = min(len(speech), motion.num_frames)
        depth = jaw_depth(jaw_opening(motion)[:n], speech[:n])
    return RealismRow(label, float(upper.mean()), float(np.percentile(wrist_speed, 95)),
                      float(positions[:, WRISTS].std(0).mean()), float(positions[:, WRISTS, 1].mean()), depth)


def window_features(motion: Motion) -> np.ndarray:
    """(N, 21) per 64-frame window: 13 joint speeds, wrist and elbow spread, hand heights, head/neck turn spread."""
    positions = positions_of(motion)
    joint_speed = np.linalg.norm(np.diff(positions[:, UPPER_BODY_JOINTS], axis=0, prepend=positions[:1,
                                 UPPER_BODY_JOINTS]), axis=-1) * FPS                          # (T, 13)
    rotations = motion.poses.reshape(-1, NUM_JOINTS, 3)[:, HEAD_NECK]                        # (T, 2, 3)
    rows = []
    for start in range(0, motion.num_frames - WINDOW + 1, STRIDE):
        w = slice(start, start + WINDOW)
        rows.append(np.concatenate([
            joint_speed[w].mean(0),
            positions[w][:, WRISTS + ELBOWS].std(0).mean(-1),
            positions[w][:, WRISTS, 1].mean(0),
            rotations[w].std(0).mean(-1),
        ]))
    if not rows:
        raise InputError(f"motion has {motion.num_frames} frames; the window statistics need at least {WINDOW}")
    return np.asarray(rows)


def still_pose(capture: Motion) -> Motion:
    """The capture's most typical frame (nearest the mean joint positions), held for the whole take."""
    positions = positions_of(capture)[:, UPPER_BODY_JOINTS]
    typical = int(np.argmin(np.linalg.norm(positions - positions.mean(0), axis=-1).mean(-1)))
    frames = capture.num_frames
    return Motion(np.repeat(capture.poses[typical:typical + 1], frames, 0),
                  np.repeat(capture.expressions[typical:typical + 1], frames, 0),
                  expression_space=capture.expression_space)


class Reference:
    """A capture and what every row is measured against: its speech mask, window features and the still pose."""

    def __init__(self, capture: Motion, samples: np.ndarray | None):
        from ..data.baseline import loudness_envelope

        self.capture = capture
        self.speech = None if samples is None else loudness_envelope(samples, capture.num_frames) > SPEECH_LOUDNESS
        features = window_features(capture)
        self.mean, self.std = features.mean(0), features.std(0) + 1e-6
        self.features = self._z(features)
        self.still = still_pose(capture)
        self.still_distance = frechet_distance(self._z(window_features(self.still)), self.features)

    def _z(self, features: np.ndarray) -> np.ndarray:
        return (features - self.mean) / self.std

    def row(self, motion: Motion, label: str) -> RealismRow:
        """One motion's row; it is cut to the capture's length when longer (same speech)."""
        frames = min(motion.num_frames, self.capture.num_frames)
        motion = Motion(motion.poses[:frames], motion.expressions[:frames], expression_space=motion.expression_space)
        row = statistics(motion, self.speech, label)
        row.frechet = frechet_distance(self._z(window_features(motion)), self.features)
        row.frechet_vs_still = row.frechet / self.still_distance
        return row

    def reference_rows(self) -> list[RealismRow]:
        """The capture itself, its first half against its second half (the floor), and the still pose."""
        capture = statistics(self.capture, self.speech, "capture")
        capture.frechet, capture.frechet_vs_still = 0.0, 0.0
        half = self.capture.num_frames // 2
        first, second = (window_features(Motion(self.capture.poses[s], self.capture.expressions[s]))
                         for s in (slice(0, half), slice(half, None)))
        floor = statistics(Motion(self.capture.poses[half:], self.capture.expressions[half:]),
                           None if self.speech is None else self.speech[half:], "capture, 2nd half vs 1st (floor)")
        floor.frechet = frechet_distance(self._z(second), self._z(first))
        floor.frechet_vs_still = floor.frechet / self.still_distance
        still = statistics(self.still, self.speech, "still pose")
        still.frechet, still.frechet_vs_still = self.still_distance, 1.0
        return [capture, floor, still]


# ----------------------------------------------------------------------------
# Done checks (the targets) and the table
# ----------------------------------------------------------------------------
def targets(row: RealismRow, capture: RealismRow) -> dict[str, bool]:
    """Each of the human-likeness targets: within 0.7-1.4x the capture, hands within 5 cm, FD <= 35 %, jaw >= 0.15."""
    def ratio_ok(name):
        return 0.7 <= getattr(row, name) / getattr(capture, name) <= 1.4
    return {
        "upper_body_speed": ratio_ok("upper_body_speed"),
        "wrist_speed_p95": ratio_ok("wrist_speed_p95"),
        "wrist_reach": ratio_ok("wrist_reach"),
        "hand_height": abs(row.hand_height - capture.hand_height) <= 0.05,
        "frechet_vs_still": row.frechet_vs_still <= 0.35,
        "jaw_depth": row.jaw_depth >= 0.15,
    }


def format_table(rows: list[RealismRow], capture: RealismRow) -> str:
    header = ["motion", "upper-body speed m/s", "wrist p95 m/s", "wrist reach m", "hand height m", "jaw depth",
              "window FD", "FD / still", "targets met"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        reference = row.label in ("capture", "still pose") or row.label.startswith("capture,")
        met = targets(row, capture)
        cells = [row.label, f"{row.upper_body_speed:.3f}", f"{row.wrist_speed_p95:.2f}", f"{row.wrist_reach:.3f}",
                 f"{row.hand_height:+.3f}", f"{row.jaw_depth:.2f}", f"{row.frechet:.2f}",
                 f"{100 * row.frechet_vs_still:.0f} %", "-" if reference else f"{sum(met.values())}/{len(met)}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def realism_report(reference: Reference, motions: list[tuple[str, Motion]]) -> dict:
    """Reference rows then one row per (label, motion), with each row's targets."""
    references = reference.reference_rows()
    rows = [reference.row(motion, label) for label, motion in motions]
    capture = references[0]
    return {"rows": [asdict(r) for r in references + rows],
            "targets": {r.label: targets(r, capture) for r in rows},
            "table": format_table(references + rows, capture)}


def main(args) -> None:
    """`asynfusion realism`: the table for motion files and, optionally, freshly generated motions."""
    from ..audio import load_audio
    from ..motion import load_motion

    capture = load_motion(args.reference)
    samples = load_audio(args.audio, max_seconds=max(600.0, capture.num_frames / FPS + 1)) if args.audio else None
    if args.audio and abs(len(samples) / SAMPLE_RATE - capture.num_frames / FPS) > 3.0:
        raise InputError(f"{args.audio} lasts {len(samples) / SAMPLE_RATE:.1f} s but {args.reference} "
                         f"{capture.num_frames / FPS:.1f} s: give the capture's own speech")
    motions = [(Path(path).stem, load_motion(path)) for path in args.motion]
    if args.samplers or args.baseline:
        if samples is None:
            raise InputError("--samplers and --baseline generate from the speech: give --audio")
        motions += generated_motions(samples, args)
    report = realism_report(Reference(capture, samples), motions)
    print(report["table"])
    if args.json:
        Path(args.json).write_text(json.dumps({k: v for k, v in report.items() if k != "table"}, indent=1))


def generated_motions(samples: np.ndarray, args) -> list[tuple[str, Motion]]:
    """The checkpoint's samplers (seed args.seed) and the rule-based generator on the capture's speech."""
    motions = []
    if args.samplers:
        from ..pipeline import Pipeline
        from ..request import Request

        pipeline = Pipeline(args.checkpoint, args.precision)
        features = pipeline.features(samples)
        for sampler in args.samplers:
            motion, _ = pipeline.generate(Request(samples, sampler, seed=args.seed), features=features,
                                          count_flops=False)
            motions.append((f"{sampler}, seed {args.seed}", motion))
    for mood in args.baseline or []:
        from ..data.baseline import animate

        motions.append((f"rule-based, mood {mood:g}", animate(samples, seed=args.seed, mood=mood)))
    return motions
