"""Odd and broken speech files through both front doors, the CLI and the app's handlers.

Each file either works (a motion of round(seconds x 30) frames, a video where one is asked for) or
is refused in one line naming the problem: the CLI exits with status 2 and leaves nothing at the
output path, the app raises InputError (which app.py shows as a gr.Error). Every case runs with a
fresh, empty temp folder, and nothing may be left in it but the request folder of a successful app
request (kept on purpose: the page fetches its files).
"""

import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import soundfile

from asynfusion.app import handlers, rendering
from asynfusion.audio import SAMPLE_RATE
from asynfusion.cli import main
from asynfusion.errors import InputError
from asynfusion.motion import load_motion
from asynfusion.settings import Settings

CAP = 4.0  # seconds: a small cap keeps the at-the-cap and past-the-cap cases short
SIZE = 64
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


# ----------------------------------------------------------------------------
# The inputs, each made in the test's own folder (speech_like: conftest's fixture, passed along)
# ----------------------------------------------------------------------------
def write(path: Path, samples: np.ndarray, rate: int = SAMPLE_RATE, subtype: str = "PCM_16") -> Path:
    soundfile.write(path, samples, rate, subtype=subtype)
    return path


def ffmpeg(*args) -> None:
    subprocess.run([FFMPEG, "-nostdin", "-v", "error", "-y", *map(str, args)], check=True, timeout=60)


def wav_bytes(folder: Path, seconds: float, speech_like) -> bytes:
    return write(folder / "whole.wav", speech_like(seconds)).read_bytes()


def empty(folder: Path, speech_like) -> Path:
    path = folder / "empty.wav"
    path.write_bytes(b"")
    return path


def truncated(folder: Path, speech_like) -> Path:  # the header promises 3 s, the data stops at 1.5 s
    path = folder / "truncated.wav"
    path.write_bytes(wav_bytes(folder, 3.0, speech_like)[: 44 + int(1.5 * SAMPLE_RATE) * 2])
    return path


def header_only(folder: Path, speech_like) -> Path:
    path = folder / "header-only.wav"
    path.write_bytes(wav_bytes(folder, 3.0, speech_like)[:44])
    return path


def corrupt(folder: Path, speech_like) -> Path:  # a WAV's first 12 bytes, then noise
    path = folder / "corrupt.wav"
    path.write_bytes(wav_bytes(folder, 1.0, speech_like)[:12] + np.random.default_rng(0).bytes(8000))
    return path


def mpeg_garbage(folder: Path, speech_like) -> Path:
    """An MP3 frame header, then noise: libsndfile hands it to mpg123, which prints notes onto stderr itself."""
    path = folder / "garbage.wav"
    path.write_bytes(b"\xff\xfb\x90\x64" + np.random.default_rng(0).bytes(8000))
    return path


def text(folder: Path, speech_like) -> Path:
    path = folder / "notes.wav"
    path.write_text("Meeting notes, not a recording.\n" * 40)
    return path


def video(folder: Path, speech_like) -> Path:  # a phone video: H.264 picture and an AAC sound track
    source = write(folder / "source.wav", speech_like(1.5, 44100), 44100)
    path = folder / "clip.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:s=64x64:r=10", "-i", source, "-c:v", "libx264", "-c:a", "aac",
           "-shortest", path)
    source.unlink()
    return path


def mp3(folder: Path, speech_like) -> Path:
    source = write(folder / "source.wav", speech_like(1.5, 44100), 44100)
    path = folder / "speech.mp3"
    ffmpeg("-i", source, path)
    source.unlink()
    return path


def stereo(folder: Path, speech_like) -> Path:
    left = speech_like(1.5, 44100)
    return write(folder / "stereo.wav", np.stack([left, 0.5 * left], axis=1), 44100)


def clipped(folder: Path, speech_like) -> Path:  # driven 20 dB past full scale: square-ish waves
    return write(folder / "clipped.wav", np.clip(10 * speech_like(1.5), -1, 1))


def nan_and_inf(folder: Path, speech_like) -> Path:
    samples = speech_like(1.5)
    samples[1000], samples[2000] = np.nan, np.inf
    return write(folder / "nan.wav", samples, subtype="FLOAT")


def mp3_named_wav(folder: Path, speech_like) -> Path:  # real example files are like that: an MP3 stream, a .wav name
    source = write(folder / "source.wav", speech_like(1.5, 44100), 44100)
    path = folder / "recording.wav"
    ffmpeg("-i", source, "-f", "mp3", path)
    source.unlink()
    return path


def mp3_in_riff(folder: Path, speech_like) -> Path:  # a RIFF/WAVE header around MP3 frames (format tag 0x55)
    source = write(folder / "source.wav", speech_like(1.5, 22050), 22050)
    path = folder / "riff-mp3.wav"
    ffmpeg("-i", source, "-c:a", "libmp3lame", "-f", "wav", path)
    source.unlink()
    return path


def stereo_mp3(folder: Path, speech_like) -> Path:
    left = speech_like(1.5, 44100)
    source = write(folder / "source.wav", np.stack([left, 0.7 * left], axis=1), 44100)
    path = folder / "stereo-44k.mp3"
    ffmpeg("-i", source, "-ac", "2", "-ar", "44100", "-b:a", "128k", path)
    source.unlink()
    return path


BEAT2_SPEECH = Path(__file__).resolve().parents[2] / "shared" / "real" / "2_scott_0_2_2.wav"


def beat2_float(folder: Path, speech_like) -> Path:
    """BEAT2's wave16k files are 16 kHz 32-bit float WAVs; real speech from the sample where it is here."""
    samples = soundfile.read(BEAT2_SPEECH, dtype="float32")[0][16_000:40_000] if BEAT2_SPEECH.is_file() \
        else speech_like(1.5)
    return write(folder / "2_scott_0_2_2.wav", samples, subtype="FLOAT")


TWO_HOURS = 2 * 3600


def two_hour_header(folder: Path, speech_like) -> Path:
    """A 16 kHz PCM WAV whose header says two hours: 1.5 s of speech, then zeros the file system stores
    sparsely (230 MB on paper), so decoding it all would be slow and large, and reading the header is not."""
    data_bytes = TWO_HOURS * SAMPLE_RATE * 2
    header = write(folder / "head.wav", speech_like(1.5)).read_bytes()
    start = header.index(b"data") + 8
    path = folder / "two-hours.wav"
    with open(path, "wb") as file:
        file.write(header[:4] + (start - 8 + data_bytes).to_bytes(4, "little") + header[8:start - 4]
                   + data_bytes.to_bytes(4, "little") + header[start:])
        file.truncate(start + data_bytes)
    (folder / "head.wav").unlink()
    return path


@dataclass
class Case:
    make: Callable[[Path, Callable[..., np.ndarray]], Path]  # (folder, speech_like) -> the input file
    cli: int | str         # frames when it works, else a regex the one-line message must match
    app: int | str | None = None  # the same for handlers.generate; None: as `cli`


CASES = {
    "empty file": Case(empty, r"^error: audio file is empty: empty\.wav$"),
    "truncated WAV (header says 3 s, 1.5 s of data)": Case(truncated, 45),
    "WAV header only": Case(header_only, r"^error: audio file has no samples: header-only\.wav$",
                            r"^The recording is only 0\.00 s long"),
    "corrupt bytes named .wav": Case(corrupt, r"^error: cannot decode audio from corrupt\.wav: .*Invalid data"),
    "MP3-like garbage named .wav": Case(mpeg_garbage, r"^error: cannot decode audio from garbage\.wav: "),
    "text file named .wav": Case(text, r"^error: cannot decode audio from notes\.wav: "),
    "mp4 video with AAC audio": Case(video, 45),
    "8 kHz": Case(lambda f, speech_like: write(f / "8k.wav", speech_like(1.5, 8000), 8000), 45),
    "48 kHz": Case(lambda f, speech_like: write(f / "48k.wav", speech_like(1.5, 48000), 48000), 45),
    "stereo 44.1 kHz": Case(stereo, 45),
    "24-bit PCM": Case(lambda f, speech_like: write(f / "pcm24.wav", speech_like(1.5), subtype="PCM_24"), 45),
    "32-bit float": Case(lambda f, speech_like: write(f / "float.wav", speech_like(1.5), subtype="FLOAT"), 45),
    "MP3": Case(mp3, 45),
    "clipped at full scale": Case(clipped, 45),
    "large DC offset": Case(lambda f, speech_like: write(f / "dc.wav", 0.6 + speech_like(1.5)), 45),
    # a still avatar is a fine answer to silence on the command line; the app names the muted microphone
    "digital silence": Case(lambda f, speech_like: write(f / "silence.wav", np.zeros(2 * SAMPLE_RATE, np.float32)), 60,
                            r"^The audio is silent \(its loudest moment is -200 dBFS\)"),
    "0.2 s": Case(lambda f, speech_like: write(f / "click.wav", speech_like(0.2)),
                  r"^error: audio is 0\.20 s; at least 0\.25 s of speech is needed$",
                  r"^The recording is only 0\.20 s long"),
    "exactly the cap": Case(lambda f, speech_like: write(f / "cap.wav", speech_like(CAP)), round(CAP * 30)),
    "one second past the cap": Case(lambda f, speech_like: write(f / "long.wav", speech_like(CAP + 1)),
                                    r"^error: audio is 5\.0 s, longer than the 4 s cap \(raise it with --max-seconds",
                                    r"^The audio is 5\.0 s long, past the 4 s limit: tick 'Use only the first 4 s"),
    "NaN and inf samples": Case(nan_and_inf, r"^error: audio contains NaN or infinite samples: nan\.wav$"),
    "float far past full scale": Case(lambda f, speech_like: write(f / "huge.wav", 1e30 * speech_like(1.5),
                                                                   subtype="FLOAT"),
                                      r"^error: audio samples reach [0-9.]+e\+29, far past full scale \(1\.0\)"),
    "MP3 named .wav": Case(mp3_named_wav, 45),
    # 47: the encoder's delay and padding stay in, as a RIFF header has no field to say what to drop
    "MP3 in a RIFF header, named .wav": Case(mp3_in_riff, 47),
    "44.1 kHz stereo MP3": Case(stereo_mp3, 45),
    "BEAT2's 16 kHz float WAV": Case(beat2_float, 45),
    "WAV header claiming 2 hours": Case(two_hour_header,
                                        r"^error: audio is 7200\.0 s, longer than the 4 s cap \(raise it with",
                                        r"^The audio is 7200\.0 s long, past the 4 s limit: tick 'Use only the"),
    "non-ASCII name with spaces": Case(lambda f, speech_like: write(f / "Grüße aus Köln – take 2.wav",
                                                                    speech_like(1.5)), 45),
}


# ----------------------------------------------------------------------------
# Fixtures: a tiny checkpoint, and a fresh temp folder for everything that asks for one
# ----------------------------------------------------------------------------
@pytest.fixture
def temp(tmp_path, monkeypatch):
    """A fresh, empty temp folder. torch makes its own cache folder (torchinductor_<user>) in the temp
    folder when a first forward pass loads torch._dynamo: loaded before the switch, it goes to the real one."""
    import torch._dynamo  # noqa: F401

    folder = tmp_path / "temp"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture
def inputs(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    return folder


@pytest.fixture
def settings(checkpoint_dir, temp):
    return Settings(checkpoint=str(checkpoint_dir), render_size=SIZE, compare_size=SIZE, max_seconds=CAP,
                    work_dir=temp / "asynfusion-app", cache_examples="off")


def everything_in(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


def assert_motion(path: Path, frames: int) -> None:
    motion = load_motion(path)
    assert motion.num_frames == frames
    assert np.isfinite(motion.poses).all() and np.isfinite(motion.expressions).all()


def streams(path: Path) -> str:
    return subprocess.run([FFMPEG, "-nostdin", "-i", str(path)], capture_output=True, text=True).stderr


# ----------------------------------------------------------------------------
# The command line
# ----------------------------------------------------------------------------
def assert_one_line_refusal(err: str, message: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert re.search(message, lines[0]), lines[0]


@pytest.mark.parametrize("case", CASES)
def test_cli(case, checkpoint_dir, inputs, tmp_path, temp, capfd, speech_like):
    expected = CASES[case].cli
    audio = CASES[case].make(inputs, speech_like)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / f"{audio.stem}.npz"
    args = ["generate", str(audio), "-o", str(out), "--checkpoint", str(checkpoint_dir), "--max-seconds", str(CAP)]
    movie = out_dir / f"{audio.stem}.mp4"
    if case in ("mp4 video with AAC audio", "non-ASCII name with spaces"):  # two of the three videos rendered here
        args += ["--video", str(movie), "--size", str(SIZE)]
    capfd.readouterr()
    status = main(args)
    err = capfd.readouterr().err  # file descriptor 2: a C library's own warnings count too
    assert "Traceback" not in err
    if isinstance(expected, str):
        assert status == 2
        assert_one_line_refusal(err, expected)
        assert everything_in(out_dir) == []  # no output, not even a hidden temporary one
    else:
        assert status == 0, err
        assert_motion(out, expected)
        if "--video" in args:
            assert everything_in(out_dir) == sorted([out.name, movie.name])
            report = streams(movie)
            assert "Video: h264" in report and "Audio: aac" in report and f"{SIZE}x{SIZE}" in report
        else:
            assert everything_in(out_dir) == [out.name]
    assert everything_in(temp) == []


def test_cli_failed_render_leaves_no_motion_either(checkpoint_dir, inputs, tmp_path, temp, capfd, speech_like):
    audio = write(inputs / "speech.wav", speech_like(1.0))
    out = tmp_path / "out.npz"
    status = main(["generate", str(audio), "-o", str(out), "--checkpoint", str(checkpoint_dir),
                   "--video", str(tmp_path / "out.mp4"), "--size", "63"])
    assert status == 2
    assert_one_line_refusal(capfd.readouterr().err, r"^error: video size must be an even number of pixels")
    assert not out.exists() and not (tmp_path / "out.mp4").exists()
    assert everything_in(temp) == []


def test_cli_cap_from_the_environment_in_a_fresh_process(checkpoint_dir, inputs, tmp_path, temp, speech_like):
    audio = CASES["one second past the cap"].make(inputs, speech_like)
    out = tmp_path / "out.npz"
    env = {**os.environ, "ASYNFUSION_MAX_SECONDS": str(CAP)}  # TMPDIR is the fresh folder already
    result = subprocess.run([sys.executable, "-m", "asynfusion", "generate", str(audio), "-o", str(out),
                             "--checkpoint", str(checkpoint_dir)], capture_output=True, text=True, env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert_one_line_refusal(result.stderr, CASES["one second past the cap"].cli)
    assert not out.exists()
    assert everything_in(temp) == []


# ----------------------------------------------------------------------------
# The app's handlers
# ----------------------------------------------------------------------------
REAL_RENDERS = ("truncated WAV (header says 3 s, 1.5 s of data)",)  # with the CLI's two: three videos in all


def soundtrack_only(motions, audio, out, labels, settings, size, progress, start):
    """rendering.render without the frames: the sound track still goes from the visitor's own file through
    ffmpeg's AAC encoder, as in the real video, so a file that would break or stall it fails here too."""
    result = subprocess.run([FFMPEG, "-nostdin", "-v", "error", "-y", "-i", str(audio), "-map", "0:a:0",
                             "-c:a", "aac", "-b:a", "128k", "-f", "mp4", str(out)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return {"frames": max(motion.num_frames for motion in motions), "seconds": 0.0}


def assert_request_kept(settings: Settings, temp: Path, *files: str) -> None:
    """Only the successful request's own folder is left, holding exactly its results."""
    folders = list(settings.work_dir.iterdir())
    assert len(folders) == 1 and folders[0].name.startswith("request-")
    assert sorted(path.name for path in folders[0].iterdir()) == sorted(files)
    assert everything_in(temp) == sorted([settings.work_dir.name, str(folders[0].relative_to(temp))]
                                         + [str((folders[0] / name).relative_to(temp)) for name in files])


def assert_refused(handler, audio: Path, message: str, settings: Settings, temp: Path) -> None:
    with pytest.raises(InputError) as refusal:
        handler(str(audio), settings=settings)
    assert "\n" not in str(refusal.value) and re.search(message, str(refusal.value)), str(refusal.value)
    assert everything_in(temp) == [settings.work_dir.name]  # the failed request's folder went at once


@pytest.mark.parametrize("case", CASES)
def test_app_generate(case, settings, inputs, temp, monkeypatch, speech_like):
    expected = CASES[case].cli if CASES[case].app is None else CASES[case].app
    audio = CASES[case].make(inputs, speech_like)
    if case not in REAL_RENDERS:
        monkeypatch.setattr(rendering, "render", soundtrack_only)
    if isinstance(expected, str):
        assert_refused(handlers.generate, audio, expected.replace("^error: ", "^"), settings, temp)
        return
    result = handlers.generate(str(audio), settings=settings)
    assert_motion(Path(result.motion), expected)
    values = dict(zip(result.timings["measure"], result.timings["value"]))
    assert values["audio length: seconds"] == round(expected / 30, 2)
    if case in REAL_RENDERS:
        report = streams(result.video)
        assert "Video: h264" in report and "Audio: aac" in report and f"{SIZE}x{SIZE}" in report
    assert_request_kept(settings, temp, Path(result.video).name, Path(result.motion).name)


def test_app_trims_past_the_cap_when_asked(settings, inputs, temp, monkeypatch, speech_like):
    monkeypatch.setattr(rendering, "render", soundtrack_only)
    audio = CASES["one second past the cap"].make(inputs, speech_like)
    result = handlers.generate(str(audio), trim=True, settings=settings)
    assert_motion(Path(result.motion), round(CAP * 30))
    assert "(its first 4 s)" in result.note
    assert_request_kept(settings, temp, "speech.wav", Path(result.video).name, Path(result.motion).name)


@pytest.mark.parametrize("case", ["mp4 video with AAC audio", "digital silence", "NaN and inf samples",
                                  "one second past the cap", "MP3-like garbage named .wav"])
def test_app_compare(case, settings, inputs, temp, monkeypatch, speech_like):
    monkeypatch.setattr(rendering, "render", soundtrack_only)
    expected = CASES[case].cli if CASES[case].app is None else CASES[case].app
    audio = CASES[case].make(inputs, speech_like)
    if isinstance(expected, str):
        assert_refused(handlers.compare, audio, expected.replace("^error: ", "^"), settings, temp)
        return
    result = handlers.compare(str(audio), settings=settings)
    assert list(result.table["sampler"]) == ["DDIM", "sync LCM", "async LCM"]
    assert_request_kept(settings, temp, Path(result.video).name)


# ----------------------------------------------------------------------------
# Long files: refused from the header, or only their start decoded
# ----------------------------------------------------------------------------
@pytest.fixture
def reads(monkeypatch):
    """Frames asked of libsndfile by each soundfile.read call (-1: the whole file)."""
    asked = []
    real_read = soundfile.read

    def spy(file, frames=-1, *args, **kwargs):
        asked.append(frames)
        return real_read(file, frames, *args, **kwargs)

    monkeypatch.setattr(soundfile, "read", spy)
    return asked


def test_a_two_hour_header_is_refused_before_decoding(checkpoint_dir, settings, inputs, tmp_path, temp, capfd, reads,
                                                      monkeypatch, speech_like):
    audio = two_hour_header(inputs, speech_like)
    out = tmp_path / "out.npz"
    assert main(["generate", str(audio), "-o", str(out), "--checkpoint", str(checkpoint_dir)]) == 2  # default cap
    assert_one_line_refusal(capfd.readouterr().err, r"^error: audio is 7200\.0 s, longer than the 60 s cap")
    assert reads == [] and not out.exists()
    assert_refused(handlers.generate, audio, r"^The audio is 7200\.0 s long, past the 4 s limit", settings, temp)
    assert reads == []
    monkeypatch.setattr(rendering, "render", soundtrack_only)
    result = handlers.generate(str(audio), trim=True, settings=settings)  # the first 4 s: 1.5 s of speech, then quiet
    assert_motion(Path(result.motion), round(CAP * 30))
    assert reads == [CAP * SAMPLE_RATE]  # only what is used was decoded


@pytest.mark.parametrize("suffix", [".wav", ".mp3"])
def test_64_seconds_of_speech_under_the_default_cap(suffix, checkpoint_dir, inputs, tmp_path, temp, capfd,
                                                    monkeypatch, speech_like):
    """Past the 60 s cap: one line with the way out (the CLI's cap, the app's trim box), and the trim works."""
    audio = write(inputs / "talk.wav", speech_like(64.0))
    if suffix == ".mp3":
        ffmpeg("-i", audio, inputs / "talk.mp3")
        audio.unlink()
        audio = inputs / "talk.mp3"
    out = tmp_path / "out.npz"
    assert main(["generate", str(audio), "-o", str(out), "--checkpoint", str(checkpoint_dir)]) == 2
    assert_one_line_refusal(capfd.readouterr().err, r"^error: audio is 64\.0 s, longer than the 60 s cap "
                                                    r"\(raise it with --max-seconds or ASYNFUSION_MAX_SECONDS, or "
                                                    r"trim the file\)")
    assert not out.exists()
    settings = Settings(checkpoint=str(checkpoint_dir), render_size=SIZE, max_seconds=60.0,
                        work_dir=temp / "asynfusion-app", cache_examples="off")
    assert_refused(handlers.generate, audio,
                   r"^The audio is 64\.0 s long, past the 60 s limit: tick 'Use only the first "
                   r"60 s of longer audio' \(trim=True in the API\)", settings, temp)
    monkeypatch.setattr(rendering, "render", soundtrack_only)
    result = handlers.generate(str(audio), trim=True, settings=settings)
    assert_motion(Path(result.motion), 1800)
    assert "(its first 60 s)" in result.note
