"""Build the built-in corpus: espeak-ng speech + procedural SMPL-X motion, in the BEAT2 layout.

    out_dir/smplxflame_30/{id}.npz    poses (T,165), expressions (T,100; ARKit slots), 30 fps
    out_dir/wave16k/{id}.wav          16 kHz mono PCM16
    out_dir/train_test_split.csv      id,type (train / val / test)
    out_dir/corpus.json               per clip: sentences, voice, rate, pitch, amplitude, mood, ...

Clip ids follow BEAT2's `{speaker}_{name}_{k}_{k}`; the speaker number is the voice's index (train
voices first, then val, then test). Val and test use voices and sentences that train never hears.
The hidden mood moves face and body together and only nudges rate, pitch and loudness.
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...audio import SAMPLE_RATE
from ...motion import save_motion
from ..baseline import animate
from .phonemes import Phoneme
from .speech import SentenceGenerator, Voice, assemble, augment, available_voices, phrase_starts, speak_timed

CLIPS_PER_VOICE = 20
TEST_FRACTION, VAL_FRACTION = 0.10, 0.05
MIN_SECONDS, MAX_SECONDS = 4.0, 12.0
MAX_PHRASES = 4


@dataclass
class VoiceStyle:
    voice: Voice
    speaker: int
    split: str
    rate: float       # words per minute
    pitch: float      # espeak-ng 0-99
    amplitude: float  # espeak-ng 0-200


@dataclass
class ClipPlan:
    id: str
    split: str
    speaker: int
    voice: str
    mood: float
    rate: int
    pitch: int
    amplitude: int
    candidates: list[tuple[int, str]]  # (sentence id, text) this clip may speak; no other clip shares one
    seed: int


def _split_counts(total: int) -> dict[str, int]:
    test = max(1, round(TEST_FRACTION * total))
    val = max(1, round(VAL_FRACTION * total))
    return {"train": max(1, total - test - val), "val": val, "test": test}


def _voice_styles(num_clips: int, rng: np.random.Generator) -> list[VoiceStyle]:
    pool = available_voices()
    num_voices = min(len(pool), max(3, round(num_clips / CLIPS_PER_VOICE)))
    # Prefer distinct variants (the timbre); the accent is drawn with it.
    by_variant: dict[str, list[Voice]] = {}
    for voice in pool:
        by_variant.setdefault(voice.variant, []).append(voice)
    variants = rng.permutation(sorted(by_variant))
    chosen = [by_variant[v][rng.integers(len(by_variant[v]))] for v in variants[:num_voices]]
    chosen += [v for v in rng.permutation(pool) if v not in chosen][:num_voices - len(chosen)]
    styles, speaker = [], 1
    for split, count in _split_counts(num_voices).items():
        for _ in range(count):
            styles.append(VoiceStyle(chosen[speaker - 1], speaker, split, rate=rng.uniform(135, 185),
                                     pitch=rng.uniform(25, 75), amplitude=rng.uniform(85, 125)))
            speaker += 1
    return styles


def plan_corpus(num_clips: int, seed: int) -> list[ClipPlan]:
    """Every clip's split, voice, prosody, mood and candidate sentences, decided up front."""
    rng = np.random.default_rng(seed)
    styles = _voice_styles(num_clips, rng)
    sentences = SentenceGenerator(seed)
    plans, sentence_id = [], 0
    for split, count in _split_counts(num_clips).items():
        voices = [s for s in styles if s.split == split]
        for k in range(count):
            style = voices[k % len(voices)]
            index = len(plans)
            mood = float(rng.uniform())
            # Mood is audible, as it is in people: faster, higher and louder when excited.
            plans.append(ClipPlan(
                id=f"{style.speaker}_{style.voice.tag}_{k // len(voices)}_{k // len(voices)}", split=split,
                speaker=style.speaker, voice=style.voice.espeak_name, mood=round(mood, 4),
                rate=int(style.rate + 40 * (mood - 0.5) + rng.normal(0, 5)),
                pitch=int(np.clip(style.pitch + 14 * (mood - 0.5) + rng.normal(0, 3), 0, 99)),
                amplitude=int(style.amplitude + 25 * (mood - 0.5)),
                candidates=[(sentence_id + i, next(sentences)) for i in range(MAX_PHRASES + 2)],
                seed=seed * 100_003 + index))
            sentence_id += MAX_PHRASES + 2
    return plans


def render_clip(plan: ClipPlan) -> tuple[np.ndarray, np.ndarray, list[Phoneme], dict]:
    """Speak a planned clip -> (clean speech, augmented speech, its timed phonemes, record for corpus.json)."""
    rng = np.random.default_rng(plan.seed)
    language, variant = plan.voice.split("+")
    voice = Voice(language, variant)
    wanted = int(rng.choice([1, 2, 3, 4], p=[0.15, 0.35, 0.3, 0.2]))
    pauses = [float(rng.uniform(0.2, 1.5)) for _ in plan.candidates]
    lead, tail = float(rng.uniform(0.1, 0.6)), float(rng.uniform(0.2, 0.8))
    phrases, timings, used, seconds = [], [], [], lead + tail
    for sentence_id, text in plan.candidates:
        phrase, phonemes = speak_timed(text, voice, rate=plan.rate + int(rng.integers(-6, 7)),
                            pitch=int(np.clip(plan.pitch + rng.integers(-4, 5), 0, 99)),
                            amplitude=int(plan.amplitude * rng.uniform(0.65, 1.2)))  # some sentences said louder
        added = len(phrase) / SAMPLE_RATE + (pauses[len(used) - 1] if used else 0.0)
        if used and seconds + added > MAX_SECONDS:
            break  # the next sentence would overrun the clip
        phrases.append(phrase)
        timings.append(phonemes)
        used.append(sentence_id)
        seconds += added
        if len(used) >= wanted and seconds >= MIN_SECONDS:
            break
    pauses = pauses[:len(phrases) - 1]
    clean = assemble(phrases, pauses, lead, tail)
    phonemes = [Phoneme(p.name, p.start + start)
                for start, timed in zip(phrase_starts(phrases, pauses, lead), timings) for p in timed]
    noisy, level = augment(clean, rng)
    record = {"id": plan.id, "split": plan.split, "speaker": plan.speaker, "voice": plan.voice,
              "rate": plan.rate, "pitch": plan.pitch, "amplitude": plan.amplitude, "mood": plan.mood,
              "sentence_ids": used, "pauses": [round(p, 3) for p in pauses], "lead": round(lead, 3),
              "tail": round(tail, 3), "seconds": round(len(clean) / SAMPLE_RATE, 3), **level, "seed": plan.seed}
    return clean, noisy, phonemes, record


def _make_one(plan: ClipPlan, out_dir: Path) -> dict:
    import soundfile

    clean, noisy, phonemes, record = render_clip(plan)
    # Motion follows the clean speech (the noise floor is a recording artefact, not something said)
    # and the phonemes espeak-ng spoke.
    motion = animate(clean, seed=plan.seed, mood=plan.mood, phonemes=phonemes)
    motion.metadata = {"sampler": "corpus", "seed": plan.seed, "mood": plan.mood}
    save_motion(out_dir / "smplxflame_30" / f"{plan.id}.npz", motion)
    wav = out_dir / "wave16k" / f"{plan.id}.wav"
    soundfile.write(wav, noisy, SAMPLE_RATE, subtype="PCM_16")
    record["frames"] = motion.num_frames
    return record


def make_corpus(out_dir: str | os.PathLike, num_clips: int = 600, seed: int = 0, progress: bool = True) -> Path:
    """Write the built-in corpus to `out_dir` in the BEAT2 layout; returns `out_dir`.

    Deterministic for a seed. About 9 s of speech per clip; the default 600 clips (~90 min of audio)
    take under a minute on one core. `corpus.json` is written last: its presence marks a finished corpus.
    """
    from tqdm import tqdm

    out_dir = Path(out_dir)
    (out_dir / "smplxflame_30").mkdir(parents=True, exist_ok=True)
    (out_dir / "wave16k").mkdir(parents=True, exist_ok=True)
    (out_dir / "corpus.json").unlink(missing_ok=True)
    plans = plan_corpus(num_clips, seed)
    records = [_make_one(plan, out_dir) for plan in tqdm(plans, disable=not progress, desc="corpus", unit="clip")]

    with open(out_dir / "train_test_split.csv", "w") as f:
        f.write("id,type\n" + "".join(f"{r['id']},{r['split']}\n" for r in records))
    texts = {i: text for plan in plans for i, text in plan.candidates}
    used = sorted({i for r in records for i in r["sentence_ids"]})
    voices = sorted({(r["speaker"], r["voice"], r["split"]) for r in records})
    corpus = {
        "format": "asynfusion-corpus/2", "expression_space": "arkit", "fps": 30, "sample_rate": SAMPLE_RATE,
        "seed": seed, "num_clips": len(records), "seconds": round(sum(r["seconds"] for r in records), 2),
        "voices": [{"speaker": s, "voice": v, "split": split} for s, v, split in voices],
        "sentences": {str(i): texts[i] for i in used}, "clips": records,
    }
    tmp = out_dir / "corpus.json.tmp"
    tmp.write_text(json.dumps(corpus, indent=1))
    os.replace(tmp, out_dir / "corpus.json")
    return out_dir
