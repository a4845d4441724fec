"""What the app does, without the UI: check the speech, generate, render, time it, tidy up.

app.py lays out the page and calls `generate` and `compare`; each returns file paths and tables.
Bad input raises InputError with a one-line message, which the app shows as it is. Nothing here
imports Gradio, so these handlers are tested directly.

Each request writes into its own folder under Settings.work_dir; folders older than
Settings.keep_seconds are removed when a later request starts, and a failed request's folder at
once. Rendering holds a lock: each render makes its own OpenGL context, and two at a time would only
share the same rasteriser. On a ZeroGPU Space only the sampling itself asks for a GPU.
"""

import contextlib
import hashlib
import importlib.util
import math
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .audio import MIN_SECONDS, SAMPLE_RATE, AudioTooLong, AudioTooShort, load_audio
from .errors import InputError
from .settings import Settings, on_space

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "assets" / "examples"
PAPER_URL = "https://arxiv.org/abs/2505.15058"
SAMPLER_NAMES = {"ddim": "DDIM", "sync-lcm": "sync LCM", "async-lcm": "async LCM"}
COMPARED = ("ddim", "sync-lcm", "async-lcm")  # each at its paper step counts: 25/25, 8/8, 4/8
BASELINE = "rule-based"
TIMING_COLUMNS = ["measure", "value"]
COMPARE_COLUMNS = ["sampler", "steps E/G", "NFE E", "NFE G", "seconds E", "seconds G", "seconds total", "GFLOPs",
                   "real-time factor", "speed-up vs DDIM"]
CHART_ORDER = ["DDIM 25/25", "sync LCM 8/8", "async LCM 4/8", "rule-based baseline"]  # the bar chart's x order
MAX_DDIM_STEPS = 100
MAX_SEED = 2**31 - 1
SILENCE_DBFS = -50.0  # the loudest 20 ms of speech is far above this; a muted microphone stays below

Progress = Callable[..., object]  # progress(fraction, desc=text); a gr.Progress fits


def _no_progress(fraction: float, desc: str | None = None) -> None:
    pass


# ----------------------------------------------------------------------------
# The model, loaded once per (checkpoint, precision); sampling is the only GPU work
# ----------------------------------------------------------------------------
_PIPELINES: dict[tuple, object] = {}
_PIPELINE_LOCK = threading.Lock()
_RENDER_LOCK = threading.Lock()


def load_pipeline(settings: Settings):
    """The Pipeline for these settings, loaded on first use and kept."""
    from .pipeline import Pipeline

    key = (settings.checkpoint, settings.precision)
    with _PIPELINE_LOCK:
        if key not in _PIPELINES:
            pipeline = Pipeline(settings.checkpoint, settings.precision)
            pipeline.features(np.zeros(SAMPLE_RATE, np.float32))  # librosa compiles on first use: now, not in a request
            _PIPELINES[key] = pipeline
        return _PIPELINES[key]


def _on_gpu(function):
    """On a Hugging Face Space with the `spaces` package (ZeroGPU), hold a GPU only while `function`
    runs; anywhere else, `function` itself. Its arguments and result are plain data, as ZeroGPU needs."""
    if on_space() and importlib.util.find_spec("spaces") is not None:
        import spaces

        return spaces.GPU(function)
    return function


@_on_gpu
def _sample(settings: Settings, samples: np.ndarray, features: np.ndarray, sampler: str, steps: tuple[int, int],
            seed: int, speaker: int):
    return load_pipeline(settings).generate(samples, sampler, *steps, seed=seed, speaker=speaker, features=features)


# ----------------------------------------------------------------------------
# Checking the request
# ----------------------------------------------------------------------------
@dataclass
class Speech:
    samples: np.ndarray  # 16 kHz mono float32
    path: Path           # what the video's sound track is made from: the file itself, or its first cap seconds
    trimmed: bool

    @property
    def seconds(self) -> float:
        return len(self.samples) / SAMPLE_RATE


def loudest_dbfs(samples: np.ndarray, window: int = SAMPLE_RATE // 50) -> float:
    """Level of the loudest 20 ms, in dB relative to full scale."""
    frames = samples[: len(samples) // window * window].reshape(-1, window) if len(samples) >= window else samples[None]
    rms = float(np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1)).max())
    return 20 * math.log10(max(rms, 1e-10))


def trim_label(cap: float) -> str:
    """The checkbox that cuts long audio to the cap (the refusal message names it)."""
    return f"Use only the first {cap:g} s of longer audio"


def read_speech(audio_path: str | Path | None, settings: Settings, trim: bool, folder: Path) -> Speech:
    """Load and check the visitor's audio: present, decodable, long enough, within the cap (or cut to
    it when `trim`), not silent."""
    if not audio_path:
        raise InputError("No audio: upload a file, record with the microphone, or pick an example.")
    path = Path(audio_path)
    cap = settings.max_seconds
    try:
        samples = load_audio(path, max_seconds=cap)  # a long file is refused from its header, before decoding
        trimmed = False
    except AudioTooLong as error:
        if not trim:
            length = f"is {error.seconds:.1f} s long," if error.seconds is not None else "runs"
            raise InputError(f"The audio {length} past the {cap:g} s limit: tick '{trim_label(cap)}' "
                             "(trim=True in the API), or upload a shorter clip.") from None
        samples = load_audio(path, max_seconds=cap, trim=True)[: int(cap * SAMPLE_RATE)]  # decodes the start only
        trimmed = True
    except AudioTooShort as error:
        raise InputError(f"The recording is only {error.seconds:.2f} s long: record or upload at least "
                         f"{MIN_SECONDS:g} s of speech.") from None
    if trimmed:
        import soundfile

        path = folder / "speech.wav"
        soundfile.write(path, samples, SAMPLE_RATE, subtype="PCM_16")
    level = loudest_dbfs(samples)
    if level < SILENCE_DBFS:
        raise InputError(f"The audio is silent (its loudest moment is {level:.0f} dBFS): check the microphone, "
                         "or pick a clip with speech.")
    return Speech(samples, path, trimmed)


def check_steps(sampler: str, steps_expression: float | None, steps_gesture: float | None) -> tuple[int, int]:
    """Steps per branch; 0 or empty means the sampler's own (25/25, 8/8, 4/8)."""
    from .diffusion.sampler import LCM_SOLVER_STEPS, SAMPLERS

    if sampler not in SAMPLERS:
        raise InputError(f"Unknown sampler {sampler!r}: choose one of {', '.join(SAMPLERS)}.")
    rule, *defaults = SAMPLERS[sampler]
    steps = []
    for branch, value, default in zip(("expression", "gesture"), (steps_expression, steps_gesture), defaults):
        value = 0 if value is None else value
        if value != int(value):
            raise InputError(f"{branch} steps must be a whole number, got {value}")
        value = int(value) or default
        limit = LCM_SOLVER_STEPS[branch] if rule == "lcm" else MAX_DDIM_STEPS
        if not 1 <= value <= limit:
            raise InputError(f"{branch} steps must be 1-{limit} for {SAMPLER_NAMES[sampler]} "
                             f"(0 = its default, {default}), got {value}")
        steps.append(value)
    return steps[0], steps[1]


def check_seed(seed: float | None) -> int:
    seed = 0 if seed is None else seed
    if seed != int(seed) or not 0 <= seed <= MAX_SEED:
        raise InputError(f"The seed must be a whole number from 0 to {MAX_SEED}, got {seed}")
    return int(seed)


def speaker_count(settings: Settings) -> int:
    """Speaker styles the checkpoint learned (0: none to choose from)."""
    return load_pipeline(settings).config.num_speakers


def check_speaker(settings: Settings, speaker: float | None) -> int:
    count = speaker_count(settings)
    speaker = int(speaker or 0)
    if speaker and not 0 <= speaker < count:
        limit = f"0-{count - 1}" if count else "0 (this checkpoint has no speaker styles)"
        raise InputError(f"The speaker must be {limit}, got {speaker}")
    return speaker


# ----------------------------------------------------------------------------
# Request folders
# ----------------------------------------------------------------------------
def remove_old_requests(settings: Settings) -> int:
    """Delete request folders older than keep_seconds; how many went."""
    cutoff = time.time() - settings.keep_seconds
    removed = 0
    for folder in settings.work_dir.glob("request-*"):
        with contextlib.suppress(FileNotFoundError):
            if folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
    return removed


@contextlib.contextmanager
def request_folder(settings: Settings) -> Iterator[Path]:
    """A fresh folder for one request's files: kept on success (the UI fetches them), removed on failure."""
    settings.work_dir.mkdir(parents=True, exist_ok=True)
    remove_old_requests(settings)
    folder = Path(tempfile.mkdtemp(prefix="request-", dir=settings.work_dir))
    try:
        yield folder
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    finally:
        release_memory()


def release_memory() -> None:
    """Hand the request's freed memory back to the OS. A request allocates a few hundred MB of
    short-lived arrays (audio, features, vertices, frames); glibc keeps freed blocks in its arenas,
    so without this a long-running app's resident size creeps up by 100-250 MB after a busy moment."""
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # glibc only; elsewhere nothing to do


def _render(motions, speech: Speech, out: Path, labels: list[str], settings: Settings, size: int,
            progress: Progress, start: float) -> dict:
    """Render under the lock; progress runs from `start` to 1 over the frames."""
    from .render import render_video

    def frame_done(done: int, total: int) -> None:
        if done == total or done % max(1, total // 50) == 0:
            progress(start + (1 - start) * done / total, desc=f"rendering frame {done} of {total}")

    with _RENDER_LOCK:
        return render_video(motions, str(speech.path), out, labels=labels, body_path=settings.body, size=size,
                            progress=frame_done)


# ----------------------------------------------------------------------------
# What the page shows
# ----------------------------------------------------------------------------
def steps_label(sampler: str, steps: tuple[int, int]) -> str:
    return f"{SAMPLER_NAMES[sampler]} {steps[0]}/{steps[1]}"


def provenance(settings: Settings) -> str:
    """The checkpoint's own account of itself (config.json's trained_on and description), in Markdown."""
    checkpoint = load_pipeline(settings).checkpoint
    trained_on = checkpoint.info.get("trained_on", "untrained")
    description = checkpoint.info.get("description", "").strip().rstrip(".")
    name = checkpoint.path.name if checkpoint.path else "in-memory"
    text = f"**Checkpoint** `{name}`, trained on: **{trained_on}**." + (f" {description}." if description else "")
    if not checkpoint.trained:
        text = ("⚠️ " + text + " Its motion is noise: it only shows that speech goes in and a rendered, timed "
                "avatar comes out. Timings are real; the motion is not.")
    return text


def about(settings: Settings) -> str:
    """The page's introduction: the method, the samplers, the paper, and where the weights come from."""
    return f"""# AsynFusion: speech to a talking, gesturing SMPL-X avatar

A dual-branch diffusion transformer generates **facial expressions** and **body and hand gestures** from
speech, in parallel; after every block a cooperative-synchronization (CoSync) layer lets each branch read
the other, so the face and the hands stay in step. The motion is SMPL-X parameters in the BEAT2 layout,
rendered here on a free stand-in human. Paper: [AsynFusion (Zhang et al., 2025)]({PAPER_URL}).

**Samplers.** *DDIM 25/25*: the diffusion model, 25 denoising steps per branch. *Sync LCM 8/8*: a distilled
latent-consistency model, 8 steps per branch. *Async LCM 4/8* (the paper's choice): the face needs fewer
steps than the body, so the expression branch steps 4 times while the gesture branch steps 8, reading the
face's latest features in between. **Compare** runs all three on your clip and times each branch.

{provenance(settings)} This demo's weights come from the project's built-in corpus (synthetic speech with
procedural motion), not from BEAT2."""


def example_paths() -> list[str]:
    return [str(path) for path in sorted(EXAMPLES_DIR.glob("*.wav"))]


def examples_cache_dir(settings: Settings) -> Path:
    """A folder for Gradio's cached example results named after everything they depend on, so a new
    checkpoint, body or video size gets fresh results instead of stale ones."""
    pipeline = load_pipeline(settings)  # the precision that runs here, not the setting ("auto")
    digest = hashlib.sha256(f"{settings.body}|{settings.render_size}|{pipeline.precision}".encode())
    checkpoint_dir = pipeline.checkpoint.path
    for path in sorted(checkpoint_dir.iterdir()) + [Path(p) for p in example_paths()]:
        if path.is_file():
            digest.update(path.name.encode() + path.read_bytes())
    return Path(".gradio") / "cached_examples" / f"asynfusion-{digest.hexdigest()[:12]}"


def timing_table(report, features_seconds: float, render: dict, precision) -> pd.DataFrame:
    """Generate's timing panel: the precision and why, network evaluations and seconds per branch,
    generation, rendering, audio."""
    s = report.sampling
    generation = features_seconds + report.seconds_total
    rows = [
        ("precision", str(precision)),
        ("sampling threads (cores not busy with other work)", report.threads),
        ("expression branch: network evaluations", s.nfe_expression),
        ("expression branch: seconds", round(s.seconds_expression, 3)),
        ("gesture branch: network evaluations", s.nfe_gesture),
        ("gesture branch: seconds", round(s.seconds_gesture, 3)),
        ("audio features: seconds", round(features_seconds, 3)),
        ("generation in all: seconds", round(generation, 3)),
        (f"rendering {render['frames']} frames: seconds", round(render["seconds"], 2)),
        ("audio length: seconds", round(report.audio_seconds, 2)),
        ("real-time factor (generation / audio length)", round(generation / report.audio_seconds, 4)),
    ]
    return pd.DataFrame(rows, columns=TIMING_COLUMNS, dtype=object)


@dataclass
class GenerateResult:
    video: str           # mp4: the avatar with the speech
    motion: str          # npz: SMPL-X motion, BEAT2 layout
    timings: pd.DataFrame
    note: str            # Markdown: what ran, and the checkpoint's provenance


@dataclass
class CompareResult:
    video: str           # mp4: every sampler's avatar side by side
    table: pd.DataFrame  # one row per sampler (the paper's Table 3 for this clip)
    chart: pd.DataFrame  # long form for a stacked bar chart: sampler, part, seconds
    note: str


# ----------------------------------------------------------------------------
# The two actions
# ----------------------------------------------------------------------------
def _speech_and_features(audio_path, settings: Settings, trim: bool, folder: Path, progress: Progress,
                         description: str) -> tuple[Speech, np.ndarray, float]:
    """Read and check the speech, then its audio features: (speech, features, feature seconds)."""
    progress(0.0, desc="reading the audio")
    speech = read_speech(audio_path, settings, trim, folder)
    pipeline = load_pipeline(settings)
    progress(0.04, desc=description)
    started = time.perf_counter()
    features = pipeline.features(speech.samples)
    return speech, features, time.perf_counter() - started


def generate(audio_path: str | Path | None, sampler: str = "async-lcm", steps_expression: float | None = 0,
             steps_gesture: float | None = 0, seed: float | None = 0, trim: bool = False, speaker: float | None = 0,
             settings: Settings | None = None, progress: Progress | None = None) -> GenerateResult:
    """Speech -> the avatar video, the motion .npz, a timing table and a note. Steps 0 = the sampler's own."""
    settings = settings or Settings.from_env()
    progress = progress or _no_progress
    steps = check_steps(sampler, steps_expression, steps_gesture)
    seed, speaker = check_seed(seed), check_speaker(settings, speaker)
    with request_folder(settings) as folder:
        speech, features, features_seconds = _speech_and_features(audio_path, settings, trim, folder, progress,
                                                                  "audio features")
        progress(0.1, desc=f"sampling with {steps_label(sampler, steps)}")
        motion, report = _sample(settings, speech.samples, features, sampler, steps, seed, speaker)
        from .motion import save_motion

        motion_path = folder / f"motion_{sampler}_{steps[0]}-{steps[1]}_seed{seed}.npz"
        save_motion(motion_path, motion)
        generation = features_seconds + report.seconds_total
        label = f"{steps_label(sampler, steps)}: {generation:.2f} s"
        progress(0.3, desc="rendering")
        video_path = folder / "avatar.mp4"
        render = _render([motion], speech, video_path, [label], settings, settings.render_size, progress, 0.3)
    cut = f" (its first {settings.max_seconds:g} s)" if speech.trimmed else ""
    note = (f"{steps_label(sampler, steps)} steps, seed {seed}, on {speech.seconds:.1f} s of speech{cut}: generated "
            f"in {generation:.2f} s ({load_pipeline(settings).precision.name}), rendered in {render['seconds']:.1f} s."
            f"\n\n{provenance(settings)}")
    return GenerateResult(str(video_path), str(motion_path), timing_table(report, features_seconds, render,
                                                                       load_pipeline(settings).precision), note)


def compare(audio_path: str | Path | None, seed: float | None = 0, trim: bool = False, baseline: bool = False,
            speaker: float | None = 0, settings: Settings | None = None,
            progress: Progress | None = None) -> CompareResult:
    """DDIM 25/25, sync LCM 8/8 and async LCM 4/8 (and the rule-based baseline) on the same speech and
    seed: one side-by-side video, a table and the bar chart's data."""
    from .diffusion.sampler import SAMPLERS

    settings = settings or Settings.from_env()
    progress = progress or _no_progress
    seed, speaker = check_seed(seed), check_speaker(settings, speaker)
    with request_folder(settings) as folder:
        speech, features, features_seconds = _speech_and_features(audio_path, settings, trim, folder, progress,
                                                                  "audio features (shared by every sampler)")
        runs = list(COMPARED) + ([BASELINE] if baseline else [])
        motions, labels, rows = [], [], []
        for i, name in enumerate(runs):
            fraction = 0.05 + 0.45 * i / len(runs)
            if name == BASELINE:
                progress(fraction, desc="rule-based baseline")
                from .corpus.animate import animate

                started = time.perf_counter()
                motion = animate(speech.samples, seed=seed)
                seconds = time.perf_counter() - started
                row = {"sampler": "rule-based baseline", "steps E/G": "-", "NFE E": 0, "NFE G": 0,
                       "seconds E": 0.0, "seconds G": 0.0, "seconds total": round(seconds, 3),
                       "GFLOPs": 0.0}
                label = f"rule-based: {seconds:.2f} s"
            else:
                steps = SAMPLERS[name][1:]
                progress(fraction, desc=f"sampling with {steps_label(name, steps)}")
                motion, report = _sample(settings, speech.samples, features, name, steps, seed, speaker)
                s = report.sampling
                row = {"sampler": SAMPLER_NAMES[name], "steps E/G": f"{steps[0]}/{steps[1]}",
                       "NFE E": s.nfe_expression, "NFE G": s.nfe_gesture,
                       "seconds E": round(s.seconds_expression, 3),
                       "seconds G": round(s.seconds_gesture, 3),
                       "seconds total": round(report.seconds_total, 3), "GFLOPs": round(s.gflops, 1)}
                label = f"{steps_label(name, steps)}: {report.seconds_total:.2f} s"
            motions.append(motion)
            labels.append(label)
            rows.append(row)
        progress(0.5, desc="rendering side by side")
        video_path = folder / "compare.mp4"
        render = _render(motions, speech, video_path, labels, settings, settings.compare_size, progress, 0.5)
    table = pd.DataFrame(rows)
    table["real-time factor"] = (table["seconds total"] / speech.seconds).round(4)
    ddim = table["seconds total"].iloc[0]
    table["speed-up vs DDIM"] = (ddim / table["seconds total"].clip(lower=1e-9)).round(2)
    table = table[COMPARE_COLUMNS]
    chart = comparison_chart(table)
    cut = f" (its first {settings.max_seconds:g} s)" if speech.trimmed else ""
    note = (f"Same {speech.seconds:.1f} s of speech{cut} and seed {seed} for every sampler; E = expression branch, "
            f"G = gesture branch, NFE = network evaluations. The audio features "
            f"({features_seconds:.2f} s) are computed once and shared, so they are not in the per-sampler times. "
            f"{len(motions)} avatars rendered in one video: {render['frames']} frames in {render['seconds']:.1f} s."
            f"\n\n{provenance(settings)}")
    return CompareResult(str(video_path), table, chart, note)


def comparison_chart(table: pd.DataFrame) -> pd.DataFrame:
    """Seconds per sampler split into expression branch, gesture branch and the rest (stitching, the
    shared audio encoder, the baseline's whole run): long form, one row per bar segment."""
    rows = []
    for _, row in table.iterrows():
        name = f"{row['sampler']} {row['steps E/G']}".removesuffix(" -")
        rest = row["seconds total"] - row["seconds E"] - row["seconds G"]
        for part, seconds in (("expression branch", row["seconds E"]),
                              ("gesture branch", row["seconds G"]), ("other", max(rest, 0.0))):
            rows.append({"sampler": name, "part": part, "seconds": round(float(seconds), 3)})
    return pd.DataFrame(rows)
