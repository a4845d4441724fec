"""SMPL-X motion in the BEAT2 / EMAGE `.npz` layout, and its split into the model's two branches.

File layout (what EMAGE, the SMPL-X Blender add-on and BEAT2 use):
    poses (T, 165)        axis-angle of the 55 SMPL-X joints
    expressions (T, 100)  expression coefficients (FLAME components for SMPL-X 2020;
                          ARKit-named blendshape weights in the first slots for our corpus)
    trans (T, 3), betas (300,), mocap_frame_rate 30, model "smplx2020", gender "neutral"
Ours, beside them: `expression_space` and a JSON string `asynfusion` (sampler, steps, seed,
checkpoint). Both are plain strings, so the file loads without pickle.

Model features (one row per frame, 6D rotations):
    expression = jaw (6) + the first `expression_dim` expression coefficients
    gesture    = 13 upper-body joints + 30 finger joints (43 x 6 = 258)
"""

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError
from .rotation import axis_angle_to_6d, rotation_6d_to_axis_angle

FPS = 30
NUM_JOINTS = 55
NUM_EXPRESSIONS = 100
NUM_BETAS = 300

# ----------------------------------------------------------------------------
# SMPL-X joint index tables (the one definition; body.py and the corpus import these)
# ----------------------------------------------------------------------------
JOINT_NAMES = [
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck",
    "left_collar", "right_collar", "head", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "jaw", "left_eye", "right_eye",
] + [
    f"{side}_{finger}{k}"
    for side in ("left", "right")
    for finger in ("index", "middle", "pinky", "ring", "thumb")
    for k in (1, 2, 3)
]
JOINT = {name: i for i, name in enumerate(JOINT_NAMES)}
UPPER_BODY_JOINTS = [JOINT[n] for n in (
    "spine1", "spine2", "spine3", "neck", "left_collar", "right_collar", "head",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist")]
FINGER_JOINTS = list(range(25, 55))
GESTURE_JOINTS = UPPER_BODY_JOINTS + FINGER_JOINTS  # 43 joints
JAW = JOINT["jaw"]
GESTURE_DIM = len(GESTURE_JOINTS) * 6  # 258

# ARKit blendshape names: the expression space of the built-in corpus (first 52 slots).
ARKIT_BLENDSHAPES = [
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft",
    "eyeSquintLeft", "eyeWideLeft", "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight",
    "eyeLookOutRight", "eyeLookUpRight", "eyeSquintRight", "eyeWideRight", "jawForward",
    "jawLeft", "jawRight", "jawOpen", "mouthClose", "mouthFunnel", "mouthPucker", "mouthLeft",
    "mouthRight", "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthPressLeft",
    "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthUpperUpLeft",
    "mouthUpperUpRight", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft",
    "browOuterUpRight", "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "noseSneerLeft",
    "noseSneerRight", "tongueOut",
]
# What the expression coefficients mean: "flame" (SMPL-X 2020 / BEAT2) or "arkit" (our corpus).
EXPRESSION_SPACES = ("flame", "arkit")


def expression_dim_of(expression_coeffs: int) -> int:
    """Width of the expression feature: jaw 6D + coefficients."""
    return 6 + expression_coeffs


# ----------------------------------------------------------------------------
# The motion record and its file
# ----------------------------------------------------------------------------
@dataclass
class Motion:
    poses: np.ndarray        # (T, 165) axis-angle
    expressions: np.ndarray  # (T, 100)
    trans: np.ndarray = None  # (T, 3); zeros when absent
    betas: np.ndarray = None  # (300,)
    fps: int = FPS
    gender: str = "neutral"
    model: str = "smplx2020"
    expression_space: str = "flame"
    metadata: dict = field(default_factory=dict)  # sampler, steps, seed, checkpoint, ...

    def __post_init__(self):
        self.poses = np.asarray(self.poses, np.float32)
        self.expressions = np.asarray(self.expressions, np.float32)
        if self.expressions.shape[1] < NUM_EXPRESSIONS:  # pad e.g. a 50-component file to 100
            pad = NUM_EXPRESSIONS - self.expressions.shape[1]
            self.expressions = np.pad(self.expressions, ((0, 0), (0, pad)))
        if self.trans is None:
            self.trans = np.zeros((len(self.poses), 3))
        self.trans = np.asarray(self.trans, np.float32)
        betas = np.zeros(NUM_BETAS) if self.betas is None else np.asarray(self.betas).reshape(-1)
        betas = betas.astype(np.float32)
        self.betas = np.pad(betas, (0, max(0, NUM_BETAS - len(betas))))[:NUM_BETAS]

    @property
    def num_frames(self) -> int:
        return len(self.poses)

    @classmethod
    def rest(cls, num_frames: int, **kwargs) -> "Motion":
        """All joints at rest (SMPL-X T-pose), no expression."""
        return cls(np.zeros((num_frames, NUM_JOINTS * 3)), np.zeros((num_frames, NUM_EXPRESSIONS)), **kwargs)


def save_motion(path: str | os.PathLike, motion: Motion) -> None:
    """Write a BEAT2-layout `.npz` atomically: a failed write leaves nothing at `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".npz", dir=path.parent, prefix=".tmp-")
    os.close(fd)
    try:
        np.savez(
            tmp,
            poses=motion.poses, expressions=motion.expressions, trans=motion.trans, betas=motion.betas,
            mocap_frame_rate=np.array(motion.fps), gender=np.array(motion.gender),
            model=np.array(motion.model), expression_space=np.array(motion.expression_space),
            asynfusion=np.array(json.dumps(motion.metadata)),
        )
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_motion(path: str | os.PathLike) -> Motion:
    """Read a BEAT2 / EMAGE `.npz` (ours or anyone's) without unpickling anything."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"motion file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            poses = data["poses"]
            num_frames = len(poses)
            expressions = data["expressions"] if "expressions" in data else np.zeros((num_frames, NUM_EXPRESSIONS))
            trans = data["trans"] if "trans" in data else None
            betas = data["betas"] if "betas" in data else None
            fps = int(data["mocap_frame_rate"]) if "mocap_frame_rate" in data else FPS
            gender = str(data["gender"]) if "gender" in data else "neutral"
            space = str(data["expression_space"]) if "expression_space" in data else "flame"
            metadata = json.loads(str(data["asynfusion"])) if "asynfusion" in data else {}
    except InputError:
        raise
    except Exception as error:  # zip, key or dtype errors all mean the same to a user
        raise InputError(f"not a readable SMPL-X motion .npz: {path} ({type(error).__name__}: {error})") from None
    if poses.ndim != 2 or poses.shape[1] != NUM_JOINTS * 3:
        raise InputError(f"{path}: 'poses' must be (frames, 165), got {poses.shape}")
    return Motion(poses, expressions[:num_frames], trans, betas, fps, gender,
                  expression_space=space, metadata=metadata)


# ----------------------------------------------------------------------------
# Branch features
# ----------------------------------------------------------------------------
def motion_to_features(motion: Motion, expression_coeffs: int) -> tuple[np.ndarray, np.ndarray]:
    """Motion -> (expression (T, 6+K), gesture (T, 258)) in 6D rotations."""
    joints = motion.poses.reshape(-1, NUM_JOINTS, 3)
    jaw = axis_angle_to_6d(joints[:, JAW])                                    # (T, 6)
    expression = np.concatenate([jaw, motion.expressions[:, :expression_coeffs]], axis=-1)
    gesture = axis_angle_to_6d(joints[:, GESTURE_JOINTS]).reshape(len(joints), -1)  # (T, 258)
    return expression.astype(np.float32), gesture.astype(np.float32)


# The network's gesture output trembles: its arms' jerk (realism.arm_jerk, the elbows' and wrists' third
# derivative) on the speech of ../shared/real is 5x the capture's with DDIM (193-203 m/s^3 against 39) and
# 2.3x with async LCM (90-91), a shake a viewer sees though the gesture itself is right. A low-pass at 6 Hz
# keeps the gestures (strokes and beats live below 5 Hz; the wrists' 95th-percentile speed drops 2-7 %) and
# brings the jerk to 55-61 (DDIM) and 35 (LCM), as a motion-capture pipeline filters its markers; 8 Hz left
# DDIM at 2x, 4 Hz slowed the wrists 8-12 %.
GESTURE_CUTOFF_HZ = 6.0


def smooth_gesture(gesture: np.ndarray, cutoff_hz: float | None = GESTURE_CUTOFF_HZ, fps: float = FPS) -> np.ndarray:
    """(T, D) gesture features low-passed along time: a 2nd-order Butterworth run forwards and backwards
    (no lag; the fall-off is 4th-order). None or 0 returns them as they are. The face is never filtered:
    the jaw opens and closes with syllables at up to ~8 Hz."""
    from scipy.signal import butter, sosfiltfilt

    if not cutoff_hz or len(gesture) < 2:
        return gesture
    sos = butter(2, cutoff_hz, fs=fps, output="sos")  # as realism.jaw_depth filters the jaw
    # odd extension at the ends keeps the first and last frames' value and slope; a clip shorter than
    # the default padding (9 frames) is padded by what it has
    pad = min(9, len(gesture) - 1)
    return sosfiltfilt(sos, gesture, axis=0, padtype="odd", padlen=pad).astype(gesture.dtype)


def features_to_motion(expression: np.ndarray, gesture: np.ndarray, **motion_fields) -> Motion:
    """(expression, gesture) features -> Motion; joints the model does not generate stay at rest."""
    num_frames = len(expression)
    joints = np.zeros((num_frames, NUM_JOINTS, 3), np.float32)
    joints[:, JAW] = rotation_6d_to_axis_angle(expression[:, :6])
    joints[:, GESTURE_JOINTS] = rotation_6d_to_axis_angle(gesture.reshape(num_frames, -1, 6))
    expressions = np.zeros((num_frames, NUM_EXPRESSIONS), np.float32)
    coeffs = expression.shape[1] - 6
    expressions[:, :coeffs] = expression[:, 6:]
    return Motion(joints.reshape(num_frames, -1), expressions, **motion_fields)


@dataclass
class NormStats:
    """Per-feature mean/std of the training set; stored in every checkpoint."""

    expression_mean: np.ndarray
    expression_std: np.ndarray
    gesture_mean: np.ndarray
    gesture_std: np.ndarray
    audio_mean: np.ndarray
    audio_std: np.ndarray

    MIN_STD = 1e-3  # features that never move (e.g. unused expression slots) must not blow up

    @classmethod
    def fit(cls, expression: np.ndarray, gesture: np.ndarray, audio: np.ndarray) -> "NormStats":
        """Stats from (N, D) stacks of frames."""
        def stats(x):
            return x.mean(0).astype(np.float32), np.maximum(x.std(0), cls.MIN_STD).astype(np.float32)
        return cls(*stats(expression), *stats(gesture), *stats(audio))

    @classmethod
    def identity(cls, expression_dim: int, gesture_dim: int, audio_dim: int) -> "NormStats":
        z, o = np.zeros, np.ones
        return cls(z(expression_dim, np.float32), o(expression_dim, np.float32), z(gesture_dim, np.float32),
                   o(gesture_dim, np.float32), z(audio_dim, np.float32), o(audio_dim, np.float32))

    def normalize(self, kind: str, x: np.ndarray) -> np.ndarray:
        """(..., D) features of `kind` ("expression", "gesture" or "audio") -> zero mean, unit std."""
        return (x - getattr(self, f"{kind}_mean")) / getattr(self, f"{kind}_std")

    def denormalize(self, kind: str, x: np.ndarray) -> np.ndarray:
        """The inverse of `normalize`."""
        return x * getattr(self, f"{kind}_std") + getattr(self, f"{kind}_mean")

    def to_dict(self) -> dict[str, np.ndarray]:
        return dict(self.__dict__)
