"""The frame pipeline of a video: stages set up ahead, the skinning thread, and the threads that draw.

  producer    skins every motion (torch, one thread) and fills each frame's vertex buffers
  painters    one thread per OpenGL stage (EGL: two on two or more cores), each drawing every other
              frame: llvmpipe bins a frame's triangles in the calling thread and then waits for its
              rasteriser threads, so with one stage the two never overlap; with two, one stage bins
              while the other's frame is rasterised (300 frames at 512 px: 77 -> 96 fps, median of 4)
  collector   the calling thread: takes the frames back in order and hands them on

With OSMesa, whose context cannot move between threads, one stage draws in the calling thread.
"""

import queue
import threading
from collections.abc import Callable

from .scene import _Stage

QUEUE_DEPTH = 8
_prepared: dict[tuple[int, int], list[_Stage]] = {}  # (id(body), size) -> one-avatar stages set up ahead


def stage_count() -> int:
    """Stages a video renders with: two when each can draw in a thread of its own (EGL) on two or more
    cores this process may use, else one."""
    from ..precision import usable_cores
    from .scene import choose_gl_platform

    return 2 if choose_gl_platform() == "egl" and usable_cores() >= 2 else 1


def offer_stage(body, size: int) -> None:
    """Set up the one-avatar stages of the next video of `body` at `size` in this thread
    (render/__init__.py's prepare_in_background; EGL only, so they can move to their drawing threads)."""
    _prepared[(id(body), size)] = _new_stages([body], size, release=True)


def discard_prepared() -> None:
    """Close stages prepared for a render that did not happen (a failed generation, a refused request)."""
    while _prepared:
        close_stages(_prepared.popitem()[1])


def stages_for(bodies, size: int) -> list[_Stage]:
    """The stages prepared for this body and size when there are, else new ones (released from this
    thread when there are several, to be drawn with by the painters)."""
    if len(bodies) == 1 and (id(bodies[0]), size) in _prepared:
        return _prepared.pop((id(bodies[0]), size))
    return _new_stages(bodies, size, release=stage_count() > 1)


def _new_stages(bodies, size: int, release: bool) -> list[_Stage]:
    """stage_count() stages of `bodies`; `release`: unbound from this thread, for others to draw with."""
    stages = []
    try:
        for _ in range(stage_count()):
            stages.append(_Stage(bodies, size))
            if release:
                stages[-1].release()
    except BaseException:
        close_stages(stages)
        raise
    return stages


def close_stages(stages: list[_Stage]) -> None:
    for stage in stages:
        stage.close()


def produce(stage: _Stage, bodies, motions, num_frames: int, inboxes: list[queue.Queue],
            stop: threading.Event) -> None:
    """Skin every motion, compute normals, fill per-frame buffers, frame k into inbox k mod len(inboxes);
    holds the last pose past the motion's end. Ends each inbox with None, or with the error that stopped it.

    Skinning runs on one torch thread while this runs: the other core is the rasteriser's and the
    encoder's, and a second torch thread spinning for work costs them more than it saves here (skinning
    took 6.5 ms of CPU a frame on two threads, 2.9 ms on one). torch's thread count is process-wide, so
    it is put back afterwards; the app and the CLI never sample while they render.
    """
    import torch

    from .body import iter_body_vertices

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        generators = [iter_body_vertices(body, motion) for body, motion in zip(bodies, motions, strict=True)]
        last = [None] * len(motions)
        frame = 0
        while frame < num_frames and not stop.is_set():
            batch = []
            for i, generator in enumerate(generators):
                vertices, normals = next(generator, last[i])  # a motion shorter than the audio holds its pose
                last[i] = (vertices[-1:], normals[-1:])
                batch.append((vertices, normals))
            length = max(len(v) for v, _ in batch)
            for k in range(min(length, num_frames - frame)):
                buffers = []
                for avatar, (vertices, normals) in zip(stage.avatars, batch, strict=True):
                    index = min(k, len(vertices) - 1)
                    stage.place(avatar, vertices[index], normals[index])
                    head = None if avatar.head_buffer is None else avatar.head_buffer.copy()
                    buffers.append((avatar.body_buffer.copy(), head))
                inboxes[frame % len(inboxes)].put(buffers)
                frame += 1
        end = None
    except BaseException as error:  # handed to the collecting thread, which re-raises it
        end = error
    finally:
        torch.set_num_threads(threads)
    for inbox in inboxes:
        inbox.put(end)


def _paint(stage: _Stage, finish: Callable, inbox: queue.Queue, outbox: queue.Queue) -> None:
    """A painter: draw each frame of `inbox` on `stage` and put finish(pixels) into `outbox`, until None
    or an error, which it passes on."""
    try:
        while not isinstance(buffers := inbox.get(), BaseException | None):
            outbox.put(finish(stage.render(buffers)))
        outbox.put(buffers)
    except BaseException as error:
        outbox.put(error)
    finally:
        stage.release()


class Frames:
    """Rendered frames in order, `get(k)` for k = 0, 1, ...: from the painters, or drawn in the calling
    thread with one stage. A context manager: entering starts the threads; leaving stops every one of
    them (also on failure) and then closes the stages."""

    def __init__(self, stages: list[_Stage], bodies, motions, num_frames: int, finish: Callable):
        self.stages, self.finish = stages, finish
        self.stop = threading.Event()
        self.inboxes = [queue.Queue(QUEUE_DEPTH // len(stages)) for _ in stages]
        self.outboxes = [queue.Queue() for _ in stages]  # bounded by the inboxes: a painter takes one at a time
        self.producer = threading.Thread(target=produce, daemon=True,
                                         args=(stages[0], bodies, motions, num_frames, self.inboxes, self.stop))
        self.painters = [threading.Thread(target=_paint, args=(stage, finish, inbox, outbox), daemon=True)
                         for stage, inbox, outbox in zip(stages, self.inboxes, self.outboxes)] \
            if len(stages) > 1 else []

    def __enter__(self) -> "Frames":
        self.producer.start()
        for painter in self.painters:
            painter.start()
        return self

    def get(self, k: int):
        """Frame k's finish(pixels); frames are taken in order, each once. Re-raises a thread's error."""
        if self.painters:
            item = self.outboxes[k % len(self.stages)].get()
        else:
            item = self.inboxes[0].get()
            if not isinstance(item, BaseException | None):
                item = self.finish(self.stages[0].render(item))
        if isinstance(item, BaseException):
            raise item
        return item

    def __exit__(self, *exc) -> None:
        self.stop.set()
        while self.producer.is_alive():  # unblock a producer waiting on a full inbox
            for inbox in self.inboxes:
                _drain(inbox)
            self.producer.join(0.05)
        for inbox in self.inboxes:  # painters still waiting for a frame: none will come
            _drain(inbox)
            inbox.put(None)
        for painter in self.painters:
            painter.join()
        close_stages(self.stages)


def _drain(box: queue.Queue) -> None:
    while True:
        try:
            box.get_nowait()
        except queue.Empty:
            return
