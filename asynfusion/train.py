"""Diffusion training of the dual-branch model (paper section 3.3, eq. 8-11).

Per branch: 10 L_noise + 1 L_velocity + 1 L_huber, each branch at its own, independently drawn
timestep (equal on a fraction of the batch), so every branch learns to read the other at any noise
level — what asynchronous sampling relies on. AdamW, warmup + cosine learning rate, EMA weights,
bf16 autocast on CPUs with bf16 units, resumable, and DistributedDataParallel under `torchrun` (gloo on CPU).

    python -m asynfusion train --data /path/to/beat2_or_corpus --out checkpoints/mine --steps 4000
    torchrun --nproc_per_node=2 -m asynfusion train ...
"""

import copy
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from .checkpoint import Checkpoint, save_checkpoint
from .config import ModelConfig
from .data import expression_space, load_windows
from .diffusion.schedule import NoiseSchedule
from .model import BRANCHES, AsynFusionModel
from .motion import NormStats
from .precision import bf16_by_default

LOSS_WEIGHTS = {"noise": 10.0, "velocity": 1.0, "huber": 1.0}  # lambda_t, lambda_v, lambda_delta (eq. 11)


@dataclass
class TrainConfig:
    data: str                      # a BEAT2-layout folder: real BEAT2 or `make-corpus` output
    out: str                       # checkpoint folder to write
    steps: int = 4000
    batch_size: int = 64           # per process
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup: int = 200
    ema_decay: float = 0.999       # reached after warm-up: the decay at step k is min(ema_decay, (1+k)/(10+k))
    snr_gamma: float = 5.0         # min-SNR-gamma weighting of the noise loss (Hang et al. 2023); 0 = off
    same_timestep: float = 0.25    # fraction of samples where both branches share t (as at sync sampling)
    window: int = 64
    stride: int = 20
    bf16: bool = field(default_factory=bf16_by_default)  # bf16 autocast only where native (precision.py)
    seed: int = 0
    save_every: int = 250
    threads: int = 0               # torch threads; 0 = torch's default
    init: str | None = None        # warm start: a checkpoint folder of the same architecture (its EMA weights)


# ----------------------------------------------------------------------------
# Pieces shared with distillation
# ----------------------------------------------------------------------------
def distributed() -> tuple[int, int]:
    """(rank, world size); starts the gloo process group when run under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


@dataclass
class TrainingData:
    expression: torch.Tensor  # (N, W, D_E) normalized
    gesture: torch.Tensor     # (N, W, D_G) normalized
    audio: torch.Tensor       # (N, W, A) normalized
    speaker: torch.Tensor     # (N,)
    stats: NormStats
    expression_space: str

    def batch(self, index: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        return {"expression": self.expression[index], "gesture": self.gesture[index]}, self.audio[index], \
            self.speaker[index]


def load_training_data(root: str, config: ModelConfig, window: int, stride: int,
                       stats: NormStats | None = None) -> TrainingData:
    """Windows of the train split, normalized with `stats` (fitted on them when None)."""
    windows = load_windows(root, "train", window, stride, config.expression_coeffs, config.audio_encoder)
    if len(windows) == 0:
        raise SystemExit(f"no training windows in {root} (train split empty or clips shorter than {window} frames)")
    if stats is None:
        stats = NormStats.fit(windows.expression.reshape(-1, config.expression_dim),
                              windows.gesture.reshape(-1, config.gesture_dim),
                              windows.audio.reshape(-1, windows.audio.shape[-1]))

    def normalize(x, mean, std):
        return torch.from_numpy(((x - mean) / std).astype(np.float32))

    return TrainingData(
        normalize(windows.expression, stats.expression_mean, stats.expression_std),
        normalize(windows.gesture, stats.gesture_mean, stats.gesture_std),
        normalize(windows.audio, stats.audio_mean, stats.audio_std),
        torch.from_numpy(windows.speaker.astype(np.int64)).clamp(max=max(config.num_speakers - 1, 0)),
        stats, expression_space(root))


def learning_rate(step: int, total: int, warmup: int) -> float:
    """Linear warmup then cosine decay to 10 %: the multiplier of the base learning rate."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


@torch.no_grad()
def ema_update(target: torch.nn.Module, source: torch.nn.Module, decay: float) -> None:
    for p_target, p_source in zip(target.parameters(), source.parameters()):
        p_target.lerp_(p_source.detach(), 1 - decay)


def optimize(loss: torch.Tensor, model: torch.nn.Module, optimizer: torch.optim.Optimizer, lr: float,
             average: torch.nn.Module, decay: float) -> None:
    """One update at learning rate `lr`: backward, clip the gradient norm at 1, step, then the
    averaged copy (training's EMA weights, distillation's target network) follows."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    ema_update(average, model, decay)


def save_state(path: Path, **state) -> None:
    """Resume state (our own file, reloaded with weights_only=True: no arbitrary unpickling)."""
    tmp = path.with_suffix(".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_state(path: Path) -> dict | None:
    return torch.load(path, weights_only=True) if path.is_file() else None


def progress_bar(total: int, initial: int, enabled: bool, description: str):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, desc=description, dynamic_ncols=True)


# ----------------------------------------------------------------------------
# The diffusion loss
# ----------------------------------------------------------------------------
def sample_timesteps(batch: int, num_train_timesteps: int, same_fraction: float,
                     generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Independent t_E, t_G per sample; equal on `same_fraction` of the batch."""
    t_expression = torch.randint(0, num_train_timesteps, (batch,), generator=generator)
    t_gesture = torch.randint(0, num_train_timesteps, (batch,), generator=generator)
    same = torch.rand(batch, generator=generator) < same_fraction
    return {"expression": t_expression, "gesture": torch.where(same, t_expression, t_gesture)}


def noise_loss_weights(schedule: NoiseSchedule, t: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per-sample weight min(SNR, gamma) / SNR of the noise loss (1 when gamma is 0).

    The noise error is sqrt(SNR) times the clean-motion error, so an unweighted noise loss spends
    almost all its gradient on the least noisy timesteps (SNR ~ 1e4 at t = 0); the weight caps that.
    """
    if not gamma:
        return torch.ones(len(t))
    a = schedule.alpha_bar_at(t)
    snr = a / (1 - a)
    return snr.clamp(max=gamma) / snr


def diffusion_loss(model, schedule: NoiseSchedule, x0: dict[str, torch.Tensor], audio: torch.Tensor,
                   speaker: torch.Tensor, t: dict[str, torch.Tensor], noise: dict[str, torch.Tensor],
                   bf16: bool, snr_gamma: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
    """Eq. 8-11 summed over both branches, the noise term min-SNR weighted; returns (loss, per-term log)."""
    x_t = {b: schedule.add_noise(x0[b], noise[b], t[b]) for b in BRANCHES}
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        v = model(x_t, t, audio, speaker)
    total, log = 0.0, {}
    for b in BRANCHES:
        prediction = v[b].float()
        noise_hat = schedule.predicted_noise(prediction, x_t[b], t[b])
        x0_hat = schedule.predicted_x0(prediction, x_t[b], t[b])
        terms = {
            "noise": ((noise_hat - noise[b]).pow(2).mean((1, 2))                                    # eq. 8
                      * noise_loss_weights(schedule, t[b], snr_gamma)).mean(),
            "velocity": F.mse_loss(x0_hat[:, 1:] - x0_hat[:, :-1], x0[b][:, 1:] - x0[b][:, :-1]),  # eq. 9
            "huber": F.huber_loss(x0_hat, x0[b], delta=1.0),                                       # eq. 10
        }
        total = total + sum(LOSS_WEIGHTS[k] * value for k, value in terms.items())                 # eq. 11
        log.update({f"{b[0]}_{k}": value.item() for k, value in terms.items()})
    return total, log


# ----------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------
def warm_start_weights(path: str, model_config: ModelConfig) -> dict:
    """The diffusion weights of a checkpoint of the same architecture; InputError names a mismatch."""
    from .checkpoint import load_checkpoint
    from .errors import InputError

    checkpoint = load_checkpoint(path)
    if checkpoint.config != model_config:
        raise InputError(f"--init {path}: its model config {checkpoint.config} differs from this run's {model_config}")
    return checkpoint.models["diffusion"].state_dict()


def train(config: TrainConfig, model_config: ModelConfig, info: dict | None = None) -> Path:
    """Train (or resume) and write an EMA checkpoint to config.out; returns its path."""
    rank, world = distributed()
    if config.threads:
        torch.set_num_threads(config.threads)
    out = Path(config.out)
    state_path = Path(f"{out}.resume") / "train.pt"
    data = load_training_data(config.data, model_config, config.window, config.stride)
    torch.manual_seed(config.seed)
    model = AsynFusionModel(model_config)
    if config.init:
        model.load_state_dict(warm_start_weights(config.init, model_config))
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    start = 0
    if (state := load_state(state_path)) is not None:
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["step"])
    network = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    schedule = NoiseSchedule(model_config.num_train_timesteps)
    bar = progress_bar(config.steps, start, rank == 0, "train")
    started = time.perf_counter()
    log = {}
    for step in range(start, config.steps):
        # a generator per step and rank: resuming replays exactly the batches a straight run would see
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + step * world + rank)
        index = torch.randint(0, len(data.expression), (config.batch_size,), generator=generator)
        x0, audio, speaker = data.batch(index)
        t = sample_timesteps(config.batch_size, model_config.num_train_timesteps, config.same_timestep, generator)
        noise = {b: torch.randn(x0[b].shape, generator=generator) for b in BRANCHES}
        loss, log = diffusion_loss(network, schedule, x0, audio, speaker, t, noise, config.bf16, config.snr_gamma)
        optimize(loss, model, optimizer, config.lr * learning_rate(step, config.steps, config.warmup),
                 ema, min(config.ema_decay, (1 + step) / (10 + step)))
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{optimizer.param_groups[0]['lr']:.1e}")
        if rank == 0 and ((step + 1) % config.save_every == 0 or step + 1 == config.steps):
            save_state(state_path, model=model.state_dict(), ema=ema.state_dict(),
                       optimizer=optimizer.state_dict(), step=step + 1)
            record = {"trained_on": info.get("trained_on", config.data) if info else config.data,
                      "description": (info or {}).get("description", ""),
                      "training": {**asdict(config), "completed_steps": step + 1, "world_size": world,
                                   "seconds_this_run": round(time.perf_counter() - started, 1),
                                   "last_losses": {k: round(v, 4) for k, v in log.items()}}}
            save_checkpoint(out, Checkpoint(model_config, data.stats, {"diffusion": ema}, record))
    bar.close()
    if world > 1:
        dist.barrier()
    return out
