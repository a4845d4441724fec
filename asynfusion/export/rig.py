"""What every export reads off a body and a motion: the shaped rest mesh, the rest joints and the joint rotations.

The skeleton is SMPL-X's: 55 joints named as `motion.JOINT_NAMES`, parented by the body's kintree, with
rest joints regressed from the template (`J_regressor @ v_template`, plus the motion's betas on a real
SMPL-X body, as the renderer shapes it; the stand-in ignores them). Rotations are the motion's axis-angles
plus the body's hand mean pose (BEAT2 stores fingers relative to the relaxed hand, smplx's
flat_hand_mean=False), so the exported joints land where `evaluation.metrics.joint_positions` puts them.
The root joint sits at its rest position plus the motion's recorded `trans`: SMPL-X's own coordinates,
Y up, metres, no camera follow and no floor offset.
"""

import os
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from ..errors import InputError
from ..motion import NUM_JOINTS, Motion


@dataclass
class Rig:
    """A body's rest pose as numpy arrays, shaped for one motion."""

    template: np.ndarray     # (V, 3) float32 rest vertices, metres
    faces: np.ndarray        # (F, 3) int
    weights: np.ndarray      # (V, 55) skinning weights
    parents: np.ndarray      # (55,) parent index, -1 for the root
    rest_joints: np.ndarray  # (55, 3) float64 rest joint positions
    pose_mean: np.ndarray    # (165,) added to every pose (the relaxed hands)
    body: object             # the smplx module, for what only some formats need (expression shapes, colours)

    @property
    def offsets(self) -> np.ndarray:
        """(55, 3) each joint's rest position relative to its parent's (the root's: relative to the origin)."""
        parent_positions = np.where(self.parents[:, None] >= 0, self.rest_joints[np.maximum(self.parents, 0)], 0.0)
        return self.rest_joints - parent_positions


def load_rig(motion: Motion, body_path: str | os.PathLike | None = None) -> Rig:
    """The rig of `body_path` (default: $ASYNFUSION_BODY or the free stand-in) shaped by the motion's betas."""
    from ..render.body import load_body

    body = load_body(body_path)
    template = body.v_template.numpy().astype(np.float64)
    if body.smplx_betas:  # a real SMPL-X body: the motion's shape components apply, as in rendering
        betas = motion.betas[:body.num_betas].astype(np.float64)
        template = template + body.shapedirs.numpy()[..., :len(betas)] @ betas
    parents = body.parents.numpy().astype(np.int64)
    if len(parents) != NUM_JOINTS:
        raise InputError(f"the body has {len(parents)} joints; SMPL-X has {NUM_JOINTS}")
    return Rig(template=template.astype(np.float32), faces=np.asarray(body.faces, np.int64),
               weights=body.lbs_weights.numpy(), parents=parents,
               rest_joints=body.J_regressor.numpy().astype(np.float64) @ template,
               pose_mean=body.pose_mean.numpy().astype(np.float64), body=body)


def require_frames(motion: Motion) -> None:
    """Every format needs at least one frame (a glTF sampler, a BVH MOTION block, a CSV row)."""
    if motion.num_frames == 0:
        raise InputError("the motion has no frames: nothing to export")


def local_rotations(motion: Motion, pose_mean: np.ndarray) -> Rotation:
    """(T * 55) local joint rotations, frame-major, the hand mean pose included."""
    poses = motion.poses.astype(np.float64) + pose_mean                       # (T, 165)
    return Rotation.from_rotvec(poses.reshape(-1, 3))


def root_positions(rig: Rig, motion: Motion) -> np.ndarray:
    """(T, 3) the root joint's position in metres: its rest position plus the recorded translation."""
    return rig.rest_joints[0] + motion.trans.astype(np.float64)
