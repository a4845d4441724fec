import numpy as np
import pytest
import torch

from asynfusion.checkpoint import Checkpoint, load_checkpoint, save_checkpoint, untrained_checkpoint
from asynfusion.errors import InputError
from asynfusion.model import AsynFusionModel
from asynfusion.pipeline import Pipeline, blend_weights, join_plan, settle_edges, window_starts
from asynfusion.request import Request


def test_checkpoint_round_trip(tmp_path, tiny_checkpoint):
    loaded = load_checkpoint(tiny_checkpoint)
    save_checkpoint(tmp_path / "again", loaded, half=False)
    again = load_checkpoint(tmp_path / "again")
    assert again.config == loaded.config and not again.trained
    for key, value in loaded.models["diffusion"].state_dict().items():
        assert torch.equal(value, again.models["diffusion"].state_dict()[key])
    np.testing.assert_array_equal(again.stats.gesture_std, loaded.stats.gesture_std)


def test_checkpoint_that_does_not_match_its_config(tmp_path, tiny_checkpoint):
    import json

    record = json.loads((tiny_checkpoint / "config.json").read_text())
    record["model"]["width"] = 64
    (tiny_checkpoint / "config.json").write_text(json.dumps(record))
    with pytest.raises(InputError, match="do not match its config"):
        load_checkpoint(tiny_checkpoint)
    with pytest.raises(InputError, match="no checkpoint"):
        load_checkpoint(tmp_path / "nowhere")


def test_windows_cover_the_clip():
    assert window_starts(50, 64, 16) == [0]
    starts = window_starts(1000, 64, 16)
    assert starts[0] == 0 and starts[-1] == 1000 - 64 and all(b - a <= 48 for a, b in zip(starts, starts[1:]))
    weights = blend_weights(64, 16, first=False, last=False)
    assert weights[0] > 0 and weights[15] < 1 and weights[16:48].min() == 1


@pytest.mark.parametrize("seconds", [0.6, 1.0, 7.3])
def test_output_frame_count_is_duration_times_30(tiny_checkpoint, seconds, speech_like):
    samples = speech_like(seconds)
    motion, report = Pipeline(tiny_checkpoint).generate(Request(samples))
    assert motion.num_frames == round(seconds * 30)
    assert report.windows == len(window_starts(round(seconds * 30), 32, 8))
    assert np.all(np.isfinite(motion.poses))


def test_same_seed_same_motion(tiny_checkpoint, speech_like):
    pipeline = Pipeline(tiny_checkpoint, precision="fp32")
    samples = speech_like(3.0)
    a, _ = pipeline.generate(Request(samples, "async-lcm", seed=1))
    b, _ = pipeline.generate(Request(samples, "async-lcm", seed=1))
    c, _ = pipeline.generate(Request(samples, "async-lcm", seed=2))
    np.testing.assert_array_equal(a.poses, b.poses)
    assert not np.array_equal(a.poses, c.poses)
    assert a.metadata["sampler"] == "async-lcm" and a.metadata["seed"] == 1


def test_the_gestures_are_low_passed_and_the_face_is_not(tiny_checkpoint, speech_like):
    from asynfusion.motion import GESTURE_JOINTS, JAW

    pipeline = Pipeline(tiny_checkpoint, precision="fp32")
    request = Request(speech_like(3.0), "async-lcm", seed=2)
    smoothed, _ = pipeline.generate(request)
    pipeline.gesture_cutoff_hz = None
    raw, _ = pipeline.generate(request)

    def jerk(motion):
        poses = motion.poses.reshape(len(motion.poses), -1, 3)[:, GESTURE_JOINTS]
        return np.abs(np.diff(poses, 3, axis=0)).mean()

    assert jerk(smoothed) < 0.5 * jerk(raw)
    assert smoothed.metadata["gesture_cutoff_hz"] == 6.0 and raw.metadata["gesture_cutoff_hz"] is None
    np.testing.assert_array_equal(smoothed.expressions, raw.expressions)
    np.testing.assert_array_equal(smoothed.poses.reshape(-1, 55, 3)[:, JAW], raw.poses.reshape(-1, 55, 3)[:, JAW])


def test_stitching_leaves_no_seam(tiny_checkpoint, speech_like):
    """At window boundaries the largest frame-to-frame jump stays within the clip's typical jumps."""
    pipeline = Pipeline(tiny_checkpoint, precision="fp32")
    motion, report = pipeline.generate(Request(speech_like(6.0), "sync-lcm", seed=0))
    jumps = np.abs(np.diff(motion.poses, axis=0)).max(axis=1)
    assert report.windows > 3
    assert jumps.max() <= 3 * np.percentile(jumps, 99) + 1e-6


@pytest.mark.parametrize("num_frames", [50, 100, 120, 300, 1000, 1801, 1950])
def test_join_plan_samples_each_frame_once_it_is_final(num_frames):
    """Windows of a pass never overlap; a window is given as known exactly the frames earlier passes made
    (less the ends of the first pass's windows, which the windows joining them redo); every frame ends up
    made by one window."""
    window = min(64, num_frames)
    plan = join_plan(num_frames, window, window // 4)
    assert plan.starts == window_starts(num_frames, window, window // 4)
    assert sorted(i for windows in plan.passes for i in windows) == list(range(len(plan.starts)))
    assert len(plan.passes) <= (1 if num_frames <= window else 3)
    assert not plan.known[plan.passes[0]].any()  # the first pass continues nothing
    source = np.full(num_frames, -1)
    for windows in plan.passes:
        spans = [range(plan.starts[i], plan.starts[i] + window) for i in windows]
        assert all(a[-1] < b[0] for a, b in zip(spans, spans[1:]))  # no two windows of a pass overlap
        for index, span in zip(windows, spans):
            made = source[span.start:span.stop] >= 0
            assert not (plan.known[index] & ~made).any()   # known frames were made before
            assert made[~plan.known[index]].sum() <= 2 * 6  # only the first pass's ends are redone
            source[span.start:span.stop][~plan.known[index]] = index
    assert (source >= 0).all()
    assert plan.boundaries(num_frames).tolist() == (np.flatnonzero(np.diff(source)) + 1).tolist()


def test_settling_takes_the_step_out_of_new_frames():
    """A window's new frames that start off its known ones: the step goes, the known frames and the new
    frames past the settling stay as they were."""
    frames = np.arange(40, dtype=np.float32)[:, None] * np.array([[0.1, -0.2]], np.float32)  # steady motion
    known = np.zeros(40, bool)
    known[:10] = known[32:] = True
    sampled = frames.copy()
    sampled[10:32] += np.array([1.0, 2.0])  # the new frames, all off by a step at both edges
    settled = settle_edges(sampled, known, 8)
    np.testing.assert_array_equal(settled[known], sampled[known])
    np.testing.assert_array_equal(settled[18:24], sampled[18:24])  # 8 frames from either edge: untouched
    steps = np.diff(settled, axis=0)
    np.testing.assert_allclose(steps[[9, 31]], steps[[8, 32]], atol=1e-6)  # into and out of the new frames
    assert np.abs(steps - steps[0]).max() < 0.2 * np.abs(sampled[10] - frames[10]).max()  # spread thin
    np.testing.assert_array_equal(settle_edges(sampled, np.zeros(40, bool), 8), sampled)  # nothing known


def test_a_continuation_checkpoint_joins_by_continuing(tmp_path, write_tiny_checkpoint, speech_like):
    """Same request, same motion; the passes are one sampling run's cost (NFE per window as before); a
    clip of one window comes out as it did with cross-fading."""
    pipeline = Pipeline(write_tiny_checkpoint(tmp_path, continuation=True), precision="fp32")
    samples = speech_like(4.0)
    a, report = pipeline.generate(Request(samples, "sync-lcm", 3, 3, seed=1))
    b, _ = pipeline.generate(Request(samples, "sync-lcm", 3, 3, seed=1))
    np.testing.assert_array_equal(a.poses, b.poses)
    assert report.windows == len(window_starts(120, 32, 8)) and report.sampling.nfe_gesture == 3
    short = speech_like(0.9)  # 27 frames: one window
    joined, _ = pipeline.generate(Request(short, "sync-lcm", seed=2))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(AsynFusionModel, "continues", property(lambda model: False))
        crossfaded, _ = pipeline.generate(Request(short, "sync-lcm", seed=2))
        whole, _ = pipeline.generate(Request(samples, "sync-lcm", 3, 3, seed=1))
    np.testing.assert_array_equal(joined.poses, crossfaded.poses)
    assert not np.allclose(whole.poses, a.poses)  # a longer clip is joined another way


def test_untrained_checkpoint_is_labelled(tiny_config):
    checkpoint = untrained_checkpoint(tiny_config())
    assert not checkpoint.trained and "UNTRAINED" in checkpoint.info["description"]


def test_the_checkpoint_names_the_fresh_noise_of_its_lcm_steps(tiny_config, randomize_zero_inits, speech_like):
    import copy

    checkpoint = untrained_checkpoint(tiny_config())
    randomize_zero_inits(checkpoint.models["diffusion"])
    checkpoint.models["lcm"] = copy.deepcopy(checkpoint.models["diffusion"])
    samples = speech_like(2.0)
    def generate():
        pipeline = Pipeline(checkpoint, precision="fp32")
        return {s: pipeline.generate(Request(samples, s, seed=3))[0] for s in ("ddim", "async-lcm")}

    before = generate()
    checkpoint.info["fresh_noise"] = {"lcm": {"gesture": 0.3}}
    assert checkpoint.fresh_noise_for("lcm") == {"gesture": 0.3} and checkpoint.fresh_noise_for("diffusion") == {}
    options = checkpoint.sampling_for("lcm")
    assert options == {"guidance": checkpoint.guidance_for("lcm"), "fresh_noise": {"gesture": 0.3}}
    for bad in ({"gesture": 1.5}, {"hands": 0.5}):
        with pytest.raises(InputError, match="fresh_noise"):
            Checkpoint(checkpoint.config, checkpoint.stats, checkpoint.models,
                       {"fresh_noise": {"lcm": bad}}).fresh_noise_for("lcm")
    after = generate()
    np.testing.assert_array_equal(after["ddim"].poses, before["ddim"].poses)    # DDIM has no re-noising
    assert not np.allclose(after["async-lcm"].poses, before["async-lcm"].poses)  # the LCM steps keep part of theirs
