import numpy as np
import pytest

from asynfusion.errors import InputError
from asynfusion.motion import (
    FPS,
    GESTURE_JOINTS,
    JAW,
    Motion,
    NormStats,
    features_to_motion,
    load_motion,
    motion_to_features,
    save_motion,
    smooth_gesture,
)
from asynfusion.rotation import axis_angle_to_6d, rotation_6d_to_axis_angle, rotation_6d_to_matrix


def random_axis_angle(n, seed=0, max_angle=3.0):
    rng = np.random.default_rng(seed)
    axis = rng.normal(size=(n, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    return (axis * rng.uniform(0, max_angle, (n, 1))).astype(np.float32)


def test_rotation_round_trip():
    aa = random_axis_angle(1000)
    np.testing.assert_allclose(rotation_6d_to_axis_angle(axis_angle_to_6d(aa)), aa, atol=1e-5)


def test_6d_of_noisy_vectors_is_still_a_rotation():
    noisy = axis_angle_to_6d(random_axis_angle(50)) + np.random.default_rng(1).normal(0, 0.2, (50, 6))
    aa = rotation_6d_to_axis_angle(noisy)
    assert np.all(np.isfinite(aa)) and np.all(np.linalg.norm(aa, axis=1) <= np.pi + 1e-5)


def test_degenerate_6d_vectors_still_give_rotations():
    """Zeros (an untrained x0 model's output) and parallel columns must not crash the conversion."""
    six = np.array([[0, 0, 0, 0, 0, 0], [1, 0, 0, 2, 0, 0], [0, 0, 0, 0, 1, 0], [0, 3, 0, 0, 0, 0]], np.float32)
    matrices = rotation_6d_to_matrix(six)
    assert np.allclose(np.linalg.det(matrices), 1.0)
    assert np.allclose(matrices @ np.swapaxes(matrices, -1, -2), np.eye(3), atol=1e-9)
    assert np.allclose(matrices[0], np.eye(3))
    assert np.all(np.isfinite(rotation_6d_to_axis_angle(six)))


def test_features_round_trip_exactly_for_generated_joints():
    frames = 20
    poses = np.zeros((frames, 55, 3), np.float32)
    poses[:, GESTURE_JOINTS] = random_axis_angle(frames * len(GESTURE_JOINTS), max_angle=2.5).reshape(frames, -1, 3)
    poses[:, JAW] = random_axis_angle(frames, seed=2, max_angle=0.4)
    expressions = np.random.default_rng(0).normal(size=(frames, 100)).astype(np.float32)
    expressions[:, 52:] = 0
    motion = Motion(poses.reshape(frames, -1), expressions)
    expression, gesture = motion_to_features(motion, 52)
    assert expression.shape == (frames, 58) and gesture.shape == (frames, 258)
    back = features_to_motion(expression, gesture)
    np.testing.assert_allclose(back.poses, motion.poses, atol=1e-5)
    np.testing.assert_allclose(back.expressions, motion.expressions, atol=1e-6)


def test_npz_round_trip_keeps_beat2_layout_and_metadata(tmp_path):
    motion = Motion(random_axis_angle(10 * 55).reshape(10, 165), np.ones((10, 100)), expression_space="arkit",
                    metadata={"sampler": "async-lcm", "seed": 3})
    save_motion(tmp_path / "m.npz", motion)
    with np.load(tmp_path / "m.npz", allow_pickle=False) as data:
        assert data["poses"].shape == (10, 165) and data["expressions"].shape == (10, 100)
        assert data["trans"].shape == (10, 3) and data["betas"].shape == (300,)
        assert int(data["mocap_frame_rate"]) == 30 and str(data["model"]) == "smplx2020"
    back = load_motion(tmp_path / "m.npz")
    np.testing.assert_array_equal(back.poses, motion.poses)
    assert back.metadata == {"sampler": "async-lcm", "seed": 3} and back.expression_space == "arkit"


def test_foreign_npz_without_our_keys_loads(tmp_path):
    np.savez(tmp_path / "beat2.npz", poses=np.zeros((5, 165)), expressions=np.zeros((5, 50)), trans=np.zeros((5, 3)),
             betas=np.zeros(16), mocap_frame_rate=np.array(30))
    motion = load_motion(tmp_path / "beat2.npz")
    assert motion.expressions.shape == (5, 100) and motion.betas.shape == (300,)
    assert motion.expression_space == "flame"


def test_bad_motion_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_motion(tmp_path / "missing.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(InputError, match="not a readable"):
        load_motion(tmp_path / "text.npz")
    np.savez(tmp_path / "wrong.npz", poses=np.zeros((5, 72)))
    with pytest.raises(InputError, match="165"):
        load_motion(tmp_path / "wrong.npz")


def test_norm_stats_floor_constant_features():
    x = np.zeros((100, 3), np.float32)
    x[:, 0] = np.arange(100)
    stats = NormStats.fit(x, x, x)
    assert stats.expression_std[1] == NormStats.MIN_STD and stats.expression_std[0] > 1


def _jerk(x: np.ndarray) -> float:
    return float(np.abs(np.diff(x, 3, axis=0)).mean())


def test_smoothing_takes_the_tremble_out_of_a_gesture_and_keeps_the_gesture():
    beat = np.sin(2 * np.pi * 1.5 * np.arange(300) / FPS)[:, None] * np.ones((1, 6))   # a 1.5 Hz beat
    trembling = (beat + 0.05 * np.random.default_rng(0).standard_normal(beat.shape)).astype(np.float32)
    smoothed = smooth_gesture(trembling)
    assert smoothed.dtype == np.float32 and smoothed.shape == beat.shape
    assert _jerk(smoothed) < 0.3 * _jerk(trembling)
    assert np.abs(smoothed - beat)[30:-30].max() < 0.1            # the beat itself passes
    assert np.abs(smoothed - beat)[30:-30].mean() < 0.03
    assert smooth_gesture(trembling, None) is trembling           # off: the features as they are
    for frames in (1, 2, 5, 9):                                   # shorter than the filter's padding
        short = smooth_gesture(trembling[:frames])
        assert short.shape == (frames, 6) and np.isfinite(short).all()
