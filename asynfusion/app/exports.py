"""The motion's files for the page besides the .npz and the video: the 3D player's avatar and speech, and
the motion in other tools' formats (asynfusion/export: .glb, .bvh, and .csv ARKit curves)."""

import time
from pathlib import Path

import numpy as np

from ..audio import SAMPLE_RATE
from ..errors import InputError
from ..export import export_motion


def player_files(motion, samples: np.ndarray, stem: Path, body: str | None) -> tuple[tuple, float]:
    """The 3D player's avatar (the .glb export, offered for download too) and speech, as a 16 kHz .wav
    that any browser plays whatever was uploaded: ((avatar, speech, frames), seconds the .glb took)."""
    import soundfile

    started = time.perf_counter()
    avatar = export_motion(motion, stem.with_suffix(".glb"), body)
    seconds = time.perf_counter() - started
    speech = stem.parent / "player-speech.wav"
    soundfile.write(speech, samples, SAMPLE_RATE, subtype="PCM_16")
    return (str(avatar), str(speech), motion.num_frames), seconds


def standing_body(motion, expression_space: str, path: Path, body: str | None) -> Path:
    """The player's body before any result, as .glb: standing in `motion`'s last pose (the model's own on
    silence), or in the T-pose when there is none."""
    from dataclasses import replace

    from ..motion import Motion

    if motion is None:
        still = Motion.rest(1, expression_space=expression_space)
    else:
        still = replace(motion, poses=motion.poses[-1:], expressions=motion.expressions[-1:], trans=motion.trans[-1:])
    return export_motion(still, path, body)


def other_formats(motion, stem: Path, body: str | None) -> list[str]:
    """The .bvh, and the Live Link Face .csv when the motion's face is in ARKit terms."""
    paths = [export_motion(motion, stem.with_suffix(".bvh"), body)]
    try:
        paths.append(export_motion(motion, stem.with_suffix(".csv"), body))
    except InputError:  # a FLAME-space checkpoint's face has no ARKit curves
        pass
    return [str(path) for path in paths]
