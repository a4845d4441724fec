"""The app's handlers (asynfusion.app.handlers) and settings, called directly: input checks and their messages,
a generated and a compared video with honest tables, per-request folders, ZeroGPU wrapping."""

import contextvars
import importlib.machinery
import os
import subprocess
import sys
import threading
import time
import types

import imageio_ffmpeg
import numpy as np
import pytest
import soundfile

from asynfusion.app import background, examples, handlers, texts
from asynfusion.audio import SAMPLE_RATE
from asynfusion.checkpoint import save_checkpoint, untrained_checkpoint
from asynfusion.errors import InputError
from asynfusion.motion import load_motion
from asynfusion.request import Request
from asynfusion.settings import Settings, on_space

SIZE = 64


@pytest.fixture
def settings(checkpoint_dir, tmp_path):
    return Settings(checkpoint=str(checkpoint_dir), render_size=SIZE, compare_size=SIZE, max_seconds=4.0,
                    work_dir=tmp_path / "work", cache_examples="off")


def wav(path, samples, rate=SAMPLE_RATE):
    soundfile.write(path, samples, rate)
    return str(path)


@pytest.fixture
def speech(tmp_path, speech_like):
    return wav(tmp_path / "speech.wav", speech_like(1.5))


def streams(video) -> str:
    result = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-i", str(video)],
                            capture_output=True, text=True, check=False)
    return result.stderr


# ----------------------------------------------------------------------------
# Settings
# ----------------------------------------------------------------------------
def test_settings_defaults_and_environment():
    assert Settings.from_env({}) == Settings()
    settings = Settings.from_env({"ASYNFUSION_MAX_SECONDS": "30", "ASYNFUSION_QUEUE_SIZE": "4",
                                  "ASYNFUSION_CACHE_EXAMPLES": "Lazy", "ASYNFUSION_RENDER_SIZE": "256",
                                  "ASYNFUSION_BODY": "/models/SMPLX_NEUTRAL.npz", "ASYNFUSION_CHECKPOINT": "ckpt"})
    assert (settings.max_seconds, settings.queue_size, settings.cache_examples) == (30.0, 4, "lazy")
    assert (settings.render_size, settings.body, settings.checkpoint) == (256, "/models/SMPLX_NEUTRAL.npz", "ckpt")
    assert on_space({"SPACE_ID": "user/asynfusion"}) and not on_space({})


@pytest.mark.parametrize("name, value, message", [
    ("ASYNFUSION_MAX_SECONDS", "a minute", "not a number"),
    ("ASYNFUSION_QUEUE_SIZE", "0", "at least 1"),
    ("ASYNFUSION_RENDER_SIZE", "255", "even"),
    ("ASYNFUSION_CACHE_EXAMPLES", "always", "eager, lazy, off"),
    ("ASYNFUSION_PRECISION", "fp8", "bf16, fp32"),
])
def test_settings_reject_bad_values_naming_the_variable(name, value, message):
    with pytest.raises(InputError, match=f"{name}.*{message}"):
        Settings.from_env({name: value})


# ----------------------------------------------------------------------------
# Input checks: one clear line each
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("audio", [None, ""])
def test_no_audio(settings, audio):
    with pytest.raises(InputError, match="No audio: upload a file, record"):
        handlers.generate(audio, settings=settings)


def test_a_fraction_of_a_second_recording(settings, tmp_path, speech_like):
    with pytest.raises(InputError, match=r"only 0\.10 s long: record or upload at least 0\.25 s"):
        handlers.generate(wav(tmp_path / "click.wav", speech_like(0.1)), settings=settings)


def test_silence_is_named(settings, tmp_path, speech_like):
    quiet = np.random.default_rng(0).normal(0, 1e-4, 2 * SAMPLE_RATE).astype(np.float32)  # a muted microphone
    with pytest.raises(InputError, match=r"silent \(its loudest moment is -\d+ dBFS\)"):
        handlers.generate(wav(tmp_path / "silence.wav", quiet), settings=settings)
    assert handlers.loudest_dbfs(speech_like(1.0)) > handlers.SILENCE_DBFS


def test_unreadable_file(settings, tmp_path):
    path = tmp_path / "notes.wav"
    path.write_bytes(b"this is not audio at all " * 40)
    with pytest.raises(InputError, match="cannot decode audio from notes.wav"):
        handlers.generate(str(path), settings=settings)


def test_past_the_cap_is_refused_with_the_offer_then_trimmed(settings, tmp_path, speech_like):
    long = wav(tmp_path / "long.wav", speech_like(5.0))
    offer = "tick 'Use only the first 4 s of longer audio'"
    with pytest.raises(InputError, match=rf"5\.0 s long, past the 4 s limit: {offer}"):
        handlers.read_speech(long, settings, trim=False, folder=tmp_path)
    speech = handlers.read_speech(long, settings, trim=True, folder=tmp_path)
    assert speech.trimmed and speech.seconds == 4.0
    assert soundfile.info(str(speech.path)).duration == pytest.approx(4.0)  # what the video's sound is made from


def test_steps_seed_and_speaker_checks(settings):
    def steps(*args):
        request = Request(np.zeros(0, np.float32), *args)
        return request.steps_expression, request.steps_gesture

    assert steps("async-lcm", 0, None) == (4, 8)
    assert steps("ddim", 10, 20.0) == (10, 20)
    with pytest.raises(InputError, match="expression steps must be 1-20 for async LCM"):
        steps("async-lcm", 21, 8)
    with pytest.raises(InputError, match="whole number"):
        steps("ddim", 2.5, 8)
    with pytest.raises(InputError, match="unknown sampler 'euler'"):
        steps("euler", 0, 0)
    assert Request(np.zeros(0, np.float32), seed=7.0).seed == 7
    with pytest.raises(InputError, match="seed must be a whole number"):
        Request(np.zeros(0, np.float32), seed=-1)
    with pytest.raises(InputError, match="no speaker styles"):
        handlers.check_speaker(settings, 2)
    with pytest.raises(InputError, match="unknown sampler 'euler'"):  # the app's handler: one line, before any work
        handlers.generate(None, "euler", settings=settings)


# ----------------------------------------------------------------------------
# Generate and Compare
# ----------------------------------------------------------------------------
def test_generate_gives_video_motion_timings_and_provenance(settings, speech):
    stages = []
    result = handlers.generate(speech, "async-lcm", 0, 0, seed=3, settings=settings,
                           progress=lambda fraction, desc=None: stages.append((fraction, desc)))
    report = streams(result.video)
    assert "Video: h264" in report and f"{SIZE}x{SIZE}" in report and "Audio: aac" in report
    motion = load_motion(result.motion)
    assert motion.num_frames == 45 and motion.metadata["seed"] == 3
    values = dict(zip(result.timings["measure"], result.timings["value"]))
    assert values["precision"].startswith(("fp32 (", "bf16 (")) and values["precision"].split()[0] in result.note
    assert values["expression branch: NFE"] == 4
    assert values["gesture branch: NFE"] == 8
    assert values["audio length: seconds"] == 1.5
    assert values["real-time factor"] == pytest.approx(values["generation in all: seconds"] / 1.5, abs=1e-3)
    assert values["rendering 45 frames: seconds"] > 0
    assert "trained on: **untrained**" in result.note and "⚠️" in result.note
    fractions = [f for f, _ in stages]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any("audio features" in d for _, d in stages) and any("rendering frame" in d for _, d in stages)


def test_compare_runs_every_sampler_on_the_same_speech(settings, speech):
    result = handlers.compare(speech, seed=1, baseline=True, settings=settings)
    table = result.table
    assert list(table["sampler"]) == ["DDIM", "sync LCM", "async LCM", "rule-based"]
    assert list(table["steps E/G"]) == ["25/25", "8/8", "4/8", "-"]
    assert list(table["NFE E"]) == [25, 8, 4, 0] and list(table["NFE G"]) == [25, 8, 8, 0]
    assert table["speed-up vs DDIM"].iloc[0] == 1.0
    assert (table["seconds E"] + table["seconds G"] <= table["seconds total"] + 1e-3).all()
    chart = result.chart
    assert len(chart) == 12 and set(chart["part"]) == {"expression branch", "gesture branch", "other"}
    totals = chart.groupby("sampler", sort=False)["seconds"].sum()
    assert np.allclose(totals.to_numpy(), table["seconds total"].to_numpy(), atol=2e-3)
    assert f"{4 * SIZE}x{SIZE}" in streams(result.video)  # four avatars side by side in one video
    assert "seed 1 for every sampler" in result.note
    by_measure = texts.comparison_by_measure(table)  # as the page shows it: a column per sampler
    assert list(by_measure.columns) == ["measure", "DDIM", "sync LCM", "async LCM", "rule-based"]
    assert list(by_measure["measure"]) == texts.COMPARE_COLUMNS[1:]
    assert list(by_measure.iloc[1, 1:]) == [25, 8, 4, 0]  # NFE E


def test_same_request_same_motion_and_own_files(settings, speech):
    first = handlers.generate(speech, "sync-lcm", seed=5, settings=settings)
    second = handlers.generate(speech, "sync-lcm", seed=5, settings=settings)
    assert os.path.dirname(first.video) != os.path.dirname(second.video)
    assert np.array_equal(load_motion(first.motion).poses, load_motion(second.motion).poses)


# ----------------------------------------------------------------------------
# Housekeeping
# ----------------------------------------------------------------------------
def test_old_and_failed_request_folders_are_removed(settings, speech, tmp_path):
    settings.work_dir.mkdir(parents=True)
    old = settings.work_dir / "request-old"
    old.mkdir()
    an_hour_ago = time.time() - settings.keep_seconds - 10
    os.utime(old, (an_hour_ago, an_hour_ago))
    with pytest.raises(InputError):
        handlers.generate(wav(tmp_path / "silence.wav", np.zeros(SAMPLE_RATE, np.float32)), settings=settings)
    assert list(settings.work_dir.iterdir()) == []  # the old folder and the failed request's folder


def test_provenance_of_a_trained_checkpoint(tmp_path, tiny_config):
    checkpoint = untrained_checkpoint(tiny_config())
    checkpoint.info = {"trained_on": "built-in corpus (make-corpus, 2000 clips)", "description": "demo weights"}
    save_checkpoint(tmp_path / "trained", checkpoint)
    text = handlers.provenance(Settings(checkpoint=str(tmp_path / "trained")))
    assert text == "**Checkpoint** `trained`, trained on: **built-in corpus (make-corpus, 2000 clips)**. demo weights."


def test_examples_are_short_speech_in_different_voices(settings):
    paths = examples.example_paths()
    assert len(paths) == 3 and len({os.path.basename(p).split("_", 1)[1] for p in paths}) == 3
    for path in paths:
        assert 3.0 <= soundfile.info(path).duration <= 8.0
        assert handlers.loudest_dbfs(soundfile.read(path, dtype="float32")[0]) > -20
    assert examples.examples_cache_dir(settings).name.startswith("asynfusion-")
    other = Settings(checkpoint=settings.checkpoint, render_size=2 * SIZE)
    assert examples.examples_cache_dir(other) != examples.examples_cache_dir(settings)


def test_gpu_wrapping_only_on_a_space_with_spaces(monkeypatch):
    wrapped = []
    fake = types.ModuleType("spaces")
    fake.__spec__ = importlib.machinery.ModuleSpec("spaces", None)
    fake.GPU = lambda function: wrapped.append(function) or function
    monkeypatch.setitem(sys.modules, "spaces", fake)
    monkeypatch.delenv("SPACE_ID", raising=False)
    handlers._on_gpu(len)
    assert wrapped == []
    monkeypatch.setenv("SPACE_ID", "someone/asynfusion")
    handlers._on_gpu(len)
    assert wrapped == [len]


def test_gently_runs_at_a_lower_priority_in_the_callers_context():
    label = contextvars.ContextVar("label")
    label.set("this request")
    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    def seen(x):
        return x, label.get(), threading.current_thread(), os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    value, context, thread, niceness = background.gently(seen, 2)
    assert (value, context) == (2, "this request") and thread is not threading.current_thread()
    assert niceness == min(own + background.GENTLE_NICE, 19)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == own  # the caller's own is as it was
    with pytest.raises(InputError, match="^refused$"):
        background.gently(lambda: (_ for _ in ()).throw(InputError("refused")))
    assert background.meanwhile(lambda: label.get())() == "this request"
