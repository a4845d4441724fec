"""The metrics on hand-made signals whose right answer is known."""

import numpy as np

from asynfusion.data.baseline import loudness_envelope
from asynfusion.data.corpus import cues
from asynfusion.evaluation import metrics
from asynfusion.motion import JAW, JOINT, NUM_JOINTS, Motion


def test_frechet_distance_is_zero_for_one_set_and_grows_with_a_mean_shift():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2000, 8))
    assert abs(metrics.frechet_distance(a, a)) < 1e-6
    shifts = [metrics.frechet_distance(a, a + shift) for shift in (0.5, 1.0, 2.0)]
    assert shifts == sorted(shifts)
    np.testing.assert_allclose(shifts[1], 8.0, rtol=1e-3)  # |mean shift|^2 with identical covariances
    # a wider spread also counts, and rank-deficient sets (a constant feature) stay finite
    assert metrics.frechet_distance(a, 2 * a) > 1.0
    constant = np.concatenate([a[:50, :3], np.zeros((50, 1))], axis=1)
    assert np.isfinite(metrics.frechet_distance(constant, constant + 0.1))


def test_beat_alignment_is_high_when_speed_minima_sit_on_the_onsets():
    fps, seconds = 30, 30
    t = np.arange(seconds * fps) / fps
    onsets = np.arange(0.5, seconds - 0.5, 1.5)
    period = 1.5

    def speed_with_minima_at(offset):
        # 1.2 - cos: minima (speed 0.2, still moving) once a period, at onset + offset
        return (1.2 - np.cos(2 * np.pi * (t - 0.5 - offset) / period))[:, None].repeat(3, axis=1)

    reference = np.full(3, 1.2)
    aligned = metrics.beat_alignment(onsets, speed_with_minima_at(0.0), reference)
    shifted = metrics.beat_alignment(onsets, speed_with_minima_at(period / 2), reference)
    assert aligned > 0.95 and shifted < 0.1
    # minima where the joint stands still are not beats (EMAGE's threshold); a joint with no beats scores 0
    resting = np.maximum(speed_with_minima_at(0.0) - 1.15, 0.0)
    assert metrics.beat_alignment(onsets, resting, reference) < aligned


def test_lip_sync_is_one_for_a_jaw_that_follows_the_loudness(speech_like):
    samples = speech_like(4.0)
    num_frames = 120
    loudness = loudness_envelope(samples, num_frames)
    poses = np.zeros((num_frames, NUM_JOINTS, 3))
    poses[:, JAW, 0] = 0.3 * loudness
    following = Motion(poses.reshape(num_frames, -1), np.zeros((num_frames, 100)))
    assert metrics.lip_sync(metrics.jaw_opening(following), loudness) > 0.999
    poses[:, JAW, 0] = 0.3 * (1 - loudness)  # opens in silence
    assert metrics.lip_sync(metrics.jaw_opening(Motion(poses.reshape(num_frames, -1), np.zeros((num_frames, 100)))),
                            loudness) < -0.999
    assert metrics.lip_sync(np.zeros(num_frames), loudness) == 0.0  # a still jaw follows nothing


def test_diversity_is_zero_for_identical_windows():
    rng = np.random.default_rng(0)
    window = rng.normal(size=(16, 5, 3))
    assert metrics.l1_diversity(np.stack([window] * 4)) == 0.0
    different = np.stack([window, window + 1.0])
    np.testing.assert_allclose(metrics.l1_diversity(different), 15.0)  # 5 x 3 coordinates, 1 apart each frame


def test_forward_kinematics_follows_the_tree():
    parents, offsets, _ = metrics.rest_skeleton()
    rest = metrics.joint_positions(np.zeros((1, NUM_JOINTS * 3)))[0]
    shoulder, wrist = JOINT["left_shoulder"], JOINT["left_wrist"]
    assert parents[wrist] == JOINT["left_elbow"] and rest[wrist, 0] > rest[shoulder, 0] > 0  # left arm along +x
    # lower the left arm 90 degrees about z: the wrist ends straight below the shoulder, as far away as before
    poses = np.zeros((1, NUM_JOINTS, 3))
    poses[0, shoulder, 2] = -np.pi / 2
    lowered = metrics.joint_positions(poses.reshape(1, -1))[0]
    reach = np.linalg.norm(rest[wrist] - rest[shoulder])
    np.testing.assert_allclose(lowered[wrist] - lowered[shoulder], [0.0, -reach, 0.0], atol=0.02)
    np.testing.assert_allclose(lowered[JOINT["head"]], rest[JOINT["head"]])


def test_calm_in_pauses_compares_pause_and_speech_speed():
    fps = 30
    loudness = np.concatenate([np.full(60, 0.8), np.full(45, 0.02), np.full(60, 0.8)])
    t = np.arange(len(loudness)) / fps
    wobble = 0.1 * np.sin(2 * np.pi * 3 * t)
    positions = np.zeros((len(t), NUM_JOINTS, 3))
    talking_only = wobble * (loudness > 0.5)
    jaw, arms = metrics.calm_in_pauses(talking_only, positions + talking_only[:, None, None], loudness)
    assert jaw < 0.05 and arms < 0.05
    jaw, arms = metrics.calm_in_pauses(wobble, positions + wobble[:, None, None], loudness)
    assert 0.8 < jaw < 1.2 and 0.8 < arms < 1.2
    pause, speech = cues.pause_and_speech_frames(loudness)
    assert pause.sum() == 45 - 2 * cues.PAUSE_MARGIN and speech.sum() == 120
    assert np.isnan(metrics.calm_in_pauses(wobble, positions, np.full(100, 0.8))[0])  # no pause, no score


def test_coherence_is_the_correlation_across_clips():
    energy = np.array([0.1, 0.3, 0.2, 0.5])
    assert metrics.coherence(2 * energy + 1, energy) > 0.999
    assert metrics.coherence(-energy, energy) < -0.999
    assert np.isnan(metrics.coherence([0.1, 0.2], [0.3, 0.4]))
