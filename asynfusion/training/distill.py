"""Per-branch latent consistency distillation (paper eq. 7; LCM, Luo et al. 2023).

The student starts as a copy of the trained diffusion model. For each branch on its own solver
grid (LCM_SOLVER_STEPS: expression 20 points, made for 4-step sampling; gesture 40, made for 8),
a training pair is (x_t at grid point t, the teacher's DDIM
step from t to the next grid point s). The student's consistency output at (x_t, t) is pulled
towards the EMA target network's consistency output at (x_s, s). The branches draw their grid
points independently, so the distilled model, like its teacher, reads the other branch at any
noise level. The boundary scalings and the DDIM step are the sampler's own functions.

A teacher trained with audio dropout is guided (classifier-free, its checkpoint's scale, or
--guidance): its DDIM step follows unconditional + w (conditional - unconditional), so the student
learns the guided ODE (LCM's guided distillation). How the student itself samples (unguided, or its
gesture branch guided further: --sample-guidance) is recorded in the checkpoint's info["guidance"]["lcm"].

Optionally the student's gesture estimate is also pulled to the data, as the fold pulls it (`data_terms`:
--data-weight, --pause-velocity): distilled from the guided teacher alone the student spreads wider than
the data (checkpoint v12's students use both terms; README, "Design").
"""

import copy
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from ..checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from ..config import BRANCHES
from ..diffusion.guidance import Guidance, evaluate, unconditional_rows
from ..diffusion.registry import LCM_SOLVER_STEPS
from ..diffusion.schedule import NoiseSchedule, consistency_output, ddim_step, solver_grid
from ..model import FeatureBuffer
from ..precision import bf16_by_default
from ..seeding import DISTILL_BATCH, generator_for
from .loop import distributed, learning_rate, load_training_data, optimize, progress_bar, resume, save_state
from .train import random_known


@dataclass
class DistillConfig:
    data: str
    teacher: str                 # checkpoint folder holding diffusion.safetensors
    out: str                     # where the checkpoint with lcm.safetensors goes (may equal teacher)
    steps: int = 1000
    batch_size: int = 64
    lr: float = 1e-4
    warmup: int = 50
    target_decay: float = 0.95   # EMA of the target network (LCM's mu)
    seed: int = 0
    bf16: bool = field(default_factory=bf16_by_default)  # bf16 autocast only where native (precision.py)
    save_every: int = 100
    threads: int = 0
    guidance: float | None = None  # the teacher's guidance scale; None: the one its checkpoint names
    guidance_max_t: int | None = None  # guided at timesteps up to this; None: as its checkpoint names
    # how the student samples (info["guidance"]["lcm"], guidance.py): None unguided, or e.g.
    # {"gesture": 2.5, "max_t": 400}, chosen by evaluating the student after distillation
    sample_guidance: dict | None = None
    prefix_fraction: float = 0.5   # with model continuation, as in training (train.py)
    max_prefix: int = 48
    pause_windows: float = 0.0     # as in training (train.py)
    # the student's gesture x0 also pulled to the data, as fold.py's (data_terms): on every frame, and its
    # velocity on settled-pause frames
    data_weight: float = 0.0
    pause_velocity: float = 0.0


def grid_pairs(solver_steps: int, num_train_timesteps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(t, s) pairs of adjacent points on a solver grid; s = -1 after the last point (fully clean)."""
    grid = solver_grid(solver_steps, num_train_timesteps)
    return torch.tensor(grid), torch.tensor(grid[1:] + [-1])


def guided_teacher(teacher, x_t, t, audio, speaker, guidance: Guidance, known=None) -> dict[str, torch.Tensor]:
    """The teacher's raw predictions, classifier-free guided where `guidance` says: the sampler's own
    guided evaluation, the audio encoded once."""
    features = teacher.encode_audio(audio)
    if guidance.active:
        features, speaker = unconditional_rows(features, speaker)
    return evaluate(teacher, x_t, t, features, speaker, FeatureBuffer(), guidance, known)[0]


def teacher_guidance(checkpoint: Checkpoint, scale: float | None, max_t: int | None) -> Guidance:
    """The teacher checkpoint's guidance, with the scale (both branches) or max_t overridden where given."""
    guidance = checkpoint.guidance_for("diffusion")
    if scale is not None:
        guidance = replace(guidance, scales=dict.fromkeys(BRANCHES, float(scale)))
    return guidance if max_t is None else replace(guidance, max_t=int(max_t))


def data_terms(losses: dict, data_weight: float, pause_velocity: float, schedule: NoiseSchedule, prediction: str,
               output: dict, x_t: dict, t: dict, x0: dict, pause: torch.Tensor) -> None:
    """Add to the gesture loss the student's clean-motion error against the data (Huber, `data_weight`) and
    its velocity error on settled-pause frames (`pause_velocity`); fold.py's and, optionally, distillation's.
    The guided student rests its arms in pauses only as far as guidance pushes it; the pause term asks for
    the rest itself, so a lower guidance can be folded without the arms drifting through pauses. The face
    is left alone: pulled to the data too, its expressions' distance to the corpus's grew (FED 1.3 -> 1.8)."""
    b = "gesture"
    x0_hat = schedule.predicted_x0(schedule.velocity_from(output[b].float(), x_t[b], t[b], prediction), x_t[b], t[b])
    if data_weight:
        losses[b] = losses[b] + data_weight * F.huber_loss(x0_hat, x0[b], delta=1.0)
    if pause_velocity:
        still = pause[:, 1:].float()                                              # (B, N - 1)
        error = (x0_hat.diff(dim=1) - x0[b].diff(dim=1)).pow(2).mean(2)
        losses[b] = losses[b] + pause_velocity * (error * still).sum() / still.sum().clamp(min=1)


def distill(config: DistillConfig) -> Path:
    rank, world = distributed()
    if config.threads:
        torch.set_num_threads(config.threads)
    teacher_checkpoint = load_checkpoint(config.teacher)
    model_config = teacher_checkpoint.config
    teacher = teacher_checkpoint.models["diffusion"].eval().requires_grad_(False)
    guidance = teacher_guidance(teacher_checkpoint, config.guidance, config.guidance_max_t)
    data = load_training_data(config.data, model_config, model_config.window_frames, 20, teacher_checkpoint.stats)
    student = copy.deepcopy(teacher).train().requires_grad_(True)
    target = copy.deepcopy(teacher).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(student.parameters(), lr=config.lr, weight_decay=0.0)
    state_path = Path(f"{config.out}.resume") / "distill.pt"
    start = resume(state_path, config.steps, optimizer=optimizer, student=student, target=target)
    network = torch.nn.parallel.DistributedDataParallel(student) if world > 1 else student
    schedule = NoiseSchedule(model_config.num_train_timesteps)
    pairs = {b: grid_pairs(LCM_SOLVER_STEPS[b], model_config.num_train_timesteps) for b in BRANCHES}

    def velocities(output, x, t):  # the networks' raw predictions as v (schedule.py)
        return {b: schedule.velocity_from(output[b], x[b], t[b], model_config.prediction) for b in BRANCHES}

    bar = progress_bar(config.steps, start, rank == 0, "distill")
    started = time.perf_counter()
    for step in range(start, config.steps):
        generator = generator_for(config.seed, DISTILL_BATCH, step, rank)
        index = data.draw(config.batch_size, generator, config.pause_windows)
        x0, audio, speaker = data.batch(index)
        t, s, x_t = {}, {}, {}
        for b in BRANCHES:
            n = torch.randint(0, len(pairs[b][0]), (config.batch_size,), generator=generator)
            t[b], s[b] = pairs[b][0][n], pairs[b][1][n]
            x_t[b] = schedule.add_noise(x0[b], torch.randn(x0[b].shape, generator=generator), t[b])
        # a continuing model learns to continue in few steps too: the same known prefixes as in training
        known = random_known(x0, model_config, config.prefix_fraction, config.max_prefix, generator)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
            # 1. the teacher's DDIM step t -> s (the ODE solver), both branches at their own t
            v_teacher = velocities(guided_teacher(teacher, x_t, t, audio, speaker, guidance, known), x_t, t)
            x_s = {b: ddim_step(schedule, v_teacher[b], t[b], s[b], x_t[b])[0] for b in BRANCHES}
            # 2. the target network's consistency output at s
            s_clean = {b: s[b].clamp(min=0) for b in BRANCHES}
            v_target = velocities(target(x_s, s_clean, audio, speaker, known=known), x_s, s_clean)
            goal = {b: consistency_output(schedule, v_target[b], s_clean[b], x_s[b]) for b in BRANCHES}
            # at s = -1 the consistency function is the identity on the clean sample
            goal = {b: torch.where((s[b] < 0).view(-1, 1, 1), x_s[b], goal[b]) for b in BRANCHES}
        # 3. the student's consistency output at t, pulled towards it
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
            output = network(x_t, t, audio, speaker, known=known)
        v_student = velocities(output, x_t, t)
        losses = {b: F.huber_loss(consistency_output(schedule, v_student[b], t[b], x_t[b]), goal[b],
                                  delta=1.0) for b in BRANCHES}
        if config.data_weight or config.pause_velocity:
            data_terms(losses, config.data_weight, config.pause_velocity, schedule, model_config.prediction, output,
                       x_t, t, x0, data.pause[index])
        optimize(sum(losses.values()), student, optimizer, config.lr * learning_rate(step, config.steps, config.warmup),
                 target, config.target_decay)
        bar.update(1)
        bar.set_postfix(expression=f"{losses['expression'].item():.4f}", gesture=f"{losses['gesture'].item():.4f}")
        if rank == 0 and ((step + 1) % config.save_every == 0 or step + 1 == config.steps):
            save_state(state_path, student=student.state_dict(), target=target.state_dict(),
                       optimizer=optimizer.state_dict(), step=step + 1)
            info = dict(teacher_checkpoint.info)
            # the student learnt the guided teacher; it samples unguided unless told otherwise
            info["guidance"] = {**info.get("guidance", {}), "lcm": config.sample_guidance or 1.0}
            info["fresh_noise"] = {**info.get("fresh_noise", {}), "lcm": {}}  # a new student: LCM's own sampler
            info["distillation"] = {**asdict(config), "guidance": guidance.to_dict(),
                                    "completed_steps": step + 1,
                                    "seconds_this_run": round(time.perf_counter() - started, 1)}
            models = {"diffusion": teacher, "lcm": target.eval()}
            save_checkpoint(config.out, Checkpoint(model_config, teacher_checkpoint.stats, models, info))
    bar.close()
    return Path(config.out)
