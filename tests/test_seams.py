"""Window seams: metrics.seam_ratio on signals whose answer is known, then on a minute of generated
motion from the shipped checkpoint, where the joined windows must not show (joined by continuation for a
checkpoint trained with it, else cross-faded: pipeline.py)."""

import time

import numpy as np
import pytest

from asynfusion.evaluation import metrics
from asynfusion.motion import JAW, NUM_JOINTS
from asynfusion.pipeline import Pipeline, blend_weights, join_boundaries, window_starts
from asynfusion.request import Request

FPS = 30
# A seam may be at most twice the clip's typical big jump (the 95th percentile of the jumps away from
# the boundaries). Chance alone puts the ratio near 1.0-1.5: the largest of ~70 boundary jumps drawn
# from the clip's own jumps lands near their 99th percentile. Measured on the v-prediction checkpoint
# shipped when this test was written, the same statistic over 300 random sets of 74 frames (no seam,
# by construction) reached at most 1.6 on joint positions and 1.8 on the jaw, which follows speech
# onsets and so jumps more unevenly; its real boundaries gave 1.07-1.22 and 1.19-1.49 (3 seeds).
# A boundary jump of 2x the 95th percentile is more than chance gives and is what a viewer sees as a
# hitch at the crossfade's edge.
SEAM_LIMIT = 2.0
# A checkpoint that continues motion joins its windows with no step (issue #22's target: a seam ratio of
# 1.5 at most), and its boundaries must not move more than the clip does on average. Cross-fading fails
# the second for v5 on this minute (boundary jumps 1.36x the mean jump with each sampler; joined: 0.80-0.83).
CONTINUED_SEAM_LIMIT = 1.5
CONTINUED_MEAN_LIMIT = 1.0
SECONDS = 60.0


def sine_mix(num_frames: int, channels: int = 6, seed: int = 0) -> np.ndarray:
    """(T, channels) smooth motion: a sinusoid of 0.2-2 Hz per channel."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_frames)[:, None] / FPS
    return np.sin(2 * np.pi * rng.uniform(0.2, 2.0, channels) * t + rng.uniform(0, 2 * np.pi, channels))


def pipeline_boundaries(num_frames: int, window: int = 64) -> np.ndarray:
    """Boundaries of the windows Pipeline.generate uses (its overlap is a quarter window)."""
    return metrics.window_boundaries(window_starts(num_frames, window, window // 4), window, num_frames)


# ----------------------------------------------------------------------------
# The measure on hand-made signals
# ----------------------------------------------------------------------------
def test_boundaries_are_where_the_blended_windows_change():
    assert metrics.window_boundaries([0], 64, 50).size == 0  # one window: nothing to stitch
    assert metrics.window_boundaries(window_starts(200, 64, 16), 64, 200).tolist() == [48, 64, 96, 112, 136, 160]
    # the definition against the pipeline's own weights: a boundary is a frame whose set of windows
    # with weight > 0 differs from the previous frame's
    for num_frames in (200, 1000, 1801):
        starts = window_starts(num_frames, 64, 16)
        weight = np.zeros((len(starts), num_frames))
        for i, s in enumerate(starts):
            weight[i, s:s + 64] = blend_weights(64, 16, i == 0, i == len(starts) - 1)
        changes = np.flatnonzero((np.diff(weight > 0, axis=1)).any(axis=0)) + 1
        np.testing.assert_array_equal(metrics.window_boundaries(starts, 64, num_frames), changes)


def test_smooth_signal_has_no_seam():
    signal = sine_mix(1800)
    ratio = metrics.seam_ratio(signal, pipeline_boundaries(1800))
    assert 0.8 < ratio < 1.2, ratio
    assert metrics.seam_ratio(3 * signal + 5, pipeline_boundaries(1800)) == pytest.approx(ratio)  # units don't matter


def test_a_step_at_a_boundary_is_a_seam_and_elsewhere_is_not():
    signal = sine_mix(1800)
    boundaries = pipeline_boundaries(1800)
    big_jump = np.percentile(metrics.frame_jumps(signal), 95)
    step = np.zeros_like(signal)
    step[:, 0] = 4 * big_jump

    at_boundary = signal.copy()
    at_boundary[boundaries[20]:] += step[boundaries[20]:]
    assert metrics.seam_ratio(at_boundary, boundaries) > 3.5

    # the same step halfway between two boundaries is one big jump among the clip's others
    middle = (boundaries[20] + boundaries[21]) // 2
    elsewhere = signal.copy()
    elsewhere[middle:] += step[middle:]
    assert metrics.seam_ratio(elsewhere, boundaries) < 1.2


def test_positions_and_a_single_channel():
    """(T, J, 3) joint positions and a (T,) angle are measured like (T, D) features."""
    base = sine_mix(600, channels=3)
    positions = np.repeat(base[:, None, :], 4, axis=1)  # (T, 4, 3)
    boundaries = pipeline_boundaries(600)
    smooth = metrics.seam_ratio(positions, boundaries)
    positions[boundaries[3]:, 2] += 5.0  # one joint steps
    assert smooth < 1.2 and metrics.seam_ratio(positions, boundaries) > 5
    angle = base[:, 0].copy()
    angle[boundaries[3]:] += 5.0
    assert metrics.seam_ratio(base[:, 0], boundaries) < 1.2 and metrics.seam_ratio(angle, boundaries) > 5


def test_degenerate_cases():
    still = np.zeros((200, 3))
    boundaries = pipeline_boundaries(200)
    assert np.isnan(metrics.seam_ratio(sine_mix(50), []))  # no boundary: nothing to measure
    assert metrics.seam_ratio(still, boundaries) == 0.0    # nothing moves: no seam
    still[boundaries[1]:] += 1.0
    assert metrics.seam_ratio(still, boundaries) == np.inf  # only a boundary moves


# ----------------------------------------------------------------------------
# A minute of speech through the shipped checkpoint
# ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shipped(speech_like):
    """The shipped checkpoint (the default), and a minute of speech-like audio with its features."""
    pipeline = Pipeline()
    samples = speech_like(SECONDS)
    return pipeline, samples, pipeline.features(samples)


@pytest.mark.parametrize("sampler", ["async-lcm", "sync-lcm", "ddim"])
def test_a_minute_of_generated_motion_shows_no_seams(shipped, sampler):
    pipeline, samples, features = shipped
    started = time.perf_counter()
    motion, report = pipeline.generate(Request(samples, sampler, seed=0), features=features)
    seconds = time.perf_counter() - started
    window = min(pipeline.config.window_frames, motion.num_frames)
    starts = window_starts(motion.num_frames, window, window // 4)
    assert motion.num_frames == round(SECONDS * FPS) and report.windows == len(starts)  # the windows measured
    continues = pipeline.config.continuation
    boundaries = join_boundaries(motion.num_frames, window, continues)
    signals = {"joint positions": metrics.joint_positions(motion.poses),
               "jaw rotation": motion.poses.reshape(-1, NUM_JOINTS, 3)[:, JAW]}
    ratios = {name: metrics.seam_ratio(signal, boundaries) for name, signal in signals.items()}
    # chance level, for reading the figures: the same ratio with every boundary moved off by k frames
    # (cross-faded boundaries sit at 0 and 16 modulo the 48-frame stride, joined ones at 6 and 10, so
    # these k never land on one)
    chance = {name: max(metrics.seam_ratio(signal, boundaries + k) for k in (8, 12, 20, 24, 28, 40))
                    for name, signal in signals.items()}
    jumps = metrics.frame_jumps(signals["joint positions"])
    mean_at_boundaries = jumps[boundaries - 1].mean() / jumps.mean()
    print(f"\n{sampler} on {SECONDS:g} s ({report.windows} windows {'joined' if continues else 'cross-faded'}, "
          f"{len(boundaries)} boundaries, {pipeline.checkpoint.config.prediction}-prediction checkpoint, generated "
          f"in {seconds:.1f} s): " + ", ".join(f"{name} seam ratio {ratios[name]:.2f} (chance up to "
                                              f"{chance[name]:.2f})" for name in signals)
          + f"; mean joint jump at a boundary {mean_at_boundaries:.2f}x the clip's")
    for name, ratio in ratios.items():
        # Guided DDIM (checkpoint v4) moves in bursts: the clip's own biggest moves reach 3.4-3.8x its
        # 95th-percentile jump at frames that are no seam (the chance figure), its seams 2.1x. A seam must
        # stay under the limit, or under what the same clip gives off the seams.
        limit = max(SEAM_LIMIT, chance[name])
        assert ratio <= limit, f"{sampler}: {name} jump {ratio:.2f}x the clip's typical big jump at a seam"
    if continues:
        assert ratios["joint positions"] <= CONTINUED_SEAM_LIMIT, f"{sampler}: a joined window shows a step"
        assert mean_at_boundaries <= CONTINUED_MEAN_LIMIT, \
            f"{sampler}: boundaries move {mean_at_boundaries:.2f}x the clip's mean jump (cross-faded, not continued?)"
