"""Checkpoints that describe themselves: a folder with config.json, safetensors weights and stats.

    config.json            {"format", "model": ModelConfig, "trained_on", "description", "training", ...}
    diffusion.safetensors  the diffusion model (DDIM sampling)
    lcm.safetensors        the per-branch distilled consistency model (LCM sampling); optional
    stats.safetensors      normalization mean/std of expression, gesture and audio features

Loading needs nothing else and never unpickles anything.
"""

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file as load_numpy
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import load_file, save_file

from . import settings
from .config import BRANCHES, ModelConfig
from .diffusion.guidance import Guidance
from .errors import InputError
from .model import AsynFusionModel
from .motion import NormStats

FORMAT = "asynfusion-checkpoint/1"
WEIGHT_FILES = {"diffusion": "diffusion.safetensors", "lcm": "lcm.safetensors"}


@dataclass
class Checkpoint:
    config: ModelConfig
    stats: NormStats
    models: dict[str, AsynFusionModel]  # "diffusion" and, once distilled, "lcm"
    info: dict = field(default_factory=dict)  # trained_on, description, training record
    path: Path | None = None

    @property
    def trained(self) -> bool:
        return self.info.get("trained_on", "untrained") != "untrained"

    def model_for(self, weights: str) -> AsynFusionModel:
        """The weights a sampler uses (its registry entry's `weights`); the diffusion model when a
        checkpoint was never distilled."""
        return self.models.get(weights, self.models["diffusion"])

    def guidance_for(self, weights: str) -> Guidance:
        """The classifier-free guidance to sample `model_for(weights)` with (diffusion/guidance.py), as
        info["guidance"] names it: the diffusion model's is chosen after training; a distilled student
        learnt the guided teacher, and may be guided further. None named: unguided."""
        kind = weights if weights in self.models else "diffusion"
        named = self.info.get("guidance", {})
        return Guidance.parse(named.get(kind, 1.0), named.get("max_t", self.config.num_train_timesteps))

    def fresh_noise_for(self, weights: str) -> dict[str, float]:
        """Per branch, the share of new noise in an LCM step of `model_for(weights)` (schedule.lcm_step), as
        info["fresh_noise"] names it for the distilled student (chosen by evaluating it); 1 where unnamed."""
        kind = weights if weights in self.models else "diffusion"
        shares = {b: float(w) for b, w in self.info.get("fresh_noise", {}).get(kind, {}).items()}
        if any(b not in BRANCHES or not 0.0 <= w <= 1.0 for b, w in shares.items()):
            raise InputError(f"the checkpoint{f' at {self.path}' if self.path else ''} names fresh_noise {shares} "
                             f"for its {kind} weights: "
                             f"expected branches ({', '.join(BRANCHES)}) with shares from 0 to 1")
        return shares

    def sampling_for(self, weights: str) -> dict:
        """What sampler.sample takes from the checkpoint for `model_for(weights)`: its guidance and the fresh
        noise of its LCM steps (one place, so the pipeline and the live path cannot sample differently)."""
        return {"guidance": self.guidance_for(weights), "fresh_noise": self.fresh_noise_for(weights)}


@contextmanager
def atomic_folder(path: str | os.PathLike):
    """Yields a temporary folder beside `path` that replaces `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{path.name}-", dir=path.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; a checkpoint folder is meant to be shared
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_checkpoint(path: str | os.PathLike, checkpoint: Checkpoint, half: bool = True) -> None:
    """Write a checkpoint folder atomically (fp16 weights by default: half the size, same motion)."""
    with atomic_folder(path) as tmp:
        for name, model in checkpoint.models.items():
            state = {k: (v.half() if half and v.is_floating_point() else v).contiguous()
                     for k, v in model.state_dict().items()}
            save_file(state, tmp / WEIGHT_FILES[name])
        save_numpy(checkpoint.stats.to_dict(), tmp / "stats.safetensors")
        record = {"format": FORMAT, "model": checkpoint.config.to_dict(), **checkpoint.info}
        (tmp / "config.json").write_text(json.dumps(record, indent=2) + "\n")


def load_checkpoint(path: str | os.PathLike | None = None) -> Checkpoint:
    """Rebuild models, config and stats from a checkpoint folder; InputError names any mismatch."""
    path = Path(path) if path is not None else settings.checkpoint_path()
    if not (path / "config.json").is_file():
        raise InputError(f"no checkpoint at {path} (expected a folder with config.json)")
    try:
        record = json.loads((path / "config.json").read_text())
        config = ModelConfig.from_dict(record.pop("model"))
    except (ValueError, KeyError, TypeError) as error:
        raise InputError(f"checkpoint config in {path} is invalid: {error}") from None
    if record.pop("format", None) != FORMAT:
        raise InputError(f"{path} is not an {FORMAT} checkpoint")
    models = {}
    for name, filename in WEIGHT_FILES.items():
        if not (path / filename).is_file():
            continue
        model = AsynFusionModel(config)
        try:
            state = load_file(path / filename)
            model.load_state_dict({k: v.float() for k, v in state.items()})
        except (RuntimeError, OSError) as error:
            summary = str(error).strip().splitlines()[0]
            raise InputError(f"checkpoint weights {path / filename} do not match its config: {summary}") from None
        models[name] = model.eval()
    if "diffusion" not in models:
        raise InputError(f"checkpoint {path} has no {WEIGHT_FILES['diffusion']}")
    try:
        arrays = load_numpy(path / "stats.safetensors")
        stats = NormStats(**{k: arrays[k].astype(np.float32) for k in NormStats.__dataclass_fields__})
    except (OSError, KeyError, TypeError) as error:
        raise InputError(f"checkpoint {path} has missing or invalid stats.safetensors: {error}") from None
    if len(stats.expression_mean) != config.expression_dim or len(stats.gesture_mean) != config.gesture_dim \
            or len(stats.audio_mean) != config.audio_dim:
        raise InputError(f"checkpoint {path}: normalization stats do not match the model config")
    return Checkpoint(config, stats, models, record, path)


def untrained_checkpoint(config: ModelConfig | None = None, seed: int = 0) -> Checkpoint:
    """Randomly initialized weights with identity stats, labelled untrained everywhere it shows."""
    config = config or ModelConfig()
    torch.manual_seed(seed)
    stats = NormStats.identity(config.expression_dim, config.gesture_dim, config.audio_dim)
    info = {"trained_on": "untrained", "description": "UNTRAINED: random weights, for testing the plumbing only"}
    return Checkpoint(config, stats, {"diffusion": AsynFusionModel(config).eval()}, info)
