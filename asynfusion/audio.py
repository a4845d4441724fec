"""Speech in: load any common file to 16 kHz mono, check it, and compute frame-aligned features.

Features are one row per motion frame (30 fps), so audio and motion share the `(batch, frames,
features)` layout. The default features are cheap and need no weights: log-mel (40 bands) plus
log-energy, onset strength, energy change and zero-crossing rate, the cues lips and beat gestures
follow. A Wav2Vec2 / HuBERT encoder from a local directory is the optional alternative.
"""

import functools
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np

from . import settings
from .errors import InputError
from .motion import FPS

SAMPLE_RATE = 16_000
MIN_SECONDS = 0.25
MAX_PEAK = 1000.0  # 60 dB past full scale: a broken or unscaled float file (ffmpeg's AAC encoder stalls on such)
NUM_MELS = 40
MEL_HOP = 160  # 100 feature frames a second, interpolated onto the 30 fps motion grid
MEL_FEATURE_DIM = NUM_MELS + 4


def num_motion_frames(num_samples: int, sample_rate: int = SAMPLE_RATE) -> int:
    """Output frame count for an audio length: round(duration x 30)."""
    return int(round(num_samples / sample_rate * FPS))


# ----------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------
class AudioTooLong(InputError):
    """Audio past the cap. `seconds`: its length where the header or the decoder tells it, else None."""

    def __init__(self, name: str, seconds: float | None, cap: float):
        self.seconds, self.cap = seconds, cap
        length = f"{seconds:.1f} s" if seconds is not None else f"more than {cap:g} s"
        super().__init__(f"audio is {length}, longer than the {cap:g} s cap (raise it with --max-seconds or "
                         "ASYNFUSION_MAX_SECONDS, or trim the file)")


class AudioTooShort(InputError):
    """Audio under MIN_SECONDS (or none at all); `seconds` is its length."""

    def __init__(self, message: str, seconds: float):
        self.seconds = seconds
        super().__init__(message)


def _ffmpeg_duration(path: Path) -> float | None:
    """The container's duration as ffmpeg reads it from the header (an estimate for some MP3s)."""
    import imageio_ffmpeg

    result = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-hide_banner", "-i", str(path)],
                            capture_output=True, timeout=30)
    found = re.search(rb"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)", result.stderr)
    return None if found is None else int(found[1]) * 3600 + int(found[2]) * 60 + float(found[3])


def _decode_with_ffmpeg(path: Path, limit: float) -> tuple[np.ndarray, int]:
    """MP3 and what libsndfile cannot read (m4a/aac, MP3 inside a RIFF header, video containers): the
    ffmpeg that imageio-ffmpeg ships, decoding no more than the first `limit` seconds."""
    import imageio_ffmpeg

    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(path)]
    if math.isfinite(limit):
        command += ["-t", f"{limit:.6f}"]
    command += ["-vn", "-ac", "1", "-ar", str(SAMPLE_RATE), "-f", "f32le", "-"]
    result = subprocess.run(command, capture_output=True, timeout=120)
    if result.returncode != 0 or not result.stdout:
        message = result.stderr.decode(errors="replace").strip().splitlines()
        raise InputError(f"cannot decode audio from {path.name}: {message[-1] if message else 'no audio stream'}")
    return np.frombuffer(result.stdout, np.float32).copy(), SAMPLE_RATE


def _looks_like_mp3(path: Path) -> bool:
    """An ID3 tag or an MPEG audio frame sync at the start, whatever the file's name."""
    try:
        with open(path, "rb") as file:
            head = file.read(3)
    except OSError:  # unreadable: the decoders name the problem
        return False
    return head.startswith(b"ID3") or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0)


def _read_with_soundfile(path: Path, max_seconds: float, trim: bool) -> tuple[np.ndarray, int] | None:
    """WAV, FLAC, OGG, ... through libsndfile, the length checked from the header before anything is
    decoded; None when libsndfile cannot read the file."""
    import soundfile

    try:
        info = soundfile.info(str(path))  # libsndfile's frame count never exceeds what the file holds
    except Exception:  # not a libsndfile format (m4a, mp4, MP3 in RIFF, ...) or not audio at all
        return None
    seconds = info.frames / info.samplerate if info.samplerate else 0.0
    if seconds > max_seconds + 1e-6 and not trim:
        raise AudioTooLong(path.name, seconds, max_seconds)
    frames = info.frames if not math.isfinite(max_seconds) else min(info.frames, int(max_seconds * info.samplerate))
    try:
        samples, rate = soundfile.read(str(path), frames=frames, dtype="float32", always_2d=True)
    except Exception:
        return None
    return samples.mean(axis=1), rate


def load_audio(path: str | os.PathLike, max_seconds: float | None = None, trim: bool = False) -> np.ndarray:
    """Read any common audio file -> float32 mono at 16 kHz, validated.

    Audio longer than `max_seconds` (None: the configured cap) raises AudioTooLong, found from the
    file's header where it has one (WAV, FLAC, OGG), before decoding; otherwise decoding stops just past
    the cap, so a file of hours costs no more than one at the cap. `trim=True` keeps the first
    `max_seconds` instead. Raises InputError (one line) for a missing, empty, undecodable or too-short
    file, and for NaN, infinite or absurdly large samples.
    """
    path = Path(path)
    max_seconds = settings.max_seconds() if max_seconds is None else max_seconds
    if not path.exists():
        raise InputError(f"audio file not found: {path}")
    if path.is_dir():
        raise InputError(f"expected an audio file, got a directory: {path}")
    if path.stat().st_size == 0:
        raise InputError(f"audio file is empty: {path.name}")
    decoded = None
    if not _looks_like_mp3(path):  # libsndfile reads MP3 with mpg123, which writes its warnings onto stderr itself
        decoded = _read_with_soundfile(path, max_seconds, trim)
    if decoded is None:
        if shutil.which("ffmpeg") is None:
            try:
                import imageio_ffmpeg  # noqa: F401
            except ImportError:
                raise InputError(f"unsupported audio format: {path.name}") from None
        # a second past the cap is enough to know the file is too long
        decoded = _decode_with_ffmpeg(path, max_seconds if trim else max_seconds + 1.0)
        if len(decoded[0]) / decoded[1] > max_seconds + 1e-6 and not trim:
            seconds = _ffmpeg_duration(path)
            raise AudioTooLong(path.name, seconds if seconds and seconds > max_seconds else None, max_seconds)
    samples, rate = decoded
    if len(samples) == 0:
        raise AudioTooShort(f"audio file has no samples: {path.name}", 0.0)
    duration = len(samples) / rate
    if duration < MIN_SECONDS:
        raise AudioTooShort(f"audio is {duration:.2f} s; at least {MIN_SECONDS} s of speech is needed", duration)
    if not np.all(np.isfinite(samples)):
        raise InputError(f"audio contains NaN or infinite samples: {path.name}")
    peak = float(np.abs(samples).max())
    if peak > MAX_PEAK:
        raise InputError(f"audio samples reach {peak:.3g}, far past full scale (1.0): {path.name} is a broken or "
                         "unscaled float file")
    if rate != SAMPLE_RATE:  # soxr's high-quality mode (librosa.resample's default, without librosa's import cost)
        import soxr

        length = int(np.ceil(len(samples) * SAMPLE_RATE / rate))
        samples = soxr.resample(samples, rate, SAMPLE_RATE, quality="soxr_hq")
        samples = np.pad(samples[:length], (0, max(0, length - len(samples))))
    return np.clip(samples - samples.mean(), -1.0, 1.0).astype(np.float32)  # DC offset out, clipping bounded


def audio_seconds(path: str | os.PathLike) -> float:
    """The length of an audio file in seconds: from its header where libsndfile reads one, else decoded."""
    import soundfile

    path = Path(path)
    if not _looks_like_mp3(path):
        try:
            info = soundfile.info(str(path))
            if info.samplerate and info.frames:
                return info.frames / info.samplerate
        except Exception:
            pass
    return len(load_audio(path, max_seconds=math.inf)) / SAMPLE_RATE


# ----------------------------------------------------------------------------
# Features
# ----------------------------------------------------------------------------
def _to_motion_frames(features: np.ndarray, feature_rate: float, num_frames: int) -> np.ndarray:
    """Linear interpolation of (F, D) features at `feature_rate` onto the 30 fps frame times."""
    source = np.arange(len(features)) / feature_rate
    target = np.arange(num_frames) / FPS
    return np.stack([np.interp(target, source, column) for column in features.T], axis=1).astype(np.float32)


# The default features are computed with numpy alone, to the same numbers as librosa's
# melspectrogram / rms / power_to_db / onset_strength / zero_crossing_rate with the settings below
# (tests/test_audio.py checks them against librosa). librosa's first call in a process costs about
# 1.3 s of imports and JIT loading, most of a command-line run's budget for a 10 s clip.
N_FFT, WIN_LENGTH, FMIN, FMAX = 512, 400, 60.0, 7600.0


def _frames(y: np.ndarray, length: int, hop: int) -> np.ndarray:
    """(num_frames, length) strided view of y, frames every `hop` samples (librosa.util.frame)."""
    count = 1 + (len(y) - length) // hop
    return np.lib.stride_tricks.as_strided(y, (count, length), (y.strides[0] * hop, y.strides[0]), writeable=False)


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above (librosa's default, htk=False)."""
    hz = np.asarray(hz, np.float64)
    linear = hz * 3.0 / 200.0
    log = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    linear = mel * 200.0 / 3.0
    log = 1000.0 * np.exp(np.log(6.4) / 27.0 * (mel - 15.0))
    return np.where(mel >= 15.0, log, linear)


@functools.cache
def mel_filterbank() -> np.ndarray:
    """(NUM_MELS, N_FFT // 2 + 1) triangular filters, Slaney-normalized (librosa.filters.mel)."""
    fft_hz = np.linspace(0, SAMPLE_RATE / 2, N_FFT // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(FMIN), _hz_to_mel(FMAX), NUM_MELS + 2))
    ramps = edges[:, None] - fft_hz[None, :]
    widths = np.diff(edges)
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper)) * (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.astype(np.float32)


def mel_features(samples: np.ndarray, num_frames: int | None = None) -> np.ndarray:
    """(num_samples,) 16 kHz -> (num_frames, 44): log-mel, log-energy, onset, energy delta, ZCR."""
    num_frames = num_motion_frames(len(samples)) if num_frames is None else num_frames
    y = np.pad(np.asarray(samples, np.float32), (0, max(0, WIN_LENGTH - len(samples))))
    # power spectrogram: centred frames, zero padding, periodic Hann of 400 samples centred in 512
    window = np.zeros(N_FFT, np.float32)
    offset = (N_FFT - WIN_LENGTH) // 2
    window[offset:offset + WIN_LENGTH] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(WIN_LENGTH) / WIN_LENGTH)
    spectrum = np.fft.rfft(_frames(np.pad(y, N_FFT // 2), N_FFT, MEL_HOP) * window, axis=1)
    mel = mel_filterbank() @ (np.abs(spectrum) ** 2).T.astype(np.float32)           # (40, F)
    log_mel = np.log(mel + 1e-6)
    rms = np.sqrt(np.mean(_frames(np.pad(y, WIN_LENGTH // 2), WIN_LENGTH, MEL_HOP) ** 2, axis=1))
    log_energy = np.log(rms + 1e-5)
    # onset strength of the dB mel spectrogram (top 80 dB): mean positive rise, shifted by 1 + 2048 // 320 frames
    db = 10.0 * np.log10(np.maximum(mel, 1e-10))
    db = np.maximum(db, db.max() - 80.0)
    onset = np.pad(np.maximum(0.0, db[:, 1:] - db[:, :-1]).mean(0), (1 + 2048 // (2 * MEL_HOP), 0))[:mel.shape[1]]
    # zero-crossing rate: sign changes (|x| <= 1e-10 counts as 0) in edge-padded 400-sample frames
    edge = np.pad(y, WIN_LENGTH // 2, mode="edge")
    sign = np.signbit(np.where(np.abs(edge) <= 1e-10, 0.0, edge))
    crossings = _frames(np.concatenate([[False], sign[1:] != sign[:-1]]).astype(np.float32), WIN_LENGTH, MEL_HOP)
    zcr = (crossings.sum(1) - crossings[:, 0]) / WIN_LENGTH  # the first sample of a frame has no predecessor
    length = min(log_mel.shape[1], len(rms), len(onset), len(zcr))
    log_energy = log_energy[:length]
    energy_delta = np.diff(log_energy, prepend=log_energy[:1])
    stacked = np.concatenate([log_mel[:, :length], log_energy[None], onset[None, :length],
                              energy_delta[None], zcr[None, :length]], axis=0).T      # (F, 44)
    return _to_motion_frames(stacked, SAMPLE_RATE / MEL_HOP, num_frames)


class SpeechEncoder:
    """Optional Wav2Vec2 / HuBERT features from a local directory (never a hub download)."""

    def __init__(self, model_dir: str | os.PathLike):
        from transformers import AutoConfig, AutoModel

        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise InputError(f"no speech encoder at {model_dir} (expected a transformers model directory)")
        self.config = AutoConfig.from_pretrained(model_dir, local_files_only=True)
        self.model = AutoModel.from_pretrained(model_dir, local_files_only=True).eval()
        self.dim = self.config.hidden_size

    def __call__(self, samples: np.ndarray, num_frames: int | None = None) -> np.ndarray:
        import torch

        num_frames = num_motion_frames(len(samples)) if num_frames is None else num_frames
        normalized = (samples - samples.mean()) / (samples.std() + 1e-7)
        with torch.inference_mode():
            hidden = self.model(torch.from_numpy(normalized)[None]).last_hidden_state[0].numpy()  # (F, H), 50 fps
        return _to_motion_frames(hidden, len(hidden) / (len(samples) / SAMPLE_RATE), num_frames)


def audio_features(samples: np.ndarray, num_frames: int | None = None, encoder: str = "mel") -> np.ndarray:
    """Frame-aligned features by name: "mel" (default) or a local Wav2Vec2/HuBERT directory path."""
    if encoder == "mel":
        return mel_features(samples, num_frames)
    return _speech_encoder(encoder)(samples, num_frames)


_ENCODERS: dict[str, SpeechEncoder] = {}


def _speech_encoder(model_dir: str) -> SpeechEncoder:
    if model_dir not in _ENCODERS:
        _ENCODERS[model_dir] = SpeechEncoder(model_dir)
    return _ENCODERS[model_dir]


def audio_feature_dim(encoder: str = "mel") -> int:
    return MEL_FEATURE_DIM if encoder == "mel" else _speech_encoder(encoder).dim
