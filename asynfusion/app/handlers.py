"""What the app does, without the UI: check the speech, generate, render, time it, tidy up.

app.py lays out the page and calls `generate_steps` (the page's Generate: the 3D player's files as soon
as the motion is made, then the video), `generate` (the API's: everything at the end) and `compare`;
each gives file paths and tables. Bad input raises InputError with a one-line message, which the app
shows as it is. Nothing here imports Gradio, so these handlers are tested directly.

Each request writes into its own folder (folders.py), removed at once if the request fails. The videos are
rendered in rendering.py. On a ZeroGPU Space only the sampling itself asks for a GPU.
"""

import contextlib
import importlib.util
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..audio import MIN_SECONDS, SAMPLE_RATE, AudioTooLong, AudioTooShort, load_audio
from ..diffusion.registry import DEFAULT_SAMPLER, SAMPLERS
from ..errors import InputError
from ..request import MAX_SEED, Request, check_whole
from ..settings import Settings, on_space
from . import background, rendering, texts
from .animations import Animations
from .folders import request_folder
from .rendering import Progress, no_progress

PLAYER_BODY = "avatar-standing.glb"  # in Settings.work_dir: the 3D player's body, the same for every result
SILENCE_DBFS = -50.0  # the loudest 20 ms of speech is far above this; a muted microphone stays below


# ----------------------------------------------------------------------------
# The model, loaded once per (checkpoint, precision); sampling is the only GPU work
# ----------------------------------------------------------------------------
_PIPELINES: dict[tuple, object] = {}
_PIPELINE_LOCK = threading.Lock()


def load_pipeline(settings: Settings):
    """The Pipeline for these settings, loaded on first use and kept."""
    from ..pipeline import Pipeline

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
def _sample(settings: Settings, request: Request, features: np.ndarray):
    return load_pipeline(settings).generate(request, features=features)


def warm_up(settings: Settings) -> Path:
    """Run at launch what the first Generate would otherwise wait for (torch's first sampling, loading the
    body and the exporter: seconds on a busy machine), and write the body standing still as .glb, which
    the page's 3D player loads before any result and keeps for every result: its path."""
    from . import exports

    pipeline = load_pipeline(settings)
    # on ZeroGPU, sampling runs only inside a request: there the body stands in the T-pose
    motion = None if on_space() else pipeline.generate(Request(np.zeros(SAMPLE_RATE, np.float32)))[0]
    return exports.standing_body(motion, pipeline.config.expression_space, settings.work_dir / PLAYER_BODY,
                                 settings.body)


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
            raise InputError(f"The audio {length} past the {cap:g} s limit: tick '{texts.trim_label(cap)}' "
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


def speaker_count(settings: Settings) -> int:
    """Speaker styles the checkpoint learned (0: none to choose from)."""
    return load_pipeline(settings).config.num_speakers


def check_speaker(settings: Settings, speaker: float | None) -> int:
    count = speaker_count(settings)
    speaker = check_whole(speaker, "The speaker", 0, MAX_SEED)
    if speaker and not 0 <= speaker < count:
        limit = f"0-{count - 1}" if count else "0 (this checkpoint has no speaker styles)"
        raise InputError(f"The speaker must be {limit}, got {speaker}")
    return speaker


# ----------------------------------------------------------------------------
# What the page shows (the words are in texts.py)
# ----------------------------------------------------------------------------
def about(settings: Settings) -> str:
    """The page's introduction, with the loaded checkpoint's provenance."""
    return texts.about(load_pipeline(settings).checkpoint)


def provenance(settings: Settings) -> str:
    return texts.provenance(load_pipeline(settings).checkpoint)


@dataclass
class GenerateResult:
    video: str | None    # mp4: the avatar with the speech (None while it renders)
    motion: str | None   # npz: SMPL-X motion, BEAT2 layout (None while it is made)
    timings: pd.DataFrame | None
    note: str            # Markdown: what ran, and the checkpoint's provenance
    player: tuple | None = None  # exports.PlayerFiles: the 3D player's body .glb, speech, frames, animation
    exports: list[str] = field(default_factory=list)  # the motion as .glb, .bvh, .csv (the page's downloads)
    player_only: bool = False  # the page updates its 3D player alone: the rest is not made yet


@dataclass
class CompareResult:
    video: str           # mp4: every sampler's avatar side by side
    table: pd.DataFrame  # one row per sampler (the paper's Table 3 for this clip)
    chart: pd.DataFrame  # long form for a stacked bar chart: sampler, part, seconds
    note: str


# ----------------------------------------------------------------------------
# The two actions
# ----------------------------------------------------------------------------
def _features(speech: Speech, settings: Settings, progress: Progress, description: str) -> tuple[np.ndarray, float]:
    """The speech's audio features: (features, seconds)."""
    progress(0.04, desc=description)
    started = time.perf_counter()
    features = load_pipeline(settings).features(speech.samples)
    return features, time.perf_counter() - started


def generate(audio_path: str | Path | None, sampler: str = DEFAULT_SAMPLER, steps_expression: float | None = 0,
             steps_gesture: float | None = 0, seed: float | None = 0, trim: bool = False, speaker: float | None = 0,
             settings: Settings | None = None, progress: Progress | None = None) -> GenerateResult:
    """Speech -> the avatar video, the motion .npz, a timing table and a note. Steps 0 = the sampler's own."""
    *_, result = generate_steps(audio_path, sampler, steps_expression, steps_gesture, seed, trim, speaker,
                                settings=settings, progress=progress, player=False)
    return result


def generate_steps(audio_path: str | Path | None, sampler: str = DEFAULT_SAMPLER,
                   steps_expression: float | None = 0, steps_gesture: float | None = 0, seed: float | None = 0,
                   trim: bool = False, speaker: float | None = 0, settings: Settings | None = None,
                   progress: Progress | None = None, player: bool = True,
                   animations: Animations | None = None) -> Iterator[GenerateResult]:
    """`generate` in steps, for the page. With `player`: first the 3D player's body (.glb, the same for every
    result) and the speech (.wav) alone, for the page to fetch while the motion is made (which starts
    before that result is handed over); as soon as the motion is made, the player's animation: given to
    `animations` for the page, which asked for it with the speech, or else as a result alone
    (`player_only`: the page updates nothing else, so the avatar moves at once); then the motion, timings
    and note; then, rendered, the whole result with the .glb, .bvh and .csv exports. Without `player`
    (the API), only the whole result, without player files or exports."""
    settings = settings or Settings.from_env()
    progress = progress or no_progress
    check = Request(np.zeros(0, np.float32), sampler, steps_expression, steps_gesture, seed,
                    check_speaker(settings, speaker))  # a bad choice fails before the audio is read
    precision = load_pipeline(settings).precision
    # the page's request for the animation is answered at once if this fails or stops before delivering it
    streaming = animations.expecting() if player and animations else contextlib.nullcontext()
    with request_folder(settings) as folder, streaming as stream:
        progress(0.0, desc="reading the audio")
        speech = read_speech(audio_path, settings, trim, folder)
        request = replace(check, samples=speech.samples)
        progress(0.04, desc=f"audio features, then sampling with {request.title}")
        made = _motion_made(settings, request, speech, meanwhile=player)
        if player:  # the 3D player fetches the speech while the motion is made, to play both as soon as it comes
            from . import exports

            body_glb = settings.work_dir / PLAYER_BODY
            if not body_glb.exists():  # warm_up has not run: the T-pose
                exports.standing_body(None, load_pipeline(settings).config.expression_space, body_glb, settings.body)
            waiting = exports.PlayerFiles(str(body_glb), exports.player_speech(speech.samples, folder), stream=stream)
            yield GenerateResult(None, None, None, f"Making the motion with {check.title}…", waiting)
        motion, report, features_seconds = made()
        steps = f"{request.steps_expression}-{request.steps_gesture}"
        motion_path = folder / f"motion_{sampler}_{steps}_seed{request.seed}.npz"
        files, downloads, export_seconds = None, [], None
        if player:
            files, export_seconds = exports.player_files(motion, motion_path, waiting, settings.body)
            if animations:
                animations.deliver(files.stream, Path(files.animation).read_bytes())
            else:
                yield GenerateResult(None, None, None, "", files, player_only=True)
        from ..motion import save_motion

        save_motion(motion_path, motion)
        generation = features_seconds + report.seconds_total
        said = texts.generation_note(request, speech.seconds, speech.trimmed, settings.max_seconds, generation,
                                     precision)
        if player:  # the exports first (gently: the page is starting the player), then what the page shows of them
            progress(0.25, desc="the .glb, .bvh and .csv")
            downloads = background.gently(exports.other_formats, motion, motion_path, settings.body)
            yield GenerateResult(None, str(motion_path), texts.timing_table(report, features_seconds, None, precision,
                                                                            export_seconds),
                                 f"{said} The video is rendering.\n\n{provenance(settings)}", files)
        progress(0.3, desc="rendering")
        video_path = folder / "avatar.mp4"
        render = rendering.render([motion], speech.path, video_path, [f"{request.title}: {generation:.2f} s"],
                                  settings, settings.render_size, progress, 0.3)
    note = f"{said} Rendered in {render['seconds']:.1f} s.\n\n{provenance(settings)}"
    yield GenerateResult(str(video_path), str(motion_path),
                         texts.timing_table(report, features_seconds, render, precision, export_seconds), note,
                         files, downloads)


def _motion_made(settings: Settings, request: Request, speech: Speech, meanwhile: bool) -> Callable[[], tuple]:
    """A function that gives (motion, report, features' seconds). `meanwhile`: the features and the sampling
    start now, in a thread, while the caller hands the page its first result, and the function waits
    for them; otherwise (and on a ZeroGPU Space) they run when it is called."""
    def make() -> tuple:
        features, features_seconds = _features(speech, settings, no_progress, "")
        motion, report = _sample(settings, request, features)
        return motion, report, features_seconds

    if not meanwhile or on_space():
        return make
    return background.meanwhile(make)


def _compared_motions(speech: Speech, features: np.ndarray, seed: int, speaker: int, baseline: bool,
                      settings: Settings, progress: Progress) -> tuple[list, list[str], list[dict]]:
    """Every registered sampler (and the baseline) on the same speech: (motions, video labels, table rows)."""
    runs = list(SAMPLERS) + ([None] if baseline else [])
    motions, labels, rows = [], [], []
    for i, name in enumerate(runs):
        fraction = 0.05 + 0.45 * i / len(runs)
        if name is None:
            progress(fraction, desc=texts.BASELINE_LABEL)
            from ..data.baseline import animate

            started = time.perf_counter()
            motion = animate(speech.samples, seed=seed)
            seconds = time.perf_counter() - started
            row, label = texts.baseline_row(seconds), f"rule-based: {seconds:.2f} s"
        else:
            request = Request(speech.samples, name, seed=seed, speaker=speaker)
            progress(fraction, desc=f"sampling with {request.title}")
            motion, report = _sample(settings, request, features)
            steps = f"{request.steps_expression}/{request.steps_gesture}"
            row, label = texts.sampler_row(request.spec.label, steps, report), \
                f"{request.title}: {report.seconds_total:.2f} s"
        motions.append(motion)
        labels.append(label)
        rows.append(row)
    return motions, labels, rows


def compare(audio_path: str | Path | None, seed: float | None = 0, trim: bool = False, baseline: bool = False,
            speaker: float | None = 0, settings: Settings | None = None,
            progress: Progress | None = None) -> CompareResult:
    """Every registered sampler at its own steps (and the rule-based baseline) on the same speech and
    seed: one side-by-side video, a table and the bar chart's data."""
    settings = settings or Settings.from_env()
    progress = progress or no_progress
    check = Request(np.zeros(0, np.float32), seed=seed, speaker=check_speaker(settings, speaker))
    with request_folder(settings) as folder:
        progress(0.0, desc="reading the audio")
        speech = read_speech(audio_path, settings, trim, folder)
        features, features_seconds = _features(speech, settings, progress, "audio features (shared by every sampler)")
        motions, labels, rows = _compared_motions(speech, features, check.seed, check.speaker, baseline, settings,
                                                  progress)
        progress(0.5, desc="rendering side by side")
        video_path = folder / "compare.mp4"
        render = rendering.render(motions, speech.path, video_path, labels, settings, settings.compare_size,
                                  progress, 0.5)
    table = texts.comparison_table(rows, speech.seconds)
    cut = f" (its first {settings.max_seconds:g} s)" if speech.trimmed else ""
    note = (f"Same {speech.seconds:.1f} s of speech{cut} and seed {check.seed} for every sampler; E = expression "
            f"branch, G = gesture branch, NFE = network evaluations. The audio features "
            f"({features_seconds:.2f} s) are computed once and shared, so they are not in the per-sampler times. "
            f"{len(motions)} avatars rendered in one video: {render['frames']} frames in {render['seconds']:.1f} s."
            f"\n\n{provenance(settings)}")
    return CompareResult(str(video_path), table, texts.comparison_chart(table), note)
