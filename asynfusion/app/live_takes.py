"""The app's Live mode on the server: a take is a microphone's speech turned into motion as it arrives.

The page sends the microphone's audio in short pieces (asynfusion/app/live_route.py says how); each take
runs asynfusion.live.LiveSession in a thread of its own, which samples a window whenever a chunk of motion
can be made, and hands every piece of motion back as a message for the page's 3D player. When the page
stops (or the take reaches `LiveOptions.max_seconds`), the take's speech, motion and the player's animation
are saved in a request folder, as Generate's are, and `take_steps` gives the page the rest: the
downloads and the video.

A take ends in one of four ways, each of which frees its slot and thread: stopped (saved), capped
(saved), abandoned (the page's stream closed, or its audio stopped coming: its folder is removed), or
failed (a one-line message to the page). The slots are few (one by default): on two cores a second take
at once would make both fall behind, so the second visitor is told the app is busy.

Nothing here imports Gradio or the web server: tests drive takes directly.
"""

import contextlib
import json
import queue
import secrets
import shutil
import struct
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..audio import MIN_SECONDS, SAMPLE_RATE
from ..errors import InputError
from ..motion import FPS
from ..settings import LiveSettings, Settings
from . import folders

IDLE_SECONDS = 5.0    # a take whose audio stops coming for this long is abandoned (the page went away)
TAKE_PREFIX = "request-live-"  # folders.remove_old_requests removes these folders with the rest, by age


@dataclass(frozen=True)
class LiveOptions:
    """How Live runs: what the page's microphone is allowed, and how much of the machine."""

    max_seconds: float = 600.0   # a take stops itself (and is kept) after this much speech
    sessions: int = 1            # takes at once; on 2 cores a second one would make both fall behind
    # motion sent at a time, and speech heard after the newest frame sent: ASYNFUSION_LIVE_CHUNK / _LOOKAHEAD,
    # as `asynfusion stream` reads them (settings.LiveSettings; asynfusion/live.py)
    chunk_s: float = field(default_factory=lambda: LiveSettings.from_env().chunk_s)
    lookahead_s: float = field(default_factory=lambda: LiveSettings.from_env().lookahead_s)
    idle_seconds: float = IDLE_SECONDS


def encode_message(header: dict, body: bytes = b"") -> bytes:
    """One message of the motion stream: uint32 length, then the payload as export/animation.py lays out
    an animation (uint32 header length, JSON header space-padded to 4 bytes, float32 data)."""
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)
    payload = struct.pack("<I", len(text)) + text + body
    return struct.pack("<I", len(payload)) + payload


def decode_messages(data: bytes) -> list[tuple[dict, bytes]]:
    """The (header, float32 data) of each whole message in `data` (tests and tools read the stream so)."""
    messages, offset = [], 0
    while offset + 4 <= len(data):
        length = int.from_bytes(data[offset:offset + 4], "little")
        payload = data[offset + 4:offset + 4 + length]
        if len(payload) < length:
            break
        header_length = int.from_bytes(payload[:4], "little")
        messages.append((json.loads(payload[4:4 + header_length]), payload[4 + header_length:]))
        offset += 4 + length
    return messages


def pcm16_to_float(data: bytes) -> np.ndarray:
    """The page's audio: 16 kHz mono, 16-bit little-endian PCM."""
    if len(data) % 2:
        raise InputError(f"audio must be 16-bit PCM: {len(data)} bytes is an odd count")
    return np.frombuffer(data, "<i2").astype(np.float32) / 32768.0


class LiveTake:
    """One visitor's take: audio in (`add_audio`, `stop`), messages out (`next_message`)."""

    def __init__(self, takes: "LiveTakes", session, folder: Path):
        self.id = secrets.token_hex(8)
        self.takes, self.session, self.folder = takes, session, folder
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()    # (audio, arrival time), then "stop" or "abandon"
        self.outbox: queue.SimpleQueue = queue.SimpleQueue()   # encoded messages, then None (the end)
        self.last_audio = time.monotonic()
        self.next_seq = 0
        self.received = 0    # samples taken in
        self.ended = threading.Event()
        self.result: dict | None = None    # the saved take's files and figures (the end message's)
        self.fed_at: list[tuple[int, float]] = []   # (samples so far, wall time they arrived), a row a piece
        self.ready_at: list[tuple[int, int, float]] = []  # (first frame, end frame, wall time ready)
        self.thread = threading.Thread(target=self._run, name=f"live-{self.id}", daemon=True)

    # -- from the web server's side ------------------------------------------------------------------
    def add_audio(self, data: bytes, seq: int) -> None:
        if self.ended.is_set() or self.received >= self.takes.options.max_seconds * SAMPLE_RATE:
            raise InputError(f"this live take has ended (a take stops at {self.takes.options.max_seconds:g} s)")
        if seq != self.next_seq:
            raise InputError(f"audio piece {seq} came out of order (expected {self.next_seq})")
        samples = pcm16_to_float(data)
        self.next_seq += 1
        self.received += len(samples)
        self.last_audio = time.monotonic()
        self.inbox.put((samples, time.perf_counter()))

    def stop(self) -> None:
        self.inbox.put("stop")

    def abandon(self) -> None:
        """The page went away: end without saving (nothing happens to a take that has ended)."""
        self.inbox.put("abandon")

    def next_message(self, timeout: float) -> bytes | None | bool:
        """The next message; None once the take has ended and all were taken; False on a timeout."""
        try:
            return self.outbox.get(timeout=timeout)
        except queue.Empty:
            return False

    # -- the take's own thread -----------------------------------------------------------------------
    def _run(self) -> None:
        try:
            ending = self._listen()
            if ending == "abandon":
                shutil.rmtree(self.folder, ignore_errors=True)
                return
            self._send_frames(self.session.finish())
            self.result = self._save(ending)
            self.outbox.put(encode_message({"type": "end", **self.result}))
        except InputError as error:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.outbox.put(encode_message({"type": "error", "message": str(error)}))
        except Exception as error:  # noqa: BLE001 -- the visitor gets one line, the server goes on
            shutil.rmtree(self.folder, ignore_errors=True)
            print(f"live take {self.id} failed: {type(error).__name__}: {error}", file=sys.stderr)
            self.outbox.put(encode_message({"type": "error", "message": f"Live stopped: {error}"}))
        finally:
            self.ended.set()
            self.outbox.put(None)
            self.takes.release(self)

    def _listen(self) -> str:
        """Feed the audio as it comes; how the take ends: "stop", "cap" or "abandon"."""
        options = self.takes.options
        cap = int(options.max_seconds * SAMPLE_RATE)
        while True:
            try:
                item = self.inbox.get(timeout=0.25)
            except queue.Empty:
                if time.monotonic() - self.last_audio > options.idle_seconds:
                    return "abandon"
                continue
            if isinstance(item, str):
                return item
            pieces = [item]
            with contextlib.suppress(queue.Empty):  # whatever else came meanwhile, in one feed
                while not isinstance(pending := self.inbox.get_nowait(), str):
                    pieces.append(pending)
                self.inbox.put(pending)   # "stop" or "abandon": seen on the next turn, after this audio
            count = len(self.session.audio)
            for samples, arrived in pieces:   # latency counts from the audio's arrival, not from its feed
                count += len(samples)
                self.fed_at.append((count, arrived))
            samples = np.concatenate([samples for samples, _ in pieces])[:cap - len(self.session.audio)]
            self._send_frames(self.session.feed(samples))
            if len(self.session.audio) >= cap:
                return "cap"

    def _send_frames(self, motion) -> None:
        if motion is None:
            return
        from ..export.animation import motion_to_animation

        end = self.session.emitted
        first = end - motion.num_frames
        self.ready_at.append((first, end, time.perf_counter()))
        blob = motion_to_animation(motion, self.takes.settings.body)
        length = int.from_bytes(blob[:4], "little")
        header = json.loads(blob[4:4 + length])
        header.update(type="frames", first=first, heard=len(self.session.audio))
        self.outbox.put(encode_message(header, blob[4 + length:]))

    def latencies(self) -> np.ndarray:
        """Each sent frame's latency on the server: ready, less when the audio at its instant arrived."""
        fed_samples = np.array([count for count, _ in self.fed_at])
        fed_times = np.array([when for _, when in self.fed_at])
        values = []
        for first, end, ready in self.ready_at:
            instants = np.round(np.arange(first, end) * SAMPLE_RATE / FPS)
            fed = np.searchsorted(fed_samples, instants, side="right").clip(max=len(fed_times) - 1)
            values.append(ready - fed_times[fed])
        return np.concatenate(values) if values else np.zeros(0)

    def _save(self, ending: str) -> dict:
        """The take's speech, motion and the player's animation, in its folder: the end message's fields."""
        from ..motion import save_motion
        from . import exports, handlers

        samples = self.session.audio
        seconds = len(samples) / SAMPLE_RATE
        if seconds < MIN_SECONDS:
            raise InputError(f"The take is only {seconds:.2f} s long: talk for at least {MIN_SECONDS:g} s.")
        level = handlers.loudest_dbfs(samples)
        if level < handlers.SILENCE_DBFS:
            raise InputError(f"The microphone was silent (its loudest moment is {level:.0f} dBFS): nothing to "
                             "keep. Check the microphone and try again.")
        motion = self.session.motion()
        request = self.session.request
        motion_path = self.folder / f"motion_live_{request.sampler}_seed{request.seed}.npz"
        save_motion(motion_path, motion)
        waiting = exports.PlayerFiles(str(self.takes.body_glb()), exports.player_speech(samples, self.folder))
        files, _ = exports.player_files(motion, motion_path, waiting, self.takes.settings.body)
        latency = self.latencies()
        percentile = (lambda q: round(float(np.percentile(latency, q)), 3)) if len(latency) else (lambda q: None)
        return {"take": self.id, "ending": ending, "seconds": round(seconds, 3), "frames": motion.num_frames,
                "windows": self.session.windows, "seconds_sampling": round(self.session.seconds_sampling, 3),
                "server_latency_p50_s": percentile(50), "server_latency_p95_s": percentile(95),
                "sampler": request.sampler, "steps_expression": request.steps_expression,
                "steps_gesture": request.steps_gesture, "precision": self.session.pipeline.precision.name,
                "chunk_s": self.session.chunk_frames / FPS, "lookahead_s": self.session.lookahead_frames / FPS,
                "max_seconds": self.takes.options.max_seconds,
                "player": list(files), "motion": str(motion_path)}


class LiveTakes:
    """The takes of one app: at most `options.sessions` running at once; finished ones by id."""

    def __init__(self, settings: Settings, options: LiveOptions | None = None):
        self.settings = settings
        self.options = options or LiveOptions()
        self.lock = threading.Lock()
        self.running: dict[str, LiveTake] = {}
        self.finished: dict[str, dict] = {}   # take id -> its result (the end message's fields)

    def warm_up(self) -> None:
        """Run what a take's first seconds would otherwise wait for: torch's first windows of a live
        session's shapes (with and without known frames) and the exporter's first call (it loads the body).
        Nothing to warm when the checkpoint cannot continue motion (Live then refuses each take)."""
        from ..export.animation import motion_to_animation
        from ..live import LiveSession
        from . import handlers

        try:
            session = LiveSession(handlers.load_pipeline(self.settings), chunk_s=self.options.chunk_s,
                                  lookahead_s=self.options.lookahead_s)
        except InputError:  # this checkpoint cannot continue motion: each start says so, in one line
            return
        for _ in range(3):
            motion = session.feed(np.zeros(int(self.options.chunk_s * SAMPLE_RATE) + 1, np.float32))
        motion_to_animation(motion or session.motion(), self.settings.body)

    def body_glb(self) -> Path:
        """The 3D player's body, the same for every result (handlers.warm_up writes it)."""
        from . import exports, handlers

        path = self.settings.work_dir / handlers.PLAYER_BODY
        if not path.exists():
            pipeline = handlers.load_pipeline(self.settings)
            exports.standing_body(None, pipeline.config.expression_space, path, self.settings.body)
        return path

    def start(self) -> LiveTake:
        """A new take, running; InputError (one line) when every slot is taken or live cannot run here."""
        from ..live import LiveSession
        from . import handlers

        with self.lock:
            if len(self.running) >= self.options.sessions:
                raise InputError("Live is busy: someone else is talking to the avatar. Try again in a minute.")
            pipeline = handlers.load_pipeline(self.settings)
            session = LiveSession(pipeline, chunk_s=self.options.chunk_s, lookahead_s=self.options.lookahead_s)
            self.settings.work_dir.mkdir(parents=True, exist_ok=True)
            folders.remove_old_requests(self.settings)
            self._forget_removed()
            take = LiveTake(self, session, Path(tempfile.mkdtemp(prefix=TAKE_PREFIX, dir=self.settings.work_dir)))
            self.running[take.id] = take
        take.thread.start()
        return take

    def get(self, take_id: str) -> LiveTake:
        with self.lock:
            take = self.running.get(take_id)
        if take is None:
            raise InputError("no such live take (it ended, or the server restarted): press Live again")
        return take

    def release(self, take: LiveTake) -> None:
        with self.lock:
            self.running.pop(take.id, None)
            if take.result is not None:
                self.finished[take.id] = take.result
        folders.release_memory()

    def result(self, take_id: str) -> dict:
        """A saved take's files and figures; InputError when there is none (or its files were removed)."""
        with self.lock:
            found = self.finished.get(str(take_id))
        if found is None or not Path(found["motion"]).exists():
            raise InputError("That live take is no longer here (takes are kept for an hour): record another.")
        return found

    def _forget_removed(self) -> None:
        for take_id, found in list(self.finished.items()):
            if not Path(found["motion"]).exists():
                del self.finished[take_id]

    def close(self) -> None:
        """Abandon every running take and wait for their threads (the server is stopping)."""
        with self.lock:
            takes = list(self.running.values())
        for take in takes:
            take.abandon()
        for take in takes:
            take.thread.join(timeout=30)
