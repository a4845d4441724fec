"""Motion -> mp4: pyrender offscreen (EGL or OSMesa), frames piped to ffmpeg, the speech muxed in.

  body.py     the body: SMPL-X through `smplx`, the user's model file or the free stand-in, and its skinning
  scene.py    the OpenGL platform and the stage: camera, floor, avatars and their face close-ups, one frame
  draws.py    the frame loop's OpenGL calls: pyrender's draws recorded once, replayed per frame
  shaders.py  the GLSL programs: outfit colours and studio lighting
  frames.py   a video's frame pipeline: stages set up ahead, the skinning thread, the drawing threads
  video.py    render_video / render_still: labels, the ffmpeg thread, the encoder command

Importing this package loads neither pyrender nor OpenGL: the platform must be chosen first (scene.py).
"""

import threading

from .frames import discard_prepared
from .video import render_still, render_video

__all__ = ["discard_prepared", "prepare_in_background", "render_still", "render_video"]


def _prepare(body_path, size: int) -> None:
    from .body import load_body
    from .frames import offer_stage
    from .scene import choose_gl_platform

    try:
        platform = choose_gl_platform()
        import pyrender  # noqa: F401  (the import itself is the work: ~1.5 s of Python)

        body = load_body(body_path)  # cached: render_video then finds it loaded
        if platform == "egl" and size >= 64 and size % 2 == 0:  # an EGL context can move to the rendering
            # thread; OSMesa's cannot. (A size render_video refuses is left for it to refuse.)
            offer_stage(body, size)
    except Exception:  # noqa: BLE001 - render_video meets the same problem and reports it in one line
        pass


def prepare_in_background(body_path=None, size: int = 512) -> threading.Thread:
    """Import the renderer, load the body and set up the stage of one avatar at `size` in a thread,
    while the caller generates: sampling runs in torch's C++ code with the GIL released, so the ~3 s
    of renderer setup then costs no wall time. Join the thread before calling render_video."""
    thread = threading.Thread(target=_prepare, args=(body_path, size), name="renderer-setup", daemon=True)
    thread.start()
    return thread
