"""Folding the LCM student's sampling-time guidance into its weights (guidance distillation; Meng et
al. 2023, "On distillation of guided diffusion models", its first stage).

The student distilled from the guided teacher (distill.py) takes on only part of the guidance in a few
hundred steps, so it samples best with its gesture branch guided again (info["guidance"]["lcm"]), and a
guided step evaluates the network twice. Folding trains a copy of the student to output in one
evaluation what the guided pair outputs: at noisy training windows, each branch at its own timestep
drawn from the points its LCM steps can land on (the solver grids of diffusion/registry.py), the copy's
raw prediction is pulled to the guided student's (guidance.evaluate, through distill.guided_teacher).
The copy then samples unguided, so the LCM samplers cost what their steps say: async 4/8 is 4 + 8
network evaluations, as in the paper's Table 3.

Optionally the copy's gesture estimate is also pulled to the data (`data_terms`: a Huber term, and its
velocity on settled-pause frames), so that less guidance need be folded (checkpoint v9: w = 1.85 with
both, where v8 folded 2.25 alone), and the checkpoint records how the folded student samples
(`fresh_noise`, schedule.lcm_step).

    python -m asynfusion fold-guidance --data corpus/ --checkpoint checkpoints/mine --steps 150 \
        --data-weight 0.3 --pause-velocity 10 --fresh-noise gesture=0.7
"""

import copy
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from ..checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from ..config import BRANCHES
from ..diffusion.guidance import Guidance
from ..diffusion.registry import LCM_SOLVER_STEPS
from ..diffusion.schedule import NoiseSchedule, solver_grid
from ..errors import InputError
from ..precision import bf16_by_default
from ..seeding import FOLD_BATCH, generator_for
from .distill import data_terms, guided_teacher
from .loop import learning_rate, load_state, load_training_data, optimize, progress_bar, resume, save_state
from .train import random_known


@dataclass
class FoldConfig:
    data: str
    checkpoint: str                # a distilled checkpoint whose LCM samplers are guided
    out: str                       # where the checkpoint with the folded lcm.safetensors goes (may be the same)
    steps: int = 300
    batch_size: int = 64
    lr: float = 1e-4
    warmup: int = 30
    ema_decay: float = 0.99        # the saved weights are an average over the last ~100 steps
    seed: int = 0
    bf16: bool = field(default_factory=bf16_by_default)
    save_every: int = 50
    threads: int = 0
    prefix_fraction: float = 0.5   # with model continuation, as in training (train.py)
    max_prefix: int = 48
    pause_windows: float = 0.0     # as in training (train.py)
    # beside the guided student's output, the copy's gesture x0 is pulled to the data (training's eq. 9-10
    # terms): `data_weight` on every frame, `pause_velocity` on its velocity in settled-pause frames
    data_weight: float = 0.0
    pause_velocity: float = 0.0
    # how the folded student samples (info["fresh_noise"]["lcm"], schedule.lcm_step): None is LCM's own
    # sampler, or e.g. {"gesture": 0.8}, chosen by evaluating the student after folding
    fresh_noise: dict | None = None


def fold_guidance(config: FoldConfig) -> Path:
    if config.threads:
        torch.set_num_threads(config.threads)
    checkpoint = load_checkpoint(config.checkpoint)
    if "lcm" not in checkpoint.models:
        raise InputError(f"{config.checkpoint} has no distilled LCM weights to fold guidance into (run distill)")
    state_path = Path(f"{config.out}.resume") / "fold.pt"
    resumed = load_state(state_path)  # a resumed run keeps the guided student it started from
    guidance = Guidance.parse(resumed["guidance"], 0) if resumed else checkpoint.guidance_for("lcm")
    if not guidance.active:
        raise InputError(f"the LCM samplers of {config.checkpoint} are not guided: nothing to fold")
    model_config = checkpoint.config
    guided = checkpoint.models["lcm"].eval().requires_grad_(False)
    student = copy.deepcopy(guided).train().requires_grad_(True)
    average = copy.deepcopy(guided).eval().requires_grad_(False)
    data = load_training_data(config.data, model_config, model_config.window_frames, 20, checkpoint.stats)
    optimizer = torch.optim.AdamW(student.parameters(), lr=config.lr, weight_decay=0.0)
    start = resume(state_path, config.steps, optimizer=optimizer, student=student, average=average, guided=guided)
    schedule = NoiseSchedule(model_config.num_train_timesteps)
    grids = {b: torch.tensor(solver_grid(LCM_SOLVER_STEPS[b], model_config.num_train_timesteps)) for b in BRANCHES}
    bar = progress_bar(config.steps, start, True, "fold guidance")
    started = time.perf_counter()
    for step in range(start, config.steps):
        generator = generator_for(config.seed, FOLD_BATCH, step)
        index = data.draw(config.batch_size, generator, config.pause_windows)
        x0, audio, speaker = data.batch(index)
        t = {b: grids[b][torch.randint(0, len(grids[b]), (config.batch_size,), generator=generator)] for b in BRANCHES}
        x_t = {b: schedule.add_noise(x0[b], torch.randn(x0[b].shape, generator=generator), t[b]) for b in BRANCHES}
        known = random_known(x0, model_config, config.prefix_fraction, config.max_prefix, generator)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
            goal = guided_teacher(guided, x_t, t, audio, speaker, guidance, known)   # two evaluations
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
            output = student(x_t, t, audio, speaker, known=known)                     # one
        losses = {b: F.huber_loss(output[b].float(), goal[b].float(), delta=1.0) for b in BRANCHES}
        if config.data_weight or config.pause_velocity:
            data_terms(losses, config.data_weight, config.pause_velocity, schedule, model_config.prediction, output,
                       x_t, t, x0, data.pause[index])
        optimize(sum(losses.values()), student, optimizer, config.lr * learning_rate(step, config.steps, config.warmup),
                 average, min(config.ema_decay, (1 + step) / (10 + step)))
        bar.update(1)
        bar.set_postfix(expression=f"{losses['expression'].item():.5f}", gesture=f"{losses['gesture'].item():.5f}")
        if (step + 1) % config.save_every == 0 or step + 1 == config.steps:
            save_state(state_path, student=student.state_dict(), average=average.state_dict(),
                       guided=guided.state_dict(), guidance=guidance.to_dict(), optimizer=optimizer.state_dict(),
                       step=step + 1)
            info = dict(checkpoint.info)
            info["guidance"] = {**info.get("guidance", {}), "lcm": 1.0}   # folded in: the student samples unguided
            info["fresh_noise"] = {**info.get("fresh_noise", {}), "lcm": config.fresh_noise or {}}
            info["fold_guidance"] = {**asdict(config), "guidance": guidance.to_dict(), "completed_steps": step + 1,
                                     "seconds_this_run": round(time.perf_counter() - started, 1)}
            models = {"diffusion": checkpoint.models["diffusion"], "lcm": average.eval()}
            save_checkpoint(config.out, Checkpoint(model_config, checkpoint.stats, models, info))
    bar.close()
    return Path(config.out)
