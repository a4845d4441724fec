"""Diffusion training of the dual-branch model (paper section 3.3, eq. 8-11).

Per branch: 10 L_noise + 1 L_velocity + 1 L_huber, each branch at its own, independently drawn
timestep (equal on a fraction of the batch), so every branch learns to read the other at any noise
level — what asynchronous sampling relies on. A fraction of the samples (audio_dropout) is trained
without audio, so the same network is also the unconditional model of classifier-free guidance,
and in settled pauses of the speech the gesture loss weighs more (frame_weights). AdamW, warmup +
cosine learning rate, EMA weights, bf16 autocast on CPUs with bf16 units, resumable, and
DistributedDataParallel under `torchrun` (gloo on CPU).

    python -m asynfusion train --data /path/to/beat2_or_corpus --out checkpoints/mine --steps 4000
    torchrun --nproc_per_node=2 -m asynfusion train ...
"""

import copy
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F

from ..checkpoint import Checkpoint, save_checkpoint
from ..config import BRANCHES, ModelConfig
from ..diffusion.schedule import NoiseSchedule
from ..model import AsynFusionModel, known_frames
from ..motion import NormStats
from ..precision import bf16_by_default
from ..seeding import TRAIN_BATCH, generator_for
from .loop import distributed, learning_rate, load_training_data, optimize, progress_bar, resume, save_state

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
    snr_floor: float = 0.0         # ... and its floor at high noise (truncated SNR, Salimans & Ho 2022); 0 = none
    same_timestep: float = 0.25    # fraction of samples where both branches share t (as at sync sampling)
    pause_weight: float = 5.0      # a settled-pause frame's weight in the gesture loss, relative to other frames
    pause_windows: float = 0.0     # fraction of each batch drawn from windows with settled pauses (loop.py draw)
    pause_velocity: float = 1.0    # the velocity term's extra weight on settled-pause frames (gesture): stillness
    energy_weight: float = 0.0     # the gesture speed-envelope term's weight (speed_envelope); 0 = off
    audio_dropout: float = 0.15    # fraction of samples trained without audio: the unconditional model of guidance
    guidance: float = 3.0          # the guidance scale recorded for sampling (when audio_dropout > 0) ...
    guidance_max_t: int = 800      # ... at timesteps up to this one (diffusion/guidance.py)
    window: int = 64
    stride: int = 20
    bf16: bool = field(default_factory=bf16_by_default)  # bf16 autocast only where native (precision.py)
    seed: int = 0
    save_every: int = 250
    threads: int = 0               # torch threads; 0 = torch's default
    init: str | None = None        # warm start: a checkpoint folder of the same architecture (its EMA weights)
    prefix_fraction: float = 0.5   # with model continuation: fraction of samples shown a known prefix ...
    max_prefix: int = 48           # ... of 1 to this many frames (live windows continue the motion shown)


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


def prefix_mask(batch: int, window: int, fraction: float, max_prefix: int,
                generator: torch.Generator) -> torch.Tensor:
    """(B, W) bool: the first 1..max_prefix frames known on `fraction` of the samples, none on the others."""
    length = torch.randint(1, max_prefix + 1, (batch,), generator=generator)
    shown = torch.rand(batch, generator=generator) < fraction
    return (torch.arange(window) < (length * shown).unsqueeze(1))             # (B, W)


def random_known(x0: dict[str, torch.Tensor], model_config: ModelConfig, fraction: float, max_prefix: int,
                 generator: torch.Generator) -> dict[str, torch.Tensor] | None:
    """Each branch's known-frames input (model.known_frames) for one random `prefix_mask` shared by both
    branches; None for a model without continuation. Training, distillation and folding all use it."""
    if not model_config.continuation:
        return None
    batch, window = x0["gesture"].shape[:2]
    mask = prefix_mask(batch, window, fraction, max_prefix, generator)
    return {b: known_frames(x0[b], mask) for b in BRANCHES}


def noise_loss_weights(schedule: NoiseSchedule, t: torch.Tensor, gamma: float, floor: float = 0.0) -> torch.Tensor:
    """Per-sample weight clamp(SNR, floor, gamma) / SNR of the noise loss (1 when gamma is 0).

    The noise error is sqrt(SNR) times the clean-motion error, so an unweighted noise loss spends
    almost all its gradient on the least noisy timesteps (SNR ~ 1e4 at t = 0); the weight caps that.
    At the other end the clean-motion error weighs SNR: ~0.1 at t = 800, 0 at t = 999, so the network
    barely learns what the audio says about the motion at the noise levels where a sample's placement
    is decided (measured on v6: the audio moved the gesture prediction < 10 % at t = 800). `floor`
    keeps that weight from falling below it (truncated SNR, Salimans & Ho 2022: floor 1).
    """
    if not gamma:
        return torch.ones(len(t))
    a = schedule.alpha_bar_at(t)
    snr = a / (1 - a)
    return snr.clamp(min=floor, max=gamma) / snr.clamp(min=1e-12)


def frame_weights(pause: torch.Tensor, pause_weight: float) -> torch.Tensor:
    """(B, W) per-frame loss weights: `pause_weight` in settled pauses, 1 elsewhere, mean 1 per window.

    Real speakers rest their arms in pauses; in a corpus window the pause frames are few, so an
    unweighted loss lets the network blur the retraction and keep gesturing through the pause.
    """
    weights = 1.0 + (pause_weight - 1.0) * pause.float()
    return weights / weights.mean(1, keepdim=True)


ENVELOPE_FRAMES = (5, 15)  # the motion box-smoothed over 5 frames, its speed over 15 (0.5 s at 30 fps)


def speed_envelope(x: torch.Tensor) -> torch.Tensor:
    """(B, W, D) -> (B, W - 1): how fast the motion moves around each step, whatever its direction.

    The motion is box-smoothed over ENVELOPE_FRAMES[0] frames first, so a tremble earns no speed; the
    step lengths are then averaged over ENVELOPE_FRAMES[1] steps. The velocity term cannot teach this:
    at high noise the best velocity under a squared error is the mean of the gestures the audio allows,
    whose directions cancel; the envelope keeps how much the body moves while the voice is louder or
    quieter (measured on corpus v4's test split: the data's loud/quiet speed ratio 0.94, v8's DDIM 0.97).
    """
    def box(values: torch.Tensor, width: int) -> torch.Tensor:  # (B, C, N) -> (B, C, N), edges averaged over less
        return F.avg_pool1d(values, width, stride=1, padding=width // 2, count_include_pad=False)
    smooth = box(x.transpose(1, 2), ENVELOPE_FRAMES[0]).transpose(1, 2)
    steps = (smooth[:, 1:] - smooth[:, :-1]).norm(dim=-1)
    return box(steps.unsqueeze(1), ENVELOPE_FRAMES[1]).squeeze(1)


ENVELOPE_FLOOR = 0.05  # added to a window's mean envelope: a still window (a pause) is not divided by ~0


def relative(envelope: torch.Tensor) -> torch.Tensor:
    """(B, N) speed envelope over its window's mean: where the window moves more or less, not how much in all
    (an absolute envelope term, tried first, raised the speed everywhere: the README's "Design")."""
    return envelope / (envelope.mean(1, keepdim=True) + ENVELOPE_FLOOR)


def diffusion_loss(model, schedule: NoiseSchedule, x0: dict[str, torch.Tensor], audio: torch.Tensor,
                   speaker: torch.Tensor, t: dict[str, torch.Tensor], noise: dict[str, torch.Tensor],
                   bf16: bool, snr_gamma: float = 0.0, prediction: str = "x0",
                   weights: dict[str, torch.Tensor] | None = None,
                   keep_audio: torch.Tensor | None = None,
                   known: dict[str, torch.Tensor] | None = None,
                   velocity_weights: dict[str, torch.Tensor] | None = None,
                   snr_floor: float = 0.0, energy_weight: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
    """Eq. 8-11 summed over both branches, the noise term min-SNR weighted (floored by `snr_floor`) and every
    term weighted per frame by `weights[branch]` (B, W) where given (the velocity term by
    `velocity_weights[branch]` where that is given); samples where `keep_audio` (B,) is False see no audio;
    `known` gives frames the model continues from (model.denoise). With `energy_weight`, the error of the
    gesture's `relative` `speed_envelope` is added (weighted per frame like the x0 terms).
    Returns (loss, per-term log)."""
    x_t = {b: schedule.add_noise(x0[b], noise[b], t[b]) for b in BRANCHES}
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        output = model(x_t, t, audio, speaker, keep_audio, known)
    total, log = 0.0, {}
    for b in BRANCHES:
        v = schedule.velocity_from(output[b], x_t[b], t[b], prediction)
        noise_hat = schedule.predicted_noise(v, x_t[b], t[b])
        x0_hat = schedule.predicted_x0(v, x_t[b], t[b])
        w = (weights or {}).get(b)
        if w is None:
            w = torch.ones(x0[b].shape[:2])
        w_velocity = (velocity_weights or {}).get(b, w)

        def per_frame(error: torch.Tensor, frame_weight: torch.Tensor) -> torch.Tensor:
            return (error.mean(2) * frame_weight).mean(1)  # (B, N, D) -> (B,)
        terms = {
            "noise": (per_frame((noise_hat - noise[b]).pow(2), w)                                   # eq. 8
                      * noise_loss_weights(schedule, t[b], snr_gamma, snr_floor)).mean(),
            "velocity": per_frame((x0_hat[:, 1:] - x0_hat[:, :-1]                                   # eq. 9
                                   - (x0[b][:, 1:] - x0[b][:, :-1])).pow(2), w_velocity[:, 1:]).mean(),
            "huber": per_frame(F.huber_loss(x0_hat, x0[b], delta=1.0, reduction="none"), w).mean(),  # eq. 10
        }
        if energy_weight and b == "gesture":
            terms["energy"] = ((relative(speed_envelope(x0_hat)) - relative(speed_envelope(x0[b]))).pow(2)
                               * w[:, 1:]).mean()
        scale = LOSS_WEIGHTS | {"energy": energy_weight}
        total = total + sum(scale[k] * value for k, value in terms.items())                        # eq. 11
        log.update({f"{b[0]}_{k}": value.item() for k, value in terms.items()})
    return total, log


# ----------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------
def warm_start(path: str, model_config: ModelConfig) -> tuple[dict, NormStats]:
    """(diffusion weights, normalization stats) of a checkpoint of the same architecture; InputError names a
    mismatch. The run keeps the checkpoint's stats rather than refitting them on its data: the weights
    were learnt in that normalization, and the LCM student a fine-tuned teacher is shipped beside reads
    the same stats (one stats file a checkpoint).

    A checkpoint without continuation or pooled audio may start one with them: their layers keep their zero init.
    """
    from ..checkpoint import load_checkpoint
    from ..errors import InputError

    checkpoint = load_checkpoint(path)
    added = ("continuation", "pooled_audio")  # layers a warm start may add, never drop
    if replace(checkpoint.config, **{name: getattr(model_config, name) for name in added}) != model_config or \
            any(getattr(checkpoint.config, name) and not getattr(model_config, name) for name in added):
        raise InputError(f"--init {path}: its model config {checkpoint.config} differs from this run's {model_config}")
    state = AsynFusionModel(model_config).state_dict()
    state.update(checkpoint.models["diffusion"].state_dict())
    return state, checkpoint.stats


def train(config: TrainConfig, model_config: ModelConfig, info: dict | None = None) -> Path:
    """Train (or resume) and write an EMA checkpoint to config.out; returns its path."""
    rank, world = distributed()
    if config.threads:
        torch.set_num_threads(config.threads)
    out = Path(config.out)
    state_path = Path(f"{out}.resume") / "train.pt"
    weights, stats = warm_start(config.init, model_config) if config.init else (None, None)
    data = load_training_data(config.data, model_config, config.window, config.stride, stats)
    torch.manual_seed(config.seed)
    model = AsynFusionModel(model_config)
    if weights is not None:
        model.load_state_dict(weights)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    start = resume(state_path, config.steps, optimizer=optimizer, model=model, ema=ema)
    network = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    schedule = NoiseSchedule(model_config.num_train_timesteps)
    bar = progress_bar(config.steps, start, rank == 0, "train")
    started = time.perf_counter()
    log = {}
    for step in range(start, config.steps):
        # a generator per step and rank: resuming replays exactly the batches a straight run would see
        generator = generator_for(config.seed, TRAIN_BATCH, step, rank)
        index = data.draw(config.batch_size, generator, config.pause_windows)
        x0, audio, speaker = data.batch(index)
        weights = {"gesture": frame_weights(data.pause[index], config.pause_weight)}
        # a drift of the arms through a pause costs the x0 terms little; its velocity error, raised, does
        velocity_weights = {"gesture": weights["gesture"] * (1 + (config.pause_velocity - 1) * data.pause[index])}
        t = sample_timesteps(config.batch_size, model_config.num_train_timesteps, config.same_timestep, generator)
        noise = {b: torch.randn(x0[b].shape, generator=generator) for b in BRANCHES}
        keep_audio = torch.rand(config.batch_size, generator=generator) >= config.audio_dropout \
            if config.audio_dropout else None
        known = random_known(x0, model_config, config.prefix_fraction, config.max_prefix, generator)
        loss, log = diffusion_loss(network, schedule, x0, audio, speaker, t, noise, config.bf16, config.snr_gamma,
                                   model_config.prediction, weights, keep_audio, known,
                                   velocity_weights, config.snr_floor, config.energy_weight)
        optimize(loss, model, optimizer, config.lr * learning_rate(step, config.steps, config.warmup),
                 ema, min(config.ema_decay, (1 + step) / (10 + step)))
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{optimizer.param_groups[0]['lr']:.1e}")
        if rank == 0 and ((step + 1) % config.save_every == 0 or step + 1 == config.steps):
            save_state(state_path, model=model.state_dict(), ema=ema.state_dict(),
                       optimizer=optimizer.state_dict(), step=step + 1)
            record = {"trained_on": info.get("trained_on", config.data) if info else config.data,
                      "description": (info or {}).get("description", ""),
                      "guidance": {"diffusion": config.guidance if config.audio_dropout > 0 else 1.0,
                                   "max_t": config.guidance_max_t},
                      "training": {**asdict(config), "completed_steps": step + 1, "world_size": world,
                                   "seconds_this_run": round(time.perf_counter() - started, 1),
                                   "last_losses": {k: round(v, 4) for k, v in log.items()}}}
            save_checkpoint(out, Checkpoint(model_config, data.stats, {"diffusion": ema}, record))
    bar.close()
    if world > 1:
        dist.barrier()
    return out
