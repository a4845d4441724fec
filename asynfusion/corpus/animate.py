"""Procedural face and body motion from speech audio: the corpus animator and the rule-based baseline.

Everything is derived from the audio plus a seeded random draw and a hidden mood in [0, 1]:
    jaw         opens with the loudness of speech (lagged 1 frame, smoothed)
    mouth       funnel/pucker on dark (low-centroid) voiced sound, stretch on bright sound
    eyes, brows blinks (Poisson); browInnerUp/browOuterUp* pulses on stressed syllables
    smile       mouthSmile*/cheekSquint* from mood
    arms        gesture units over speech runs: raise to a random shape with the left, right or both
                hands, beat strokes on stressed syllables (amplitude with loudness), rest in pauses
    head, torso nods on stressed syllables, breathing and slow sway
    fingers     curl/extension with the gesture shape and stroke phase
Mood scales the gestures, their rate, nods, brows and smile together.

SMPL-X frame: y up, z forward, the left arm along +x in the rest T-pose. A rotation about z by a
negative angle takes +x towards -y, so the left arm hangs down with left_shoulder z < 0 and the
right (along -x) with right_shoulder z > 0; about y, a negative angle takes +x towards +z (forward);
about x, a positive angle takes +z towards -y (a head nod). Right-side values mirror the left:
(x, y, z) -> (x, -y, -z). Finger values are offsets from the relaxed hand (BEAT2's convention with
smplx's flat_hand_mean=False): positive curls the fingers, negative opens them.
"""

from dataclasses import dataclass
from itertools import pairwise

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.signal import find_peaks

from ..audio import SAMPLE_RATE, num_motion_frames
from ..errors import InputError
from ..motion import ARKIT_BLENDSHAPES, FPS, JOINT, NUM_EXPRESSIONS, NUM_JOINTS, Motion

BLEND = {name: i for i, name in enumerate(ARKIT_BLENDSHAPES)}
REST_SHOULDER_Z = 1.22   # ~70 deg down from the T-pose: arms by the sides
REST_ELBOW_FLEX = 0.20   # a relaxed, slightly bent elbow
JAW_MAX = 0.35           # rad; the widest the jaw ever opens
LOUDNESS_RANGE_DB = 40.0
MIRROR = np.array([1.0, -1.0, -1.0])  # left-arm rotation -> the same motion of the right arm

# Gesture shapes at full raise, for the left arm (offsets from rest): shoulder, elbow, wrist
# (axis-angle components) and finger curl (offset from relaxed; index finger separately for pointing).
SHAPES = {
    "low_front": {"shoulder": (0.0, -0.30, 0.45), "elbow": (0.0, -0.95, 0.0), "wrist": (0.1, 0.0, -0.10),
                  "curl": 0.1, "index": 0.1},
    "open_palm": {"shoulder": (0.2, -0.15, 0.60), "elbow": (0.0, -0.75, 0.0), "wrist": (0.6, 0.0, 0.05),
                  "curl": -0.25, "index": -0.25},
    "chest_center": {"shoulder": (0.0, -0.50, 0.50), "elbow": (0.0, -1.35, 0.0), "wrist": (-0.2, 0.0, -0.15),
                     "curl": 0.35, "index": 0.35},
    "wide": {"shoulder": (0.3, 0.05, 0.75), "elbow": (0.0, -0.55, 0.0), "wrist": (0.7, 0.0, 0.10),
             "curl": -0.3, "index": -0.3},
    "point": {"shoulder": (0.0, -0.40, 0.55), "elbow": (0.0, -0.85, 0.0), "wrist": (0.0, 0.0, 0.0),
              "curl": 0.9, "index": -0.2},
}
FINGERS = ("index", "middle", "pinky", "ring", "thumb")
FINGER_CURL_SCALE = {"index": 0.8, "middle": 1.0, "pinky": 1.2, "ring": 1.1, "thumb": 0.35}


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
    active = _drop_short(_fill_gaps(active, 6), 3)  # bridge stop closures, ignore clicks
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
def _pulses(num_frames: int, frames, amplitudes, rise: float, fall: float) -> np.ndarray:
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


def _slow_noise(rng: np.random.Generator, num_frames: int, sigma: float, scale: float) -> np.ndarray:
    """Smooth random drift with standard deviation `scale`, correlated over ~`sigma` frames."""
    pad = int(3 * sigma)
    noise = gaussian_filter1d(rng.standard_normal(num_frames + 2 * pad), sigma)[pad:pad + num_frames]
    return noise / (noise.std() + 1e-9) * scale


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


def _fill_gaps(mask: np.ndarray, max_gap: int) -> np.ndarray:
    """Set False runs shorter than `max_gap` frames that lie between True runs."""
    out = mask.copy()
    runs = _runs(mask)
    for (_, end), (start, _) in pairwise(runs):
        if start - end < max_gap:
            out[end:start] = True
    return out


def _drop_short(mask: np.ndarray, min_length: int) -> np.ndarray:
    out = mask.copy()
    for start, end in _runs(mask):
        if end - start < min_length:
            out[start:end] = False
    return out


def _pick_beats(rng, syllables, stress, spacing: float, probability: float) -> list[int]:
    """Stressed syllables, strongest first, at least `spacing` frames apart, each kept with `probability`."""
    chosen: list[int] = []
    for k in np.argsort(-stress):
        if stress[k] < 0.35 or rng.random() > probability:
            continue
        if all(abs(syllables[k] - c) >= spacing for c in chosen):
            chosen.append(int(syllables[k]))
    return sorted(chosen)


# ----------------------------------------------------------------------------
# The animator
# ----------------------------------------------------------------------------
def animate(samples_16k: np.ndarray, seed: int = 0, mood: float | None = None) -> Motion:
    """Speech (16 kHz mono) -> SMPL-X motion at 30 fps, rule-based; mood in [0, 1] (random when None).

    Works on any audio: the corpus animator and the rule-based baseline are this one function.
    """
    rng = np.random.default_rng(seed)
    mood_drawn = rng.uniform()
    mood = float(np.clip(mood_drawn if mood is None else mood, 0.0, 1.0))
    samples = np.asarray(samples_16k, np.float32).reshape(-1)
    num_frames = num_motion_frames(len(samples))
    if num_frames < 8:
        raise InputError(f"audio is {len(samples) / SAMPLE_RATE:.2f} s; the animator needs at least 0.25 s")
    cues = speech_cues(samples, num_frames)
    joints = np.zeros((num_frames, NUM_JOINTS, 3))
    expressions = np.zeros((num_frames, NUM_EXPRESSIONS))
    _animate_face(rng, cues, mood, joints, expressions)
    beats = _animate_arms(rng, cues, mood, joints)
    _animate_head_and_torso(rng, cues, mood, beats, joints)
    joints = gaussian_filter1d(joints, 1.0, axis=0, mode="nearest")
    return Motion(joints.reshape(num_frames, -1), expressions, expression_space="arkit",
                  metadata={"sampler": "rule-based", "seed": int(seed), "mood": round(mood, 4)})


def _animate_face(rng, cues: SpeechCues, mood: float, joints: np.ndarray, expressions: np.ndarray) -> None:
    num_frames = len(cues.loudness)
    speech = cues.loudness * gaussian_filter1d(cues.active.astype(float), 1.5)

    # Jaw: follows loudness one frame late (the jawOpen slot stays 0: the jaw pose drives the mouth).
    jaw_max = np.clip(0.2 + 0.12 * mood + rng.uniform(-0.03, 0.03), 0.1, JAW_MAX)
    jaw = np.concatenate([speech[:1], speech[:-1]])
    joints[:, JOINT["jaw"], 0] = np.clip(jaw_max * gaussian_filter1d(jaw, 0.8), 0.0, JAW_MAX)

    # Lip shape from the spectrum: dark vowels round the lips, bright sounds stretch them.
    voiced = gaussian_filter1d(cues.voiced * cues.loudness, 1.0)
    dark = gaussian_filter1d(1 - cues.brightness, 1.0)
    expressions[:, BLEND["mouthFunnel"]] = 0.35 * voiced * dark ** 2
    expressions[:, BLEND["mouthPucker"]] = 0.2 * voiced * dark ** 3
    for side in ("Left", "Right"):
        expressions[:, BLEND[f"mouthStretch{side}"]] = 0.3 * voiced * (1 - dark)

    # Blinks: Poisson at ~15-20 a minute, at least 0.8 s apart, plus one at some phrase starts.
    blink_times, t = [], rng.exponential(2.0)
    while t * FPS < num_frames:
        blink_times.append(t * FPS)
        t += 0.8 + rng.exponential(2.5)
    for start, _ in _runs(cues.active):
        if rng.random() < 0.4 and all(abs(start - b) > 24 for b in blink_times):
            blink_times.append(float(start))
    blink = np.minimum(_pulses(num_frames, blink_times, rng.uniform(0.85, 1.0, len(blink_times)), 2.5, 5.0), 1.0)
    expressions[:, BLEND["eyeBlinkLeft"]] = blink
    expressions[:, BLEND["eyeBlinkRight"]] = np.minimum(blink * rng.uniform(0.92, 1.0), 1.0)

    # Brows: raised on stressed, high-pitched syllables; a raised baseline when excited.
    keep = (cues.stress > 0.45) & (rng.random(len(cues.stress)) < 0.35 + 0.5 * mood)
    keep &= cues.pitch[cues.syllables] > -0.5
    amplitude = (0.2 + 0.5 * mood) * rng.uniform(0.6, 1.2, keep.sum()) * (0.5 + 0.5 * cues.stress[keep])
    raise_ = _pulses(num_frames, cues.syllables[keep], amplitude, 4.0, 12.0)
    baseline = 0.15 * mood + _slow_noise(rng, num_frames, 40, 0.03)
    expressions[:, BLEND["browInnerUp"]] = np.clip(baseline + raise_, 0, 1)
    for side, gain in (("Left", rng.uniform(0.7, 0.9)), ("Right", rng.uniform(0.7, 0.9))):
        expressions[:, BLEND[f"browOuterUp{side}"]] = np.clip(baseline + gain * raise_, 0, 1)

    # Smile with mood (calm is a neutral face), with a Duchenne squint.
    smile = np.clip(0.65 * mood ** 1.5 - 0.05 + _slow_noise(rng, num_frames, 45, 0.05), 0, 1)
    for side in ("Left", "Right"):
        expressions[:, BLEND[f"mouthSmile{side}"]] = smile
        expressions[:, BLEND[f"cheekSquint{side}"]] = 0.5 * smile
        expressions[:, BLEND[f"eyeSquint{side}"]] = 0.3 * smile


def _animate_arms(rng, cues: SpeechCues, mood: float, joints: np.ndarray) -> np.ndarray:
    """Gesture units over runs of speech; returns the beat signal (T,) that drives nods too."""
    num_frames = len(cues.loudness)
    gain = 0.35 + 0.9 * mood  # the mood's main lever on the body
    rest_z = REST_SHOULDER_Z + rng.uniform(-0.06, 0.06)
    rest_elbow = REST_ELBOW_FLEX + rng.uniform(-0.05, 0.1)

    # Speech runs separated by less than ~0.45 s are one gesture unit; arms rest in longer pauses.
    units = _runs(_fill_gaps(cues.active, 14))
    raise_target = np.zeros((2, num_frames))                  # per arm: 0 rest .. 1 gesture space
    shape_target = {key: np.zeros((2, num_frames, 3)) for key in ("shoulder", "elbow", "wrist")}
    curl_target = np.zeros((2, num_frames, 2))                # (other fingers, index)
    beat = np.zeros((2, num_frames))
    for start, end in units:
        if end - start < 8 or rng.random() > 0.55 + 0.45 * mood:
            continue
        both = 0.3 + 0.3 * mood  # excited speakers use both hands more
        hands = [(0,), (1,), (0, 1)][rng.choice(3, p=[0.45 * (1 - both), 0.55 * (1 - both), both])]
        shape = SHAPES[list(SHAPES)[rng.integers(len(SHAPES))]]
        level = (0.55 + 0.45 * mood) * rng.uniform(0.8, 1.1)
        lo, hi = max(0, start - 5), min(num_frames, end + 4)  # prepare before speech, hold a little after
        inside = (cues.syllables >= start) & (cues.syllables < end)
        beats = _pick_beats(rng, cues.syllables[inside], cues.stress[inside], spacing=FPS * (0.85 - 0.45 * mood),
                            probability=0.5 + 0.5 * mood)
        strength = [gain * (0.4 + 0.6 * cues.loudness[b]) * rng.uniform(0.7, 1.3) for b in beats]
        for arm in hands:
            raise_target[arm, lo:hi] = level
            for key, target in shape_target.items():
                target[arm, lo:hi] = np.asarray(shape[key]) * rng.uniform(0.85, 1.15, 3)
            curl_target[arm, lo:hi] = (shape["curl"], shape["index"])
            beat[arm] += _pulses(num_frames, beats, np.multiply(strength, rng.uniform(0.8, 1.0)), 5.0, 8.0)

    sigma = 4.5  # raise/retract take ~0.4 s
    raise_ = gaussian_filter1d(raise_target, sigma, axis=1, mode="nearest")
    for arm, side in enumerate(("left", "right")):
        mirror = MIRROR if arm else np.ones(3)
        smooth = {key: gaussian_filter1d(value[arm], sigma, axis=0, mode="nearest")
                  for key, value in shape_target.items()}
        drift = np.stack([_slow_noise(rng, num_frames, 20, 0.08) for _ in range(3)], -1) * raise_[arm, :, None]
        b = beat[arm][:, None]
        scale = gain * raise_[arm, :, None]
        shoulder = np.array([0.0, 0.0, -rest_z]) + scale * smooth["shoulder"] + drift + b * np.array([0, 0, -0.08])
        elbow = np.array([0.0, -rest_elbow, 0.0]) + scale * smooth["elbow"] + 0.5 * drift + b * np.array([0, 0.25, 0])
        wrist = scale * smooth["wrist"] + b * np.array([0.0, 0.0, -0.25])
        joints[:, JOINT[f"{side}_shoulder"]] = shoulder * mirror
        joints[:, JOINT[f"{side}_elbow"]] = elbow * mirror
        joints[:, JOINT[f"{side}_wrist"]] = wrist * mirror
        joints[:, JOINT[f"{side}_collar"]] = np.array([0.0, 0.0, 0.05]) * raise_[arm, :, None] * mirror

        # Fingers: the shape's curl, tightening a little on each stroke.
        curl = gain * gaussian_filter1d(curl_target[arm], sigma, axis=0, mode="nearest") + 0.25 * b
        for finger in FINGERS:
            amount = curl[:, 1] if finger == "index" else curl[:, 0]
            for k in range(3):
                joint = JOINT[f"{side}_{finger}{k + 1}"]
                value = FINGER_CURL_SCALE[finger] * amount * (1.0, 0.8, 0.6)[k]
                # Left fingers curl palm-wards (+x towards -y) about -z; the thumb folds across about +x.
                axis = np.array([1.0, 0.0, 0.0]) if finger == "thumb" else np.array([0.0, 0.0, -1.0])
                joints[:, joint] = value[:, None] * axis * mirror
    return beat.sum(0)


def _animate_head_and_torso(rng, cues: SpeechCues, mood: float, beats: np.ndarray, joints: np.ndarray) -> None:
    num_frames = len(cues.loudness)
    t = np.arange(num_frames) / FPS

    # Breathing: the spine flexes and the collars lift a little each breath.
    period = rng.uniform(3.5, 5.0) - 0.8 * mood
    breath = np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi))
    for name, amount in (("spine1", 0.010), ("spine2", 0.008), ("spine3", 0.006)):
        joints[:, JOINT[name], 0] += amount * breath + _slow_noise(rng, num_frames, 40, 0.01)
        joints[:, JOINT[name], 1] += _slow_noise(rng, num_frames, 50, 0.02 * (0.5 + mood))
        joints[:, JOINT[name], 2] += _slow_noise(rng, num_frames, 50, 0.015 * (0.5 + mood))
    joints[:, JOINT["left_collar"], 2] += 0.01 * breath
    joints[:, JOINT["right_collar"], 2] -= 0.01 * breath

    # Head: slow drift, nods on stressed syllables, and a little of each arm beat.
    keep = (cues.stress > 0.5) & (rng.random(len(cues.stress)) < 0.25 + 0.4 * mood)
    nods = _pulses(num_frames, cues.syllables[keep], (0.05 + 0.08 * mood) * rng.uniform(0.6, 1.3, keep.sum()), 4, 8)
    head = np.stack([_slow_noise(rng, num_frames, 30, 0.04) + nods + 0.03 * beats,
                     _slow_noise(rng, num_frames, 45, 0.08 * (0.6 + mood)),
                     _slow_noise(rng, num_frames, 40, 0.03)], -1)
    joints[:, JOINT["neck"]] += 0.4 * head - np.array([0.004, 0, 0]) * breath[:, None]  # keep the gaze level
    joints[:, JOINT["head"]] += 0.6 * head
