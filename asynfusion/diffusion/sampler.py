"""DDIM, synchronous LCM and asynchronous LCM sampling of the dual-branch model (paper Table 3).

All three are one loop over *ticks*. The branch with more steps steps on every tick; the other is
spread over the ticks so that both step on the first and the last one:

    sync  (8/8):  E E E E E E E E      async (4/8):  E . E . . E . E
                  G G G G G G G G                    G G G G G G G G

On a tick where a branch does not step it is not computed at all; the other branch's interaction
layers read its latest block features from the FeatureBuffer. The work is 4 C_E + 8 C_G rather than
8 (C_E + C_G). Each run reports network evaluations (NFE), seconds and GFLOPs per branch; the samplers
themselves (names, rules, default steps, weights) are data in registry.py.
"""

import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass

import torch

from ..config import BRANCHES
from ..model import AsynFusionModel, FeatureBuffer
from .guidance import NONE, Guidance, evaluate, unconditional_rows
from .registry import LCM_SOLVER_STEPS, SamplerSpec, get_sampler
from .schedule import NoiseSchedule, ddim_step, ddim_timesteps, lcm_step, lcm_timesteps, previous_timesteps


@dataclass
class SampleStats:
    sampler: str
    steps_expression: int
    steps_gesture: int
    nfe_expression: int = 0
    nfe_gesture: int = 0
    seconds_expression: float = 0.0
    seconds_gesture: float = 0.0
    seconds_audio: float = 0.0   # the shared audio encoder, run once per clip
    seconds_total: float = 0.0
    gflops_expression: float = 0.0
    gflops_gesture: float = 0.0
    gflops: float = 0.0
    guidance: str = "none"       # Guidance.describe(): "none", "w=3 at t <= 800", "gesture w=2.25 at t <= 800"

    def to_dict(self) -> dict:
        return asdict(self)


def tick_plan(steps_expression: int, steps_gesture: int) -> list[tuple[str, ...]]:
    """Which branches step on each tick; both step on the first and the last tick."""
    ticks = max(steps_expression, steps_gesture)
    active = [set() for _ in range(ticks)]
    for branch, steps in zip(BRANCHES, (steps_expression, steps_gesture)):
        if steps < 1:
            raise ValueError(f"{branch} needs at least one step, got {steps}")
        for j in range(steps):
            active[0 if steps == 1 else round(j * (ticks - 1) / (steps - 1))].add(branch)
    return [tuple(b for b in BRANCHES if b in tick) for tick in active]


def step_velocity(schedule: NoiseSchedule, output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor,
                  prediction: str, known: torch.Tensor | None = None) -> torch.Tensor:
    """The v a branch steps with: its raw output's, except on the frames `known` (B, N, D + 1, from
    model.known_frames) marks as fixed, where it is the v that predicts their known values. So the step
    lands on the known motion whatever the network made of it (inpainting), and the other frames are
    made from a trajectory that carries it."""
    v = schedule.velocity_from(output, x_t, t, prediction)
    if known is None:
        return v
    fixed = known[..., -1:] > 0.5                                                   # (B, N, 1)
    return torch.where(fixed, schedule.velocity_from(known[..., :-1], x_t, t, "x0"), v)


def branch_timesteps(rule: str, branch: str, steps: int, num_train_timesteps: int) -> list[int]:
    """A branch's descending grid under a step rule (registry.RULES)."""
    if rule == "lcm":
        return lcm_timesteps(steps, LCM_SOLVER_STEPS[branch], num_train_timesteps)
    return ddim_timesteps(steps, num_train_timesteps)


class BranchTimer:
    """Wall time per branch, measured around each module a branch runs (forward hooks), so the network
    carries no clock. CPU torch ops are synchronous, so perf_counter around them is exact; on a GPU,
    whose work is queued, each measurement first waits for the device, or it would time kernel launches.
    Only the sampling thread's calls count: another request on the same model is not this run's time."""

    def __init__(self, model: AsynFusionModel, device: torch.device):
        self.seconds = dict.fromkeys(BRANCHES, 0.0)
        self._sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        self._thread = threading.get_ident()
        self._started: dict[int, float] = {}
        self._handles = []
        for branch in BRANCHES:
            for module in model.branch_modules(branch):
                self._handles.append(module.register_forward_pre_hook(self._start))
                self._handles.append(module.register_forward_hook(self._stop(branch)))

    def _start(self, module, inputs) -> None:
        if threading.get_ident() == self._thread:
            self._sync()
            self._started[id(module)] = time.perf_counter()

    def _stop(self, branch: str):
        def hook(module, inputs, output) -> None:
            if threading.get_ident() == self._thread:
                self._sync()
                self.seconds[branch] += time.perf_counter() - self._started.pop(id(module))
        return hook

    def add(self, branch: str, since: float) -> None:
        """Count the time since `since` (a perf_counter reading) to `branch`: its step's arithmetic."""
        self._sync()
        self.seconds[branch] += time.perf_counter() - since

    def close(self) -> None:
        """Remove the hooks, and wait for the device: a GPU's queued work must finish before the clock is read."""
        self._sync()
        for handle in self._handles:
            handle.remove()


@torch.inference_mode()
def sample(
    model: AsynFusionModel,
    audio: torch.Tensor,
    spec: SamplerSpec | str,
    steps: dict[str, int] | None = None,
    draw_noise: Callable[[str, int], torch.Tensor] | None = None,
    generator: torch.Generator | None = None,
    speaker: torch.Tensor | None = None,
    dtype: torch.dtype = torch.float32,
    count_flops: bool = True,
    guidance: Guidance | float = NONE,
    known: dict[str, torch.Tensor] | None = None,
    fresh_noise: dict[str, float] | None = None,
) -> tuple[dict[str, torch.Tensor], SampleStats]:
    """Generate normalized motion features for a batch of windows with one sampler of the registry.

    spec: its SamplerSpec or name. audio: (B, N, audio_dim) normalized features. steps: per branch (default: its own).
    draw_noise(branch, k): the noise for step k of a branch (k = 0 is the starting x_T), (B, N, D_branch);
        by default drawn from `generator` (the pipeline passes noise shared by overlapping windows).
    count_flops: fill the GFLOPs fields (counted once per model and window length, then cached; the
        first count costs about a second, so a one-shot command line run skips it).
    guidance: classifier-free guidance (guidance.py), per branch in a timestep interval; a number guides
        both branches at every step. A guided tick evaluates each window twice (two NFE).
    known: per branch (B, N, D_branch + 1), model.known_frames: frames the window continues (continuation).
    fresh_noise: per branch, the share of new noise in an LCM step (schedule.lcm_step; default 1, LCM's own).
    Returns ({"expression": (B, N, D_E), "gesture": (B, N, D_G)}, SampleStats).
    """
    spec = get_sampler(spec) if isinstance(spec, str) else spec
    guidance = guidance if isinstance(guidance, Guidance) else Guidance.uniform(guidance)
    steps = spec.steps((steps or {}).get("expression"), (steps or {}).get("gesture"))
    stats = SampleStats(spec.name, steps["expression"], steps["gesture"])
    config = model.config
    schedule = NoiseSchedule(config.num_train_timesteps)
    batch, frames, _ = audio.shape
    device = audio.device
    dims = {"expression": config.expression_dim, "gesture": config.gesture_dim}
    if draw_noise is None:
        def draw_noise(branch, k):  # drawn on the CPU: the same seed gives the same motion on any device
            return torch.randn(batch, frames, dims[branch], generator=generator)

    timesteps = {b: branch_timesteps(spec.rule, b, steps[b], config.num_train_timesteps) for b in BRANCHES}
    previous = {b: previous_timesteps(timesteps[b]) for b in BRANCHES}
    autocast = torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else nullcontext()
    with autocast:
        start, audio_features = time.perf_counter(), model.encode_audio(audio)
    stats.seconds_audio = time.perf_counter() - start
    if guidance.active:  # rows B.. are the unconditional copies: no audio
        audio_features, speaker = unconditional_rows(audio_features, speaker)
    x = {b: draw_noise(b, 0).to(device) for b in BRANCHES}
    done = dict.fromkeys(BRANCHES, 0)  # steps taken per branch
    nfe = dict.fromkeys(BRANCHES, 0)   # evaluations per window: two on a guided tick
    buffer = FeatureBuffer()
    timer = BranchTimer(model, device)
    try:
        for active in tick_plan(steps["expression"], steps["gesture"]):
            t = {b: torch.full((batch,), timesteps[b][done[b]], dtype=torch.long, device=device) for b in active}
            with autocast:
                output, rows = evaluate(model, {b: x[b] for b in active}, t, audio_features, speaker, buffer,
                                        guidance, known)
            for b in active:
                step_start = time.perf_counter()
                t_now, t_prev = timesteps[b][done[b]], previous[b][done[b]]
                v = step_velocity(schedule, output[b], x[b], t[b], config.prediction, known and known.get(b))
                if spec.rule == "lcm":
                    noise = draw_noise(b, done[b] + 1).to(device) if t_prev >= 0 else None
                    x[b], _ = lcm_step(schedule, v, t_now, t_prev, x[b], noise, (fresh_noise or {}).get(b, 1.0))
                else:
                    x[b], _ = ddim_step(schedule, v, t_now, t_prev, x[b])
                done[b] += 1
                nfe[b] += rows
                timer.add(b, step_start)
    finally:
        timer.close()
    stats.seconds_total = time.perf_counter() - start
    stats.nfe_expression, stats.nfe_gesture = nfe["expression"], nfe["gesture"]
    stats.guidance = guidance.describe()
    stats.seconds_expression, stats.seconds_gesture = timer.seconds["expression"], timer.seconds["gesture"]
    if count_flops:
        count_gflops(stats, model, audio, None if speaker is None else speaker[:batch])
    return x, stats


def count_gflops(stats: SampleStats, model: AsynFusionModel, audio: torch.Tensor, speaker) -> None:
    """Fill the GFLOPs fields of a run's stats: per-evaluation counts times its NFE (a guided step's
    two evaluations included), plus the audio encoder once."""
    flops = evaluation_gflops(model, audio, speaker)
    stats.gflops_expression = flops["expression"] * stats.nfe_expression
    stats.gflops_gesture = flops["gesture"] * stats.nfe_gesture
    stats.gflops = flops["audio"] + stats.gflops_expression + stats.gflops_gesture


_FLOPS_CACHE: dict[tuple, dict[str, float]] = {}


def evaluation_gflops(model: AsynFusionModel, audio: torch.Tensor, speaker=None) -> dict[str, float]:
    """GFLOPs of the audio encoder and of one evaluation of each branch alone for this batch,
    counted with torch.utils.flop_counter.

    A tick that runs both branches does exactly the work of the two single-branch evaluations,
    so NFE x these numbers is the counted total of a sampling run. Windows are independent, so the
    count is made once for one window of this length (cached per architecture) and scaled by the batch.
    """
    batch = audio.shape[0]
    per_window = _window_gflops(model, audio[:1], None if speaker is None else speaker[:1])
    return {name: value * batch for name, value in per_window.items()}


def _window_gflops(model: AsynFusionModel, audio: torch.Tensor, speaker) -> dict[str, float]:
    from torch.utils.flop_counter import FlopCounterMode

    # keyed on what the count depends on: the architecture and the input shape (not id(model), which
    # a later model can reuse once this one is freed)
    key = (tuple(sorted(model.config.to_dict().items())), tuple(audio.shape), speaker is None)
    if key in _FLOPS_CACHE:
        return _FLOPS_CACHE[key]
    config = model.config
    batch, frames, _ = audio.shape
    dims = {"expression": config.expression_dim, "gesture": config.gesture_dim}
    t = {b: torch.zeros(batch, dtype=torch.long, device=audio.device) for b in BRANCHES}
    x = {b: torch.zeros(batch, frames, dims[b], device=audio.device) for b in BRANCHES}
    result = {}
    with torch.inference_mode():
        with FlopCounterMode(display=False) as counter:
            audio_features = model.encode_audio(audio)
        result["audio"] = counter.get_total_flops() / 1e9
        buffer = FeatureBuffer()
        model.denoise(x, t, audio_features, speaker, buffer)  # fill the buffer for single-branch passes
        for b in BRANCHES:
            with FlopCounterMode(display=False) as counter:
                model.denoise({b: x[b]}, {b: t[b]}, audio_features, speaker, buffer)
            result[b] = counter.get_total_flops() / 1e9
    _FLOPS_CACHE[key] = result
    return result
