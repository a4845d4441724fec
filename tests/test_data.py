"""The BEAT2 loader on a tiny BEAT2-shaped folder built here: split, windows, speakers, cache, missing files."""

import numpy as np
import pytest

from asynfusion.audio import SAMPLE_RATE, audio_feature_dim
from asynfusion.data.beat2 import build_windows, expression_space, load_clips, load_windows, read_split
from asynfusion.motion import GESTURE_DIM

# id -> (frames, split); BEAT2 ids put the speaker number first.
CLIPS = {"2_scott_0_1_1": (150, "train"), "4_lawrence_0_2_2": (100, "train"), "2_scott_0_3_3": (90, "test")}


@pytest.fixture
def beat2(tmp_path, build_beat2_folder):
    build_beat2_folder(tmp_path, CLIPS, extra_rows=["9_nobody_0_9_9,additional,x"])
    return tmp_path


def test_read_split_keeps_every_type(beat2):
    split = read_split(beat2)
    assert split["train"] == ["2_scott_0_1_1", "4_lawrence_0_2_2"]
    assert split["test"] == ["2_scott_0_3_3"]
    assert split["additional"] == ["9_nobody_0_9_9"]
    assert expression_space(beat2) == "flame"


def test_load_clips_reads_speaker_motion_and_audio(beat2):
    clips = load_clips(beat2, "train")
    assert [c.speaker for c in clips] == [2, 4]
    assert clips[0].motion.num_frames == 150 and clips[0].motion.expression_space == "flame"
    assert abs(len(clips[0].samples) - 5 * SAMPLE_RATE) < 2


def test_windows_counts_and_shapes(beat2):
    windows = build_windows(load_clips(beat2, "train"), window=64, stride=20, expression_coeffs=50)
    # 150 frames -> starts 0,20,40,60,80 (5); 100 frames -> 0,20 (2)
    assert len(windows) == 7
    assert windows.expression.shape == (7, 64, 56)
    assert windows.gesture.shape == (7, 64, GESTURE_DIM)
    assert windows.audio.shape == (7, 64, audio_feature_dim())
    assert windows.expression.dtype == windows.gesture.dtype == windows.audio.dtype == np.float32
    assert windows.speaker.tolist() == [2] * 5 + [4] * 2 and windows.speaker.dtype == np.int64
    assert windows.clip.tolist() == [0] * 5 + [1] * 2
    assert list(windows.clip_ids) == ["2_scott_0_1_1", "4_lawrence_0_2_2"]


def test_windows_follow_the_motion(beat2):
    """Window k of a clip is frames [20k, 20k+64) of that clip's features, not a shuffled copy."""
    clip = load_clips(beat2, "train")[0]
    windows = build_windows([clip], window=64, stride=20, expression_coeffs=10)
    assert np.allclose(windows.expression[1, :44], windows.expression[0, 20:])
    assert np.allclose(windows.gesture[2, :24], windows.gesture[1, 20:44])
    assert np.allclose(windows.audio[1, :44], windows.audio[0, 20:])


def test_windows_mark_the_settled_pauses_of_the_speech(beat2):
    """Frames of a silence of 0.8 s or more, less 0.3 s at each end, are marked (training weighs them)."""
    from dataclasses import replace

    from asynfusion.data.corpus.cues import PAUSE_MARGIN

    clip = load_clips(beat2, "train")[0]
    t = np.arange(len(clip.samples)) / 16_000
    samples = (0.3 * np.sin(2 * np.pi * 150 * t)).astype(np.float32)  # a steady voice ...
    samples[16_000 * 1:16_000 * 2] = 0.0                              # ... silent from frame 30 to 60
    windows = build_windows([replace(clip, samples=samples)], window=64, stride=20, expression_coeffs=10)
    assert windows.pause.dtype == bool and windows.pause.shape == windows.gesture.shape[:2]
    marked = np.flatnonzero(windows.pause[0])
    assert abs(marked[0] - (30 + PAUSE_MARGIN)) <= 1 and abs(marked[-1] + 1 - (60 - PAUSE_MARGIN)) <= 1
    assert len(marked) == marked[-1] - marked[0] + 1  # one run
    assert np.array_equal(windows.pause[1, :44], windows.pause[0, 20:])


def test_cache_round_trip(beat2, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    first = load_windows(beat2, "train", window=64, stride=20, expression_coeffs=20, cache_dir=cache)
    files = list(cache.glob("windows-train-*.npz"))
    assert len(files) == 1
    again = load_windows(beat2, "train", window=64, stride=20, expression_coeffs=20, cache_dir=cache)
    for name in ("expression", "gesture", "audio", "speaker", "clip", "clip_ids"):
        assert np.array_equal(getattr(first, name), getattr(again, name))
    load_windows(beat2, "train", window=32, stride=20, expression_coeffs=20, cache_dir=cache)
    assert len(list(cache.glob("windows-train-*.npz"))) == 2  # other arguments, other file


def test_default_cache_lives_under_root(beat2):
    load_windows(beat2, "test", window=64, stride=20, expression_coeffs=20)
    assert len(list((beat2 / ".cache").glob("windows-test-*.npz"))) == 1


def test_missing_wav_is_skipped_with_a_warning(beat2):
    (beat2 / "wave16k" / "4_lawrence_0_2_2.wav").unlink()
    with pytest.warns(UserWarning, match="1 of 2 'train' clips"):
        clips = load_clips(beat2, "train")
    assert [c.id for c in clips] == ["2_scott_0_1_1"]
