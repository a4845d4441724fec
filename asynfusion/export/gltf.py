"""Motion -> binary glTF 2.0 (.glb): the body as a skinned mesh with its face shapes, and one animation.

What the file carries:
  - the body's rest mesh (positions, normals), skinned to the SMPL-X skeleton: 55 nodes named as
    `motion.JOINT_NAMES`, bind pose = the rest joints, inverse bind matrices, each vertex bound to its 4
    heaviest joints of SMPL-X's 55 (renormalized);
  - the video's look (render/outfit.py): the mesh cut along the outfit's seams, one primitive and material
    per region over the same vertices: "skin" (white, its colours per vertex in COLOR_0: skin, eyes, the
    stand-in's tongue), "shirt", "trousers", "shoes" (one colour each). The body's own vertices come
    first, in its order; the seams' follow. Colours are linear, as glTF defines them (the video's sRGB
    values decoded), matte (roughness 0.8, no metal);
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

import functools
from dataclasses import dataclass

import numpy as np

from ..motion import ARKIT_BLENDSHAPES, JOINT_NAMES, Motion
from ..render import outfit
from ..render.outfit import REGIONS
from .glb import ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER, Buffer, glb_bytes
from .rig import Rig, load_rig, local_rotations, require_frames, root_positions

INFLUENCES = 4  # joints per vertex in glTF's JOINTS_0 / WEIGHTS_0
FIRST_JOINT_NODE = 1  # node 0 is the skinned mesh, nodes 1..55 the joints


def motion_to_glb(motion: Motion, body_path=None) -> bytes:
    """The .glb file of `motion` on the body at `body_path` (default: $ASYNFUSION_BODY or the stand-in)."""
    require_frames(motion)
    rig = load_rig(motion, body_path)
    dressed = dress(rig)
    buffer = Buffer()
    target_names, targets = morph_targets(buffer, rig, dressed)
    attributes = mesh_attributes(buffer, dressed)
    colors = buffer.accessor(linear_rgba(dressed.colors), ARRAY_BUFFER, normalized=True)
    primitives, materials = [], []
    for region, name in enumerate(REGIONS):
        faces = dressed.faces[dressed.regions == region]
        if not len(faces):
            continue
        primitive = {"attributes": {**attributes, "COLOR_0": colors} if name == "skin" else attributes,
                     "indices": buffer.accessor(face_indices(faces, len(dressed.template)), ELEMENT_ARRAY_BUFFER),
                     "material": len(materials), "mode": 4}
        if targets:
            primitive["targets"] = targets
        primitives.append(primitive)
        materials.append(material(name))
    mesh = {"name": "body", "primitives": primitives}
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
        "materials": materials,
        "skins": [skin],
        "animations": [animation(buffer, rig, motion, len(targets))],
    }
    return glb_bytes(document, buffer)


# ----------------------------------------------------------------------------
# The mesh
# ----------------------------------------------------------------------------
@dataclass
class DressedMesh:
    """The rig's rest mesh cut along the outfit's seams: the body's own V vertices, then the seams' N."""

    template: np.ndarray     # (V + N, 3) float32 rest vertices
    normals: np.ndarray      # (V + N, 3) float32 unit rest normals
    weights: np.ndarray      # (V + N, 55) skinning weights
    colors: np.ndarray       # (V + N, 3) uint8 sRGB: the renderer's vertex colours
    faces: np.ndarray        # (F', 3)
    regions: np.ndarray      # (F',) index into outfit.REGIONS
    seams: object            # sparse (N, V): a new vertex's quantity from the body's own

    def extend(self, quantity: np.ndarray) -> np.ndarray:
        """(V, ...) a per-vertex quantity of the body -> (V + N, ...) of the cut mesh."""
        return on_seams(self.seams, quantity)


def on_seams(seams, quantity: np.ndarray) -> np.ndarray:
    """(V, ...) a per-vertex quantity of the body -> (V + N, ...): its own rows, then the seams' vertices'."""
    flat = quantity.reshape(len(quantity), -1)
    return np.concatenate([flat, seams @ flat]).reshape(-1, *quantity.shape[1:])


@functools.lru_cache(maxsize=4)
def _cut(body) -> tuple:
    """(faces, seams, regions, colours) of `body` (one of render.body's cached modules) cut along the seams."""
    values = outfit.cuts(body)  # from the body's own template, as the renderer's
    faces, seams = outfit.cut_along_seams(np.asarray(body.faces, np.int64), values)
    colors = np.rint(on_seams(seams, outfit.vertex_colors(body).astype(np.float64))).astype(np.uint8)
    return faces, seams, outfit.face_regions(faces, on_seams(seams, values)), colors


def dress(rig: Rig) -> DressedMesh:
    """The rig's mesh cut along the outfit's seams, where the renderer's shader draws them."""
    faces, seams, regions, colors = _cut(rig.body)
    normals = on_seams(seams, rest_normals(rig))
    return DressedMesh(template=on_seams(seams, rig.template).astype(np.float32),
                       normals=(normals / np.linalg.norm(normals, axis=1, keepdims=True)).astype(np.float32),
                       weights=on_seams(seams, rig.weights), colors=colors, faces=faces, regions=regions, seams=seams)


def mesh_attributes(buffer: Buffer, dressed: DressedMesh) -> dict:
    """POSITION, NORMAL, JOINTS_0, WEIGHTS_0: shared by every region's primitive."""
    joints, weights = top_influences(dressed.weights)
    return {
        "POSITION": buffer.accessor(dressed.template, ARRAY_BUFFER, bounds=True),
        "NORMAL": buffer.accessor(dressed.normals, ARRAY_BUFFER),
        "JOINTS_0": buffer.accessor(joints, ARRAY_BUFFER),
        "WEIGHTS_0": buffer.accessor(weights, ARRAY_BUFFER),
    }


def linear(srgb) -> np.ndarray:
    """sRGB values in [0, 1] decoded to linear light, as glTF's colours are (the sRGB transfer function)."""
    srgb = np.asarray(srgb, np.float64)
    return np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)


def linear_rgba(colors: np.ndarray) -> np.ndarray:
    """(V, 3) sRGB bytes -> (V, 4) linear RGBA, 16-bit: 8 bits of linear light would move the dark eyes by
    up to 3 sRGB levels (RGBA: a VEC3 of 16-bit values would break glTF's 4-byte vertex alignment)."""
    rgb = np.rint(linear(colors / 255.0) * 65535).astype(np.uint16)
    return np.concatenate([rgb, np.full((len(rgb), 1), 65535, np.uint16)], axis=1)


def face_indices(faces: np.ndarray, num_vertices: int) -> np.ndarray:
    """(3F,) triangle indices, 16-bit when they fit (65535 is reserved for primitive restart)."""
    index_type = np.uint16 if num_vertices < 0xFFFF else np.uint32
    return faces.reshape(-1).astype(index_type)


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


def material(region: str) -> dict:
    """A region's matte material: the cloth's colour, or white under the skin's vertex colours."""
    cloth = {cloth.name: cloth.color for cloth in outfit.OUTFIT}
    base = [float(c) for c in linear(cloth[region])] if region in cloth else [1.0, 1.0, 1.0]
    return {"name": region, "pbrMetallicRoughness": {"baseColorFactor": [*base, 1.0], "metallicFactor": 0.0,
                                                     "roughnessFactor": 0.8}}


def target_names(rig: Rig) -> list[str]:
    """The body's face shapes: the ARKit names on the stand-in, FLAME components expression_000, ... else."""
    if rig.body.expression_space == "arkit":
        return list(ARKIT_BLENDSHAPES)
    return [f"expression_{k:03d}" for k in range(rig.body.expr_dirs.shape[-1])]


def morph_targets(buffer: Buffer, rig: Rig, dressed: DressedMesh) -> tuple[list[str], list[dict]]:
    """(names, primitive targets) of the body's face shapes."""
    names = target_names(rig)
    directions = dressed.extend(rig.body.expr_dirs.numpy())                      # (V + N, 3, E)
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
    times = buffer.accessor((np.arange(motion.num_frames) / motion.fps).astype(np.float32), bounds=True)
    quaternions, root, weights = animation_values(rig, motion, num_targets)
    outputs = [(FIRST_JOINT_NODE + j, "rotation", quaternions[:, j]) for j in range(len(JOINT_NAMES))]
    outputs.append((FIRST_JOINT_NODE, "translation", root))
    if weights is not None:
        outputs.append((0, "weights", weights.reshape(-1)))                       # frame-major, as glTF reads it
    samplers, channels = [], []
    for node, path, values in outputs:
        channels.append({"sampler": len(samplers), "target": {"node": node, "path": path}})
        samplers.append({"input": times, "output": buffer.accessor(values), "interpolation": "LINEAR"})
    return {"name": "motion", "samplers": samplers, "channels": channels}


def animation_values(rig: Rig, motion: Motion, num_targets: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """What the animation plays, float32: (T, 55, 4) joint rotations as quaternions x y z w, (T, 3) the root
    joint's translation, and (T, num_targets) morph weights, or None when the motion's expressions do not
    mean the body's face shapes (the jaw alone then moves the mouth, as in the renderer)."""
    num_frames, num_joints = motion.num_frames, len(JOINT_NAMES)
    quaternions = continuous_quaternions(local_rotations(motion, rig.pose_mean).as_quat()
                                         .reshape(num_frames, num_joints, 4))    # (T, 55, 4) x y z w
    weights = None
    if num_targets and motion.expression_space == rig.body.expression_space:
        weights = np.zeros((num_frames, num_targets), np.float32)
        coeffs = min(num_targets, motion.expressions.shape[1])
        weights[:, :coeffs] = motion.expressions[:, :coeffs]
    return quaternions, root_positions(rig, motion).astype(np.float32), weights


def continuous_quaternions(quaternions: np.ndarray) -> np.ndarray:
    """(T, J, 4) unit quaternions, each on the side of its predecessor, so interpolation takes the short way."""
    quaternions = quaternions / np.linalg.norm(quaternions, axis=-1, keepdims=True)
    flips = np.sum(quaternions[1:] * quaternions[:-1], axis=-1) < 0               # (T-1, J)
    signs = np.concatenate([np.ones((1, quaternions.shape[1])), np.where(np.cumsum(flips, 0) % 2, -1.0, 1.0)])
    return (quaternions * signs[..., None]).astype(np.float32)
