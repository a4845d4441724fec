"""Motion -> mp4: frames of the scene piped to ffmpeg, the speech muxed in; and single stills.

Threads: frames.py's skinning thread and drawing threads (llvmpipe adds its own rasteriser threads),
the calling thread handing the frames on in order, and the ffmpeg pipe, so the two cores stay busy.
"""

import contextlib
import itertools
import logging
import math
import os
import queue
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..motion import Motion
from .frames import QUEUE_DEPTH, Frames, stages_for
from .scene import _Stage

log = logging.getLogger(__name__)

ENCODER_TIMEOUT = 60.0  # seconds ffmpeg may go without taking a frame (or finishing) before it counts as stalled
# superfast at CRF 20 without CABAC: the same frames (PSNR 39.99 dB against the rendered ones either way)
# for 26 % less encoder CPU (2.6 vs 3.6 ms a frame at 512 px) and 8 % larger files
ENCODER = ["-c:v", "libx264", "-preset", "superfast", "-crf", "20", "-x264-params", "cabac=0", "-pix_fmt", "yuv420p"]


# ----------------------------------------------------------------------------
# Labels: drawn once with PIL, blended into each frame where they sit
# ----------------------------------------------------------------------------
def _label_overlays(labels: list[str], size: int) -> list[tuple[int, int, np.ndarray, np.ndarray]]:
    """(top, left, bgr, alpha) patches: one text label at the bottom-left of each tile."""
    import pyrender
    from PIL import Image, ImageDraw, ImageFont

    font_path = Path(pyrender.__file__).parent / "fonts" / "OpenSans-Semibold.ttf"
    font = ImageFont.truetype(str(font_path), max(10, size // 28))
    overlays = []
    for i, text in enumerate(labels):
        if not text:
            continue
        box = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), text, font=font)
        pad = max(3, size // 90)
        width = min(box[2] + 2 * pad, size - 2 * pad)
        height = box[3] + 2 * pad
        patch = Image.new("RGBA", (width, height), (255, 255, 255, 200))
        ImageDraw.Draw(patch).text((pad, pad - box[1] // 2), text, font=font, fill=(30, 32, 36, 255))
        patch = np.asarray(patch).astype(np.float32)
        overlays.append((size - height - pad, i * size + pad, patch[..., 2::-1], patch[..., 3:] / 255.0))
    return overlays


def _compose(frame: np.ndarray, overlays, size: int, count: int) -> np.ndarray:
    """The rendered BGRA frame with the labels and dividers drawn in (a new array)."""
    frame = np.array(frame)  # writable copy
    for top, left, bgr, alpha in overlays:
        region = frame[top:top + bgr.shape[0], left:left + bgr.shape[1], :3]
        region[:] = (region * (1 - alpha) + bgr * alpha).astype(np.uint8)
    for i in range(1, count):  # a thin divider between tiles
        frame[:, i * size - 1:i * size + 1] = 150
    return frame


# ----------------------------------------------------------------------------
# Encoding (ffmpeg) and the request's checks; the frames come from frames.py
# ----------------------------------------------------------------------------
def _ffmpeg_command(width: int, height: int, fps: int, audio_path: str | None, out_path: str) -> list[str]:
    import imageio_ffmpeg

    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-y", "-loglevel", "error",
               "-f", "rawvideo", "-pix_fmt", "bgra", "-s", f"{width}x{height}", "-r", str(fps), "-i", "-"]
    if audio_path:
        command += ["-i", str(audio_path), "-map", "0:v:0", "-map", "1:a:0", "-c:a", "aac", "-b:a", "128k"]
    return command + ENCODER + ["-r", str(fps), "-movflags", "+faststart", "-f", "mp4", out_path]


def render_video(motions: list[Motion], audio_path: str | None, out_path, labels: list[str] | None = None,
                 body_path=None, size: int = 512, progress: Callable[[int, int], None] | None = None) -> dict:
    """Render one or more motions of the same speech to an H.264 + AAC mp4.

    One motion = one avatar; several = side by side in one video (each `size` x `size`), each with
    its label (e.g. "async LCM 4/8 steps, 0.21 s"). The video lasts as long as the audio (whole
    frames, rounded up; a motion shorter than the audio holds its last pose). `body_path`: an
    SMPL-X model file, else $ASYNFUSION_BODY, else the shipped stand-in. `progress(done, total)`
    is called per frame; without it a tqdm bar shows on a terminal. Nothing is left at `out_path`
    if rendering fails. Returns {"frames", "seconds", "fps"} of the rendering itself (wall time,
    setup included), the video's {"video_seconds", "video_fps"} and "notes": what of the motions this
    body cannot show (FLAME expressions on the stand-in's ARKit face: jaw only; SMPL-X betas on the
    stand-in: ignored), also logged, with "(jaw-only face)" added to such a motion's label.
    """
    from .body import load_body

    fps = _check_request(motions, labels, size)
    out_path = Path(out_path)
    num_frames = _frame_count(motions, audio_path, fps)
    started = time.perf_counter()
    body = load_body(body_path)
    bodies = [body] * len(motions)
    labels, notes = _fit_notes(body, motions, labels or [""] * len(motions))
    stages = stages_for(bodies, size)
    overlays = _label_overlays(labels, size)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_path = tempfile.mkstemp(suffix=".mp4", prefix=".tmp-render-", dir=out_path.parent)
    os.close(fd)
    pixels_queue: queue.Queue = queue.Queue(QUEUE_DEPTH)
    encoder_log = tempfile.TemporaryFile()  # a file, not a pipe: ffmpeg can never block on a full stderr
    encoder = None
    bar = None
    if progress is None:
        from tqdm import tqdm

        bar = tqdm(total=num_frames, unit="frame", desc="render", leave=False, disable=None)
    try:
        with Frames(stages, bodies, motions, num_frames,
                    lambda pixels: _compose(pixels, overlays, size, len(motions)).tobytes()) as frames:
            encoder = subprocess.Popen(_ffmpeg_command(size * len(motions), size, fps, audio_path, temp_path),
                                       stdin=subprocess.PIPE, stderr=encoder_log)
            writer = threading.Thread(target=_write_frames, args=(encoder, pixels_queue), daemon=True)
            writer.start()
            _hand_on(frames, num_frames, pixels_queue, progress, bar)
            _finish_encoding(encoder, writer, pixels_queue, encoder_log)
        os.replace(temp_path, out_path)
    except BaseException:
        _abandon_encoding(encoder, pixels_queue, temp_path)
        raise
    finally:
        if bar is not None:
            bar.close()
        encoder_log.close()
    wall = time.perf_counter() - started
    return {"frames": num_frames, "seconds": wall, "fps": num_frames / wall,
            "video_seconds": num_frames / fps, "video_fps": fps, "notes": notes}


def _check_request(motions: list[Motion], labels: list[str] | None, size: int) -> int:
    """The motions' shared frame rate, after the checks that need no file: an InputError for a bad request."""
    if not motions:
        raise InputError("nothing to render: no motion given")
    if labels is not None and len(labels) != len(motions):
        raise InputError(f"{len(labels)} labels for {len(motions)} motions")
    fps = motions[0].fps
    if any(m.fps != fps for m in motions):
        raise InputError("side-by-side motions must share one frame rate")
    if size < 64 or size % 2:
        raise InputError(f"video size must be an even number of pixels >= 64, got {size}")
    return fps


def _frame_count(motions: list[Motion], audio_path: str | None, fps: int) -> int:
    """Frames in the video: the audio's length in whole frames, rounded up, else the longest motion's."""
    if audio_path is not None:
        from ..audio import audio_seconds

        num_frames = max(1, math.ceil(audio_seconds(audio_path) * fps - 1e-6))
    else:
        num_frames = max(m.num_frames for m in motions)
    if min(m.num_frames for m in motions) == 0:
        raise InputError("cannot render a motion with no frames")
    return num_frames


def _hand_on(frames: Frames, num_frames: int, pixels_queue: queue.Queue, progress: Callable[[int, int], None] | None,
             bar) -> None:
    """Hand each rendered frame, in order, to the writer thread (re-raising a rendering error)."""
    for done in range(1, num_frames + 1):
        try:
            pixels_queue.put(frames.get(done - 1), timeout=ENCODER_TIMEOUT)
        except queue.Full:
            raise InputError(f"ffmpeg stopped taking frames for {ENCODER_TIMEOUT:.0f} s; "
                             "the video was not written") from None
        if progress is not None:
            progress(done, num_frames)
        elif bar is not None:
            bar.update()


def _finish_encoding(encoder: subprocess.Popen, writer: threading.Thread, pixels_queue: queue.Queue,
                     encoder_log) -> None:
    """End the frames and wait for ffmpeg to finish the file: an InputError if it stalls or fails."""
    pixels_queue.put(None)
    writer.join(ENCODER_TIMEOUT)
    try:
        status = encoder.wait(ENCODER_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise InputError(f"ffmpeg did not finish the video within {ENCODER_TIMEOUT:.0f} s of the last "
                         "frame; the video was not written") from None
    if status != 0:
        encoder_log.seek(0)
        lines = encoder_log.read().decode(errors="replace").strip().splitlines() or ["no message"]
        raise InputError(f"ffmpeg could not write the video: {lines[-1]}")


def _abandon_encoding(encoder: subprocess.Popen | None, pixels_queue: queue.Queue, temp_path: str) -> None:
    """After a failure: stop ffmpeg and the writer, and leave no partial file."""
    if encoder is not None:
        encoder.kill()  # the writer's next write fails and it exits; a None wakes it if it is idle
        encoder.wait()
    with contextlib.suppress(queue.Full):
        pixels_queue.put_nowait(None)
    Path(temp_path).unlink(missing_ok=True)


def _fit_notes(body, motions: list[Motion], labels: list[str]) -> tuple[list[str], list[str]]:
    """What of each motion this body cannot show (logged, and "jaw-only face" added to the label)."""
    labels, notes = list(labels), []
    for i, motion in enumerate(motions):
        name = labels[i] or f"motion {i + 1}"
        if motion.expression_space != body.expression_space and motion.expressions.any():
            notes.append(f"{name}: {motion.expression_space.upper()} expressions do not fit this body's "
                         f"{body.expression_space.upper()} face, so the face moves by the jaw only"
                         + (" (pass --body SMPLX_NEUTRAL.npz for the whole face)" if not body.smplx_betas else ""))
            labels[i] = f"{labels[i]}  (jaw-only face)".strip()
        if not body.smplx_betas and motion.betas.any():
            notes.append(f"{name}: its SMPL-X body shape (betas) is ignored: the stand-in keeps its own shape")
    for note in notes:
        log.warning(note)
    return labels, notes


def _write_frames(encoder: subprocess.Popen, pixels: queue.Queue) -> None:
    """Feed raw frames to ffmpeg until the sentinel. After ffmpeg dies the frames are drained unwritten, so
    the renderer never blocks; the failure is reported from ffmpeg's exit code."""
    alive = True
    while (frame := pixels.get()) is not None:
        if alive:
            try:
                encoder.stdin.write(frame)
            except (BrokenPipeError, ValueError):
                alive = False
    with contextlib.suppress(BrokenPipeError):
        encoder.stdin.close()


def render_still(motion: Motion, frame: int, out_png, body_path=None, size: int = 512,
                 label: str | None = None) -> Path:
    """One frame of `motion` as a PNG (README pictures, quick checks)."""
    from PIL import Image

    from .body import iter_body_vertices, load_body

    if not 0 <= frame < motion.num_frames:
        raise InputError(f"frame {frame} is outside the motion's {motion.num_frames} frames")
    body = load_body(body_path)
    stage = _Stage([body], size, multisample=True)
    try:
        vertices, normals = next(itertools.islice(iter_body_vertices(body, motion, batch_frames=1), frame, None))
        avatar = stage.avatars[0]
        stage.place(avatar, vertices[0], normals[0])
        image = _compose(stage.render([(avatar.body_buffer, avatar.head_buffer)]),
                         _label_overlays([label or ""], size), size, 1)[..., 2::-1]  # BGRA -> RGB
    finally:
        stage.close()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(out_png)
    return out_png
