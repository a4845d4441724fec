"""The corpus face: a mouth that articulates per syllable, blinks, brows on stress, a smile with mood.

Jaw and lips follow the phonemes when they are known (espeak-ng reports every phoneme it speaks,
corpus/phonemes.py): each phoneme has a jaw opening and a lip shape (a viseme), held from its start
to the next one and blended over ~25 ms of coarticulation, so the mouth opens on every vowel and
closes on p, b and m. On any other audio (the rule-based baseline on a user's speech) the jaw opens
on each syllable nucleus (a loudness peak) and closes between them.
"""

import numpy as np
from scipy.ndimage import gaussian_filter1d

from ...motion import ARKIT_BLENDSHAPES, FPS, JOINT
from .cues import SpeechCues, pulses, runs, slow_noise
from .phonemes import Phoneme

BLEND = {name: i for i, name in enumerate(ARKIT_BLENDSHAPES)}
JAW_MAX = 0.35                 # rad; the widest the jaw ever opens
COARTICULATION_SECONDS = 0.025  # how far a mouth shape blurs into its neighbours
RASTER_HZ = 300                 # phoneme tracks are drawn at 10x the frame rate, then sampled

# espeak-ng English phoneme mnemonics -> (jaw opening 0-1, lip shape). Unlisted: a middling consonant.
VOWEL_OPENNESS = {
    "a": 1.0, "a#": 0.9, "A:": 1.0, "A@": 0.95, "aI": 0.95, "aU": 0.9, "&": 0.85, "V": 0.8, "0": 0.85,
    "O:": 0.75, "O@": 0.75, "OI": 0.7, "O": 0.75, "e": 0.6, "E": 0.65, "e@": 0.65, "eI": 0.6, "3:": 0.5,
    "3": 0.45, "@": 0.45, "@2": 0.4, "@5": 0.4, "@L": 0.45, "oU": 0.6, "i": 0.3, "i:": 0.3, "i@": 0.4,
    "I": 0.35, "I#": 0.35, "I2": 0.35, "u:": 0.3, "U": 0.35, "U@": 0.45,
}
CONSONANT_OPENNESS = {"p": 0.0, "b": 0.0, "m": 0.0, "f": 0.1, "v": 0.1, "w": 0.15, "T": 0.25, "D": 0.25,
                      "s": 0.15, "z": 0.15, "S": 0.2, "Z": 0.2, "tS": 0.2, "dZ": 0.2, "h": 0.45, "_": 0.0,
                      "_:": 0.0, "_!": 0.0, "||": 0.0}
CONSONANT_DEFAULT = 0.3
LIPS_CLOSED = {"p", "b", "m"}
LIPS_ROUNDED = {"u:", "U", "oU", "O:", "O@", "OI", "w", "U@", "aU"}
LIPS_SPREAD = {"i", "i:", "I", "I#", "I2", "eI", "E", "e", "i@"}
LIPS_LABIODENTAL = {"f", "v"}


def openness(name: str) -> float:
    if name in VOWEL_OPENNESS:
        return VOWEL_OPENNESS[name]
    return CONSONANT_OPENNESS.get(name, CONSONANT_DEFAULT)


def phoneme_tracks(phonemes: list[Phoneme], num_frames: int, end_seconds: float) -> dict[str, np.ndarray]:
    """Per-frame jaw opening (0-1) and lip shapes (closed, rounded, spread, labiodental) from timed phonemes."""
    count = int(np.ceil(num_frames / FPS * RASTER_HZ)) + 1
    tracks = {key: np.zeros(count) for key in ("jaw", "closed", "rounded", "spread", "labiodental")}
    for k, phoneme in enumerate(phonemes):
        end = phonemes[k + 1].start if k + 1 < len(phonemes) else end_seconds
        span = slice(int(round(phoneme.start * RASTER_HZ)), int(round(min(end, phoneme.start + 0.6) * RASTER_HZ)))
        tracks["jaw"][span] = openness(phoneme.name)
        for key, members in (("closed", LIPS_CLOSED), ("rounded", LIPS_ROUNDED), ("spread", LIPS_SPREAD),
                             ("labiodental", LIPS_LABIODENTAL)):
            if phoneme.name in members:
                tracks[key][span] = 1.0
    centres = np.minimum(np.round(np.arange(num_frames) / FPS * RASTER_HZ).astype(int), count - 1)
    sigma = COARTICULATION_SECONDS * RASTER_HZ
    return {key: gaussian_filter1d(value, sigma)[centres] for key, value in tracks.items()}


def syllable_opening(cues: SpeechCues) -> np.ndarray:
    """(T,) jaw opening 0-1 without phonemes: a bump on each syllable nucleus, closing between them."""
    num_frames = len(cues.loudness)
    out = np.zeros(num_frames)
    t = np.arange(num_frames)
    peaks = cues.syllables
    for k, f in enumerate(peaks):
        before = f - peaks[k - 1] if k else 8
        after = peaks[k + 1] - f if k + 1 < len(peaks) else 8
        rise, fall = np.clip(0.65 * before, 2, 9), np.clip(0.65 * after, 2, 9)
        x = t - f
        bump = np.where(x < 0, 0.5 + 0.5 * np.cos(np.pi * np.clip(x / rise, -1, 0)),
                        0.5 + 0.5 * np.cos(np.pi * np.clip(x / fall, 0, 1)))
        out = np.maximum(out, (0.35 + 0.65 * cues.loudness[f]) * bump)
    return out * gaussian_filter1d(cues.active.astype(float), 1.0)


def animate_face(rng, cues: SpeechCues, mood: float, joints: np.ndarray, expressions: np.ndarray,
                 phonemes: list[Phoneme] | None = None) -> None:
    """Fill the jaw joint and the ARKit expression slots in place."""
    num_frames = len(cues.loudness)
    speech = cues.loudness * gaussian_filter1d(cues.active.astype(float), 1.5)
    jaw_max = np.clip(0.2 + 0.12 * mood + rng.uniform(-0.03, 0.03), 0.1, JAW_MAX)

    # Jaw: the phonemes' (or the syllables') shape times the loudness: it opens wider on loud vowels, as
    # real jaws do, and closes on every consonant. The exponents trade per-syllable depth (2-8 Hz
    # modulation 0.24-0.31 of the mean opening) against correlation with loudness (0.91-0.92).
    if phonemes:
        tracks = phoneme_tracks(phonemes, num_frames, num_frames / FPS)
        shape = tracks["jaw"] ** 0.45
    else:
        tracks = None
        bumps = syllable_opening(cues)
        shape = (bumps / max(bumps.max(), 1e-9)) ** 0.5
    joints[:, JOINT["jaw"], 0] = np.clip(jaw_max * shape * speech, 0.0, JAW_MAX)

    # Lips: closed on p/b/m, rounded, spread, lower lip to the teeth on f/v; the spectrum when no phonemes.
    if tracks is not None:
        expressions[:, BLEND["mouthClose"]] = 0.7 * tracks["closed"]
        for side in ("Left", "Right"):
            expressions[:, BLEND[f"mouthPress{side}"]] = 0.35 * tracks["closed"]
            expressions[:, BLEND[f"mouthStretch{side}"]] = 0.3 * tracks["spread"]
        expressions[:, BLEND["mouthFunnel"]] = 0.4 * tracks["rounded"]
        expressions[:, BLEND["mouthPucker"]] = 0.3 * tracks["rounded"]
        expressions[:, BLEND["mouthRollLower"]] = 0.5 * tracks["labiodental"]
    else:
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
    for start, _ in runs(cues.active):
        if rng.random() < 0.4 and all(abs(start - b) > 24 for b in blink_times):
            blink_times.append(float(start))
    blink = np.minimum(pulses(num_frames, blink_times, rng.uniform(0.85, 1.0, len(blink_times)), 2.5, 5.0), 1.0)
    expressions[:, BLEND["eyeBlinkLeft"]] = blink
    expressions[:, BLEND["eyeBlinkRight"]] = np.minimum(blink * rng.uniform(0.92, 1.0), 1.0)

    # Brows: raised on stressed, high-pitched syllables; a raised baseline when excited.
    keep = (cues.stress > 0.45) & (rng.random(len(cues.stress)) < 0.35 + 0.5 * mood)
    keep &= cues.pitch[cues.syllables] > -0.5
    amplitude = (0.2 + 0.5 * mood) * rng.uniform(0.6, 1.2, keep.sum()) * (0.5 + 0.5 * cues.stress[keep])
    raise_ = pulses(num_frames, cues.syllables[keep], amplitude, 4.0, 12.0)
    baseline = 0.15 * mood + slow_noise(rng, num_frames, 40, 0.03)
    expressions[:, BLEND["browInnerUp"]] = np.clip(baseline + raise_, 0, 1)
    for side, gain in (("Left", rng.uniform(0.7, 0.9)), ("Right", rng.uniform(0.7, 0.9))):
        expressions[:, BLEND[f"browOuterUp{side}"]] = np.clip(baseline + gain * raise_, 0, 1)

    # Smile with mood (calm is a neutral face), with a Duchenne squint.
    smile = np.clip(0.65 * mood ** 1.5 - 0.05 + slow_noise(rng, num_frames, 45, 0.05), 0, 1)
    for side in ("Left", "Right"):
        expressions[:, BLEND[f"mouthSmile{side}"]] = smile
        expressions[:, BLEND[f"cheekSquint{side}"]] = 0.5 * smile
        expressions[:, BLEND[f"eyeSquint{side}"]] = 0.3 * smile
