"""Shared fixtures: a tiny model config, a tiny checkpoint folder and synthetic speech-like audio."""

from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from asynfusion.checkpoint import save_checkpoint, untrained_checkpoint
from asynfusion.config import ModelConfig

torch.set_num_threads(1)


def tiny_config(**overrides) -> ModelConfig:
    values = dict(expression_coeffs=10, width=32, depth=2, heads=2, mlp_ratio=2.0, window_frames=32)
    values.update(overrides)
    return ModelConfig(**values)


def speech_like(seconds: float, rate: int = 16_000, seed: int = 0) -> np.ndarray:
    """Syllable-like bursts of a harmonic tone with pauses: loudness that comes and goes, like speech."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    pitch = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 6))
    envelope = np.clip(np.sin(2 * np.pi * 3.5 * t), 0, None) * (np.sin(2 * np.pi * 0.4 * t) > -0.3)
    return (0.3 * voice * envelope + 0.003 * rng.standard_normal(len(t))).astype(np.float32)


def randomize_zero_inits(model: torch.nn.Module, seed: int = 0) -> None:
    """adaLN-Zero and the interaction layers start at exactly zero; give every weight a value so
    tests can see information flow that training would otherwise have to create first."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2)


def build_beat2_folder(root, clips: dict[str, tuple[int, str]], extra_rows=(), seed: int = 0):
    """A BEAT2-shaped folder: {id: (frames, split)} -> smplxflame_30/*.npz, wave16k/*.wav, train_test_split.csv."""
    from asynfusion.motion import Motion, save_motion

    rng = np.random.default_rng(seed)
    for clip_id, (frames, _) in clips.items():
        poses = np.cumsum(rng.normal(0, 0.01, (frames, 165)), axis=0)  # smooth random motion
        save_motion(root / "smplxflame_30" / f"{clip_id}.npz", Motion(poses, rng.normal(0, 0.3, (frames, 100))))
        (root / "wave16k").mkdir(exist_ok=True)
        samples = speech_like(frames / 30, seed=seed) if frames else np.zeros(0, np.float32)
        soundfile.write(root / "wave16k" / f"{clip_id}.wav", samples, 16_000, subtype="PCM_16")
    rows = [f"{clip_id},{split},extra" for clip_id, (_, split) in clips.items()] + list(extra_rows)
    (root / "train_test_split.csv").write_text("id,type,note\n" + "\n".join(rows) + "\n")
    return root


def write_tiny_checkpoint(folder: Path) -> Path:
    """A tiny untrained checkpoint whose zero-initialized layers are randomized, so it outputs motion."""
    checkpoint = untrained_checkpoint(tiny_config())
    randomize_zero_inits(checkpoint.models["diffusion"])
    path = folder / "tiny-checkpoint"
    save_checkpoint(path, checkpoint)
    return path


@pytest.fixture
def tiny_checkpoint(tmp_path):
    return write_tiny_checkpoint(tmp_path)


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory):
    """The tiny checkpoint, written once per test module (the app tests share it)."""
    return write_tiny_checkpoint(tmp_path_factory.mktemp("checkpoint"))


@pytest.fixture
def speech_wav(tmp_path):
    path = tmp_path / "speech.wav"
    soundfile.write(path, speech_like(3.0), 16_000)
    return path


# The helpers as fixtures: test modules take them as arguments instead of importing this module.
@pytest.fixture(name="tiny_config")
def tiny_config_fixture():
    return tiny_config


@pytest.fixture(name="speech_like")
def speech_like_fixture():
    return speech_like


@pytest.fixture(name="randomize_zero_inits")
def randomize_zero_inits_fixture():
    return randomize_zero_inits
