"""The 3D player's animation straight from Generate to the page, past Gradio's queue.

    GET player/animation/{token}  -> the result's animation (export/animation.py's layout) as soon as the
                                     motion is made; 500 and one line at once if Generate failed or stopped
                                     before that, 404 for an unknown token, 504 if none came in time

Generate's first result (the speech) names the token (exports.PlayerFiles.stream); the page asks for it
at once and the request waits until the handler hands the animation over. As a result of its own, the
animation went through Gradio's output processing (hashing and copying the files), the queue's message
to the page, the page's update of the component and then a fetch of the file: ~40 ms idle, more when
the page is busy. The later results still carry the animation as a Gradio file: a page whose request
failed, and cached examples, take it from there. When Generate fails after its first result, no later
result comes: the token is cancelled, and the request is answered at once with the reason (Gradio shows
the error itself), so the page stops waiting rather than after WAIT_SECONDS.
"""

import asyncio
import contextlib
import secrets
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future

from ..errors import InputError

PREFIX = "/player/animation"
WAIT_SECONDS = 300.0  # a request waits this long for its motion (a long clip on a busy machine: under a minute)
NOT_MADE_STATUS = 500  # the motion will not come (static/player.js stops waiting on it)


class NotMade(Exception):
    """Generate failed or stopped before its animation was delivered; the message is one line for the page."""


class Animations:
    """Animations on their way to the page, by token; each is handed out once."""

    def __init__(self):
        self._pending: dict[str, tuple[Future, float]] = {}
        self._lock = threading.Lock()

    def expect(self) -> str:
        """A new token to deliver an animation to: the page's path for it, relative to the app's root."""
        token = secrets.token_urlsafe(16)
        now = time.monotonic()
        with self._lock:
            # never asked for (the page went away) or never delivered (the request failed): forgotten
            for old in [key for key, (_, since) in self._pending.items() if now - since > WAIT_SECONDS]:
                del self._pending[old]
            self._pending[token] = (Future(), now)
        return f"{PREFIX.lstrip('/')}/{token}"

    def deliver(self, stream: str, data: bytes) -> None:
        """Hand the animation to the request waiting on `stream` (or to the one that comes)."""
        if (entry := self._entry(stream)) is not None:
            entry.set_result(data)

    def cancel(self, stream: str, reason: str) -> None:
        """Answer the request waiting on `stream` (or the one that comes) with NotMade(reason) at once; a
        stream already delivered stays as it is."""
        if (entry := self._entry(stream)) is not None and not entry.done():  # deliver comes from the same thread
            entry.set_exception(NotMade(reason))

    def _entry(self, stream: str) -> Future | None:
        with self._lock:
            entry = self._pending.get(stream.rsplit("/", 1)[-1])
        return entry[0] if entry else None

    @contextlib.contextmanager
    def expecting(self) -> Iterator[str]:
        """`expect()` for a block that delivers to it: if the block fails or is stopped (its generator
        closed) first, the stream is cancelled with the reason, and the error goes on."""
        stream = self.expect()
        try:
            yield stream
        except BaseException as error:
            self.cancel(stream, failure_reason(error))
            raise

    async def wait(self, token: str, timeout: float = WAIT_SECONDS) -> bytes | None:
        """The animation for `token` once delivered, or None for a token unknown or already taken; raises
        NotMade once cancelled, TimeoutError after `timeout` seconds."""
        with self._lock:
            entry = self._pending.get(token)
        if entry is None:
            return None
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(entry[0])), timeout)
        finally:
            if entry[0].done():
                with self._lock:
                    self._pending.pop(token, None)


def failure_reason(error: BaseException) -> str:
    """What the page's player says of a Generate that failed: the InputError's own line (which Gradio shows
    too), else only that it failed or stopped (the details are the server's log's)."""
    if isinstance(error, InputError):
        return str(error).partition("\n")[0] or "Generate failed"
    return "Generate failed" if isinstance(error, Exception) else "Generate stopped"


def routes(animations: Animations) -> list:
    """The route over `animations`, for FastAPI(routes=...), beside Live's (app.py)."""
    from fastapi.responses import Response
    from fastapi.routing import APIRoute

    async def animation(token: str) -> Response:
        try:
            data = await animations.wait(token)
        except TimeoutError:
            return Response("the motion was not made in time", status_code=504)
        except NotMade as error:
            return Response(f"the motion was not made: {error}", status_code=NOT_MADE_STATUS,
                            headers={"Cache-Control": "no-store"})
        if data is None:
            return Response("no such animation", status_code=404)
        return Response(data, media_type="application/octet-stream", headers={"Cache-Control": "no-store"})

    return [APIRoute(PREFIX + "/{token}", animation, methods=["GET"], include_in_schema=False)]
