"""Live: speech arrives in pieces, motion comes out a fraction of a second behind it.

The microphone's audio is fed to a LiveSession as it arrives. Whenever `chunk_s` of new motion can be
made, the session samples one window that ends at the newest audio and keeps the last `lookahead_s` of
it back: every frame it sends was made with that much of the speech after it heard (the mouth opens
before a stressed syllable; a stroke anticipates it). The window *continues* the motion already sent:
the newest frames already shown are given to the network as known frames (model.py, `continuation`)
and kept as they are at every step (sampler.step_velocity), and the small step the new frames start
with is settled out over the 16 frames after it (pipeline.settle_edges, as long clips join their
windows), so the new frames join the old ones without a seam. (Fading the new frames in from the
previous window's lookahead instead, as before, left a hitch every chunk: on the real take the steps
rose to 1.8x the mean six frames after each boundary, where the fade ended; settled, no phase is above 1.2x.)

Only the newest `known_frames` (settings.LiveSettings, where the measurements per checkpoint that chose
it are) of the shown frames a window starts with are known; the older ones are in the window, sampled
anew and thrown away. Shown all 43 as known, checkpoint v6 kept the new frames close to them: streamed
motion moved 0.71-0.74x as fast as offline motion on the same speech, the wrists' p95 0.70-0.74x. The
fewer known, the livelier; too few, and the steps just after a boundary rise. The window keeps its
trained length: starting it at the known frames instead (16 shown, all known) made it 37 frames long
and the motion 0.80x.

    window:  |-- shown, sampled anew --|-- known (shown) --|-- new, sent now --|-- lookahead --|
             S                                          emitted                E               A (newest audio)

A frame's latency is the chunk it waits for, plus the lookahead, plus the sampling time.

`stream_file` feeds a file through the same path at the pace a microphone would and measures each
frame's latency: the wall time the frame is ready to send, less the wall time the audio at the
frame's instant was fed in. The settings (chunk, lookahead, shown and known frames) are LiveSettings,
ASYNFUSION_LIVE_* in the environment (settings.py).
"""

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from .audio import SAMPLE_RATE, audio_features
from .config import BRANCHES
from .diffusion.registry import DEFAULT_SAMPLER
from .diffusion.sampler import sample
from .errors import InputError
from .model import known_frames
from .motion import FPS, Motion, features_to_motion, smooth_gesture
from .pipeline import Pipeline, sampling_threads, settle_edges
from .request import Request
from .seeding import NOISE, generator_for
from .settings import LiveSettings

SETTLE_FRAMES = 16      # the step into the new frames is taken out over this many (pipeline.settle_edges)
CONTEXT_FRAMES = 30     # audio before the window that its features see (the encoder's onsets, deltas)
SMOOTHING_CONTEXT = 15  # sent frames the gesture low-pass sees before a chunk (its response dies out in ~5)
BLOCK_S = 0.02          # a microphone's buffer: stream_file feeds audio in blocks of this length


def frame_sample(frame: int) -> int:
    """The first audio sample of a motion frame's instant (frame / 30 s)."""
    return int(round(frame * SAMPLE_RATE / FPS))


class LiveSession:
    """Motion for speech that arrives piece by piece; `feed` returns the frames that became ready.
    `live` (default: LiveSettings.from_env()) sets how; `chunk_s` and `lookahead_s` override its own."""

    def __init__(self, pipeline: Pipeline, sampler: str = DEFAULT_SAMPLER, steps_expression: int | None = None,
                 steps_gesture: int | None = None, seed: int = 0, chunk_s: float | None = None,
                 lookahead_s: float | None = None, live: LiveSettings | None = None):
        live = live or LiveSettings.from_env()
        chunk_s = live.chunk_s if chunk_s is None else chunk_s
        lookahead_s = live.lookahead_s if lookahead_s is None else lookahead_s
        self.request = Request(np.zeros(0, np.float32), sampler, steps_expression, steps_gesture, seed)
        self.pipeline = pipeline
        self.model = pipeline.checkpoint.model_for(self.request.spec.weights)
        if not self.model.continues:
            raise InputError(f"checkpoint {pipeline.checkpoint.path or 'in memory'} cannot continue motion; live "
                             "mode needs one trained with `asynfusion train --continuation`")
        if not 0.05 <= chunk_s <= 2.0 or not 0.0 <= lookahead_s <= 1.0:
            raise InputError(f"chunk must be 0.05-2 s and lookahead 0-1 s, got {chunk_s} and {lookahead_s}")
        self.chunk_frames = max(1, round(chunk_s * FPS))
        self.lookahead_frames = round(lookahead_s * FPS)
        self.shown_frames = live.shown_frames
        self.known_frames = min(live.known_frames, live.shown_frames)
        self.window = pipeline.config.window_frames
        if self.window - self.chunk_frames - self.lookahead_frames < 1:
            raise InputError(f"chunk + lookahead must be shorter than the model's {self.window / FPS:.2f} s window")
        self._audio, self._heard = np.zeros(4 * SAMPLE_RATE, np.float32), 0  # grows by doubling (feed)
        self.features = {b: np.zeros((0, d), np.float32) for b, d in
                         (("expression", pipeline.config.expression_dim), ("gesture", pipeline.config.gesture_dim))}
        # the gestures as sent, low-passed (motion.smooth_gesture) over the frames before and the latest window's
        # sampled frames after (its lookahead), so a chunk joins the one before it and `motion()` is what was sent
        self.sent_gesture = self.features["gesture"].copy()
        self._ahead = self.features["gesture"].copy()
        self.windows = 0
        self.seconds_sampling = 0.0
        self.threads = pipeline.threads or sampling_threads()

    @property
    def audio(self) -> np.ndarray:
        """The speech fed so far: a view of a buffer that doubles when full, so feeding 20 ms at a time
        costs the same in the tenth minute of a take as in the first (no copy of everything heard)."""
        return self._audio[:self._heard]

    @property
    def shown_fit(self) -> int:
        """Shown frames a window starts with once that many are shown: as many as the settings ask that leave
        room for a chunk and its lookahead in the window (43 of 64 at 0.5 s and 0.2 s)."""
        return min(self.shown_frames, self.window - self.chunk_frames - self.lookahead_frames)

    @property
    def emitted(self) -> int:
        """Frames sent so far."""
        return len(self.features["gesture"])

    def heard_frames(self) -> int:
        """Motion frames whose instant the audio has reached."""
        return int(len(self.audio) * FPS // SAMPLE_RATE)

    def feed(self, samples: np.ndarray) -> Motion | None:
        """Add 16 kHz mono audio; returns the motion frames that are now ready, or None."""
        samples = np.asarray(samples, np.float32).reshape(-1)
        heard = self._heard + len(samples)
        if heard > len(self._audio):
            grown = np.zeros(max(heard, 2 * len(self._audio)), np.float32)
            grown[:self._heard] = self._audio[:self._heard]
            self._audio = grown
        self._audio[self._heard:heard] = samples
        self._heard = heard
        ready = self.heard_frames() - self.lookahead_frames
        if ready - self.emitted < self.chunk_frames:
            return None
        return self._continue(ready)

    def finish(self) -> Motion | None:
        """The frames the lookahead held back (the speech is over: nothing more will be heard)."""
        end = self.heard_frames()
        return self._continue(end) if end > self.emitted else None

    def motion(self) -> Motion:
        """Everything sent so far, as one Motion."""
        return self._motion(0, self.emitted)

    # ------------------------------------------------------------------------
    def _continue(self, end: int) -> Motion:
        """Send frames up to `end`: one window in the steady state, several when catching up."""
        first = self.emitted
        while self.emitted < end:
            self._window(end)
        before = max(0, first - SMOOTHING_CONTEXT)
        around = np.concatenate([self.features["gesture"][before:end], self._ahead])
        smoothed = smooth_gesture(around, self.pipeline.gesture_cutoff_hz)[first - before:end - before]
        self.sent_gesture = np.concatenate([self.sent_gesture, smoothed])
        return self._motion(first, end)

    def _window(self, end: int) -> None:
        heard = self.heard_frames()
        # as many shown frames as leave room for a chunk and its lookahead; the newest `kept` of them known
        shown = min(self.emitted, self.shown_fit)
        kept = min(shown, self.known_frames)
        start = self.emitted - shown
        stop = min(heard, start + self.window)                        # the window: [start, stop)
        new_end = min(end, stop - min(self.lookahead_frames, heard - end))  # keep the lookahead heard after
        frames = stop - start
        audio = self._audio_features(start, stop)                                      # (1, frames, A)
        mask = torch.zeros(1, frames, dtype=torch.bool)
        mask[:, shown - kept:shown] = True
        known = {}
        for b in BRANCHES:
            values = np.zeros((frames, self.features[b].shape[1]), np.float32)
            values[:shown] = self.features[b][start:]
            known[b] = known_frames(torch.from_numpy(values)[None], mask).to(self.pipeline.device)
        generator = generator_for(self.request.seed, NOISE, self.windows)
        torch.set_num_threads(self.threads)
        began = time.perf_counter()
        x, _ = sample(self.model, audio, self.request.spec, self.request.steps, generator=generator,
                      dtype=self.pipeline.dtype, count_flops=False, known=known,
                      **self.pipeline.checkpoint.sampling_for(self.request.spec.weights))
        self.seconds_sampling += time.perf_counter() - began
        self.windows += 1
        for b in BRANCHES:
            window = settle_edges(x[b][0].float().cpu().numpy(), mask[0].numpy(), SETTLE_FRAMES)
            self.features[b] = np.concatenate([self.features[b], window[shown:new_end - start]])
            if b == "gesture":
                self._ahead = window[new_end - start:]

    def _audio_features(self, start: int, end: int) -> torch.Tensor:
        """(1, end - start, A) normalized audio features of frames [start, end), with some audio before."""
        context = max(0, start - CONTEXT_FRAMES) // 3 * 3   # a multiple of 3 frames starts on a whole sample
        raw = audio_features(self.audio[frame_sample(context):frame_sample(end)], end - context,
                             self.pipeline.config.audio_encoder)[start - context:]
        normalized = self.pipeline.checkpoint.stats.normalize("audio", raw)
        return torch.from_numpy(np.ascontiguousarray(normalized, np.float32))[None].to(self.pipeline.device)

    def _motion(self, first: int, end: int) -> Motion:
        stats = self.pipeline.checkpoint.stats
        return features_to_motion(
            stats.denormalize("expression", self.features["expression"][first:end]),
            stats.denormalize("gesture", self.sent_gesture[first:end]),
            expression_space=self.pipeline.config.expression_space,
            metadata={"sampler": self.request.sampler, "steps_expression": self.request.steps_expression,
                      "steps_gesture": self.request.steps_gesture, "seed": self.request.seed, "live": True,
                      "precision": self.pipeline.precision.name,
                      "gesture_cutoff_hz": self.pipeline.gesture_cutoff_hz})


@dataclass
class StreamReport:
    """What `asynfusion stream --json` prints."""

    latency_p50_s: float
    latency_p95_s: float
    latency_max_s: float
    kept_up: bool           # the feed never fell more than one chunk behind the microphone's clock
    max_behind_s: float     # how far it fell behind at worst
    chunk_s: float
    lookahead_s: float
    shown_frames: int       # shown frames each window starts with (once that many are shown)
    known_frames: int       # the newest of them kept as known
    frames: int
    windows: int
    seconds_sampling: float
    audio_seconds: float
    sampler: str
    steps_expression: int
    steps_gesture: int
    precision: str
    threads: int

    def to_dict(self) -> dict:
        return asdict(self)


def stream_file(session: LiveSession, samples: np.ndarray, realtime: bool = True,
                on_frames=None) -> StreamReport:
    """Feed `samples` through `session` block by block, at a microphone's pace when `realtime`
    (else as fast as possible), and measure every frame's latency. `on_frames(motion)` gets each piece."""
    block = int(BLOCK_S * SAMPLE_RATE)
    fed_at = np.zeros(len(samples) // block + 2)   # wall time each block was fed in
    ready_at = []                                   # (first frame, end frame, wall time ready)
    behind = 0.0
    began = time.perf_counter()
    for k, offset in enumerate(range(0, len(samples), block)):
        due = began + (offset + block) / SAMPLE_RATE   # when a microphone would have delivered this block
        if realtime:
            now = time.perf_counter()
            if now < due:
                time.sleep(due - now)
            behind = max(behind, time.perf_counter() - due)
        fed_at[k] = time.perf_counter()
        first = session.emitted
        piece = session.feed(samples[offset:offset + block])
        if piece is not None:
            ready_at.append((first, session.emitted, time.perf_counter()))
            if on_frames:
                on_frames(piece)
    first = session.emitted
    piece = session.finish()
    if piece is not None:
        ready_at.append((first, session.emitted, time.perf_counter()))
        if on_frames:
            on_frames(piece)
    latencies = []
    for first, end, ready in ready_at:
        for frame in range(first, end):
            heard = fed_at[min(frame_sample(frame) // block, len(fed_at) - 1)]  # the block holding its instant
            latencies.append(ready - heard)
    latencies = np.array(latencies) if latencies else np.zeros(1)
    spec = session.request
    return StreamReport(
        latency_p50_s=round(float(np.percentile(latencies, 50)), 4),
        latency_p95_s=round(float(np.percentile(latencies, 95)), 4),
        latency_max_s=round(float(latencies.max()), 4),
        kept_up=behind <= session.chunk_frames / FPS, max_behind_s=round(behind, 4),
        chunk_s=session.chunk_frames / FPS, lookahead_s=session.lookahead_frames / FPS,
        shown_frames=session.shown_fit,
        known_frames=session.known_frames,
        frames=session.emitted, windows=session.windows, seconds_sampling=round(session.seconds_sampling, 3),
        audio_seconds=round(len(samples) / SAMPLE_RATE, 3), sampler=spec.sampler,
        steps_expression=spec.steps_expression, steps_gesture=spec.steps_gesture,
        precision=session.pipeline.precision.name, threads=session.threads)
