"""Procedural face and body motion from speech audio: the corpus animator and the rule-based baseline.

Everything is derived from the audio (and, for the corpus, the phonemes espeak-ng spoke) plus a
seeded random draw and a hidden mood in [0, 1]:
    mouth       jaw and lip shapes per phoneme (closed on p/b/m, rounded, spread), or per syllable
                when the phonemes are unknown (corpus/face.py)
    eyes, brows blinks (Poisson); brow raises on stressed syllables; smile with mood
    arms        gesture phrases over speech runs: preparation, strokes landing on stressed syllables,
                holds, retraction to a rest with the hands in front of the body (corpus/gesture.py)
    torso, head turns towards the gesturing hand, weight shifts, breathing, head turns and nods
    fingers     hand shape per phrase, tightening on strokes
Mood scales gesture size and rate, torso and head motion, nods, brows and smile together: calm
speakers move their upper body at about 0.08 m/s, animated ones at about 0.18 m/s (realism.py).

SMPL-X frame: y up, z forward, the left arm along +x in the rest T-pose. A rotation about z by a
negative angle takes +x towards -y, so the left arm hangs down with left_shoulder z < 0 and the
right (along -x) with right_shoulder z > 0; about y, a negative angle takes +x towards +z (forward);
about x, a positive angle takes +z towards -y (a head nod). Right-side values mirror the left:
(x, y, z) -> (x, -y, -z). Finger values are offsets from the relaxed hand (BEAT2's convention with
smplx's flat_hand_mean=False): positive curls the fingers, negative opens them.
"""

import numpy as np
from scipy.ndimage import gaussian_filter1d

from ..audio import SAMPLE_RATE, num_motion_frames
from ..errors import InputError
from ..motion import NUM_EXPRESSIONS, NUM_JOINTS, Motion
from .corpus.cues import loudness_envelope, speech_cues
from .corpus.face import JAW_MAX, animate_face
from .corpus.gesture import HOME, animate_body
from .corpus.phonemes import Phoneme

__all__ = ["HOME", "JAW_MAX", "animate", "loudness_envelope"]


# ----------------------------------------------------------------------------
# The animator
# ----------------------------------------------------------------------------
def animate(samples_16k: np.ndarray, seed: int = 0, mood: float | None = None,
            phonemes: list[Phoneme] | None = None) -> Motion:
    """Speech (16 kHz mono) -> SMPL-X motion at 30 fps, rule-based; mood in [0, 1] (random when None).

    Works on any audio: the corpus animator and the rule-based baseline are this one function.
    `phonemes` (timed, in seconds from the clip's start) shape the mouth when known.
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
    animate_body(rng, cues, mood, joints)
    joints = gaussian_filter1d(joints, 1.0, axis=0, mode="nearest")  # the body; the mouth keeps its closures
    animate_face(rng, cues, mood, joints, expressions, phonemes)
    return Motion(joints.reshape(num_frames, -1), expressions, expression_space="arkit",
                  metadata={"sampler": "rule-based", "seed": int(seed), "mood": round(mood, 4)})


