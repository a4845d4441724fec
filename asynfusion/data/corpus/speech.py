"""Real TTS speech for the built-in corpus: espeak-ng voices, a seeded sentence generator, clip assembly.

A clip is 1-4 spoken sentences with pauses of 0.2-1.5 s between them, at 16 kHz mono. espeak-ng is
called once per sentence, in-process (corpus/phonemes.py) so that each sentence comes with its timed
phonemes; its 22.05 kHz output is resampled with soxr.
"""

import shutil
import subprocess
from dataclasses import dataclass

import numpy as np

from ...audio import SAMPLE_RATE
from ...errors import InputError
from .phonemes import Phoneme, speak

# espeak-ng variants that sound like a person speaking (no whisper, robot or novelty voices).
HUMAN_VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5",
    "adam", "Alex", "Alicia", "Andrea", "Andy", "Annie", "antonio", "aunty", "belinda", "benjamin",
    "boris", "caleb", "david", "Denis", "Diogo", "ed", "edward", "Gene", "gustave", "Henrique", "Hugo",
    "iven", "Jacky", "john", "Lee", "linda", "marcelo", "Marco", "Mario", "max", "Michael", "michel",
    "miguel", "Mike", "Nguyen", "pablo", "paul", "pedro", "quincy", "rob", "robert", "steph", "anika",
    "grandpa", "grandma", "norbert", "sandro", "shelby", "travis", "victor", "zac", "klatt", "klatt2",
)


@dataclass(frozen=True)
class Voice:
    language: str  # espeak-ng English voice (accent): en-us, en-gb-x-rp, ...
    variant: str   # espeak-ng variant (timbre): f3, m2, Andy, ...

    @property
    def espeak_name(self) -> str:
        return f"{self.language}+{self.variant}"

    @property
    def tag(self) -> str:
        """File-name-safe name without '_' (the clip id separator)."""
        return f"{self.language}-{self.variant}".lower().replace("_", "-")


def espeak_binary() -> str:
    path = shutil.which("espeak-ng")
    if path is None:
        raise InputError("espeak-ng is not installed; the built-in corpus needs it (apt-get install espeak-ng)")
    return path


def _voice_files(selector: str) -> list[str]:
    """The File column of `espeak-ng --voices=SELECTOR`."""
    listing = subprocess.run([espeak_binary(), f"--voices={selector}"], capture_output=True, text=True, check=True)
    rows = [line.split() for line in listing.stdout.splitlines()[1:]]
    return [row[4] for row in rows if len(row) >= 5]


def available_voices() -> list[Voice]:
    """Every (English accent, human variant) pair this espeak-ng has; mbrola voices are left out."""
    languages = sorted({f.split("/", 1)[1] for f in _voice_files("en") if f.startswith("gmw/")})
    variants = {f.split("/", 1)[1] for f in _voice_files("variant") if f.startswith("!v/")}
    variants = [v for v in HUMAN_VARIANTS if v in variants]
    if not languages or not variants:
        raise InputError("espeak-ng lists no English voices or variants (is espeak-ng-data installed?)")
    return [Voice(language, variant) for variant in variants for language in languages]


def synthesize(text: str, voice: Voice, rate: int, pitch: int, amplitude: int) -> np.ndarray:
    """One utterance -> float32 mono at 16 kHz, leading/trailing silence trimmed."""
    return speak_timed(text, voice, rate, pitch, amplitude)[0]


def speak_timed(text: str, voice: Voice, rate: int, pitch: int,
                amplitude: int) -> tuple[np.ndarray, list[Phoneme]]:
    """One utterance -> (float32 mono at 16 kHz, silence trimmed; its phonemes, times from the first sample)."""
    import soxr

    espeak_binary()  # the same install check as the voice listing
    pcm, rate_hz, phonemes = speak(text, voice.espeak_name, rate, pitch, amplitude)
    if len(pcm) == 0:
        raise InputError(f"espeak-ng returned no audio for voice {voice.espeak_name}")
    samples = soxr.resample(pcm.astype(np.float32) / 32768.0, rate_hz, SAMPLE_RATE).astype(np.float32)
    loud = np.flatnonzero(np.abs(samples) > 1e-3)
    if not len(loud):
        return samples, []
    offset, end = loud[0] / SAMPLE_RATE, (loud[-1] + 1) / SAMPLE_RATE
    timed = [Phoneme(p.name, round(p.start - offset, 4)) for p in phonemes if offset - 0.05 <= p.start < end]
    return samples[loud[0]:loud[-1] + 1], timed


def phrase_starts(phrases: list[np.ndarray], pauses: list[float], lead: float) -> list[float]:
    """Seconds at which each phrase starts in `assemble(phrases, pauses, lead, ...)`."""
    starts, samples = [], round(lead * SAMPLE_RATE)
    for k, phrase in enumerate(phrases):
        starts.append(samples / SAMPLE_RATE)
        samples += len(phrase) + (round(pauses[k] * SAMPLE_RATE) if k < len(phrases) - 1 else 0)
    return starts


def assemble(phrases: list[np.ndarray], pauses: list[float], lead: float, tail: float) -> np.ndarray:
    """Concatenate phrases with silences: lead, phrase, pause, phrase, ..., tail (seconds)."""
    def silence(seconds):
        return np.zeros(round(seconds * SAMPLE_RATE), np.float32)

    parts = [silence(lead)]
    for k, phrase in enumerate(phrases):
        parts.append(phrase)
        parts.append(silence(pauses[k] if k < len(phrases) - 1 else tail))
    return np.concatenate(parts)


def augment(samples: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Random level (peak -1 to -12 dBFS) and, for half the clips, white noise at 25-50 dB SNR."""
    peak_db = rng.uniform(-12.0, -1.0)
    out = samples / max(np.abs(samples).max(), 1e-6) * 10 ** (peak_db / 20)
    snr_db = None
    if rng.random() < 0.5:
        snr_db = float(rng.uniform(25.0, 50.0))
        speech_power = np.mean(out[np.abs(out) > 1e-4] ** 2) if np.any(np.abs(out) > 1e-4) else 1e-8
        out = out + rng.normal(0.0, np.sqrt(speech_power / 10 ** (snr_db / 10)), len(out))
    return np.clip(out, -1.0, 1.0).astype(np.float32), {"peak_db": round(float(peak_db), 2), "snr_db": snr_db}


# ----------------------------------------------------------------------------
# Sentences: templates x word lists, seeded, never repeated
# ----------------------------------------------------------------------------
WORDS = {
    "person": ["my sister", "our teacher", "the old farmer", "a friend of mine", "my neighbour", "the new manager",
               "my grandfather", "the young doctor", "our coach", "the pilot", "my brother", "the waiter",
               "a stranger", "the mayor", "my cousin", "the baker", "our landlord", "the scientist"],
    "noun": ["garden", "bicycle", "letter", "window", "concert", "bridge", "kitchen", "river", "mountain",
             "report", "castle", "market", "painting", "village", "engine", "library", "camera", "island",
             "festival", "recipe", "ladder", "tunnel", "museum", "sandwich", "telescope", "violin", "harbour"],
    "nouns": ["apples", "tickets", "books", "chairs", "emails", "photos", "lamps", "stories", "boxes", "songs",
              "cookies", "maps", "flowers", "shoes", "candles", "keys", "plans", "questions"],
    "adj": ["tiny", "enormous", "quiet", "bright", "broken", "strange", "beautiful", "ancient", "brand new",
            "dusty", "colourful", "expensive", "simple", "wonderful", "crowded", "empty", "famous", "heavy"],
    "verb": ["fix", "paint", "visit", "describe", "carry", "clean", "explore", "measure", "photograph",
             "finish", "open", "repair", "sell", "borrow", "build", "check", "move", "find"],
    "verbed": ["fixed", "painted", "visited", "described", "carried", "cleaned", "explored", "measured",
               "finished", "opened", "repaired", "sold", "borrowed", "built", "checked", "moved", "found"],
    "place": ["near the station", "behind the house", "in the city centre", "by the sea", "on the hill",
              "at the end of the street", "across the river", "in the old town", "under the trees",
              "next to the school", "in the valley", "on the top floor"],
    "time": ["tomorrow morning", "next week", "on Friday", "before lunch", "after the meeting", "tonight",
             "at the weekend", "in the spring", "by the end of the month", "later today", "on Monday evening"],
    "past": ["yesterday", "last summer", "two weeks ago", "on Sunday", "last night", "a few years ago",
             "this morning", "in the winter", "during the holidays"],
    "opinion": ["amazing", "a little strange", "really important", "completely wrong", "pretty funny",
                "surprisingly easy", "much harder than it looks", "worth trying", "a great idea", "too risky"],
    "topic": ["cooking at home", "learning a new language", "working from home", "travelling by train",
              "getting up early", "playing chess", "growing vegetables", "reading old novels", "running in the rain",
              "taking long walks", "writing letters by hand", "watching the stars"],
    "exclaim": ["Wow", "Oh no", "Well", "Honestly", "Look", "Believe me", "You know", "Seriously", "Okay",
                "Listen", "Hey", "Right"],
    "number": ["two", "three", "four", "five", "six", "seven", "ten", "twelve", "twenty", "a hundred"],
    "feel": ["think", "believe", "feel", "suspect", "am sure", "guess", "would say"],
}

TEMPLATES = [
    "{person} {verbed} the {adj} {noun} {past}.",
    "I think we should {verb} the {noun} {time}.",
    "Have you ever seen such a {adj} {noun} {place}?",
    "{exclaim}, that was the most {adj} {noun} I have ever seen!",
    "When I was young, {person} used to {verb} the {noun} every day.",
    "The {noun} is {adj}, but the {noun2} is even more {adj2}.",
    "Let me tell you about the {noun} we {verbed} {past}.",
    "If you {verb} the {noun} {time}, we can all meet {place2}.",
    "We still need {number} more {nouns} before {time}.",
    "Honestly, I {feel} that {topic} is {opinion}.",
    "{exclaim}, {person} wants to {verb} {number} {nouns} {time}.",
    "Do you remember the {adj} {noun} {place}?",
    "{person} told me that {topic} is {opinion}.",
    "Nobody knew why the {noun} {place} was so {adj}.",
    "Could you please {verb} the {nouns} {time}?",
    "{past}, {person} and I {verbed} a {adj} {noun} {place}.",
    "It is not about the {noun}, it is about {topic}.",
    "I really {feel} that the {adj} {noun} was {opinion}.",
    "{exclaim}! We {verbed} {number} {nouns} {past}, and it was {opinion}.",
    "First we {verbed} the {noun}, then we had to {verb} the {nouns}.",
    "Why would anyone {verb} a {adj} {noun} {place}?",
    "My plan for {time} is simple: {verb} the {noun} and relax.",
    "{person} says {topic} is {opinion}, and I agree.",
    "There is a {adj} {noun} {place}, and it has {number} {nouns}.",
]


class SentenceGenerator:
    """Seeded stream of distinct English sentences (thousands before any template repeats a filling)."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.seen: set[str] = set()

    def _pick(self, key: str) -> str:
        return WORDS[key][self.rng.integers(len(WORDS[key]))]

    def __next__(self) -> str:
        for _ in range(10_000):
            template = TEMPLATES[self.rng.integers(len(TEMPLATES))]
            fill = {key: self._pick(key) for key in WORDS}
            fill.update(noun2=self._pick("noun"), adj2=self._pick("adj"), place2=self._pick("place"))
            sentence = template.format(**fill)
            sentence = sentence[0].upper() + sentence[1:]
            if sentence not in self.seen:
                self.seen.add(sentence)
                return sentence
        raise RuntimeError("sentence generator exhausted")

    def __iter__(self):
        return self
