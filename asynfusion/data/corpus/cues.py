"""Speech cues at the motion frame rate (loudness, speech activity, voicing, pitch, syllables) and the
signal helpers the corpus animator shares.
"""

from dataclasses import dataclass
from itertools import pairwise

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.signal import find_peaks

from ...audio import SAMPLE_RATE
from ...motion import FPS

LOUDNESS_RANGE_DB = 40.0
PAUSE_LOUDNESS = 0.1   # loudness envelope below this is silence ...
SPEECH_LOUDNESS = 0.3  # ... above this, speech
PAUSE_MARGIN = 9       # frames: arms take ~0.3 s to settle after speech and start ~0.3 s before it
PAUSE_MIN_FRAMES = 6   # what is left of a silence after both margins must last 0.2 s to count


# ----------------------------------------------------------------------------
# Audio cues at the motion frame rate
# ----------------------------------------------------------------------------
@dataclass
class SpeechCues:
    loudness: np.ndarray    # (T,) log-RMS mapped to [0, 1] over the 40 dB below the clip's loud level
    active: np.ndarray      # (T,) bool, speech present
    voiced: np.ndarray      # (T,) bool, active and periodic-looking
    pitch: np.ndarray       # (T,) z-scored log f0 on voiced frames, 0 elsewhere
    brightness: np.ndarray  # (T,) spectral centroid / 4 kHz in [0, 1]
    syllables: np.ndarray   # (S,) frames of loudness peaks (syllable nuclei)
    stress: np.ndarray      # (S,) in [0, 1]: loudness, its rise and pitch at each peak


def loudness_envelope(samples: np.ndarray, num_frames: int) -> np.ndarray:
    """(T,) loudness in [0, 1] at 30 fps, frame i centred at i/30 s: what the jaw follows."""
    return _frame_analysis(samples, num_frames)[0]


def pause_and_speech_frames(loudness: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boolean (T,) masks of a loudness envelope: settled pause frames and speech frames.

    A pause is a run of silence less 0.3 s at each end (a speaker rests the arms after speaking and
    raises them before speaking again), kept when at least 0.2 s remain: silences of 0.8 s or more.
    Evaluation measures calm in these frames; training weighs them (training/train.py).
    """
    silent = loudness < PAUSE_LOUDNESS
    pause = np.zeros_like(silent)
    edges = np.diff(np.concatenate([[0], silent.astype(np.int8), [0]]))
    for start, end in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):
        if end - start - 2 * PAUSE_MARGIN >= PAUSE_MIN_FRAMES:
            pause[start + PAUSE_MARGIN:end - PAUSE_MARGIN] = True
    return pause, loudness > SPEECH_LOUDNESS


def _frame_analysis(samples: np.ndarray, num_frames: int) -> tuple[np.ndarray, ...]:
    window = 1024
    padded = np.pad(samples.astype(np.float32), (window // 2, window // 2 + 1))
    starts = np.minimum(np.round(np.arange(num_frames) * SAMPLE_RATE / FPS).astype(int), len(padded) - window)
    frames = padded[starts[:, None] + np.arange(window)]                              # (T, 1024)
    db = 20 * np.log10(np.sqrt(np.mean(frames ** 2, axis=1)) + 1e-7)
    loud_db = np.percentile(db, 95) if num_frames else 0.0
    loudness = np.clip((db - (loud_db - LOUDNESS_RANGE_DB)) / LOUDNESS_RANGE_DB, 0.0, 1.0)
    spectrum = np.abs(np.fft.rfft(frames * np.hanning(window), axis=1))
    freqs = np.fft.rfftfreq(window, 1 / SAMPLE_RATE)
    brightness = np.clip((spectrum @ freqs) / (spectrum.sum(1) + 1e-9) / 4000.0, 0.0, 1.0)
    zcr = np.mean(np.abs(np.diff(np.signbit(frames), axis=1)), axis=1)
    floor_db = np.percentile(db, 10) if num_frames else 0.0
    active = db > max(floor_db + 8.0, loud_db - 30.0)
    return loudness, active, brightness, zcr


def speech_cues(samples: np.ndarray, num_frames: int) -> SpeechCues:
    import librosa

    loudness, active, brightness, zcr = _frame_analysis(samples, num_frames)
    active = drop_short(fill_gaps(active, 6), 3)  # bridge stop closures, ignore clicks
    voiced = active & (zcr < 0.25) & (loudness > 0.4)
    pitch = np.zeros(num_frames)
    if voiced.sum() > 3 and len(samples) >= 2048:
        f0 = librosa.yin(samples.astype(np.float32), fmin=65, fmax=420, sr=SAMPLE_RATE, frame_length=1024,
                         hop_length=160)
        log_f0 = np.interp(np.arange(num_frames) / FPS, np.arange(len(f0)) * 160 / SAMPLE_RATE, np.log(f0))
        spread = log_f0[voiced].std() + 1e-3
        pitch[voiced] = (log_f0[voiced] - log_f0[voiced].mean()) / spread
    envelope = gaussian_filter1d(loudness * active, 1.0)
    syllables, _ = find_peaks(envelope, distance=4, prominence=0.04)
    rise = np.maximum(np.diff(envelope, prepend=envelope[:1]), 0.0)
    rise_before = np.array([rise[max(0, f - 4):f + 1].sum() for f in syllables])
    score = envelope[syllables] + 0.6 * rise_before + 0.15 * np.clip(pitch[syllables], -2, 2)
    stress = (score - score.min()) / (np.ptp(score) + 1e-6) if len(score) else score
    return SpeechCues(loudness, active, voiced, pitch, brightness, syllables, stress)


# ----------------------------------------------------------------------------
# Signal helpers
# ----------------------------------------------------------------------------
def pulses(num_frames: int, frames, amplitudes, rise: float, fall: float) -> np.ndarray:
    """Sum of raised-cosine bumps: 0 at f-rise, peak `a` at f, 0 again at f+fall."""
    out = np.zeros(num_frames)
    t = np.arange(num_frames)
    for f, a in zip(frames, amplitudes):
        lo, hi = max(0, int(np.floor(f - rise))), min(num_frames, int(np.ceil(f + fall)) + 1)
        x = t[lo:hi] - f
        shape = np.where(x < 0, 0.5 + 0.5 * np.cos(np.pi * np.clip(x / rise, -1, 0)),
                         0.5 + 0.5 * np.cos(np.pi * np.clip(x / fall, 0, 1)))
        out[lo:hi] += a * shape
    return out


def slow_noise(rng: np.random.Generator, num_frames: int, sigma: float, scale: float) -> np.ndarray:
    """Smooth random drift with standard deviation `scale`, correlated over ~`sigma` frames."""
    pad = int(3 * sigma)
    noise = gaussian_filter1d(rng.standard_normal(num_frames + 2 * pad), sigma)[pad:pad + num_frames]
    return noise / (noise.std() + 1e-9) * scale


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


def fill_gaps(mask: np.ndarray, max_gap: int) -> np.ndarray:
    """Set False runs shorter than `max_gap` frames that lie between True runs."""
    out = mask.copy()
    spans = runs(mask)
    for (_, end), (start, _) in pairwise(spans):
        if start - end < max_gap:
            out[end:start] = True
    return out


def drop_short(mask: np.ndarray, min_length: int) -> np.ndarray:
    out = mask.copy()
    for start, end in runs(mask):
        if end - start < min_length:
            out[start:end] = False
    return out


def pick_beats(rng, syllables, stress, spacing: float, probability: float) -> list[int]:
    """Stressed syllables, strongest first, at least `spacing` frames apart, each kept with `probability`."""
    chosen: list[int] = []
    for k in np.argsort(-stress):
        if stress[k] < 0.35 or rng.random() > probability:
            continue
        if all(abs(syllables[k] - c) >= spacing for c in chosen):
            chosen.append(int(syllables[k]))
    return sorted(chosen)


def minimum_jerk(num_frames: int, keys: list[tuple[float, np.ndarray]]) -> np.ndarray:
    """(T, D) trajectory through (frame, value) keyframes, each segment a minimum-jerk move.

    Between two keys the value follows 10s^3 - 15s^4 + 6s^5: it starts and ends at rest with a
    bell-shaped speed profile, as human point-to-point movements do (Flash & Hogan 1985). Before the
    first key and after the last the value is held.
    """
    keys = sorted(keys, key=lambda key: key[0])
    frames = np.array([k[0] for k in keys], np.float64)
    values = np.stack([np.asarray(k[1], np.float64) for k in keys])
    t = np.arange(num_frames, dtype=np.float64)
    segment = np.clip(np.searchsorted(frames, t, side="right") - 1, 0, len(keys) - 1)
    following = np.minimum(segment + 1, len(keys) - 1)
    span = np.maximum(frames[following] - frames[segment], 1e-9)
    s = np.clip((t - frames[segment]) / span, 0.0, 1.0)
    s = np.where(following == segment, 0.0, s)
    blend = (10 * s ** 3 - 15 * s ** 4 + 6 * s ** 5)[:, None]
    return values[segment] + blend * (values[following] - values[segment])
