"""The full-body view's lighter mesh (render/lod.py): fewer triangles where they are smaller than pixels,
the same closed surface over the same vertices, and the same picture."""

import numpy as np
import pytest

from asynfusion.motion import JOINT, Motion
from asynfusion.render.body import load_body
from asynfusion.render.lod import DENSE_JOINTS, main_view_faces
from asynfusion.render.outfit import vertex_colors
from asynfusion.render.scene import VIEW_BOTTOM, VIEW_TOP, _outward_faces, _Stage

SIZE = 512


@pytest.fixture(scope="module")
def stand_in():
    body = load_body(None)
    template = body.v_template.detach().numpy().astype(np.float32)
    faces, cullable = _outward_faces(template, np.asarray(body.faces, np.int64))
    assert cullable
    weights = body.lbs_weights.detach().numpy()
    pixels_per_metre = SIZE / ((VIEW_TOP - VIEW_BOTTOM) * np.ptp(template[:, 1]))   # the video's scale
    return body, template, faces, weights, vertex_colors(body), pixels_per_metre


def face_set(faces: np.ndarray) -> set:
    return {tuple(np.roll(f, -int(np.argmin(f)))) for f in faces}  # a face up to rotation of its corners


def test_the_lighter_mesh_is_the_same_closed_surface_with_fewer_faces(stand_in):
    _, template, faces, weights, colors, pixels_per_metre = stand_in
    lighter = main_view_faces(template, faces, weights, colors, pixels_per_metre)
    assert len(lighter) < 0.75 * len(faces)
    assert _outward_faces(template, lighter)[1]             # closed: every edge met both ways round
    edges = lighter[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    assert len({tuple(e) for e in edges}) == len(edges)    # and only once each way: one surface, wound one way
    dense = np.isin(weights.argmax(1), DENSE_JOINTS)
    untouched = faces[~dense[faces].all(1)]                       # torso, arms, legs: every face kept
    assert face_set(untouched) <= face_set(lighter)
    eyes = np.isin(weights.argmax(1), [JOINT["left_eye"], JOINT["right_eye"]])
    assert face_set(faces[eyes[faces].any(1)]) <= face_set(lighter)  # across a colour edge: kept
    assert set(np.unique(lighter)) <= set(np.unique(faces))


def test_few_faces_fold_over(stand_in):
    import torch

    from asynfusion.render.body import vertex_normals

    _, template, faces, weights, colors, pixels_per_metre = stand_in
    lighter = main_view_faces(template, faces, weights, colors, pixels_per_metre)
    normals = vertex_normals(torch.as_tensor(template), torch.as_tensor(faces)).numpy()  # the full mesh's
    corner = template[lighter]
    face_normals = np.cross(corner[:, 1] - corner[:, 0], corner[:, 2] - corner[:, 0])
    folded = np.einsum("fi,fi->f", face_normals, normals[lighter].sum(1)) < 0
    folded_pixels = 0.5 * np.linalg.norm(face_normals[folded], axis=1).sum() * pixels_per_metre ** 2
    assert folded.sum() < 0.01 * len(lighter) and folded_pixels < 200


def test_a_large_view_keeps_every_face(stand_in):
    _, template, faces, weights, colors, pixels_per_metre = stand_in
    assert main_view_faces(template, faces, weights, colors, 2 * pixels_per_metre) is faces


def test_the_lighter_mesh_draws_the_same_picture(stand_in, monkeypatch):
    """A video frame with the lighter mesh against the same frame with the full one: under 0.1 % of the
    pixels differ by more than 40 levels (an edge moved), under 0.5 % by more than 8. (The stand-in at
    512 px: 64 and 465 pixels of 262,144; with 3 % of the faces dropped instead, 1,608 and 2,012.)"""
    import asynfusion.render.scene
    from asynfusion.render.body import iter_body_vertices

    body = stand_in[0]
    motion = Motion.rest(4, expression_space="arkit")
    motion.poses[:, 3 * JOINT["left_shoulder"] + 2] = -1.0  # one arm raised to the side, the other hand in view
    motion.poses[:, 3 * JOINT["jaw"]] = 0.25                # the mouth open
    vertices, normals = next(iter_body_vertices(body, motion))
    frames = []
    for lighter in (True, False):
        if not lighter:
            monkeypatch.setattr(asynfusion.render.scene, "main_view_faces", lambda vertices, faces, *rest: faces)
        stage = _Stage([body], SIZE)
        try:
            avatar = stage.avatars[0]
            assert (len(avatar.body_primitive.indices) < len(stand_in[2])) == lighter
            stage.place(avatar, vertices[0], normals[0])
            frames.append(stage.render([(avatar.body_buffer, avatar.head_buffer)])[..., :3].astype(int))
        finally:
            stage.close()
    difference = np.abs(frames[0] - frames[1]).max(-1)
    assert (difference > 40).mean() < 1e-3 and (difference > 8).mean() < 5e-3


def test_a_body_without_dense_regions_or_seen_from_afar(stand_in):
    """No head or hand joints dominate anything: the mesh as it is; a view so small that no target can
    be reached: as far as the regions' borders allow, still closed."""
    _, template, faces, weights, colors, _ = stand_in
    elsewhere = np.zeros_like(weights)
    elsewhere[:, JOINT["pelvis"]] = 1.0
    assert main_view_faces(template, faces, elsewhere, colors, 400.0) is faces
    tiny = main_view_faces(template, faces, weights, colors, 1.0)
    assert len(tiny) < len(faces) and _outward_faces(template, tiny)[1]
