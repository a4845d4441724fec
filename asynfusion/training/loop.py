"""What training and distillation share: ranks under torchrun, the normalized training windows, the
learning-rate schedule, the optimizer step with its EMA, resumable state and the progress bar."""

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from .. import settings
from ..config import ModelConfig
from ..data.beat2 import expression_space, load_windows
from ..motion import NormStats


def distributed() -> tuple[int, int]:
    """(rank, world size); starts the gloo process group when run under torchrun."""
    world = settings.distributed_world_size()
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


@dataclass
class TrainingData:
    expression: torch.Tensor  # (N, W, D_E) normalized
    gesture: torch.Tensor     # (N, W, D_G) normalized
    audio: torch.Tensor       # (N, W, A) normalized
    speaker: torch.Tensor     # (N,)
    pause: torch.Tensor       # (N, W) bool: settled pauses of the speech
    stats: NormStats
    expression_space: str

    def draw(self, batch_size: int, generator: torch.Generator, pause_windows: float = 0.0) -> torch.Tensor:
        """(batch_size,) random window indices; `pause_windows` of them drawn among the windows holding
        settled-pause frames (3 % of the corpus's frames, in a sixth of its windows: drawn uniformly,
        the network sees too few rests to learn that a speaker's arms settle in a pause)."""
        index = torch.randint(0, len(self.expression), (batch_size,), generator=generator)
        resting = self.pause.any(1).nonzero().squeeze(1)
        count = round(batch_size * pause_windows) if len(resting) else 0
        if count:
            index[:count] = resting[torch.randint(0, len(resting), (count,), generator=generator)]
        return index

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

    def normalize(kind: str, x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(stats.normalize(kind, x).astype(np.float32))

    return TrainingData(
        normalize("expression", windows.expression),
        normalize("gesture", windows.gesture),
        normalize("audio", windows.audio),
        torch.from_numpy(windows.speaker.astype(np.int64)).clamp(max=max(config.num_speakers - 1, 0)),
        torch.from_numpy(windows.pause), stats, expression_space(root))


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


def resume(path: Path, steps: int, **stateful) -> int:
    """Load each object's state (modules, optimizer) saved by save_state under its name; the step to
    continue from (0 when there is nothing to resume). A state already `steps` or more steps in is a
    finished run: InputError, rather than a run that trains nothing and says it wrote a checkpoint."""
    from ..errors import InputError

    state = load_state(path)
    if state is None:
        return 0
    if int(state["step"]) >= steps:
        raise InputError(f"{path.parent} holds a finished run of {int(state['step'])} steps (--steps {steps}): "
                         f"nothing to train; give a new --out, more --steps, or remove {path.parent}")
    for name, obj in stateful.items():
        obj.load_state_dict(state[name])
    return int(state["step"])


def progress_bar(total: int, initial: int, enabled: bool, description: str):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, desc=description, dynamic_ncols=True)
