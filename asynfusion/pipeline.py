"""Speech in, SMPL-X motion out: the one function the CLI and the app call.

Audio of any length up to the cap is cut into overlapping windows of the training length (a quarter
window of overlap). Windows start from the same noise where they overlap (noise is drawn per frame of
the whole clip, then sliced), so neighbouring windows already agree before they are joined. How they
are joined depends on the checkpoint:

- one trained with `continuation` (v5) samples them in two batched passes (JoinPlan): every other
  window, then the windows between them, each given the frames it shares with its neighbours as known
  frames, which the sampler keeps as they are (live.py continues its chunks the same way). The new
  frames start a little off the known ones; that step is settled out over the overlap's frames
  (settle_edges), and the first pass's windows leave their first and last frames, which move fast
  where a window starts from nothing, to the windows that join them.
- any other samples all windows in one batch and cross-fades them where they overlap (stitch).

    pass 1:  |--- window 0 ---|                |--- window 2 ---|
    pass 2:             |known|--- new frames ---|known|            (window 1)

A clip of one window is sampled alike either way.
"""

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .audio import SAMPLE_RATE, audio_features, num_motion_frames
from .checkpoint import Checkpoint, load_checkpoint
from .config import BRANCHES
from .diffusion.sampler import SampleStats, sample
from .model import known_frames
from .motion import GESTURE_CUTOFF_HZ, Motion, features_to_motion, smooth_gesture
from .precision import choose_precision, usable_cores
from .request import Request
from .seeding import NOISE, generator_for

# A window sampled from nothing moves fast in its first frames (v5, async LCM on the real take: 1.7x its
# median frame-to-frame change at frames 1-3); where such a window joins one sampled after it, the later
# one makes these frames instead (join_plan).
REDO_FRAMES = 6
DEFAULT_THREADS = torch.get_num_threads()  # torch's own choice: the usable cores


def _running_threads_of_this_process() -> int:
    """This process's threads that are running or runnable now (the caller among them)."""
    running = 0
    for stat in Path("/proc/self/task").glob("*/stat"):
        try:
            running += stat.read_text().rsplit(")", 1)[1].split()[0] == "R"
        except (OSError, IndexError):
            continue
    return max(running, 1)


def other_running_tasks(samples: int = 5, interval: float = 0.001, loadavg: str = "/proc/loadavg") -> float:
    """Tasks of other processes running on this machine right now: the kernel's count of runnable tasks
    (/proc/loadavg) less this process's own (torch's workers may still be spinning after the last
    operation), averaged over a few samples; 0 where it cannot be read."""
    counts = []
    for _ in range(samples):
        try:
            counts.append(int(Path(loadavg).read_text().split()[3].split("/")[0]) - _running_threads_of_this_process())
        except (OSError, ValueError, IndexError):
            return 0.0
        time.sleep(interval)
    return max(0.0, sum(counts) / len(counts))


def sampling_threads(limit: int = DEFAULT_THREADS) -> int:
    """torch threads for one generation: the cores not busy with other work right now, 1 to `limit`.

    The model's operations are small, so every one is a parallel region whose threads must all run
    before the next can start. When other work holds the cores, each region waits for the scheduler
    to hand every thread its turn: on the 2-core VM, with two other busy processes, 20 s of speech
    took 17 s on two threads and 1.5 s on one (0.8 s on two when the machine was idle).
    """
    # a task seen in a quarter of the samples or less: noise
    free = usable_cores() - math.ceil(other_running_tasks() - 0.25)
    return max(1, min(limit, free))


@dataclass
class GenerationReport:
    """What one generation cost; `sampling` holds the per-branch NFE / seconds / GFLOPs."""

    sampling: SampleStats
    audio_seconds: float
    seconds_features: float
    seconds_stitch: float
    seconds_total: float  # features + sampling + stitching
    windows: int
    checkpoint: str
    trained: bool
    threads: int = 0  # torch threads the sampling ran on

    @property
    def realtime_factor(self) -> float:
        return self.seconds_total / self.audio_seconds

    def row(self) -> dict:
        """The benchmark row (the `bench --json` contract)."""
        s = self.sampling
        return {
            "sampler": s.sampler, "steps_expression": s.steps_expression, "steps_gesture": s.steps_gesture,
            "nfe_expression": s.nfe_expression, "nfe_gesture": s.nfe_gesture, "guidance": s.guidance,
            "seconds_expression": round(s.seconds_expression, 4), "seconds_gesture": round(s.seconds_gesture, 4),
            "seconds_features": round(self.seconds_features, 4), "seconds_sampling": round(s.seconds_total, 4),
            "seconds_stitch": round(self.seconds_stitch, 4),
            "seconds_total": round(self.seconds_total, 4), "gflops": round(s.gflops, 4),
            "gflops_expression": round(s.gflops_expression, 4), "gflops_gesture": round(s.gflops_gesture, 4),
            "audio_seconds": round(self.audio_seconds, 3), "realtime_factor": round(self.realtime_factor, 4),
            "threads": self.threads,
        }

    def to_dict(self) -> dict:
        return {**asdict(self), "realtime_factor": self.realtime_factor}


def window_starts(num_frames: int, window: int, overlap: int) -> list[int]:
    """Start frames of overlapping windows covering num_frames; the last window ends at the clip's end."""
    if num_frames <= window:
        return [0]
    stride = window - overlap
    starts = list(range(0, num_frames - window, stride))
    return starts + [num_frames - window]


def blend_weights(window: int, overlap: int, first: bool, last: bool) -> np.ndarray:
    """Linear cross-fade ramps over the overlapping frames; flat at the clip's own start and end."""
    weights = np.ones(window, np.float32)
    ramp = (np.arange(overlap, dtype=np.float32) + 1) / (overlap + 1)
    if not first:
        weights[:overlap] = ramp
    if not last:
        weights[window - overlap:] = ramp[::-1]
    return weights


def stitch(windows: list[np.ndarray], starts: list[int], num_frames: int, overlap: int) -> np.ndarray:
    """Windows (W, D) at `starts` -> (num_frames, D), cross-faded where they overlap."""
    window, dim = windows[0].shape
    total = np.zeros((num_frames, dim), np.float32)
    weight = np.zeros((num_frames, 1), np.float32)
    for i, (s, values) in enumerate(zip(starts, windows)):
        w = blend_weights(window, overlap, i == 0, i == len(starts) - 1)[:, None]
        total[s:s + window] += w * values
        weight[s:s + window] += w
    return total / weight


# ----------------------------------------------------------------------------
# Joining windows by continuation (a checkpoint trained with `continuation`)
# ----------------------------------------------------------------------------
@dataclass
class JoinPlan:
    """How the windows of a clip are sampled in passes, each window continuing what earlier passes made.

    A pass samples its windows in one batch; no two windows of a pass overlap. A window's frames that an
    earlier pass made are given to it as known (`known`, at one end or both) and kept as they are; its
    other frames are its own. The windows of the first pass continue nothing; the first REDO_FRAMES of
    each (past the clip's start) are left to the window that joins it there.
    """

    starts: list[int]
    window: int
    passes: list[list[int]]   # window indices, in sampling order
    known: np.ndarray         # (windows, window) bool

    def boundaries(self, num_frames: int) -> np.ndarray:
        """Frames where the window a frame comes from changes: metrics.seam_ratio's boundaries."""
        source = np.full(num_frames, -1)
        for index in (i for windows in self.passes for i in windows):
            start = self.starts[index]
            source[start:start + self.window][~self.known[index]] = index
        return np.flatnonzero(np.diff(source)) + 1


def sampling_passes(starts: list[int], window: int) -> list[list[int]]:
    """Windows sampled together: each window goes in the first pass that holds none it overlaps, so
    every other window of the regular layout is in the first pass and the ones between them in the
    second (the clip's last window, placed to end with the clip, may need a third; so do clips under
    about four windows' length, which are sampled one window after another)."""
    pass_of: list[int] = []
    for i, start in enumerate(starts):
        taken = {pass_of[j] for j in range(i) if starts[j] + window > start}
        pass_of.append(min(set(range(len(taken) + 1)) - taken))
    return [[i for i, p in enumerate(pass_of) if p == k] for k in range(max(pass_of) + 1)]


def join_plan(num_frames: int, window: int, overlap: int) -> JoinPlan:
    """The JoinPlan of a clip of `num_frames`: window_starts' windows, in sampling_passes."""
    starts = window_starts(num_frames, window, overlap)
    passes = sampling_passes(starts, window)
    made = np.zeros(num_frames, bool)
    known = np.zeros((len(starts), window), bool)
    redo = min(REDO_FRAMES, overlap // 2)
    for index in (i for windows in passes for i in windows):
        span = slice(starts[index], starts[index] + window)
        known[index] = made[span]
        made[span] = True
        if not known[index].any():  # it continues nothing: its ends are left to the windows that join it
            made[span.start:span.start + redo] = span.start == 0
            made[span.stop - redo:span.stop] = span.stop == num_frames
    return JoinPlan(starts, window, passes, known)


def join_boundaries(num_frames: int, window: int, continues: bool) -> np.ndarray:
    """Where Pipeline.generate joins windows in a clip of `num_frames`: by continuation (join_plan) for
    a model that `continues`, else by cross-fading (metrics.window_boundaries)."""
    from .evaluation.metrics import window_boundaries

    window = min(window, num_frames)
    if continues:
        return join_plan(num_frames, window, window // 4).boundaries(num_frames)
    return window_boundaries(window_starts(num_frames, window, window // 4), window, num_frames)


def settle_edges(values: np.ndarray, known: np.ndarray, frames: int) -> np.ndarray:
    """(W, D) sampled window, (W,) bool known frames -> the window with the step at each edge between
    known and new frames taken out. Sampling keeps known frames exactly, and the network's new frames
    start a little off them (a step of 3-4x the median frame-to-frame change, v5 on the real take); each
    new frame next to an edge is shifted by how far the first one is from where the motion's speed on
    both sides puts it, the shift falling linearly to none over `frames`."""
    settled = values.copy()
    last = len(values) - 1
    for edge in np.flatnonzero(known[:-1] != known[1:]):
        # the known frame at the edge, the first new frame, and the way into the new frames
        held, new, step = (edge, edge + 1, 1) if known[edge] else (edge + 1, edge, -1)
        # the speed on each side, as differences taken in the direction of `step` (0 where unknown)
        before = values[held] - values[held - step] if 0 <= held - step <= last and known[held - step] else 0
        after = values[new + step] - values[new] if 0 <= new + step <= last and not known[new + step] else 0
        offset = values[held] + (before + after) / 2 - values[new]
        for k in range(frames):
            frame = new + step * k
            if not 0 <= frame <= last or known[frame]:
                break
            settled[frame] += offset * (1 - k / frames)
    return settled


def merged_stats(runs: list[SampleStats]) -> SampleStats:
    """One SampleStats for sampling passes run one after another: NFE per window as each pass's (the
    same in all), seconds and GFLOPs summed."""
    total = SampleStats(**{**asdict(runs[0])})
    for name in ("seconds_expression", "seconds_gesture", "seconds_audio", "seconds_total", "gflops_expression",
                  "gflops_gesture", "gflops"):
        setattr(total, name, sum(getattr(run, name) for run in runs))
    return total


class Pipeline:
    """A loaded checkpoint and everything needed to turn 16 kHz speech into a Motion."""

    def __init__(self, checkpoint: Checkpoint | str | None = None, precision: str | None = None, threads: int = 0,
                 device: str | None = None):
        self.checkpoint = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
        self.config = self.checkpoint.config
        # the GPU when there is one; on a CPU-only machine (or device="cpu") everything stays on the CPU
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        # None: $ASYNFUSION_PRECISION, else auto (bf16 only where it is native); see precision.py
        self.precision = choose_precision(precision, self.device)
        self.dtype = self.precision.dtype
        for model in self.checkpoint.models.values():
            model.to(self.device)
        self.threads = threads  # 0: chosen for each generation (sampling_threads)
        self.gesture_cutoff_hz = GESTURE_CUTOFF_HZ  # the low-pass on the gestures (motion.smooth_gesture); None: raw

    def features(self, samples: np.ndarray) -> np.ndarray:
        """Normalized (T, A) audio features of a 16 kHz clip."""
        raw = audio_features(samples, num_motion_frames(len(samples)), self.config.audio_encoder)
        return self.checkpoint.stats.normalize("audio", raw)

    def generate(self, request: Request, features: np.ndarray | None = None,
                 count_flops: bool = True) -> tuple[Motion, GenerationReport]:
        """A Request -> (Motion with round(duration x 30) frames, GenerationReport).

        The same request gives the same motion. `features` lets a caller that compares samplers compute
        the audio features once.
        """
        config = self.config
        start = time.perf_counter()
        audio = self.features(request.samples) if features is None else features
        seconds_features = time.perf_counter() - start
        num_frames = len(audio)
        window = min(config.window_frames, num_frames)
        overlap = window // 4
        starts = window_starts(num_frames, window, overlap)
        model = self.checkpoint.model_for(request.spec.weights)
        threads = self.threads or (sampling_threads() if self.device.type == "cpu" else DEFAULT_THREADS)
        torch.set_num_threads(threads)
        if model.continues and len(starts) > 1:
            plan = join_plan(num_frames, window, overlap)
            features_out, sampling, seconds_join = self._sample_joined(request, model, audio, plan, count_flops)
        else:
            x, sampling = self._sample_windows(request, model, audio, starts, window, count_flops)
            join_start = time.perf_counter()
            features_out = {b: stitch([w.float().cpu().numpy() for w in x[b]], starts, num_frames, overlap)
                            for b in BRANCHES}
            seconds_join = time.perf_counter() - join_start

        stitch_start = time.perf_counter()
        gesture = self.checkpoint.stats.denormalize("gesture", features_out["gesture"])
        motion = features_to_motion(
            self.checkpoint.stats.denormalize("expression", features_out["expression"]),
            smooth_gesture(gesture, self.gesture_cutoff_hz),
            expression_space=config.expression_space, metadata={
                "sampler": request.sampler, "steps_expression": sampling.steps_expression,
                "steps_gesture": sampling.steps_gesture, "seed": request.seed,
                "checkpoint": str(self.checkpoint.path or "in-memory"),
                "trained_on": self.checkpoint.info.get("trained_on", "untrained"),
                "precision": self.precision.name, "gesture_cutoff_hz": self.gesture_cutoff_hz,
            })
        seconds_stitch = seconds_join + time.perf_counter() - stitch_start
        report = GenerationReport(
            sampling, len(request.samples) / SAMPLE_RATE, seconds_features, seconds_stitch,
            seconds_features + sampling.seconds_total + seconds_stitch, len(starts),
            str(self.checkpoint.path or "in-memory"), self.checkpoint.trained, threads)
        motion.metadata["seconds_generation"] = round(report.seconds_total, 4)
        return motion, report

    def _sample_windows(self, request: Request, model, audio: np.ndarray, starts: list[int], window: int,
                        count_flops: bool, known: dict[str, torch.Tensor] | None = None):
        """Sample the windows of `audio` (T, A) at `starts` in one batch -> ({branch: (B, W, D)}, SampleStats)."""
        config = self.config
        batch = torch.from_numpy(np.stack([audio[s:s + window] for s in starts])).float().to(self.device)  # (B,W,A)
        dims = {"expression": config.expression_dim, "gesture": config.gesture_dim}

        def draw_noise(branch: str, k: int) -> torch.Tensor:
            # noise per frame of the whole clip, then sliced: overlapping frames share it
            generator = generator_for(request.seed, NOISE, BRANCHES.index(branch), k)
            whole = torch.randn(len(audio), dims[branch], generator=generator)
            return torch.stack([whole[s:s + window] for s in starts])

        speakers = torch.full((len(starts),), request.speaker, dtype=torch.long, device=self.device) \
            if config.num_speakers else None
        return sample(model, batch, request.spec, request.steps, draw_noise, speaker=speakers, dtype=self.dtype,
                      count_flops=count_flops, known=known, **self.checkpoint.sampling_for(request.spec.weights))

    def _sample_joined(self, request: Request, model, audio: np.ndarray, plan: JoinPlan,
                       count_flops: bool) -> tuple[dict[str, np.ndarray], SampleStats, float]:
        """Sample a clip's windows pass by pass (JoinPlan), each continuing what the passes before made
        -> ({branch: (T, D) features}, SampleStats of all passes, seconds spent joining)."""
        dims = {"expression": self.config.expression_dim, "gesture": self.config.gesture_dim}
        made = {b: np.zeros((len(audio), dims[b]), np.float32) for b in BRANCHES}
        settle = plan.window // 4  # the overlap: a step settles over as many frames as a cross-fade took
        runs, seconds_join = [], 0.0
        for windows in plan.passes:
            starts = [plan.starts[i] for i in windows]
            spans = [slice(s, s + plan.window) for s in starts]
            known = None  # the first pass continues nothing: sampled exactly as without continuation
            if plan.known[windows].any():
                mask = torch.from_numpy(plan.known[windows])                                     # (B, W)
                known = {b: known_frames(torch.from_numpy(np.stack([made[b][span] for span in spans])), mask)
                         .to(self.device) for b in BRANCHES}
            x, stats = self._sample_windows(request, model, audio, starts, plan.window, count_flops, known)
            runs.append(stats)
            join_start = time.perf_counter()
            for b in BRANCHES:
                new = x[b].float().cpu().numpy()
                for row, (index, span) in enumerate(zip(windows, spans)):
                    own = ~plan.known[index]
                    made[b][span][own] = settle_edges(new[row], plan.known[index], settle)[own]
            seconds_join += time.perf_counter() - join_start
        return made, merged_stats(runs), seconds_join
