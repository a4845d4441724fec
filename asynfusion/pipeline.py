"""Speech in, SMPL-X motion out: the one function the CLI and the app call.

Audio of any length up to the cap is cut into overlapping windows of the training length, all
windows are sampled in one batch, and the results are cross-faded where they overlap. Windows
start from the same noise where they overlap (noise is drawn per frame of the whole clip, then
sliced), so neighbouring windows already agree before they are blended.
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
from .motion import Motion, features_to_motion
from .precision import choose_precision, usable_cores
from .request import Request
from .seeding import NOISE, generator_for

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
        batch = torch.from_numpy(np.stack([audio[s:s + window] for s in starts])).float().to(self.device)  # (B,W,A)
        dims = {"expression": config.expression_dim, "gesture": config.gesture_dim}

        def draw_noise(branch: str, k: int) -> torch.Tensor:
            # noise per frame of the whole clip, then sliced: overlapping frames share it
            generator = generator_for(request.seed, NOISE, BRANCHES.index(branch), k)
            whole = torch.randn(num_frames, dims[branch], generator=generator)
            return torch.stack([whole[s:s + window] for s in starts])

        speakers = torch.full((len(starts),), request.speaker, dtype=torch.long, device=self.device) \
            if config.num_speakers else None
        model = self.checkpoint.model_for(request.spec.weights)
        threads = self.threads or (sampling_threads() if self.device.type == "cpu" else DEFAULT_THREADS)
        torch.set_num_threads(threads)
        x, sampling = sample(model, batch, request.spec, request.steps, draw_noise, speaker=speakers,
                             dtype=self.dtype, count_flops=count_flops,
                             guidance=self.checkpoint.guidance_for(request.spec.weights))

        stitch_start = time.perf_counter()
        features_out = {b: stitch([w.float().cpu().numpy() for w in x[b]], starts, num_frames, overlap)
                        for b in BRANCHES}
        motion = features_to_motion(
            self.checkpoint.stats.denormalize("expression", features_out["expression"]),
            self.checkpoint.stats.denormalize("gesture", features_out["gesture"]),
            expression_space=config.expression_space, metadata={
                "sampler": request.sampler, "steps_expression": sampling.steps_expression,
                "steps_gesture": sampling.steps_gesture, "seed": request.seed,
                "checkpoint": str(self.checkpoint.path or "in-memory"),
                "trained_on": self.checkpoint.info.get("trained_on", "untrained"),
                "precision": self.precision.name,
            })
        seconds_stitch = time.perf_counter() - stitch_start
        report = GenerationReport(
            sampling, len(request.samples) / SAMPLE_RATE, seconds_features, seconds_stitch,
            seconds_features + sampling.seconds_total + seconds_stitch, len(starts),
            str(self.checkpoint.path or "in-memory"), self.checkpoint.trained, threads)
        motion.metadata["seconds_generation"] = round(report.seconds_total, 4)
        return motion, report
