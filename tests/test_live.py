"""The live path: speech fed piece by piece, motion out a chunk at a time, continuing what was shown."""

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from asynfusion.checkpoint import load_checkpoint
from asynfusion.errors import InputError
from asynfusion.live import BLOCK_S, LiveSession, frame_sample, stream_file
from asynfusion.motion import load_motion, smooth_gesture
from asynfusion.pipeline import Pipeline
from asynfusion.settings import LiveSettings


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, write_tiny_checkpoint):
    path = write_tiny_checkpoint(tmp_path_factory.mktemp("live"), "continuing", continuation=True)
    return Pipeline(load_checkpoint(path), precision="fp32", threads=1, device="cpu")


def test_frames_come_a_chunk_at_a_time_behind_the_lookahead_and_all_come_out(pipeline, speech_like):
    session = LiveSession(pipeline, "async-lcm", chunk_s=0.3, lookahead_s=0.2)   # 9 and 6 frames
    samples = speech_like(2.0)
    block = int(BLOCK_S * 16_000)
    pieces = []
    for offset in range(0, len(samples), block):
        piece = session.feed(samples[offset:offset + block])
        heard = session.heard_frames()
        assert session.emitted <= max(0, heard - 6)   # nothing sent before its lookahead is heard
        if piece is not None:
            assert piece.num_frames >= 9 and heard - 6 - session.emitted < 1
            pieces.append(piece)
    tail = session.finish()
    assert tail is not None and session.emitted == session.heard_frames() == 60
    motion = session.motion()
    assert motion.num_frames == 60 and np.isfinite(motion.poses).all()
    joined = np.concatenate([p.poses for p in pieces] + [tail.poses])
    np.testing.assert_array_equal(joined, motion.poses)  # what was sent is the take
    assert session.windows == len(pieces) + 1 and session.finish() is None


def test_live_gestures_are_low_passed_across_chunks(pipeline, speech_like):
    """Each chunk is smoothed with the frames sent before it and the window's lookahead after it: what
    was sent trembles far less than what the network made, with no step where two chunks meet."""
    session = LiveSession(pipeline, "async-lcm", chunk_s=0.3, lookahead_s=0.2)
    samples, block = speech_like(3.0), int(BLOCK_S * 16_000)
    sizes = [p.num_frames for p in (session.feed(samples[o:o + block]) for o in range(0, len(samples), block))
             if p is not None]
    session.finish()
    sent, raw = session.sent_gesture, session.features["gesture"]
    assert sent.shape == raw.shape == (90, pipeline.config.gesture_dim)

    def jerk(x):
        return np.abs(np.diff(x, 3, axis=0)).mean()

    assert len(sizes) >= 3 and jerk(sent) < 0.5 * jerk(raw)
    # chunk by chunk, it comes close to filtering the whole take at once (13 % of what the filter changes;
    # each chunk filtered alone, without the frames before it, 22 %)
    whole = smooth_gesture(raw)
    assert np.abs(sent - whole).mean() < 0.17 * np.abs(raw - whole).mean()


def test_each_window_continues_the_newest_frames_already_shown(pipeline, speech_like, monkeypatch):
    import asynfusion.live as live

    seen = []
    real_sample = live.sample

    def spy(model, audio, spec, steps, known=None, **kwargs):
        seen.append((audio.shape[1], session.emitted, {b: k.clone() for b, k in known.items()}))
        return real_sample(model, audio, spec, steps, known=known, **kwargs)

    monkeypatch.setattr(live, "sample", spy)
    settings = LiveSettings(chunk_s=0.3, lookahead_s=0.1, shown_frames=48, known_frames=12)  # 9 + 3 of 32
    session = LiveSession(pipeline, "sync-lcm", live=settings)
    session.feed(speech_like(1.5))   # 45 frames heard at once: several windows catch up
    assert len(seen) >= 3 and session.emitted == 42
    windows = len(seen)
    session.feed(speech_like(0.3, seed=1))   # a chunk more: one window
    assert len(seen) == windows + 1
    frames, sent_before, known = seen[-1]
    mask = known["gesture"][0, :, -1].bool()
    # the window starts with as many shown frames as fit (32 - 9 - 3), so it keeps the model's length;
    # the newest 12 are known, the 8 before them sampled anew
    assert frames == 32 and mask[8:20].all() and not mask[:8].any() and not mask[20:].any()
    # the known values are the normalized features sent before, in place
    np.testing.assert_allclose(known["gesture"][0, 8:20, :-1].numpy(),
                               session.features["gesture"][sent_before - 12:sent_before])
    assert not known["gesture"][0, :8].any() and not known["gesture"][0, 20:].any()
    # shown as known alone: a shorter window, every shown frame known
    session = LiveSession(pipeline, "sync-lcm", live=LiveSettings(0.3, 0.1, shown_frames=5, known_frames=12))
    session.feed(speech_like(1.5))
    seen.clear()
    session.feed(speech_like(0.3, seed=1))
    [(frames, _, known)] = seen
    assert frames == 5 + 9 + 3 and known["gesture"][0, :5, -1].all() and not known["gesture"][0, 5:, -1].any()


def test_the_live_settings_come_from_the_environment(pipeline, monkeypatch):
    assert LiveSettings.from_env({}) == LiveSettings()
    env = {"ASYNFUSION_LIVE_CHUNK": "0.4", "ASYNFUSION_LIVE_LOOKAHEAD": "0.1", "ASYNFUSION_LIVE_SHOWN": "30",
           "ASYNFUSION_LIVE_KNOWN": "8"}
    assert LiveSettings.from_env(env) == LiveSettings(0.4, 0.1, 30, 8)
    with pytest.raises(InputError, match="ASYNFUSION_LIVE_KNOWN"):
        LiveSettings.from_env({"ASYNFUSION_LIVE_KNOWN": "many"})
    with pytest.raises(InputError, match="ASYNFUSION_LIVE_CHUNK"):
        LiveSettings.from_env({"ASYNFUSION_LIVE_CHUNK": "0"})
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    session = LiveSession(pipeline, chunk_s=0.3)   # a session reads them; an argument overrides its own
    assert (session.chunk_frames, session.lookahead_frames, session.shown_frames, session.known_frames) == (9, 3, 30, 8)


def test_fed_faster_than_real_time_the_motion_is_the_same(pipeline, speech_like):
    samples = speech_like(2.0)
    takes = []
    for realtime in (True, False):
        session = LiveSession(pipeline, "async-lcm", live=LiveSettings(0.3, 0.2))
        stream_file(session, samples, realtime=realtime)
        takes.append(session.motion().poses)
    np.testing.assert_array_equal(*takes)


def test_a_checkpoint_that_cannot_continue_and_bad_settings_are_one_line_errors(pipeline, tmp_path,
                                                                               write_tiny_checkpoint):
    plain = Pipeline(load_checkpoint(write_tiny_checkpoint(tmp_path)), precision="fp32", threads=1)
    with pytest.raises(InputError, match="--continuation"):
        LiveSession(plain)
    with pytest.raises(InputError, match="window"):
        LiveSession(pipeline, chunk_s=1.0, lookahead_s=0.2)   # longer than the tiny model's 32 frames
    with pytest.raises(InputError, match="chunk"):
        LiveSession(pipeline, chunk_s=0.0)


def test_stream_measures_latency_at_a_microphones_pace(pipeline, speech_like):
    session = LiveSession(pipeline, "async-lcm", chunk_s=0.3, lookahead_s=0.2)
    report = stream_file(session, speech_like(1.5))
    assert report.frames == 45 and report.kept_up and report.audio_seconds == 1.5
    # a frame waits at least for its lookahead and at most a chunk more, plus the sampling time
    assert 0.2 - BLOCK_S <= report.latency_p50_s <= report.latency_p95_s <= report.latency_max_s
    assert report.latency_max_s < 0.3 + 0.2 + 0.5
    assert frame_sample(3) == 1600


def test_the_stream_command_writes_the_take_and_reports_json(tmp_path, write_tiny_checkpoint, speech_like):
    checkpoint = write_tiny_checkpoint(tmp_path, "continuing", continuation=True)
    wav = tmp_path / "speech.wav"
    soundfile.write(wav, speech_like(1.0), 16_000)
    out = tmp_path / "take.npz"
    result = subprocess.run([sys.executable, "-m", "asynfusion", "stream", str(wav), "-o", str(out), "--json",
                             "--checkpoint", str(checkpoint), "--precision", "fp32", "--chunk", "0.3"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for key in ("latency_p50_s", "latency_p95_s", "kept_up", "chunk_s", "lookahead_s", "frames", "sampler",
                "precision"):
        assert key in report
    assert report["frames"] == 30 and report["precision"] == "fp32" and load_motion(out).num_frames == 30
    bad = subprocess.run([sys.executable, "-m", "asynfusion", "stream", str(wav), "-o", str(tmp_path / "no.npz"),
                          "--checkpoint", str(checkpoint), "--chunk", "5"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "chunk" in bad.stderr
    assert not (tmp_path / "no.npz").exists()


def test_known_frames_come_out_as_they_went_in_and_the_rest_is_sampled(pipeline):
    import torch

    from asynfusion.diffusion.sampler import sample
    from asynfusion.model import known_frames

    model = pipeline.checkpoint.models["diffusion"]
    config = model.config
    generator = torch.Generator().manual_seed(0)
    audio = torch.randn(2, 32, config.audio_dim, generator=generator)
    values = {"expression": torch.randn(2, 32, config.expression_dim, generator=generator),
              "gesture": torch.randn(2, 32, config.gesture_dim, generator=generator)}
    mask = torch.zeros(2, 32, dtype=torch.bool)
    mask[:, :12] = True
    known = {b: known_frames(v, mask) for b, v in values.items()}
    for sampler in ("ddim", "async-lcm"):
        out, _ = sample(model, audio, sampler, generator=torch.Generator().manual_seed(1), count_flops=False,
                        known=known)
        free, _ = sample(model, audio, sampler, generator=torch.Generator().manual_seed(1), count_flops=False)
        for b in values:
            torch.testing.assert_close(out[b][:, :12], values[b][:, :12], atol=1e-4, rtol=1e-4)
            assert not torch.allclose(out[b][:, 12:], free[b][:, 12:])  # the rest is made to follow them


def test_the_speech_fed_is_kept_whole_across_the_buffer_growing(pipeline, speech_like):
    session = LiveSession(pipeline, "async-lcm")
    samples = speech_like(9.0)                       # past the first 4 s buffer, twice
    for offset in range(0, len(samples), 333):      # odd block sizes, as a browser may send
        session.feed(samples[offset:offset + 333])
    assert np.array_equal(session.audio, samples.astype(np.float32))
    assert session.heard_frames() == 270
