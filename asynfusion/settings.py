"""Every environment variable the package reads, read in one place, and the app's settings.

    ASYNFUSION_CHECKPOINT      checkpoint folder (default: the shipped checkpoints/asynfusion)
    ASYNFUSION_AUTOENCODER     motion autoencoder folder of `eval` (default: checkpoints/motion-autoencoder)
    ASYNFUSION_BODY            SMPL-X model file to render on (default: the free stand-in body)
    ASYNFUSION_MAX_SECONDS     longest speech accepted, seconds (60); longer audio can be cut to its start
    ASYNFUSION_QUEUE_SIZE      requests that may wait in the queue (16); more are turned away
    ASYNFUSION_CACHE_EXAMPLES  eager | lazy | off: when the examples' results are computed (eager)
    ASYNFUSION_RENDER_SIZE     video side in pixels for Generate (512)
    ASYNFUSION_COMPARE_SIZE    side of each avatar's tile in the Compare video (384)
    ASYNFUSION_PRECISION       auto | bf16 | fp32 sampling precision (auto: bf16 only where native, see precision.py)
    ASYNFUSION_WORK_DIR        where each request's files go (a folder in the system temp dir)
    ASYNFUSION_KEEP_SECONDS    request files older than this are deleted (3600)
    ASYNFUSION_MAX_UPLOAD      largest upload Gradio accepts ("50mb")
    ASYNFUSION_DEBUG           set: unexpected errors show their traceback (the CLI)
    SPACE_ID                   set by Hugging Face Spaces; with the `spaces` package, GPU work asks ZeroGPU
    RANK, WORLD_SIZE           set by torchrun: this process's rank and the number of training processes
    PYOPENGL_PLATFORM          egl | osmesa: the OpenGL platform of the renderer (default: chosen by probing)
    OPENBLAS_NUM_THREADS       numpy's and scipy's BLAS threads; the CLI and the app make it 1 unless set
    ASYNFUSION_LIVE_CHUNK      live: seconds of new motion made at a time (0.5; LiveSettings)
    ASYNFUSION_LIVE_LOOKAHEAD  live: seconds of speech heard after a frame before it is sent (0.2)
    ASYNFUSION_LIVE_SHOWN      live: frames already shown that each window starts with (48; at most 43 fit)
    ASYNFUSION_LIVE_KNOWN      live: the newest of those kept as known; the older are sampled anew (6)

Host and port are Gradio's own GRADIO_SERVER_NAME / GRADIO_SERVER_PORT, read by `launch()` itself.
The functions below read a variable when called (not at import), so a test or a caller can set it first.
"""

import os
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import InputError

ROOT = Path(__file__).resolve().parent.parent  # the repository: the shipped checkpoints/ and assets/
CACHE_MODES = ("eager", "lazy", "off")
PRECISIONS = ("auto", "bf16", "fp32")
DEFAULT_MAX_SECONDS = 60.0


def _env(name: str, environ: Mapping[str, str] | None = None) -> str:
    return (os.environ if environ is None else environ).get(name, "").strip()


def checkpoint_path() -> Path:
    return Path(_env("ASYNFUSION_CHECKPOINT") or ROOT / "checkpoints" / "asynfusion")


def autoencoder_path() -> Path:
    return Path(_env("ASYNFUSION_AUTOENCODER") or ROOT / "checkpoints" / "motion-autoencoder")


def body_path() -> str | None:
    """ASYNFUSION_BODY, or None for the free stand-in body."""
    return _env("ASYNFUSION_BODY") or None


def max_seconds() -> float:
    """The longest speech accepted by default (--max-seconds overrides)."""
    return _number("ASYNFUSION_MAX_SECONDS", DEFAULT_MAX_SECONDS, float, 1.0)


def precision_request() -> str | None:
    """ASYNFUSION_PRECISION (checked), or None when it is not set."""
    value = _env("ASYNFUSION_PRECISION").lower()
    if value and value not in PRECISIONS:
        raise InputError(f"ASYNFUSION_PRECISION={value}: choose one of {', '.join(PRECISIONS)}")
    return value or None


def debug() -> bool:
    return bool(_env("ASYNFUSION_DEBUG"))


def distributed_rank() -> int:
    return int(_env("RANK") or 0)


def distributed_world_size() -> int:
    return int(_env("WORLD_SIZE") or 1)


def gl_platform() -> str | None:
    """PYOPENGL_PLATFORM when the user chose one."""
    return _env("PYOPENGL_PLATFORM") or None


def one_blas_thread() -> None:
    """numpy's and scipy's OpenBLAS on one thread in this process, unless OPENBLAS_NUM_THREADS is set (the
    CLI and the app call this; the package alone leaves a caller's numpy as it is).

    After every call each OpenBLAS thread spins for about 0.1 s (2^28 cycles) waiting for more work,
    and numpy's matrices here are small (the mel filterbank, the joint regressor): on two cores the
    spinning thread took a core from torch and the renderer, 0.5 s of CPU in a cold `generate --video`.
    """
    if _env("OPENBLAS_NUM_THREADS"):
        return
    os.environ["OPENBLAS_NUM_THREADS"] = "1"  # read by each OpenBLAS as it loads (scipy's loads late)
    if "numpy" in sys.modules:  # numpy's is loaded already: told at run time
        from threadpoolctl import threadpool_limits

        threadpool_limits(1, user_api="blas")


def _number(name: str, fallback, kind, low, environ: Mapping[str, str] | None = None):
    """The number in variable `name`, at least `low`; `fallback` when unset; InputError naming it otherwise."""
    text = _env(name, environ)
    if not text:
        return fallback
    try:
        value = kind(text)
    except ValueError:
        raise InputError(f"{name}={text!r} is not a number") from None
    if value < low:
        raise InputError(f"{name}={text!r} must be at least {low}")
    return value


@dataclass(frozen=True)
class Settings:
    checkpoint: str | None = None   # None: the checkpoint package default
    body: str | None = None         # None: the renderer's default body
    max_seconds: float = DEFAULT_MAX_SECONDS
    queue_size: int = 16
    cache_examples: str = "eager"   # eager: computed at launch, so the page opens with a result showing
    render_size: int = 512
    compare_size: int = 384         # 3-4 avatars side by side: smaller tiles keep Compare's render short
    precision: str = "auto"         # bf16 on a GPU or CPU with bf16 units, fp32 elsewhere
    work_dir: Path = Path(tempfile.gettempdir()) / "asynfusion-app"
    keep_seconds: int = 3600
    max_upload: str = "50mb"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """Settings from the environment; an unusable value is an InputError naming the variable."""
        env = os.environ if environ is None else environ
        default = cls()

        def number(name: str, fallback, kind, low):
            return _number(name, fallback, kind, low, env)

        def choice(name: str, fallback: str, allowed: tuple[str, ...]) -> str:
            value = env.get(name, "").strip().lower() or fallback
            if value not in allowed:
                raise InputError(f"{name}={value!r}: choose one of {', '.join(allowed)}")
            return value

        sizes = {name: number(name, fallback, int, 64) for name, fallback in
                 (("ASYNFUSION_RENDER_SIZE", default.render_size), ("ASYNFUSION_COMPARE_SIZE", default.compare_size))}
        for name, size in sizes.items():
            if size % 2:
                raise InputError(f"{name}={size} must be even (H.264 needs even frame sizes)")
        return cls(
            checkpoint=env.get("ASYNFUSION_CHECKPOINT") or None,
            body=env.get("ASYNFUSION_BODY") or None,
            max_seconds=number("ASYNFUSION_MAX_SECONDS", default.max_seconds, float, 1.0),
            queue_size=number("ASYNFUSION_QUEUE_SIZE", default.queue_size, int, 1),
            cache_examples=choice("ASYNFUSION_CACHE_EXAMPLES", default.cache_examples, CACHE_MODES),
            render_size=sizes["ASYNFUSION_RENDER_SIZE"],
            compare_size=sizes["ASYNFUSION_COMPARE_SIZE"],
            precision=choice("ASYNFUSION_PRECISION", default.precision, PRECISIONS),
            work_dir=Path(env.get("ASYNFUSION_WORK_DIR") or default.work_dir),
            keep_seconds=number("ASYNFUSION_KEEP_SECONDS", default.keep_seconds, int, 60),
            max_upload=env.get("ASYNFUSION_MAX_UPLOAD") or default.max_upload,
        )


@dataclass(frozen=True)
class LiveSettings:
    """How the live path (asynfusion/live.py) samples; each ASYNFUSION_LIVE_* variable overrides one field."""

    chunk_s: float = 0.5        # ASYNFUSION_LIVE_CHUNK: seconds of new motion made at a time
    lookahead_s: float = 0.2    # ASYNFUSION_LIVE_LOOKAHEAD: seconds of speech heard after a frame before it is sent
    # frames already shown that a window starts with (at most what leaves room for a chunk and its lookahead:
    # 43 of v6's 64), so it keeps the length it was trained at; ASYNFUSION_LIVE_SHOWN
    shown_frames: int = 48
    # the newest of them given to the network as known and kept; the older ones are sampled anew. All 43
    # known, v6's streamed motion moved 0.71-0.74x as fast as offline; 12: 0.96-1.05x. v7 (trained to rest
    # in pauses) with 12: 0.72-0.89x; 8: 0.84-1.03x, 4: 1.14-1.18x. v8 with 8: 0.75x; 6: 0.83-1.01x (real
    # take, both seeds; tools/stream_check.py); ASYNFUSION_LIVE_KNOWN
    known_frames: int = 6

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "LiveSettings":
        """LiveSettings from the environment; an unusable value is an InputError naming the variable."""
        default = cls()
        return cls(chunk_s=_number("ASYNFUSION_LIVE_CHUNK", default.chunk_s, float, 0.05, environ),
                   lookahead_s=_number("ASYNFUSION_LIVE_LOOKAHEAD", default.lookahead_s, float, 0.0, environ),
                   shown_frames=_number("ASYNFUSION_LIVE_SHOWN", default.shown_frames, int, 1, environ),
                   known_frames=_number("ASYNFUSION_LIVE_KNOWN", default.known_frames, int, 1, environ))

    def to_dict(self) -> dict:
        return asdict(self)


def on_space(environ: Mapping[str, str] | None = None) -> bool:
    """Running on a Hugging Face Space, which sets SPACE_ID."""
    return bool((os.environ if environ is None else environ).get("SPACE_ID"))
