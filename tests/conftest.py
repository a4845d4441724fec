"""Shared fixtures: a tiny model config, a tiny checkpoint folder, synthetic speech-like audio, a tiny
BEAT2-shaped folder, a tiny SMPL-X file, and `python app.py` running on a free localhost port.

Test modules take these as fixture arguments and never import this module (or each other). The plain
functions keep their names here for tests/test_pinned.py's `--write` block, which runs outside pytest.
"""

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from asynfusion.checkpoint import save_checkpoint, untrained_checkpoint
from asynfusion.config import ModelConfig

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "assets" / "examples" / "hello_en-us_m3.wav"
APP_START_SECONDS = 180  # importing torch, gradio and the renderer on two busy cores


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


def write_tiny_checkpoint(folder: Path, name: str = "tiny-checkpoint", **config) -> Path:
    """A tiny untrained checkpoint whose zero-initialized layers are randomized, so it outputs motion;
    `config` overrides tiny_config's fields (e.g. continuation=True)."""
    checkpoint = untrained_checkpoint(tiny_config(**config))
    randomize_zero_inits(checkpoint.models["diffusion"])
    path = folder / name
    save_checkpoint(path, checkpoint)
    return path


def write_tiny_smplx(path, seed: int = 0):
    """A 165-vertex SMPL-X-format file: one small triangle at each joint of the stand-in's skeleton,
    skinned to that joint, with random shape, expression (FLAME-like, 10 + 10) and pose correctives."""
    from asynfusion.render.body import BUNDLED_BODY

    rng = np.random.default_rng(seed)
    with np.load(BUNDLED_BODY) as standin:
        joints = standin["J_regressor"] @ standin["v_template"]
        kintree = standin["kintree_table"]
    corners = np.array([[-0.01, 0, 0], [0.01, 0, 0], [0, 0.015, 0.005]])
    vertices = (joints[:, None] + corners).reshape(-1, 3)                        # (165, 3)
    owner = np.repeat(np.arange(len(joints)), 3)
    weights = np.eye(len(joints))[owner]
    regressor = weights.T / 3
    np.savez(path, v_template=vertices, f=np.arange(len(vertices)).reshape(-1, 3), J_regressor=regressor,
             weights=weights, kintree_table=kintree, shapedirs=rng.normal(0, 0.003, (len(vertices), 3, 20)),
             posedirs=rng.normal(0, 0.001, (len(vertices), 3, 486)), hands_componentsl=np.eye(45),
             hands_componentsr=np.eye(45), hands_meanl=rng.normal(0, 0.1, 45), hands_meanr=np.zeros(45),
             lmk_faces_idx=np.zeros(51, np.int64), lmk_bary_coords=np.full((51, 3), 1 / 3))
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def running_app(folder: Path, render_size: int = 128, compare_size: int = 64, env: dict[str, str] | None = None):
    """`python app.py` with a tiny checkpoint and no example caching; yields the local URL it printed.
    `env`: extra environment variables for the app's process only (this process's stay as they are)."""
    app_env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(free_port()),
               "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1",
               "GRADIO_TEMP_DIR": str(folder / "gradio"), "GRADIO_EXAMPLES_CACHE": str(folder / "examples-cache"),
               "ASYNFUSION_CHECKPOINT": str(write_tiny_checkpoint(folder)), "ASYNFUSION_CACHE_EXAMPLES": "off",
               "ASYNFUSION_RENDER_SIZE": str(render_size), "ASYNFUSION_COMPARE_SIZE": str(compare_size),
               "ASYNFUSION_MAX_SECONDS": "10", "ASYNFUSION_WORK_DIR": str(folder / "work"), **(env or {})}
    log_path = folder / "app.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=app_env, stdout=log,
                                   stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + APP_START_SECONDS
        while not (found := re.search(r"Running on local URL:\s+(http://127\.0\.0\.1:\d+)", log_path.read_text())):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"app did not start (exit {process.poll()}):\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield found.group(1)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


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
# Session-scoped (they are plain functions), so module-scoped fixtures can use them too.
def _as_fixture(helper):
    @pytest.fixture(name=helper.__name__, scope="session")
    def fixture():
        return helper
    return fixture


for _helper in (tiny_config, speech_like, randomize_zero_inits, build_beat2_folder, write_tiny_checkpoint,
                write_tiny_smplx, free_port):
    globals()[f"{_helper.__name__}_fixture"] = _as_fixture(_helper)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def example_wav() -> Path:
    """One of the app's shipped example clips (4.82 s of speech)."""
    return EXAMPLE


# ----------------------------------------------------------------------------
# The app, started once per test module that asks for it
# ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def app_options() -> dict:
    """What `app_url` passes to `running_app` (render_size, compare_size, env): its defaults here; a test
    module that needs others overrides this fixture with its own `app_options`."""
    return {}


@pytest.fixture(scope="module")
def app_url(app_options, tmp_path_factory):
    """The local URL of `python app.py` (tiny checkpoint), started for this test module and stopped after it."""
    with running_app(tmp_path_factory.mktemp("app"), **app_options) as url:
        yield url
