"""The motion autoencoder whose latents the Fréchet distances (FMD / FED / FGD) compare.

Two small temporal conv autoencoders, one per branch feature (expression: jaw 6D + coefficients;
gesture: 43 joints in 6D), over normalized 64-frame windows of the training split. Each encoder
downsamples 4x in time, so a window gives 16 latent frames; every latent frame is one sample of the
distribution (as EMAGE's FGD). FED uses the expression latents, FGD the gesture latents and FMD
their concatenation. Shipped in checkpoints/motion-autoencoder/:

    config.json          AutoencoderConfig and provenance
    model.safetensors    weights and the normalization mean/std (buffers)

    python -m asynfusion.evaluation.autoencoder --data /path/to/beat2_or_corpus --out checkpoints/motion-autoencoder
"""

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .. import settings
from ..config import BRANCHES
from ..errors import InputError
from ..motion import GESTURE_DIM, Motion, NormStats, expression_dim_of, motion_to_features

FORMAT = "asynfusion-motion-autoencoder/1"


@dataclass
class AutoencoderConfig:
    expression_coeffs: int = 52      # expression coefficients read (52 ARKit for the corpus, 100 for BEAT2)
    expression_space: str = "arkit"  # what they mean; latents of another space would compare nothing
    hidden: int = 64                 # conv channels: small, the evaluator only has to tell motions apart
    latent: int = 32                 # latent width per branch and latent frame
    window: int = 64                 # frames per window (the training window of the diffusion model)

    @property
    def dims(self) -> dict[str, int]:
        return {"expression": expression_dim_of(self.expression_coeffs), "gesture": GESTURE_DIM}


# ----------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------
class BranchAutoencoder(nn.Module):
    """(B, T, D) -> (B, T/4, latent) -> (B, T, D); T a multiple of 4."""

    def __init__(self, dim: int, hidden: int, latent: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        self.encoder = nn.Sequential(
            nn.Conv1d(dim, hidden, 3, padding=1), nn.GELU(),
            nn.Conv1d(hidden, hidden, 4, stride=2, padding=1), nn.GELU(),   # T -> T/2
            nn.Conv1d(hidden, hidden, 4, stride=2, padding=1), nn.GELU(),   # T/2 -> T/4
            nn.Conv1d(hidden, latent, 3, padding=1))
        self.decoder = nn.Sequential(
            nn.Conv1d(latent, hidden, 3, padding=1), nn.GELU(),
            nn.ConvTranspose1d(hidden, hidden, 4, stride=2, padding=1), nn.GELU(),
            nn.ConvTranspose1d(hidden, hidden, 4, stride=2, padding=1), nn.GELU(),
            nn.Conv1d(hidden, dim, 3, padding=1))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Normalized (B, T, D) -> (B, T/4, latent)."""
        return self.encoder(x.transpose(1, 2)).transpose(1, 2)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z.transpose(1, 2)).transpose(1, 2)


class MotionAutoencoder(nn.Module):
    """One BranchAutoencoder per branch feature; `latents` is what the Fréchet distances read."""

    def __init__(self, config: AutoencoderConfig):
        super().__init__()
        self.config = config
        self.branches = nn.ModuleDict({b: BranchAutoencoder(d, config.hidden, config.latent)
                                       for b, d in config.dims.items()})

    @torch.no_grad()
    def latents(self, expression: np.ndarray, gesture: np.ndarray, batch: int = 256) -> dict[str, np.ndarray]:
        """Raw (N, W, D) window features -> {"expression", "gesture": (N * W/4, latent)} latent frames."""
        out = {}
        for name, x in zip(BRANCHES, (expression, gesture)):
            branch = self.branches[name]
            x = torch.as_tensor(np.asarray(x, np.float32))
            z = [branch.encode(branch.normalize(x[i:i + batch])) for i in range(0, len(x), batch)]
            out[name] = torch.cat(z).reshape(-1, self.config.latent).numpy() if z else \
                np.zeros((0, self.config.latent), np.float32)
        return out

    def motion_windows(self, motions: list[Motion], stride: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Motions -> raw (N, W, D) expression and gesture windows, every `stride` frames (default W/2)."""
        window = self.config.window
        stride = stride or window // 2
        expression, gesture = [], []
        for motion in motions:
            e, g = motion_to_features(motion, self.config.expression_coeffs)
            for start in range(0, len(e) - window + 1, stride):
                expression.append(e[start:start + window])
                gesture.append(g[start:start + window])
        dims = self.config.dims
        if not expression:
            return np.zeros((0, window, dims["expression"]), np.float32), np.zeros((0, window, GESTURE_DIM), np.float32)
        return np.stack(expression), np.stack(gesture)


# ----------------------------------------------------------------------------
# Saving and loading (safetensors + JSON, nothing pickled)
# ----------------------------------------------------------------------------
def save_autoencoder(path: str | os.PathLike, model: MotionAutoencoder, info: dict | None = None) -> Path:
    """Write config.json and model.safetensors into a folder, atomically."""
    from ..checkpoint import atomic_folder

    with atomic_folder(path) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp / "model.safetensors")
        record = {"format": FORMAT, "config": asdict(model.config), **(info or {})}
        (tmp / "config.json").write_text(json.dumps(record, indent=2) + "\n")
    return Path(path)


def load_autoencoder(path: str | os.PathLike | None = None) -> MotionAutoencoder:
    """The autoencoder in `path` (default: the shipped one); InputError when it is missing or broken."""
    path = Path(path) if path is not None else settings.autoencoder_path()
    if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
        raise InputError(f"no motion autoencoder at {path} (train one: python -m asynfusion.evaluation.autoencoder "
                         f"--data DIR --out {path})")
    try:
        record = json.loads((path / "config.json").read_text())
        if record.get("format") != FORMAT:
            raise ValueError(f"format is {record.get('format')!r}, expected {FORMAT!r}")
        known = {f.name for f in fields(AutoencoderConfig)}
        config = AutoencoderConfig(**{k: v for k, v in record["config"].items() if k in known})
        model = MotionAutoencoder(config)
        model.load_state_dict(load_file(path / "model.safetensors"))
    except (ValueError, KeyError, TypeError, RuntimeError, OSError, SafetensorError) as error:
        raise InputError(f"motion autoencoder in {path} is invalid: {str(error).splitlines()[0]}") from None
    model.info = {k: v for k, v in record.items() if k not in ("format", "config")}
    return model.eval()


# ----------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------
def train_autoencoder(data: str | os.PathLike, config: AutoencoderConfig | None = None, steps: int = 3000,
                      batch_size: int = 64, lr: float = 2e-3, seed: int = 0, progress: bool = True
                      ) -> tuple[MotionAutoencoder, dict]:
    """Fit on the train split's windows of a BEAT2-layout folder; returns (model in eval mode, record).

    Loss per branch: MSE of the normalized features plus MSE of their frame-to-frame differences, so
    the latents keep the motion's dynamics and not only its poses. AdamW with a cosine schedule.
    """
    from ..data.beat2 import expression_space, load_windows

    space = expression_space(data)
    config = config or AutoencoderConfig(expression_coeffs=52 if space == "arkit" else 100, expression_space=space)
    torch.manual_seed(seed)
    windows = load_windows(data, "train", config.window, 20, config.expression_coeffs)
    features = {"expression": torch.from_numpy(windows.expression), "gesture": torch.from_numpy(windows.gesture)}
    model = MotionAutoencoder(config)
    for name, x in features.items():
        frames = x.reshape(-1, x.shape[-1])
        model.branches[name].mean.copy_(frames.mean(0))
        model.branches[name].std.copy_(frames.std(0).clamp_min(NormStats.MIN_STD))  # constant features stay finite
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps, pct_start=0.05)
    generator = torch.Generator().manual_seed(seed)
    start, losses = time.perf_counter(), []
    bar = _progress(steps, progress)
    model.train()
    for _ in range(steps):
        index = torch.randint(len(windows), (batch_size,), generator=generator)
        loss = sum(_reconstruction_loss(model.branches[name], x[index]) for name, x in features.items())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
    bar.close()
    model.eval()
    record = {"trained_on": f"the train split of {data}", "windows": len(windows), "steps": steps,
              "batch_size": batch_size, "seconds": round(time.perf_counter() - start, 1),
              "final_loss": round(float(np.mean(losses[-100:])), 5)}
    try:  # how well held-out motion is reconstructed: the latents should describe unseen motion too
        held_out = load_windows(data, "val", config.window, 20, config.expression_coeffs)
        record["val_reconstruction_mse"] = {name: round(float(_reconstruction_loss(
            model.branches[name], torch.from_numpy(getattr(held_out, name)[:1024]), velocity=False)), 5)
            for name in BRANCHES}
    except InputError:
        pass  # no val split
    return model, record


def _reconstruction_loss(branch: BranchAutoencoder, x: torch.Tensor, velocity: bool = True) -> torch.Tensor:
    target = branch.normalize(x)
    with torch.set_grad_enabled(torch.is_grad_enabled() and branch.training):
        output = branch.decode(branch.encode(target))
    loss = F.mse_loss(output, target)
    return loss + F.mse_loss(output.diff(dim=1), target.diff(dim=1)) if velocity else loss


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc="autoencoder", disable=not enabled, mininterval=2.0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m asynfusion.evaluation.autoencoder",
                                     description="train the motion autoencoder of the FMD / FED / FGD metrics")
    parser.add_argument("--data", required=True, help="BEAT2-layout folder (its train split is used)")
    parser.add_argument("--out", default=str(settings.autoencoder_path()))
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, record = train_autoencoder(args.data, steps=args.steps, batch_size=args.batch_size, seed=args.seed)
    path = save_autoencoder(args.out, model, record)
    print(f"motion autoencoder written to {path}: {json.dumps(record)}")


if __name__ == "__main__":
    main()
