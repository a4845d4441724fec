"""The motion's files for the page besides the .npz and the video: the 3D player's body, animation and
speech, and the motion in other tools' formats (asynfusion/export: .glb, .bvh, and .csv ARKit curves)."""

import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..audio import SAMPLE_RATE
from ..errors import InputError
from ..export import export_motion, write_atomically
from ..export.animation import motion_to_animation


class PlayerFiles(NamedTuple):
    """What the page's 3D player shows: the body as .glb (the same file for every result, so the page loads
    it once), and for a result its speech, frames and animation alone. Without speech, the body stands in
    its own pose; with speech but no animation yet, the player fetches the speech while the motion is made,
    and with a stream also the animation, which comes from there as soon as it is made (animations.py)."""

    body: str
    speech: str | None = None
    frames: int = 0
    animation: str | None = None
    stream: str | None = None  # Generate's: the path the page takes the animation from, past Gradio's queue


def player_speech(samples: np.ndarray, folder: Path) -> str:
    """The 3D player's speech: a 16 kHz .wav, which any browser plays whatever was uploaded."""
    import soundfile

    speech = folder / "player-speech.wav"
    soundfile.write(speech, samples, SAMPLE_RATE, subtype="PCM_16")
    return str(speech)


def player_files(motion, stem: Path, waiting: PlayerFiles, body: str | None) -> tuple[PlayerFiles, float]:
    """The 3D player's files for a result: those it waited for the motion with (`waiting`: the body's .glb
    and the speech), and the motion's frames and animation alone: (files, seconds the animation took)."""
    started = time.perf_counter()
    animation = stem.with_suffix(".animation.bin")
    write_atomically(animation, motion_to_animation(motion, body))
    return waiting._replace(frames=motion.num_frames, animation=str(animation)), time.perf_counter() - started


def standing_body(motion, expression_space: str, path: Path, body: str | None) -> Path:
    """The player's body, as .glb, standing in `motion`'s last pose (the model's own on silence), or in the
    T-pose when there is none: shown before any result, and the body every result's animation then plays
    on (the app's motions carry no body shape of their own, so one body fits them all)."""
    from dataclasses import replace

    from ..motion import Motion

    if motion is None:
        still = Motion.rest(1, expression_space=expression_space)
    else:
        still = replace(motion, poses=motion.poses[-1:], expressions=motion.expressions[-1:], trans=motion.trans[-1:])
    return export_motion(still, path, body)


def other_formats(motion, stem: Path, body: str | None) -> list[str]:
    """The .glb (the body and the whole animation), the .bvh, and the Live Link Face .csv when the motion's
    face is in ARKit terms."""
    paths = [export_motion(motion, stem.with_suffix(suffix), body) for suffix in (".glb", ".bvh")]
    try:
        paths.append(export_motion(motion, stem.with_suffix(".csv"), body))
    except InputError:  # a FLAME-space checkpoint's face has no ARKit curves
        pass
    return [str(path) for path in paths]
