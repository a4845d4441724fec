"""Live mode's transport: plain HTTP routes on the app's own server (FastAPI under Gradio).

    POST live/start               -> {"take", "fps", "sample_rate", "chunk_s", "lookahead_s", "max_seconds"}
                                     or 503 {"error": "Live is busy: ..."} (one line)
    GET  live/{take}/motion       -> the take's motion stream (application/octet-stream), open until it ends:
                                     messages as live_takes.encode_message lays them out, each a header
                                     {"type": "frames", "first", "frames", "fps", "joints", "targets", "heard"}
                                     with export/animation.py's float32 data, then one {"type": "end", ...}
                                     (the take is saved) or {"type": "error", "message"}
    POST live/{take}/audio?seq=N  <- 16 kHz mono 16-bit PCM, pieces numbered from 0 (sent one at a time)
    POST live/{take}/stop         <- the visitor pressed Stop: the rest of the motion, then "end", follow

Why not a WebSocket: uvicorn serves WebSockets only with the `websockets` or `wsproto` package, which
Gradio 6 no longer brings; these routes need nothing beyond what Gradio itself runs on, pass any proxy
that passes the rest of the app, and on a keep-alive connection cost a millisecond or two per piece here
(the latency is the chunk, the lookahead and the sampling: tens of times more). Why not Gradio's own
streaming event (gr.Audio(streaming=True).stream): each piece would go through the queue as an event of
its own, and the motion back out through a component's value, re-rendered for every piece; the page
could not time its own audio against the frames. The stream closing (the page went away, the network
dropped) abandons the take, as does its audio no longer coming (live_takes.IDLE_SECONDS).

`routes(takes)` gives the routes; app.py passes them to Gradio's FastAPI app with
`launch(app_kwargs={"routes": ...})`, so they sit beside Gradio's own under the same root path.
"""

import asyncio

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute

from ..audio import SAMPLE_RATE
from ..errors import InputError
from ..motion import FPS
from .live_takes import LiveTakes

PREFIX = "/live"
MAX_PIECE_BYTES = 4 * SAMPLE_RATE * 2  # 4 s of 16-bit audio in one piece: more is not a microphone's


def _refused(error: InputError, status: int) -> JSONResponse:
    return JSONResponse({"error": str(error)}, status_code=status)


def routes(takes: LiveTakes) -> list[APIRoute]:
    """The Live routes over `takes`, for FastAPI(routes=...)."""

    async def start() -> JSONResponse:
        try:
            take = await asyncio.to_thread(takes.start)
        except InputError as error:
            return _refused(error, 503 if "busy" in str(error) else 400)
        options = takes.options
        return JSONResponse({"take": take.id, "fps": FPS, "sample_rate": SAMPLE_RATE, "chunk_s": options.chunk_s,
                             "lookahead_s": options.lookahead_s, "max_seconds": options.max_seconds})

    async def audio(take_id: str, request: Request, seq: int = -1) -> Response:
        data = await request.body()
        try:
            if len(data) > MAX_PIECE_BYTES:
                raise InputError(f"an audio piece of {len(data)} bytes is too long: send at most 4 s at a time")
            takes.get(take_id).add_audio(data, seq)
        except InputError as error:
            return _refused(error, 409)
        return Response(status_code=204)

    async def stop(take_id: str) -> Response:
        try:
            takes.get(take_id).stop()
        except InputError as error:
            return _refused(error, 404)
        return Response(status_code=204)

    async def motion(take_id: str) -> Response:
        try:
            take = takes.get(take_id)
        except InputError as error:
            return _refused(error, 404)

        async def messages():
            try:
                while (message := await asyncio.to_thread(take.next_message, 0.5)) is not None:
                    if message:
                        yield message
            finally:  # the page went away (Starlette cancels this on a disconnect) or the take ended
                take.abandon()

        return StreamingResponse(messages(), media_type="application/octet-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    return [APIRoute(f"{PREFIX}/start", start, methods=["POST"], include_in_schema=False),
            APIRoute(PREFIX + "/{take_id}/audio", audio, methods=["POST"], include_in_schema=False),
            APIRoute(PREFIX + "/{take_id}/stop", stop, methods=["POST"], include_in_schema=False),
            APIRoute(PREFIX + "/{take_id}/motion", motion, methods=["GET"], include_in_schema=False)]
