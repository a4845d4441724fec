"""The page's example clips, and the folder Gradio caches their results in.

Imported by app.py; like handlers.py, it does not import Gradio.
"""

import hashlib
from pathlib import Path

from ..settings import ROOT, Settings
from .handlers import load_pipeline

EXAMPLES_DIR = ROOT / "assets" / "examples"
# What the page shows of a Generate result, in order (the columns of cached examples)
RESULT_LAYOUT = "3D player (body, speech, frames, animation), video, motion .npz, exports, timings, note"


def example_paths() -> list[str]:
    return [str(path) for path in sorted(EXAMPLES_DIR.glob("*.wav"))]


def examples_cache_dir(settings: Settings) -> Path:
    """A folder for Gradio's cached example results named after everything they depend on, so a new
    checkpoint, body, video size or set of results on the page gets fresh results instead of stale ones."""
    pipeline = load_pipeline(settings)  # the precision that runs here, not the setting ("auto")
    digest = hashlib.sha256(f"{settings.body}|{settings.render_size}|{pipeline.precision}|{RESULT_LAYOUT}".encode())
    checkpoint_dir = pipeline.checkpoint.path
    for path in sorted(checkpoint_dir.iterdir()) + [Path(p) for p in example_paths()]:
        if path.is_file():
            digest.update(path.name.encode() + path.read_bytes())
    return Path(".gradio") / "cached_examples" / f"asynfusion-{digest.hexdigest()[:12]}"
