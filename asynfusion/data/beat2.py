"""Training data: BEAT2-layout folders (real BEAT2 or the built-in corpus) -> fixed-length windows.

    root/train_test_split.csv        id,type (train / val / test; other types and columns are kept/ignored)
    root/smplxflame_30/{id}.npz      SMPL-X poses + expressions at 30 fps (`motion.load_motion`)
    root/wave16k/{id}.wav            the speech
    root/corpus.json                 only in the built-in corpus: says expression_space "arkit"

A window is `window` consecutive frames of (expression, gesture, audio features), the features the
model reads (`motion.motion_to_features`, `audio.audio_features`). Windows are cached as one .npz per
(split, window, stride, coefficients, encoder) so a training restart does not recompute audio features.
"""

import csv
import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from ..audio import audio_features, load_audio, num_motion_frames
from ..errors import InputError
from ..motion import Motion, load_motion, motion_to_features
from .corpus.cues import loudness_envelope, pause_and_speech_frames

CACHE_VERSION = 2  # bump when window contents change, so stale caches are not reused


@dataclass
class Clip:
    id: str
    speaker: int         # BEAT2's first id field ("2_scott_0_1_1" -> 2); 0 when it is not a number
    motion: Motion
    samples: np.ndarray  # (num_samples,) float32, 16 kHz mono


@dataclass
class Windows:
    expression: np.ndarray  # (N, window, 6 + K) float32
    gesture: np.ndarray     # (N, window, 258) float32
    audio: np.ndarray       # (N, window, A) float32
    speaker: np.ndarray     # (N,) int64
    pause: np.ndarray       # (N, window) bool: settled pauses of the speech (corpus/cues.py), weighed in training
    clip: np.ndarray        # (N,) int64, index into clip_ids
    clip_ids: np.ndarray    # (num_clips,) str

    def __len__(self) -> int:
        return len(self.expression)


def speaker_of(clip_id: str) -> int:
    head = clip_id.split("_", 1)[0]
    return int(head) if head.isdigit() else 0


def read_split(root: str | os.PathLike) -> dict[str, list[str]]:
    """train_test_split.csv -> {type: [ids in file order]}; every type in the file is a key."""
    path = Path(root) / "train_test_split.csv"
    if not path.is_file():
        raise InputError(f"no train_test_split.csv in {root} (expected a BEAT2-layout folder)")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"id", "type"} <= {name.strip() for name in reader.fieldnames}:
            raise InputError(f"{path} needs 'id' and 'type' columns, got {reader.fieldnames}")
        split: dict[str, list[str]] = {}
        for row in reader:
            row = {key.strip(): (value or "").strip() for key, value in row.items() if key}
            if row["id"]:
                split.setdefault(row["type"], []).append(row["id"])
    return split


def expression_space(root: str | os.PathLike) -> str:
    """What the expression coefficients mean: corpus.json's "expression_space", else BEAT2's "flame"."""
    manifest = Path(root) / "corpus.json"
    if manifest.is_file():
        return json.loads(manifest.read_text()).get("expression_space", "flame")
    return "flame"


def _split_ids(root: Path, split: str) -> list[str]:
    splits = read_split(root)
    if split not in splits:
        raise InputError(f"split '{split}' not in {root / 'train_test_split.csv'} (has: {', '.join(splits)})")
    return splits[split]


def _files(root: Path, clip_id: str) -> tuple[Path, Path]:
    return root / "smplxflame_30" / f"{clip_id}.npz", root / "wave16k" / f"{clip_id}.wav"


def iter_clips(root: str | os.PathLike, split: str) -> Iterator[Clip]:
    """Clips of a split one at a time (all of BEAT2's audio would not fit in memory at once).

    Ids whose .npz or .wav is missing are skipped, with one warning giving the count.
    """
    root = Path(root)
    ids = _split_ids(root, split)
    missing = [i for i in ids if not all(p.is_file() for p in _files(root, i))]
    skip = set(missing)
    if missing:
        warnings.warn(f"{len(missing)} of {len(ids)} '{split}' clips in {root} skipped: missing .npz or .wav "
                      f"(first: {missing[0]})", stacklevel=2)
    space = expression_space(root)
    for clip_id in ids:
        if clip_id in skip:
            continue
        motion_path, wav_path = _files(root, clip_id)
        motion = load_motion(motion_path)
        motion.expression_space = space
        yield Clip(clip_id, speaker_of(clip_id), motion, load_audio(wav_path, max_seconds=float("inf")))


def load_clips(root: str | os.PathLike, split: str) -> list[Clip]:
    return list(iter_clips(root, split))


def build_windows(clips: Iterable[Clip], window: int = 64, stride: int = 20, expression_coeffs: int = 100,
                  encoder: str = "mel") -> Windows:
    """Cut each clip into `window`-frame windows every `stride` frames; clips shorter than a window add none."""
    expression, gesture, audio, speaker, pause, clip_index, clip_ids = [], [], [], [], [], [], []
    for index, clip in enumerate(clips):
        clip_ids.append(clip.id)
        # Motion and audio may differ by a few frames in BEAT2: keep the frames both cover.
        num_frames = min(clip.motion.num_frames, num_motion_frames(len(clip.samples)))
        if num_frames < window:
            continue
        clip_expression, clip_gesture = motion_to_features(clip.motion, expression_coeffs)
        clip_audio = audio_features(clip.samples, num_frames, encoder=encoder)           # (T, A)
        clip_pause = pause_and_speech_frames(loudness_envelope(clip.samples, num_frames))[0]
        starts = range(0, num_frames - window + 1, stride)
        expression.append(np.stack([clip_expression[s:s + window] for s in starts]))
        gesture.append(np.stack([clip_gesture[s:s + window] for s in starts]))
        audio.append(np.stack([clip_audio[s:s + window] for s in starts]))
        speaker.append(np.full(len(starts), clip.speaker, np.int64))
        pause.append(np.stack([clip_pause[s:s + window] for s in starts]))
        clip_index.append(np.full(len(starts), index, np.int64))
    if not expression:
        raise InputError(f"no clip is at least {window} frames long; nothing to train on")
    return Windows(np.concatenate(expression).astype(np.float32), np.concatenate(gesture).astype(np.float32),
                   np.concatenate(audio).astype(np.float32), np.concatenate(speaker), np.concatenate(pause),
                   np.concatenate(clip_index),
                   np.array(clip_ids))


def _cache_key(root: Path, split: str, window: int, stride: int, expression_coeffs: int, encoder: str) -> str:
    """Hash of the arguments and of the split's files (size, mtime), so edited data is recomputed."""
    listing = []
    for clip_id in _split_ids(root, split):
        for path in _files(root, clip_id):
            stat = path.stat() if path.is_file() else None
            listing.append(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}" if stat else f"{path.name}:-")
    text = json.dumps([CACHE_VERSION, str(root.resolve()), split, window, stride, expression_coeffs, encoder,
                       listing])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_windows(root: str | os.PathLike, split: str, window: int = 64, stride: int = 20,
                 expression_coeffs: int = 100, encoder: str = "mel",
                 cache_dir: str | os.PathLike | None = None) -> Windows:
    """`build_windows` over a split, cached in `cache_dir` (default `root/.cache`) as one .npz.

    A folder that cannot be written (e.g. a read-only dataset) just means no cache.
    """
    root = Path(root)
    cache_dir = root / ".cache" if cache_dir is None else Path(cache_dir)
    key = _cache_key(root, split, window, stride, expression_coeffs, encoder)
    path = cache_dir / f"windows-{split}-w{window}-s{stride}-k{expression_coeffs}-{key}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as data:
            return Windows(**{f.name: data[f.name] for f in fields(Windows)})
    windows = build_windows(iter_clips(root, split), window, stride, expression_coeffs, encoder)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".npz", dir=cache_dir, prefix=".tmp-")
        os.close(fd)
        try:
            np.savez(tmp, **{f.name: getattr(windows, f.name) for f in fields(Windows)})
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
    except OSError as error:
        warnings.warn(f"window cache not written to {cache_dir}: {error}", stacklevel=2)
    return windows
