"""Motion -> BVH (Biovision hierarchy): the SMPL-X skeleton and its joint rotations, for DCC tools and retargeting.

What the file carries:
  - HIERARCHY: the 55 SMPL-X joints named as `motion.JOINT_NAMES`, each OFFSET the body's rest offset from
    its parent, in CENTIMETRES (the usual BVH unit: MotionBuilder, Mixamo, CMU; Blender imports it at
    scale 0.01). The root's OFFSET is 0 0 0 and its position channels are absolute (rest position plus the
    recorded translation), so readers that add the offset and readers that replace it agree. Leaf joints
    end in an End Site half as long as their own bone, pointing the same way;
  - MOTION: one row per frame at the motion's frame rate (30 fps for BEAT2 and ours): the root's
    Xposition Yposition Zposition, then for every joint Zrotation Xrotation Yrotation in degrees
    (R = Rz Rx Ry, intrinsic ZXY, each channel unwrapped over time so no angle jumps by 360).
Rotations include the body's hand mean pose, so the joints land where the package's forward kinematics
(`evaluation.metrics.joint_positions`) puts them; coordinates are SMPL-X's (Y up, facing +Z).

What it leaves out: the mesh, the face (expressions; the jaw and eye joints rotate), and the body's
shape beyond its rest joint positions.
"""

import io
import warnings

import numpy as np

from ..motion import JOINT_NAMES, Motion
from .rig import Rig, load_rig, local_rotations, require_frames, root_positions

CENTIMETRES_PER_METRE = 100.0
EULER_ORDER = "ZXY"  # intrinsic (scipy's upper case), the order the channels are listed in
ROTATION_CHANNELS = "Zrotation Xrotation Yrotation"
DECIMALS = 6


def motion_to_bvh(motion: Motion, body_path=None) -> bytes:
    """The .bvh file of `motion` with the skeleton of the body at `body_path` (default: the stand-in)."""
    require_frames(motion)
    rig = load_rig(motion, body_path)
    lines = ["HIERARCHY", *hierarchy_lines(rig, 0, 0), "MOTION", f"Frames: {motion.num_frames}",
             f"Frame Time: {1.0 / motion.fps:.8f}"]
    return ("\n".join(lines) + "\n" + motion_rows(rig, motion)).encode()


def hierarchy_lines(rig: Rig, joint: int, depth: int) -> list[str]:
    """The ROOT / JOINT block of `joint` and, recursively, of its children."""
    indent = "  " * depth
    offset = np.zeros(3) if joint == 0 else rig.offsets[joint] * CENTIMETRES_PER_METRE
    channels = f"6 Xposition Yposition Zposition {ROTATION_CHANNELS}" if joint == 0 else f"3 {ROTATION_CHANNELS}"
    lines = [f"{indent}{'ROOT' if joint == 0 else 'JOINT'} {JOINT_NAMES[joint]}", f"{indent}{{",
             f"{indent}  OFFSET {format_vector(offset)}", f"{indent}  CHANNELS {channels}"]
    children = np.flatnonzero(rig.parents == joint)
    for child in children:
        lines += hierarchy_lines(rig, int(child), depth + 1)
    if len(children) == 0:
        end = 0.5 * rig.offsets[joint] * CENTIMETRES_PER_METRE
        lines += [f"{indent}  End Site", f"{indent}  {{", f"{indent}    OFFSET {format_vector(end)}", f"{indent}  }}"]
    return lines + [f"{indent}}}"]


def depth_first_joints(parents: np.ndarray, joint: int = 0) -> list[int]:
    """Joint indices in the order the hierarchy lists them (and so the order of the MOTION columns)."""
    order = [joint]
    for child in np.flatnonzero(parents == joint):
        order += depth_first_joints(parents, int(child))
    return order


def motion_rows(rig: Rig, motion: Motion) -> str:
    """The MOTION rows: root position (cm), then Z X Y degrees per joint in hierarchy order."""
    num_frames = motion.num_frames
    with warnings.catch_warnings():  # at gimbal lock scipy warns; the angles it returns still give the rotation
        warnings.simplefilter("ignore", UserWarning)
        angles = local_rotations(motion, rig.pose_mean).as_euler(EULER_ORDER, degrees=True)
    angles = np.unwrap(angles.reshape(num_frames, -1, 3), period=360.0, axis=0)  # (T, 55, 3) in Z X Y order
    angles = angles[:, depth_first_joints(rig.parents)].reshape(num_frames, -1)
    rows = np.concatenate([root_positions(rig, motion) * CENTIMETRES_PER_METRE, angles], axis=1)
    text = io.StringIO()
    np.savetxt(text, rows, fmt=f"%.{DECIMALS}f")
    return text.getvalue()


def format_vector(vector: np.ndarray) -> str:
    return " ".join(f"{v:.{DECIMALS}f}" for v in vector)
