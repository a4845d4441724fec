"""The 3D player's animation straight from Generate to the page, past Gradio's queue.

    GET player/animation/{token}  -> the result's animation (export/animation.py's layout) as soon as the
                                     motion is made; 404 for an unknown token, 504 if none came in time

Generate's first result (the speech) names the token (exports.PlayerFiles.stream); the page asks for it
at once and the request waits until the handler hands the animation over. As a result of its own, the
animation went through Gradio's output processing (hashing and copying the files), the queue's message
to the page, the page's update of the component and then a fetch of the file: ~40 ms idle, more when
the page is busy. The later results still carry the animation as a Gradio file: a page whose request
failed, and cached examples, take it from there.
"""

import asyncio
import secrets
import threading
import time
from concurrent.futures import Future

PREFIX = "/player/animation"
WAIT_SECONDS = 300.0  # a request waits this long for its motion (a long clip on a busy machine: under a minute)


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
        with self._lock:
            entry = self._pending.get(stream.rsplit("/", 1)[-1])
        if entry is not None:
            entry[0].set_result(data)

    async def wait(self, token: str, timeout: float = WAIT_SECONDS) -> bytes | None:
        """The animation for `token` once delivered, or None for a token unknown or already taken."""
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


def routes(animations: Animations) -> list:
    """The route over `animations`, for FastAPI(routes=...), beside Live's (app.py)."""
    from fastapi.responses import Response
    from fastapi.routing import APIRoute

    async def animation(token: str) -> Response:
        try:
            data = await animations.wait(token)
        except TimeoutError:
            return Response("the motion was not made in time", status_code=504)
        if data is None:
            return Response("no such animation", status_code=404)
        return Response(data, media_type="application/octet-stream", headers={"Cache-Control": "no-store"})

    return [APIRoute(PREFIX + "/{token}", animation, methods=["GET"], include_in_schema=False)]
