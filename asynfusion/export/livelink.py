"""Motion -> ARKit curves as a CSV in the layout of Epic's Live Link Face app (its "export CSV" of a take).

What the file carries, one row per frame:
    Timecode          HH:MM:SS:FF.mmm from 00:00:00:00.000, FF the frame within the second at the
                      motion's frame rate (30 fps), .mmm the sub-frame (always .000: frames are exact)
    BlendShapeCount   61 (52 blendshapes + 9 rotations), as the app writes it
    EyeBlinkLeft ... TongueOut    the 52 ARKit weights in Live Link Face's column order and capitalisation
                      (which is not ARKit's enumeration order: JawRight before JawLeft, MouthRight before
                      MouthLeft), the motion's values as they are (not clipped to [0, 1])
    HeadYaw HeadPitch HeadRoll    the head's rotation relative to the upper body: SMPL-X neck then head
    LeftEyeYaw ... RightEyeRoll   the SMPL-X left_eye / right_eye joint rotations
All rotations in radians, as intrinsic Y-X-Z Euler angles (yaw, then pitch, then roll) about SMPL-X's axes
(x to the body's left, y up, z forward), right-handed: positive yaw turns the face to the body's left,
positive pitch nods the chin down, positive roll tilts the head towards the right shoulder.

What it leaves out: the body (a face-only format), and any motion whose expression coefficients are not
ARKit weights (a BEAT2 / FLAME motion): that is an input error, not a file of meaningless curves.
"""

import io

import numpy as np
from scipy.spatial.transform import Rotation

from ..errors import InputError
from ..motion import ARKIT_BLENDSHAPES, JOINT, NUM_JOINTS, Motion
from .rig import require_frames

# The 52 columns exactly as Live Link Face writes them.
LIVE_LINK_FACE_BLENDSHAPES = [
    "EyeBlinkLeft", "EyeLookDownLeft", "EyeLookInLeft", "EyeLookOutLeft", "EyeLookUpLeft", "EyeSquintLeft",
    "EyeWideLeft", "EyeBlinkRight", "EyeLookDownRight", "EyeLookInRight", "EyeLookOutRight", "EyeLookUpRight",
    "EyeSquintRight", "EyeWideRight", "JawForward", "JawRight", "JawLeft", "JawOpen", "MouthClose",
    "MouthFunnel", "MouthPucker", "MouthRight", "MouthLeft", "MouthSmileLeft", "MouthSmileRight",
    "MouthFrownLeft", "MouthFrownRight", "MouthDimpleLeft", "MouthDimpleRight", "MouthStretchLeft",
    "MouthStretchRight", "MouthRollLower", "MouthRollUpper", "MouthShrugLower", "MouthShrugUpper",
    "MouthPressLeft", "MouthPressRight", "MouthLowerDownLeft", "MouthLowerDownRight", "MouthUpperUpLeft",
    "MouthUpperUpRight", "BrowDownLeft", "BrowDownRight", "BrowInnerUp", "BrowOuterUpLeft", "BrowOuterUpRight",
    "CheekPuff", "CheekSquintLeft", "CheekSquintRight", "NoseSneerLeft", "NoseSneerRight", "TongueOut",
]
ROTATION_COLUMNS = ["HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
                    "RightEyeYaw", "RightEyePitch", "RightEyeRoll"]
HEADER = ["Timecode", "BlendShapeCount", *LIVE_LINK_FACE_BLENDSHAPES, *ROTATION_COLUMNS]
BLENDSHAPE_COUNT = len(LIVE_LINK_FACE_BLENDSHAPES) + len(ROTATION_COLUMNS)  # 61
# Where each column's weight sits in the motion's expressions (ARKit's order, camelCase).
ARKIT_SLOTS = [ARKIT_BLENDSHAPES.index(name[0].lower() + name[1:]) for name in LIVE_LINK_FACE_BLENDSHAPES]


def motion_to_livelink_csv(motion: Motion, body_path=None) -> bytes:
    """The Live Link Face CSV of an ARKit-space motion (`body_path` is unused: the curves need no body)."""
    require_frames(motion)
    if motion.expression_space != "arkit":
        raise InputError(f"ARKit curves need a motion in the ARKit expression space; this one is "
                         f"{motion.expression_space!r} (export it as .glb or .bvh instead)")
    weights = motion.expressions[:, ARKIT_SLOTS].astype(np.float32)              # (T, 52)
    values = np.concatenate([weights, head_and_eye_angles(motion).astype(np.float32)], axis=1)  # (T, 61)
    text = io.StringIO()
    text.write(",".join(HEADER) + "\n")
    for frame, row in enumerate(values):
        cells = [timecode(frame, motion.fps), str(BLENDSHAPE_COUNT), *(format_value(v) for v in row)]
        text.write(",".join(cells) + "\n")
    return text.getvalue().encode()


def head_and_eye_angles(motion: Motion) -> np.ndarray:
    """(T, 9) yaw, pitch, roll in radians of the head (neck then head), the left eye and the right eye."""
    joints = motion.poses.astype(np.float64).reshape(-1, NUM_JOINTS, 3)
    head = Rotation.from_rotvec(joints[:, JOINT["neck"]]) * Rotation.from_rotvec(joints[:, JOINT["head"]])
    rotations = [head, Rotation.from_rotvec(joints[:, JOINT["left_eye"]]),
                 Rotation.from_rotvec(joints[:, JOINT["right_eye"]])]
    # Intrinsic YXZ: scipy returns the angles in that order, yaw (Y), pitch (X), roll (Z).
    return np.concatenate([rotation.as_euler("YXZ") for rotation in rotations], axis=1)


def timecode(frame: int, fps: int) -> str:
    """HH:MM:SS:FF.mmm of frame `frame` counted from zero."""
    seconds, frames = divmod(frame, fps)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}:{frames:02d}.000"


def format_value(value: np.float32) -> str:
    """The shortest decimal that reads back as the same float32, without an exponent."""
    return np.format_float_positional(np.float32(value), unique=True, trim="-")
