"""A request's video, rendered for the page (Generate, Compare, a live take), and the progress it reports.

Rendering holds a lock: each render makes its own OpenGL context, and two at a time would only share the
same rasteriser. Like handlers.py, this does not import Gradio: `progress` is any callable that takes
(fraction, desc=text), such as a gr.Progress.
"""

import threading
from collections.abc import Callable
from pathlib import Path

from ..settings import Settings
from . import background

Progress = Callable[..., object]  # progress(fraction, desc=text); a gr.Progress fits

_RENDER_LOCK = threading.Lock()


def no_progress(fraction: float, desc: str | None = None) -> None:
    """A Progress that reports nothing: the API's calls, and work whose progress the page does not show."""


def render(motions, audio: str | Path, out: Path, labels: list[str], settings: Settings, size: int,
           progress: Progress, start: float) -> dict:
    """Render `motions` side by side on the sound of `audio` into `out`, under the lock and at a lower CPU
    priority; progress runs from `start` to 1 over the frames. render_video's report: frames, seconds."""
    from ..render import render_video

    def frame_done(done: int, total: int) -> None:
        if done == total or done % max(1, total // 50) == 0:
            progress(start + (1 - start) * done / total, desc=f"rendering frame {done} of {total}")

    with _RENDER_LOCK:
        return background.gently(render_video, motions, str(audio), out, labels=labels, body_path=settings.body,
                                 size=size, progress=frame_done)
