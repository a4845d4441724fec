"""The full-body view's lighter mesh: the head and the hands, meshed finely enough for the face close-up,
are decimated where the full-body view draws them a couple of pixels per edge.

The software rasteriser pays for every triangle it sets up and bins, however small: at 512 px the
stand-in's head and hands are 15 k of its 27 k triangles at ~2.4 px per edge. Their quadric edge
collapse (fast-simplification) is replayed onto the vertex each collapse keeps, not the optimum, so the
lighter index list is over the body's own vertices: the one skinned vertex buffer, and its normals from
the full mesh, feed both the full-body view and the close-up, which keeps every face. Faces across a
colour edge (eyes, the stand-in's mouth) and the regions' borders are kept, so the mesh stays closed.

Without the optimal placement a collapse can fold a face over: on the stand-in at 512 px, 62 of the
18,452 faces, 73 px² in all; a folded face is culled and its neighbours, which it overlaps, cover it.
"""

import numpy as np

from ..motion import JOINT

FINGERS = ("thumb", "index", "middle", "ring", "pinky")
DENSE_JOINTS = [i for name, i in JOINT.items()
                if name in ("head", "jaw") or name.endswith("_wrist") or name.rstrip("123").endswith(FINGERS)]
MIN_TRIANGLE_PIXELS = 6.0  # decimate a dense region until its triangles cover about this many pixels each
MIN_REDUCTION = 0.2        # decimating fewer of a region's faces than this fraction is not worth it
AGGRESSION = 3             # fast-simplification's `agg`: its default 7 folds 4x as many faces; 1 stops short


def main_view_faces(vertices: np.ndarray, faces: np.ndarray, weights: np.ndarray, colors: np.ndarray,
                    pixels_per_metre: float) -> np.ndarray:
    """(F', 3) faces over the same vertices, the dense regions decimated for a view at this scale.

    `faces`: the closed, outward-wound mesh the view draws; `weights`: (V, J) skinning weights (a dense
    region is the vertices a head, jaw, wrist or finger joint dominates); `colors`: (V, C) vertex colours.
    """
    import fast_simplification

    corners = colors[faces]                                                          # (F, 3, C)
    allowed = np.isin(weights.argmax(1), DENSE_JOINTS)[faces].all(1) & (corners == corners[:, :1]).all((1, 2))
    region = faces[allowed]
    ids, local = np.unique(region, return_inverse=True)
    local = local.reshape(region.shape)
    corner = vertices[region]
    area = 0.5 * np.linalg.norm(np.cross(corner[:, 1] - corner[:, 0], corner[:, 2] - corner[:, 0]), axis=1)
    target = int(area.sum() * pixels_per_metre ** 2 / MIN_TRIANGLE_PIXELS)
    if not len(region) or target > (1 - MIN_REDUCTION) * len(region):
        return faces
    _, _, collapses = fast_simplification.simplify(vertices[ids].astype(np.float64), local, target_count=target,
                                                   agg=AGGRESSION, return_collapses=True, preserve_border=True)
    kept = _replay(len(ids), collapses)[local]                                       # (F_region, 3)
    alive = (kept[:, 0] != kept[:, 1]) & (kept[:, 1] != kept[:, 2]) & (kept[:, 2] != kept[:, 0])
    return np.concatenate([faces[~allowed], ids[kept[alive]]])


def _replay(count: int, collapses: np.ndarray) -> np.ndarray:
    """(count,) the vertex each vertex ends up as, after each `collapses[i] = (kept, removed)`."""
    target = np.arange(count)
    target[collapses[:, 1]] = collapses[:, 0]  # each vertex is removed once at most
    # a vertex kept by one collapse may be removed by a later one: follow each chain to its end
    while not np.array_equal(target, target[target]):
        target = target[target]
    return target
