import numpy as np
import pytest
import torch

from asynfusion.checkpoint import load_checkpoint, save_checkpoint, untrained_checkpoint
from asynfusion.errors import InputError
from asynfusion.pipeline import Pipeline, blend_weights, window_starts
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


def test_stitching_leaves_no_seam(tiny_checkpoint, speech_like):
    """At window boundaries the largest frame-to-frame jump stays within the clip's typical jumps."""
    pipeline = Pipeline(tiny_checkpoint, precision="fp32")
    motion, report = pipeline.generate(Request(speech_like(6.0), "sync-lcm", seed=0))
    jumps = np.abs(np.diff(motion.poses, axis=0)).max(axis=1)
    assert report.windows > 3
    assert jumps.max() <= 3 * np.percentile(jumps, 99) + 1e-6


def test_untrained_checkpoint_is_labelled(tiny_config):
    checkpoint = untrained_checkpoint(tiny_config())
    assert not checkpoint.trained and "UNTRAINED" in checkpoint.info["description"]
