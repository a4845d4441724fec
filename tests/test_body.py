"""The body: the shipped stand-in loads through smplx and moves where SMPL-X says it should; any
SMPL-X-format file (here a tiny one built by the test) goes through the same path."""

import numpy as np
import pytest
import torch

from asynfusion.errors import InputError
from asynfusion.motion import JOINT, JOINT_NAMES, Motion
from asynfusion.render.body import body_vertices, camera_translation, iter_body_vertices, load_body


@pytest.fixture(scope="module")
def body():
    return load_body()


def pose(num_frames: int = 2, **joints) -> Motion:
    """A rest motion whose last frame sets the given joints' axis-angle."""
    motion = Motion.rest(num_frames, expression_space="arkit")
    for name, axis_angle in joints.items():
        motion.poses[-1, JOINT[name] * 3:JOINT[name] * 3 + 3] = axis_angle
    return motion


def dominant(body, names) -> np.ndarray:
    return np.isin(body.lbs_weights.numpy().argmax(1), [JOINT[n] for n in names])


def test_free_body_loads_through_smplx(body):
    import smplx

    assert isinstance(body, smplx.SMPLX)
    assert body.expression_space == "arkit" and body.num_expression_coeffs == 100
    assert body.J_regressor.shape == (len(JOINT_NAMES), body.get_num_verts())
    output = body(expression=torch.rand(1, 100), jaw_pose=torch.tensor([[0.2, 0, 0]]))  # smplx's own forward
    assert output.vertices.shape == (1, body.get_num_verts(), 3) and torch.isfinite(output.vertices).all()
    # The regressor reproduces a T-pose skeleton: wrists out at shoulder height, head above the neck.
    joints = (body.J_regressor @ body.v_template).numpy()
    assert joints[JOINT["left_wrist"], 0] > 0.5 > -0.5 > joints[JOINT["right_wrist"], 0]
    assert abs(joints[JOINT["left_wrist"], 1] - joints[JOINT["left_shoulder"], 1]) < 0.05
    assert joints[JOINT["head"], 1] > joints[JOINT["neck"], 1] > joints[JOINT["pelvis"], 1]


def test_raised_arm_moves_the_hand_up(body):
    vertices = body_vertices(body, pose(left_shoulder=[0, 0, 1.2]))               # T-pose arm rotated up
    hand = dominant(body, ["left_wrist"] + [n for n in JOINT_NAMES if n.startswith("left_") and n[-1].isdigit()])
    rise = vertices[1, hand, 1].mean() - vertices[0, hand, 1].mean()
    assert rise > 0.3
    other_hand = dominant(body, ["right_wrist"])
    np.testing.assert_allclose(vertices[1, other_hand], vertices[0, other_hand], atol=1e-5)


def test_jaw_pose_opens_the_mouth(body):
    vertices = body_vertices(body, pose(jaw=[0.3, 0, 0]))
    jaw = np.where(dominant(body, ["jaw"]))[0]
    lower_lip = jaw[np.argsort(-body.v_template.numpy()[jaw, 2])[:30]]           # the jaw's front-most vertices
    assert vertices[1, lower_lip, 1].mean() < vertices[0, lower_lip, 1].mean() - 0.01
    skull = body.lbs_weights.numpy()[:, JOINT["head"]] > 0.99
    np.testing.assert_allclose(vertices[1, skull], vertices[0, skull], atol=1e-3)  # the skull stays (< 1 mm)


def test_expressions_reach_the_mesh_only_in_the_bodys_space(body):
    smile = pose(1)
    smile.expressions[0, 23] = 1.0                                                 # mouthSmileLeft
    rest = body_vertices(body, Motion.rest(1, expression_space="arkit"))
    assert np.abs(body_vertices(body, smile) - rest).max() > 0.003
    smile.expression_space = "flame"                                              # coefficients of another basis
    np.testing.assert_array_equal(body_vertices(body, smile), rest)
    assert np.abs(body_vertices(body, smile, expression_space="arkit") - rest).max() > 0.003  # caller overrides


def test_feet_on_the_floor_and_betas_change_the_shape(body):
    motion = Motion.rest(3, expression_space="arkit", trans=np.full((3, 3), 0.7))
    vertices = body_vertices(body, motion)
    assert vertices[0, :, 1].min() == pytest.approx(0, abs=1e-6)
    taller = body_vertices(body, motion, betas=np.eye(300)[0] * 2)                # beta 0: anny's height
    assert np.ptp(taller[0, :, 1]) > np.ptp(vertices[0, :, 1]) + 0.05


def test_fast_skinning_matches_smplx_lbs(tmp_path, write_tiny_smplx):
    """iter_body_vertices takes shortcuts (template shaped once, joint expression regressor); same result."""
    from smplx.lbs import lbs

    tiny = load_body(write_tiny_smplx(tmp_path / "SMPLX_NEUTRAL.npz"), num_expression_coeffs=10, num_betas=10)
    rng = np.random.default_rng(1)
    motion = Motion(rng.normal(0, 0.4, (5, 165)), rng.normal(0, 1, (5, 100)), trans=rng.normal(0, 0.1, (5, 3)),
                    betas=rng.normal(0, 1, 300), expression_space="flame")
    with torch.inference_mode():
        expected, _ = lbs(torch.cat([torch.as_tensor(motion.betas[:10]).expand(5, -1),
                                     torch.as_tensor(motion.expressions[:, :10])], 1),
                          torch.as_tensor(motion.poses) + tiny.pose_mean, tiny.v_template,
                          torch.cat([tiny.shapedirs, tiny.expr_dirs], -1), tiny.posedirs, tiny.J_regressor,
                          tiny.parents, tiny.lbs_weights)
    expected = (expected + torch.as_tensor(motion.trans)[:, None]).numpy()
    expected[..., 1] -= expected[0, :, 1].min()
    got = np.concatenate([v for v, _ in iter_body_vertices(tiny, motion, batch_frames=2, follow=None)])
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_smplx_betas_shape_a_real_smplx_body_but_not_the_stand_in(body, tmp_path, write_tiny_smplx):
    """A BEAT2 file's betas are SMPL-X shape components: on the stand-in's anny phenotype directions
    they made a child of it (issue 11)."""
    captured = Motion.rest(2, expression_space="arkit", betas=np.random.default_rng(0).normal(0, 1.5, 300))
    plain = Motion.rest(2, expression_space="arkit")
    assert body.smplx_betas is False
    np.testing.assert_array_equal(body_vertices(body, captured), body_vertices(body, plain))
    tiny = load_body(write_tiny_smplx(tmp_path / "SMPLX_NEUTRAL.npz"), num_expression_coeffs=10, num_betas=10)
    assert tiny.smplx_betas is True
    assert np.abs(body_vertices(tiny, captured) - body_vertices(tiny, plain)).max() > 0.005


def test_the_camera_follows_a_drifting_root_and_keeps_its_sway():
    seconds = np.arange(600) / 30
    sway = 0.03 * np.sin(2 * np.pi * 1.5 * seconds)                            # weight shifts, 1.5 Hz
    trans = np.stack([0.1 * seconds + sway, 1.3 + 0.01 * sway, -1.0 + 0.06 * seconds], 1)  # drifts 2 m and 1.2 m
    followed = camera_translation(trans, 30)
    assert np.abs(followed[:, [0, 2]]).max() < 0.06                             # centred the whole clip
    np.testing.assert_allclose(followed[:, 1], trans[:, 1], atol=1e-6)          # height as recorded
    middle = slice(30, -30)
    assert np.corrcoef(followed[middle, 0], sway[middle])[0, 1] > 0.95          # the sway is still there
    np.testing.assert_array_equal(camera_translation(trans, 30, follow=None), trans.astype(np.float32))
    assert camera_translation(np.zeros((0, 3)), 30).shape == (0, 3)


def test_a_captured_root_position_does_not_move_the_body_out_of_view(body):
    motion = Motion.rest(300, expression_space="arkit", trans=np.linspace([2.0, 1.3, -1.0], [2.5, 1.3, 0.0], 300))
    vertices = body_vertices(body, motion)
    pelvis = (body.J_regressor.numpy()[JOINT["pelvis"]] @ vertices)               # (T, 3)
    assert np.abs(pelvis[:, [0, 2]]).max() < 0.2 and vertices[0, :, 1].min() == pytest.approx(0, abs=1e-6)


@pytest.mark.parametrize("name, content, message", [
    ("SMPLX_NEUTRAL.npz", None, "not found"),
    ("SMPLX_NEUTRAL.npz", b"not a zip", "not a usable SMPL-X"),
    ("body.npz", b"", "must be named like SMPLX_NEUTRAL"),
    ("SMPLX_NEUTRAL.obj", b"", "must be an SMPL-X .npz or .pkl"),
])
def test_bad_body_file_is_a_one_line_input_error(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        load_body(path)


def test_body_path_from_environment(tmp_path, monkeypatch, write_tiny_smplx):
    monkeypatch.setenv("ASYNFUSION_BODY", str(write_tiny_smplx(tmp_path / "SMPLX_NEUTRAL.npz")))
    assert load_body().get_num_verts() == 165
    assert load_body().expression_space == "flame"  # a real SMPL-X file's expressions are FLAME components
