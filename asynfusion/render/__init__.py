"""Motion -> mp4: pyrender offscreen (EGL or OSMesa), frames piped to ffmpeg, the speech muxed in.

  body.py     the body: SMPL-X through `smplx`, the user's model file or the free stand-in, and its skinning
  scene.py    the OpenGL platform and the stage: camera, floor, avatars and their face close-ups, one frame
  shaders.py  the GLSL programs: outfit colours and studio lighting
  video.py    render_video / render_still: labels, the skinning and ffmpeg threads, the encoder command

Importing this package loads neither pyrender nor OpenGL: the platform must be chosen first (scene.py).
"""

from .video import render_still, render_video

__all__ = ["render_still", "render_video"]
