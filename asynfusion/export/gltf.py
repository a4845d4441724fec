"""Motion -> binary glTF 2.0 (.glb): the body as a skinned mesh with its face shapes, and one animation.

What the file carries:
  - the body's rest mesh (positions, normals, vertex colours when the body has them), skinned to the
    SMPL-X skeleton: 55 nodes named as `motion.JOINT_NAMES`, bind pose = the rest joints, inverse bind
    matrices, each vertex bound to its 4 heaviest joints of SMPL-X's 55 (renormalized);
  - the face shapes as morph targets, named in `mesh.extras.targetNames` (what three.js and Blender read):
    on the free stand-in the 52 ARKit shapes with their ARKit names; on a real SMPL-X body (--body) its
    FLAME expression components, named expression_000, expression_001, ... Sparse accessors: a shape
    stores only the vertices it moves (densely when it moves nearly all, which is then smaller);
  - one animation ("motion", at the motion's frame rate, 30 fps for BEAT2 and ours, linear): every
    joint's rotation as a quaternion, the root's translation, and the morph weights. The weights are
    animated only when the motion's expression space is the body's (an ARKit motion on the stand-in, a
    FLAME motion on a real SMPL-X body); otherwise the face shapes stay at 0 and the jaw alone moves the
    mouth, as in the renderer.
Coordinates are SMPL-X's: Y up, metres, the body facing +Z, the recorded root translation (no floor
offset: the rest feet are below y = 0; a player lifts the model by the POSITION accessor's min y).

What it leaves out, because glTF skinning cannot express it:
  - SMPL-X's pose-corrective blend shapes (posedirs): glTF morph weights are not functions of the pose,
    so a real SMPL-X body moves as plain linear-blend skinning (the stand-in has none);
  - joints that move with the expression (SMPL-X regresses them from the expressed face): they stay at
    their rest positions, as in `evaluation.metrics.joint_positions`; on the stand-in SMPL-X would move
    them by up to 4 mm at full weight (the eye joints under a blink);
  - skinning weights past the 4 heaviest per vertex (glTF's JOINTS_0 / WEIGHTS_0 hold 4).
No quantization: the free body with 10 s of motion is 1.9 MB of plain floats, well under the 8 MB budget,
and floats keep every reader (no KHR_mesh_quantization) and the 1 mm round trip.
"""

import numpy as np

from ..motion import ARKIT_BLENDSHAPES, JOINT_NAMES, Motion
from .glb import ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER, Buffer, glb_bytes
from .rig import Rig, load_rig, local_rotations, require_frames, root_positions

INFLUENCES = 4  # joints per vertex in glTF's JOINTS_0 / WEIGHTS_0
FIRST_JOINT_NODE = 1  # node 0 is the skinned mesh, nodes 1..55 the joints


def motion_to_glb(motion: Motion, body_path=None) -> bytes:
    """The .glb file of `motion` on the body at `body_path` (default: $ASYNFUSION_BODY or the stand-in)."""
    require_frames(motion)
    rig = load_rig(motion, body_path)
    buffer = Buffer()
    target_names, targets = morph_targets(buffer, rig)
    primitive = {"attributes": mesh_attributes(buffer, rig), "material": 0, "mode": 4,
                 "indices": buffer.accessor(face_indices(rig), ELEMENT_ARRAY_BUFFER)}
    if targets:
        primitive["targets"] = targets
    mesh = {"name": "body", "primitives": [primitive]}
    if targets:
        mesh.update(weights=[0.0] * len(targets), extras={"targetNames": target_names})
    ibm = inverse_bind_matrices(rig.rest_joints)
    skin = {"name": "smplx", "joints": [FIRST_JOINT_NODE + j for j in range(len(JOINT_NAMES))],
            "skeleton": FIRST_JOINT_NODE, "inverseBindMatrices": buffer.accessor(ibm)}
    document = {
        "asset": {"version": "2.0", "generator": "asynfusion export",
                  "extras": {"fps": motion.fps, "expression_space": rig.body.expression_space,
                             "asynfusion": motion.metadata}},
        "scene": 0,
        "scenes": [{"name": "asynfusion", "nodes": [0, FIRST_JOINT_NODE]}],
        "nodes": [{"name": "body", "mesh": 0, "skin": 0}, *joint_nodes(rig)],
        "meshes": [mesh],
        "materials": [material(rig)],
        "skins": [skin],
        "animations": [animation(buffer, rig, motion, len(targets))],
    }
    return glb_bytes(document, buffer)


# ----------------------------------------------------------------------------
# The mesh
# ----------------------------------------------------------------------------
def mesh_attributes(buffer: Buffer, rig: Rig) -> dict:
    """POSITION, NORMAL, JOINTS_0, WEIGHTS_0 and, when the body has them, COLOR_0."""
    joints, weights = top_influences(rig.weights)
    attributes = {
        "POSITION": buffer.accessor(rig.template, ARRAY_BUFFER, bounds=True),
        "NORMAL": buffer.accessor(rest_normals(rig), ARRAY_BUFFER),
        "JOINTS_0": buffer.accessor(joints, ARRAY_BUFFER),
        "WEIGHTS_0": buffer.accessor(weights, ARRAY_BUFFER),
    }
    colors = rig.body.vertex_colors
    if colors is not None:  # RGBA: a VEC3 of bytes would break glTF's 4-byte vertex alignment
        rgba = np.concatenate([colors, np.full((len(colors), 1), 255, np.uint8)], axis=1)
        attributes["COLOR_0"] = buffer.accessor(rgba, ARRAY_BUFFER, normalized=True)
    return attributes


def face_indices(rig: Rig) -> np.ndarray:
    """(3F,) triangle indices, 16-bit when they fit (65535 is reserved for primitive restart)."""
    index_type = np.uint16 if len(rig.template) < 0xFFFF else np.uint32
    return rig.faces.reshape(-1).astype(index_type)


def top_influences(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(V, 55) skinning weights -> (V, 4) uint8 joint indices, (V, 4) float32 weights summing to 1.

    Unused slots (a vertex bound to fewer than 4 joints) get weight 0 and joint 0, as glTF asks.
    """
    order = np.argsort(-weights, axis=1, kind="stable")[:, :INFLUENCES]         # (V, 4) heaviest first
    top = np.take_along_axis(weights, order, axis=1).astype(np.float64)
    top = np.where(top > 0, top, 0.0)
    top[top.sum(1) == 0, 0] = 1.0                                                 # an unbound vertex follows the root
    top /= top.sum(1, keepdims=True)
    top = top.astype(np.float32)
    top[:, 0] = 1 - top[:, 1:].sum(1, dtype=np.float32)                          # the sum exact in float32
    joints = np.where(top > 0, order, 0).astype(np.uint8)
    return joints, top


def rest_normals(rig: Rig) -> np.ndarray:
    """(V, 3) float32 unit vertex normals of the rest mesh (+Y for a vertex no face uses)."""
    import torch

    from ..render.body import vertex_normals

    normals = vertex_normals(torch.as_tensor(rig.template, dtype=torch.float64),
                             torch.as_tensor(rig.faces)).numpy()
    lengths = np.linalg.norm(normals, axis=1, keepdims=True)
    normals = np.where(lengths > 1e-6, normals / np.maximum(lengths, 1e-12), [0.0, 1.0, 0.0])
    return normals.astype(np.float32)


def material(rig: Rig) -> dict:
    """Matte skin: white under the vertex colours, a light grey without them."""
    base = [1.0, 1.0, 1.0, 1.0] if rig.body.vertex_colors is not None else [0.8, 0.8, 0.8, 1.0]
    return {"name": "skin", "pbrMetallicRoughness": {"baseColorFactor": base, "metallicFactor": 0.0,
                                                     "roughnessFactor": 0.8}}


def morph_targets(buffer: Buffer, rig: Rig) -> tuple[list[str], list[dict]]:
    """(names, primitive targets) of the body's face shapes: ARKit-named on the stand-in, FLAME components else."""
    directions = rig.body.expr_dirs.numpy()                                       # (V, 3, E)
    if rig.body.expression_space == "arkit":
        names = list(ARKIT_BLENDSHAPES)
    else:
        names = [f"expression_{k:03d}" for k in range(directions.shape[-1])]
    targets = [{"POSITION": buffer.compact_accessor(directions[..., k])} for k in range(len(names))]
    return names, targets


# ----------------------------------------------------------------------------
# The skeleton
# ----------------------------------------------------------------------------
def joint_nodes(rig: Rig) -> list[dict]:
    """The 55 joint nodes at their rest offsets, parented as the body's kintree."""
    nodes = [{"name": name, "translation": [float(v) for v in offset]}
             for name, offset in zip(JOINT_NAMES, rig.offsets)]
    for joint, parent in enumerate(rig.parents):
        if parent >= 0:
            nodes[parent].setdefault("children", []).append(FIRST_JOINT_NODE + joint)
    return nodes


def inverse_bind_matrices(rest_joints: np.ndarray) -> np.ndarray:
    """(55, 16) column-major float32: the bind pose is the rest pose, unrotated, so each is a translation."""
    matrices = np.tile(np.eye(4), (len(rest_joints), 1, 1))
    matrices[:, :3, 3] = -rest_joints
    return matrices.transpose(0, 2, 1).reshape(len(rest_joints), 16).astype(np.float32)


# ----------------------------------------------------------------------------
# The animation
# ----------------------------------------------------------------------------
def animation(buffer: Buffer, rig: Rig, motion: Motion, num_targets: int) -> dict:
    """One animation: every joint's rotation, the root's translation, the morph weights when they apply."""
    num_frames, num_joints = motion.num_frames, len(JOINT_NAMES)
    times = buffer.accessor((np.arange(num_frames) / motion.fps).astype(np.float32), bounds=True)
    quaternions = continuous_quaternions(local_rotations(motion, rig.pose_mean).as_quat()
                                         .reshape(num_frames, num_joints, 4))    # (T, 55, 4) x y z w
    outputs = [(FIRST_JOINT_NODE + j, "rotation", quaternions[:, j]) for j in range(num_joints)]
    outputs.append((FIRST_JOINT_NODE, "translation", root_positions(rig, motion).astype(np.float32)))
    if num_targets and motion.expression_space == rig.body.expression_space:
        weights = np.zeros((num_frames, num_targets), np.float32)
        coeffs = min(num_targets, motion.expressions.shape[1])
        weights[:, :coeffs] = motion.expressions[:, :coeffs]
        outputs.append((0, "weights", weights.reshape(-1)))                       # frame-major, as glTF reads it
    samplers, channels = [], []
    for node, path, values in outputs:
        channels.append({"sampler": len(samplers), "target": {"node": node, "path": path}})
        samplers.append({"input": times, "output": buffer.accessor(values), "interpolation": "LINEAR"})
    return {"name": "motion", "samplers": samplers, "channels": channels}


def continuous_quaternions(quaternions: np.ndarray) -> np.ndarray:
    """(T, J, 4) unit quaternions, each on the side of its predecessor, so interpolation takes the short way."""
    quaternions = quaternions / np.linalg.norm(quaternions, axis=-1, keepdims=True)
    flips = np.sum(quaternions[1:] * quaternions[:-1], axis=-1) < 0               # (T-1, J)
    signs = np.concatenate([np.ones((1, quaternions.shape[1])), np.where(np.cumsum(flips, 0) % 2, -1.0, 1.0)])
    return (quaternions * signs[..., None]).astype(np.float32)
