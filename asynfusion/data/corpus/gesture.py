"""The corpus body: gesture phrases with the speech, posture and weight shifts, head motion, fingers.

Gestures are built the way gesture research describes them (Kendon; McNeill; Kita et al. 1998):
speech runs are covered by *phrases*, each a preparation (the hands rise from rest into gesture
space), one or more *strokes* that land on stressed syllables, short holds, and a retraction back to
rest when a long enough pause follows (otherwise the next phrase starts from where the last ended).
Every move between two key poses is a minimum-jerk movement, so hand speed rises and falls in a
bell shape. Phrases use one hand, the other or both (with unequal amplitudes), each with its own
place in gesture space, stroke direction and hand shape. The torso turns towards the gesturing
hand and shifts its weight now and then, the head turns and tilts with the phrases and nods on
strokes. Rest is with the hands in front of the body, elbows bent, as people stand when they talk.

Corpus v4 also times the body against the voice as BEAT2 speakers move: holds through the stressed
vowel, a clock that runs a little slower while the voice is louder (the upper body moves ~10 % less
in the louder half of the frames), and stillness in settled pauses, with preparation and retraction
inside the 0.3 s around the speech.

Poses are written for the left arm; the right arm mirrors them with (x, y, z) -> (x, -y, -z).
Axis conventions are documented in corpus/animate.py.
"""

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import binary_dilation, gaussian_filter1d

from ...motion import FPS, JOINT
from .cues import (
    PAUSE_MARGIN,
    SpeechCues,
    fill_gaps,
    minimum_jerk,
    pause_and_speech_frames,
    pick_beats,
    pulses,
    runs,
    slow_noise,
)

STROKE_GAIN = 1.6
DRIFT_GAIN = 1.2  # the held arm's idle sway ...
DRIFT_GATE = 0.5  # ... half of it only while speaking; none in a settled pause
PACE = 0.15         # the body's clock: slower over louder syllables, faster between (on_speech_clock)
PACE_WINDOW = 15.0  # frames: the local mean loudness the pace follows
STILLNESS = 0.85    # how still the body gets in a settled pause (1: a statue; still_in_pauses)
MAX_STROKE = 2.4   # the fastest strokes move the elbow at ~8 rad/s, as fast beats do
TORSO_GAIN = 3.0
MIRROR = np.array([1.0, -1.0, -1.0])  # left-arm rotation -> the same motion of the right arm
# Gestures anticipate speech: the stroke's apex comes just before the stressed syllable and the hands
# rise in the pause before a phrase (Morrel-Samuels & Krauss 1992; Loehr 2004). In BEAT2 captures the
# upper body moves most about 0.5 s before the loudest speech, so the loudest frames are not the fastest.
ANTICIPATION = (6.0, 12.0)  # frames
# ... and the hands hold through the loud vowel: in BEAT2 the upper body moves ~10 % slower in the louder
# half of the frames than in the quieter half, and fastest around pauses (preparing, retracting).
HOLD_PAST_SYLLABLE = (6.0, 10.0)  # frames the stroke's hold lasts past its syllable
NOD_LEAD = (6.0, 12.0)           # frames a nod or lean peaks before its syllable
HEAD_GAIN = 0.55   # head turns, tilts and nods: real speakers' head rotation std is 2.5-3 degrees
FINGERS = ("index", "middle", "pinky", "ring", "thumb")
# The relaxed hand, flexion of each finger's three joints (rad): a speaker's hands are neither flat nor
# fists. Flexion grows from the index to the pinky (the "finger cascade" of a resting hand); the mean
# over the 30 finger joints, 0.43 rad, is what BEAT2 captures of speakers show (0.40-0.48).
RELAXED_CURL = {"index": (0.30, 0.40, 0.22), "middle": (0.50, 0.40, 0.25), "pinky": (0.65, 0.55, 0.38),
                "ring": (0.55, 0.50, 0.30), "thumb": (0.45, 0.40, 0.55)}
FINGER_JITTER = 0.22  # each finger curls and opens a little on its own (relative), as real hands do
# Posture: the torso bends forward a little from the lower spine and the upper back straightens again,
# so the chest and head stay over the hips (forward flexion of spine1/2/3, rad, and the neck's share).
LEAN = np.array([0.19, 0.08, -0.06])
LEAN_SPREAD = np.array([0.04, 0.02, 0.02])

# An arm pose is 14 numbers: collar, shoulder, elbow, wrist (axis-angle, left arm) + finger curl, index curl,
# the last two relative to the relaxed hand (0 relaxed, -1 flat, +1 twice as curled).
ARM_PARTS = {"collar": slice(0, 3), "shoulder": slice(3, 6), "elbow": slice(6, 9), "wrist": slice(9, 12),
             "curl": slice(12, 13), "index": slice(13, 14)}
# Rest: hands in front of the body at about navel height, elbows bent ~60 degrees, fingers relaxed.
HOME = np.array([0.03, -0.17, -0.2,   0.08, -0.22, -1.1,   0.12, -1.05, 0.22,   -0.4, -0.05, 0.1,   0.25, 0.0])
# Per-speaker spread of the rest pose (standard deviations of the same 14 numbers).
HOME_SPREAD = np.array([0.02, 0.03, 0.04,  0.05, 0.06, 0.06,  0.05, 0.15, 0.05,  0.1, 0.03, 0.05,  0.15, 0.15])
# Directions in the arm-pose space (unit-ish; scaled by the draw): where a phrase puts the hand ...
RAISE = np.array([0, -0.05, 0.05,  0, -0.35, 0.08,  0, -0.6, 0,  0, 0, 0,  0, 0])      # up and forward
SPREAD = np.array([0, 0.02, 0.04,  0, 0.1, 0.15,  0, -0.1, 0,  0.2, 0, 0.05,  0, 0])   # out to the side
PALM_UP = np.array([0, 0, 0,  0, 0, 0,  0, 0, 0,  0.7, 0, 0.1,  -0.5, 0])         # open, supinated
# ... and how its strokes move it.
BEAT_DOWN = np.array([0, 0, -0.03,  0, 0.15, -0.05,  0, 0.3, 0,  0, 0, -0.3,  0.25, 0])
SWEEP_OUT = np.array([0, 0.02, 0.03,  0, 0.15, 0.2,  0, 0.1, 0,  0.25, 0, 0,  -0.3, 0])
PUSH_FORWARD = np.array([0, -0.04, 0,  0, -0.3, 0.05,  0, 0.3, 0,  0, 0, 0.2,  0, 0])
POINT = np.array([0, 0, 0,  0, -0.1, 0,  0, 0.1, 0,  0, 0, 0,  0.6, -1.4])


@dataclass
class Phrase:
    strokes: list[int]     # frames of the stressed syllables the strokes land on
    amplitudes: list[float]
    arms: dict[int, float]  # arm index (0 left, 1 right) -> its share of the amplitude
    place: np.ndarray      # (14,) offset from rest where the phrase happens
    direction: np.ndarray  # (14,) the stroke's movement
    onset: float = -np.inf  # where the speech run it opens begins (-inf: it continues a run)


def energy_of(mood: float) -> float:
    """The mood's scale on gesture size and torso and head motion: 0.8 (calm) to 1.45 (animated)."""
    return 0.8 + 0.65 * mood


def plan_phrases(rng, cues: SpeechCues, mood: float) -> list[Phrase]:
    """Strokes on stressed syllables of each speech run, grouped into phrases of 1-4 strokes."""
    phrases = []
    energy = energy_of(mood)
    for start, end in runs(fill_gaps(cues.active, 14)):
        if end - start < 6:
            continue
        inside = (cues.syllables >= start) & (cues.syllables < end)
        beats = pick_beats(rng, cues.syllables[inside], cues.stress[inside], spacing=FPS * (0.75 - 0.35 * mood),
                           probability=0.6 + 0.4 * mood)
        if not beats:  # a short run still gets a small gesture on its loudest syllable
            beats = [int(cues.syllables[inside][np.argmax(cues.stress[inside])])] if inside.any() else []
        group: list[int] = []
        opens = True
        for k, beat in enumerate(beats):
            group.append(beat)
            last = k + 1 == len(beats)
            if last or len(group) >= rng.integers(1, 5) or beats[k + 1] - beat > 1.3 * FPS:
                phrases.append(_draw_phrase(rng, cues, group, energy, mood))
                if opens:
                    phrases[-1].onset, opens = float(start), False
                group = []
    return phrases


def _draw_phrase(rng, cues: SpeechCues, strokes: list[int], energy: float, mood: float) -> Phrase:
    both = 0.25 + 0.3 * mood
    choice = rng.choice(3, p=[(1 - both) * 0.45, (1 - both) * 0.55, both])
    if choice == 2:
        lead = int(rng.integers(2))
        arms = {lead: 1.0, 1 - lead: float(rng.uniform(0.5, 1.0))}  # two hands, rarely equal
    else:
        arms = {int(choice): 1.0}
    place = (RAISE * rng.uniform(0.2, 1.4) + SPREAD * rng.uniform(-0.8, 1.3) + PALM_UP * rng.uniform(-0.2, 1.0)
             + POINT * (rng.random() < 0.12)) * energy
    weights = rng.dirichlet([2.0, 1.0, 1.0])
    direction = weights[0] * BEAT_DOWN + weights[1] * SWEEP_OUT * rng.choice([-1, 1]) + weights[2] * PUSH_FORWARD
    emphasis = phrase_emphasis(cues, strokes)
    amplitudes = [min(STROKE_GAIN * energy * emphasis * (0.45 + 0.55 * cues.loudness[s]) * rng.uniform(0.75, 1.25),
                      MAX_STROKE) for s in strokes]
    return Phrase(list(strokes), amplitudes, arms, place * (0.6 + 0.4 * emphasis), direction)


def phrase_emphasis(cues: SpeechCues, strokes: list[int]) -> float:
    """0.6-1.5: how much a phrase's speech stands out from the clip's, in loudness and pitch range.

    Speakers gesture bigger and faster on what they say louder and with a wider pitch swing (McNeill;
    Wagner et al. 2014), so the phrase's size follows its stretch of speech, not only the clip's mood.
    """
    lo, hi = max(0, strokes[0] - 20), min(len(cues.loudness), strokes[-1] + 20)
    speech = cues.active[lo:hi]
    if not speech.any() or not cues.active.any():
        return 1.0
    louder = cues.loudness[lo:hi][speech].mean() - cues.loudness[cues.active].mean()   # about -0.15 .. 0.15
    voiced = cues.voiced[lo:hi]
    swing = np.abs(cues.pitch[lo:hi][voiced]).mean() - 0.8 if voiced.sum() > 3 else 0.0  # z-scored pitch
    return float(np.clip(1.0 + 3.0 * louder + 0.3 * swing, 0.6, 1.5))


def arm_keys(rng, phrases: list[Phrase], arm: int, home: np.ndarray, num_frames: int,
             mood: float) -> list[tuple[float, np.ndarray]]:
    """Key poses of one arm: preparation, strokes with holds, retraction (or straight on to the next phrase)."""
    keys = [(0.0, home)]
    mine = [p for p in phrases if arm in p.arms]
    for k, phrase in enumerate(mine):
        share = phrase.arms[arm]
        place = home + share * phrase.place * rng.uniform(0.85, 1.15, 14)
        stroke_frames = rng.uniform(5.0, 8.0)  # a stroke takes 0.17-0.27 s
        ahead = rng.uniform(ANTICIPATION[0], ANTICIPATION[1])  # ... and lands this many frames before its syllable
        first = phrase.strokes[0] - ahead - stroke_frames
        # the hands rise as the speech begins, not while the pause before it is still settled
        prep = min(rng.uniform(10.0, 18.0), max(first - phrase.onset + PAUSE_MARGIN - 1, 6.0))
        last_frame = keys[-1][0]
        if first - prep > last_frame + 1:
            keys.append((first - prep, keys[-1][1]))  # hold where it was until the preparation starts
        elif len(keys) == 1:  # no time to prepare as the clip begins: the hands are already up
            keys[0] = (0.0, place)
        for n, (syllable, amplitude) in enumerate(zip(phrase.strokes, phrase.amplitudes)):
            swing = share * amplitude * phrase.direction * rng.uniform(0.8, 1.2)
            stroke = syllable - ahead
            if n and stroke - keys[-1][0] < stroke_frames + 4:  # the last stroke's hold is cut short by this one
                keys.pop()
            start = max(stroke - stroke_frames, keys[-1][0] + (5 if n else 8))  # a phrase's first move prepares
            landing = max(stroke, start + 5)
            keys.append((start, place - 0.5 * swing))
            keys.append((landing, place + 0.5 * swing))                     # its apex, just before the syllable
            hold = max(landing + rng.uniform(4, 9), syllable + rng.uniform(*HOLD_PAST_SYLLABLE))
            keys.append((hold, place + 0.3 * swing))                  # held through the syllable's vowel
        gap = (mine[k + 1].strokes[0] - keys[-1][0]) if k + 1 < len(mine) else np.inf
        if gap > (1.4 - 0.5 * mood) * FPS:  # retract: all the way to rest, or part way when excited
            rest = home + (place - home) * rng.uniform(0.0, 0.35 * mood) + 0.03 * rng.standard_normal(14)
            keys.append((keys[-1][0] + rng.uniform(8, 12), rest))  # settled within ~0.3 s of the pause
    return [(min(f, num_frames - 1.0), v) for f, v in keys]


def animate_body(rng, cues: SpeechCues, mood: float, joints: np.ndarray) -> None:
    """Fill the 13 upper-body joints and the fingers in place."""
    num_frames = len(cues.loudness)
    energy = energy_of(mood)
    home = HOME + HOME_SPREAD * rng.standard_normal(14)
    phrases = plan_phrases(rng, cues, mood)
    speaking = gaussian_filter1d(fill_gaps(cues.active, 14).astype(float), 6.0)
    strokes = np.zeros(num_frames)
    for arm, side in enumerate(("left", "right")):
        pose = minimum_jerk(num_frames, arm_keys(rng, phrases, arm, home, num_frames, mood))   # (T, 14)
        drift = np.stack([slow_noise(rng, num_frames, 10, 0.08 * DRIFT_GAIN) for _ in range(14)], -1) \
            * (1 - DRIFT_GATE + DRIFT_GATE * speaking[:, None])
        pose = pose + energy * drift * np.abs(np.sign(HOME))  # idle sway of the held arm, none on zero slots
        mirror = MIRROR if arm else np.ones(3)
        for part in ("collar", "shoulder", "elbow", "wrist"):
            joints[:, JOINT[f"{side}_{part}"]] = pose[:, ARM_PARTS[part]] * mirror
        _fingers(rng, joints, side, pose[:, 12], pose[:, 13], mirror, energy)
    for phrase in phrases:
        lead = rng.uniform(*NOD_LEAD, len(phrase.strokes))
        strokes += pulses(num_frames, np.asarray(phrase.strokes) - lead, phrase.amplitudes, 5.0, 8.0)
    _animate_torso_and_head(rng, cues, mood, phrases, strokes, joints)
    joints[:] = still_in_pauses(on_speech_clock(joints, cues.loudness), cues.loudness)


def still_in_pauses(joints: np.ndarray, loudness: np.ndarray) -> np.ndarray:
    """The body comes (almost) to rest in each settled pause (cues.pause_and_speech_frames): over the
    pause's margins the pose eases to the one it has on average in the pause, and out again before the
    speech resumes, so preparations and retractions happen within ~0.3 s of the speech."""
    settled = pause_and_speech_frames(loudness)[0]
    target = joints.copy()
    for start, end in runs(settled):
        target[max(0, start - 8):end + 8] = joints[start:end].mean(0)
    weight = STILLNESS * gaussian_filter1d(binary_dilation(settled, iterations=3).astype(float), 1.5)
    return joints + (target - joints) * weight.reshape(-1, *[1] * (joints.ndim - 1))


def on_speech_clock(joints: np.ndarray, loudness: np.ndarray) -> np.ndarray:
    """The body's motion replayed a little slower over the louder syllables and faster between them.

    Speakers hold still on the loud vowel they stress and move in the quieter moments around it: in
    BEAT2 captures the upper body moves ~10 % slower in the louder half of the frames than in the
    quieter half. The clock's rate follows the loudness's deviation from its local (0.5 s) mean, so
    the warp never drifts far: strokes stay on their syllables within a couple of frames. PACE 0.15
    (corpus v5) gives the clips a loud/quiet speed ratio of 0.88 (median of 120 clips; mean 0.90), the
    calibration take's 0.88; corpus v4's 0.1 gave 0.94, and a model fitted to it moved as much in the
    louder half of real speech as in the quieter (0.95 on the calibration take, README "Realism").
    """
    if PACE == 0 or len(loudness) < 3:
        return joints
    local = loudness - gaussian_filter1d(loudness, PACE_WINDOW)
    rate = np.clip(1.0 - PACE * local / (np.abs(local).mean() + 1e-6), 0.3, 2.0)
    clock = np.concatenate([[0.0], np.cumsum(rate[:-1])])
    clock *= (len(loudness) - 1) / clock[-1]
    flat = joints.reshape(len(joints), -1)
    warped = np.stack([np.interp(clock, np.arange(len(joints)), column) for column in flat.T], -1)
    return warped.reshape(joints.shape)


def _fingers(rng, joints, side: str, curl: np.ndarray, index: np.ndarray, mirror: np.ndarray, energy: float) -> None:
    num_frames = len(curl)
    for finger in FINGERS:
        own = slow_noise(rng, num_frames, 8, FINGER_JITTER * energy)  # (T,) this finger's own play
        amount = np.maximum(1.0 + curl + own + (index if finger == "index" else 0.0), 0.0)
        for k in range(3):
            value = RELAXED_CURL[finger][k] * amount
            # Left fingers curl palm-wards (+x towards -y) about -z; the thumb folds across about +x.
            axis = np.array([1.0, 0.0, 0.0]) if finger == "thumb" else np.array([0.0, 0.0, -1.0])
            joints[:, JOINT[f"{side}_{finger}{k + 1}"]] = value[:, None] * axis * mirror


def _animate_torso_and_head(rng, cues: SpeechCues, mood: float, phrases: list[Phrase], strokes: np.ndarray,
                            joints: np.ndarray) -> None:
    num_frames = len(cues.loudness)
    t = np.arange(num_frames) / FPS
    energy = energy_of(mood)

    # Posture: the torso turns towards the hand that gestures, phrase by phrase; weight shifts every few seconds.
    turn_keys, head_keys = [(0.0, np.zeros(3))], [(0.0, np.zeros(3))]
    for phrase in phrases:
        side = sum(share * (1 if arm == 0 else -1) for arm, share in phrase.arms.items())
        frame = max(phrase.strokes[0] - rng.uniform(6, 14), turn_keys[-1][0] + 4)
        turn_keys.append((frame, np.array([rng.normal(0.0, 0.015), 0.05 * side + rng.normal(0, 0.03),
                                           rng.normal(0, 0.015)]) * energy))
        head_keys.append((frame + rng.uniform(0, 6), np.array([rng.normal(0, 0.06), rng.normal(0, 0.14),
                                                               rng.normal(0, 0.06)]) * energy))
    shift_keys, frame = [(0.0, np.zeros(3))], 0.0
    while frame < num_frames:
        frame += rng.uniform(2.5, 7.0) * FPS
        shift_keys.append((frame, np.array([rng.normal(0, 0.008), rng.normal(0, 0.02), rng.normal(0, 0.012)])))
        shift_keys.append((frame + rng.uniform(0.6, 1.2) * FPS, shift_keys[-1][1]))
    torso = minimum_jerk(num_frames, turn_keys) + minimum_jerk(num_frames, shift_keys)        # (T, 3)
    torso[:, 0] += 0.015 * energy * strokes  # leans into the strokes
    period = rng.uniform(3.5, 5.0) - 0.8 * mood
    breath = np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi))
    lean = LEAN + LEAN_SPREAD * rng.standard_normal(3)
    for k, (name, share) in enumerate((("spine1", 0.4), ("spine2", 0.3), ("spine3", 0.3))):
        sway = np.stack([slow_noise(rng, num_frames, 12, 0.006 * energy) for _ in range(3)], -1)
        joints[:, JOINT[name]] = (TORSO_GAIN * (share * torso + sway) + np.array([0.008, 0, 0]) * breath[:, None]
                                  + np.array([lean[k], 0, 0]))

    # Head: looks about with the phrases, nods on strokes and stressed syllables, never quite still.
    keep = (cues.stress > 0.5) & (rng.random(len(cues.stress)) < 0.25 + 0.4 * mood)
    nods = pulses(num_frames, cues.syllables[keep] - rng.uniform(*NOD_LEAD, keep.sum()),
                  (0.04 + 0.06 * mood) * rng.uniform(0.6, 1.3, keep.sum()), 4, 8)
    head = 1.5 * minimum_jerk(num_frames, head_keys)
    head[:, 0] += nods + 0.03 * strokes
    head += np.stack([slow_noise(rng, num_frames, 20, 0.03 * energy) for _ in range(3)], -1)
    head *= HEAD_GAIN
    level = -0.5 * torso * np.array([1, 0, 1]) - np.array([0.5 * lean.sum(), 0, 0])  # keeps the gaze roughly level
    joints[:, JOINT["neck"]] = 0.4 * head + level
    joints[:, JOINT["head"]] = 0.6 * head
