"""The avatar's look, defined once for the video and the exports: skin and eyes as vertex colours, and an
outfit (a short-sleeved shirt, trousers and shoes) cut by straight lines through the rest (T-pose) mesh,
placed from its joints, so any SMPL-X-format body wears it.

Each vertex carries its signed distances to the four cuts (`cuts`). The video's fragment shader picks the
cloth per pixel from them (`shader_rule`), so its seams are straight lines rather than the staircase of
per-vertex colours; the .glb export cuts the mesh along the same lines (`cut_along_seams`) and gives each
region its own material (`face_regions`), so Blender, Unity and three.js draw the same seams. Colours are
what the video shows: sRGB values, lit as they are (the renderer does no colour management).
"""

from dataclasses import dataclass

import numpy as np

from ..motion import JOINT

SKIN = (214, 172, 150)  # sRGB bytes, for a body without colours of its own
SCLERA, IRIS, PUPIL = (240, 238, 232), (70, 48, 32), (12, 10, 10)

# A vertex's four cuts, in this order (the shader reads them as cuts.x, .y, .z, .w), metres:
NECKLINE, WAIST, SLEEVE, SHOE_TOP = range(4)  # positive below the neckline, above the waist, inside a
#                                               sleeve's length from the body's middle, above the shoes


@dataclass(frozen=True)
class Cloth:
    name: str
    color: tuple[float, float, float]  # sRGB 0-1, as the video shows it
    covers: tuple[tuple[int, int], ...]  # (cut, sign) pairs: where sign x cut > 0 for every pair


# The first cloth that covers a point colours it; where none does, the skin (the vertex colours) shows.
OUTFIT = (
    Cloth("shoes", (0.16, 0.14, 0.13), ((SHOE_TOP, -1),)),
    Cloth("trousers", (0.23, 0.24, 0.27), ((WAIST, -1),)),
    Cloth("shirt", (0.36, 0.43, 0.54), ((NECKLINE, 1), (SLEEVE, 1))),
)
REGIONS = ("skin", *(cloth.name for cloth in OUTFIT))  # face_regions' numbers name these


def vertex_colors(body) -> np.ndarray:
    """(V, 3) uint8: the body's own colours (the stand-in's tongue) or skin, with eyes looking forward."""
    template = body.v_template.detach().numpy()
    colors = body.vertex_colors.copy() if body.vertex_colors is not None else np.tile(SKIN, (len(template), 1))
    dominant = body.lbs_weights.detach().numpy().argmax(1)
    eye_centres = body.J_regressor.detach().numpy() @ template
    for eye in (JOINT["left_eye"], JOINT["right_eye"]):
        ids = np.where(dominant == eye)[0]
        direction = template[ids] - eye_centres[eye]
        forward = direction[:, 2] / np.maximum(np.linalg.norm(direction, axis=1), 1e-9)  # cosine to +z
        colors[ids] = np.where(forward[:, None] > 0.97, PUPIL, np.where(forward[:, None] > 0.86, IRIS, SCLERA))
    return colors.astype(np.uint8)


def cuts(body) -> np.ndarray:
    """(V, 4) float32 signed distances (metres) of the rest mesh to the outfit's cuts, in the order above."""
    template = body.v_template.detach().numpy()
    joints = body.J_regressor.detach().numpy() @ template
    j = {name: joints[JOINT[name]]
         for name in ("pelvis", "spine1", "neck", "left_shoulder", "left_elbow", "left_knee", "left_ankle")}
    sleeve = j["left_shoulder"][0] + 0.45 * (j["left_elbow"][0] - j["left_shoulder"][0])
    waist = j["pelvis"][1] + 0.5 * (j["spine1"][1] - j["pelvis"][1])
    neckline = j["neck"][1] - 0.25 * (j["neck"][1] - j["left_shoulder"][1])
    shoe_top = j["left_ankle"][1] + 0.1 * (j["left_knee"][1] - j["left_ankle"][1])
    x, y = np.abs(template[:, 0] - j["pelvis"][0]), template[:, 1]
    return np.stack([neckline - y, y - waist, sleeve - x, y - shoe_top], 1).astype(np.float32)


def shader_rule() -> str:
    """The GLSL that overwrites `albedo` with the cloth at a fragment, from its interpolated `cuts` (vec4)."""
    lines = []
    for k, cloth in enumerate(OUTFIT):
        test = " && ".join(f"cuts.{'xyzw'[cut]} {'>' if sign > 0 else '<'} 0.0" for cut, sign in cloth.covers)
        rgb = ", ".join(f"{c:.3f}" for c in cloth.color)
        lines.append(f"{'else ' if k else ''}if ({test}) albedo = vec3({rgb});")
    return "\n    ".join(lines)


def point_regions(values: np.ndarray) -> np.ndarray:
    """(N,) index into REGIONS of points with (N, 4) cut values: the shader's rule, in numpy."""
    regions = np.zeros(len(values), np.int64)
    for k, cloth in reversed(list(enumerate(OUTFIT, start=1))):  # the first cloth that covers a point wins
        covered = np.all([sign * values[:, cut] > 0 for cut, sign in cloth.covers], axis=0)
        regions[covered] = k
    return regions


def face_regions(faces: np.ndarray, values: np.ndarray) -> np.ndarray:
    """(F,) index into REGIONS of each face of a mesh cut along the seams (`cut_along_seams`), from the
    (V, 4) cuts of its vertices: its centre's."""
    return point_regions(values[faces].mean(1))


# ----------------------------------------------------------------------------
# The mesh cut along the seams, for the exports
# ----------------------------------------------------------------------------
def cut_along_seams(faces: np.ndarray, values: np.ndarray, snap: float = 1e-4):
    """The mesh with every face that a cut crosses split along it, so each face lies on one side of
    every cut and belongs to one region, with the seams where the shader draws them.

    `values`: (V, 4) the vertices' cuts. Returns (faces, seams): the new (F', 3) faces over V + N vertices,
    the first V the mesh's own, in order, and N new ones on the seams; `seams`, a sparse (N, V) matrix,
    makes any per-vertex quantity of the new vertices from the mesh's own (positions, normals, skinning
    weights, morph targets, cuts): `seams @ quantity`. A vertex nearer than `snap` metres to a cut counts
    as on it, so no cut leaves a sliver. (trimesh's plane slicing keeps one side and interpolates no
    vertex data; both sides of a seam must share its vertices for the skin to stay closed.)
    """
    import scipy.sparse

    faces = np.asarray(faces, np.int64)
    blend = scipy.sparse.identity(len(values), format="csr")  # every vertex so far from the mesh's own
    for cut in range(values.shape[1]):
        side = blend @ values[:, cut]
        side = np.where(np.abs(side) < snap, 0.0, side)
        faces, new_rows = _split(faces, side)
        blend = scipy.sparse.vstack([blend, new_rows @ blend], format="csr")
    return faces, blend[len(values):]


def _split(faces: np.ndarray, side: np.ndarray):
    """One cut: (faces, rows) where the crossing faces are split at the zero of `side` (linear along
    each edge) and `rows` (sparse, N x vertices) makes each new vertex from its edge's two ends."""
    import scipy.sparse

    corner = side[faces]                                                           # (F, 3)
    crossing = corner * np.roll(corner, -1, axis=1) < 0                            # edge k: corners k, k+1
    count = len(side)
    ends = np.stack([faces, np.roll(faces, -1, axis=1)], -1)[crossing]             # (E, 2), an edge per face
    keys = np.unique(np.sort(ends, 1) @ [count, 1])
    low, high = np.divmod(keys, count)
    weight = side[low] / (side[low] - side[high])                                  # of `high`, at the zero
    rows = scipy.sparse.csr_matrix((np.concatenate([1 - weight, weight]),
                                    (np.tile(np.arange(len(keys)), 2), np.concatenate([low, high]))),
                                   shape=(len(keys), count))

    def vertex_on(a, b):  # the new vertex on edge (a, b)
        return count + np.searchsorted(keys, np.minimum(a, b) * count + np.maximum(a, b))

    kept = faces[crossing.sum(1) == 0]
    # Two crossed edges: roll the face so the corner alone on its side comes first, (L, A, B): the
    # triangle (L, p, q) on its side, the quad (p, A, B, q) on the other.
    two = crossing.sum(1) == 2
    lone = np.where(crossing[two, 0] & crossing[two, 1], 1, np.where(crossing[two, 1] & crossing[two, 2], 2, 0))
    lone_first = np.take_along_axis(faces[two], (lone[:, None] + np.arange(3)) % 3, axis=1)
    ell, a, b = lone_first.T
    p, q = vertex_on(ell, a), vertex_on(ell, b)
    # One crossed edge, the third corner on the cut: roll it first, (Z, A, B), and split at p on A-B.
    one = crossing.sum(1) == 1
    zero = (np.argmax(crossing[one], 1) + 2) % 3
    zero_first = np.take_along_axis(faces[one], (zero[:, None] + np.arange(3)) % 3, axis=1)
    z, c, d = zero_first.T
    r = vertex_on(c, d)
    split = [np.stack(corners, 1) for corners in ((ell, p, q), (p, a, b), (p, b, q), (z, c, r), (z, r, d))]
    return np.concatenate([kept, *split]), rows
