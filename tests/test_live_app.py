"""The app's Live mode on the server (asynfusion/app/live_takes.py, live_route.py), over real HTTP on a
local port: a take's motion comes back piece by piece, continuous from frame 0, and is saved when it
stops; a second take at once is told the app is busy; a dropped stream, audio that stops coming, a
silent microphone and a take past the cap each end cleanly, free their slot, and the server goes on."""

import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn
from fastapi import FastAPI

from asynfusion.app import live_route
from asynfusion.app.live_takes import LiveOptions, LiveTakes, decode_messages
from asynfusion.settings import Settings

PIECE_S = 0.1  # what the page sends at a time


@pytest.fixture(scope="module")
def continuing_checkpoint(tmp_path_factory, write_tiny_checkpoint):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("live-app"), "continuing", continuation=True)


@pytest.fixture
def serve(continuing_checkpoint, tmp_path, free_port):
    """serve(**options) -> (base URL, takes): the Live routes alone on a local uvicorn, stopped after the test."""
    servers = []

    def start(**options):
        settings = Settings(checkpoint=str(continuing_checkpoint), render_size=64, work_dir=tmp_path / "work",
                            precision="fp32")
        takes = LiveTakes(settings, LiveOptions(**{"chunk_s": 0.3, "lookahead_s": 0.1, **options}))
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(FastAPI(routes=live_route.routes(takes)), host="127.0.0.1",
                                               port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.02)
        servers.append((server, thread, takes))
        return f"http://127.0.0.1:{port}", takes

    yield start
    for server, thread, takes in servers:
        takes.close()
        server.should_exit = True
        thread.join(10)


class Take:
    """A take as the page runs it: start, read the motion stream in the background, send audio, stop."""

    def __init__(self, url: str):
        self.client = httpx.Client(base_url=url, timeout=30)
        response = self.client.post("/live/start")
        assert response.status_code == 200, response.text
        self.info = response.json()
        self.id, self.seq, self.data = self.info["take"], 0, bytearray()
        self.stream = self.client.stream("GET", f"/live/{self.id}/motion")
        self.response = self.stream.__enter__()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        try:
            for chunk in self.response.iter_raw():
                self.data.extend(chunk)
        except httpx.HTTPError:
            pass  # the test closed it

    def send(self, samples: np.ndarray, pace: float = 0.0) -> list[int]:
        statuses = []
        step = int(PIECE_S * 16_000)
        for offset in range(0, len(samples), step):
            pcm = (np.clip(samples[offset:offset + step], -1, 1) * 32767).astype("<i2").tobytes()
            statuses.append(self.client.post(f"/live/{self.id}/audio", params={"seq": self.seq},
                                             content=pcm).status_code)
            self.seq += 1
            time.sleep(pace)
        return statuses

    def messages(self) -> list[tuple[dict, bytes]]:
        return decode_messages(bytes(self.data))

    def finish(self) -> dict:
        """Stop and wait for the stream's end: the last message's header."""
        assert self.client.post(f"/live/{self.id}/stop").status_code == 204
        self.reader.join(30)
        assert not self.reader.is_alive(), "the motion stream did not end"
        return self.messages()[-1][0]

    def drop(self):
        self.stream.__exit__(None, None, None)
        self.client.close()


def wait_until(condition, seconds=20.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_take_streams_continuous_motion_and_is_saved(serve, speech_like):
    url, takes = serve()
    take = Take(url)
    assert take.info["fps"] == 30 and take.info["sample_rate"] == 16_000
    assert set(take.send(speech_like(1.5), pace=0.02)) == {204}
    wait_until(lambda: len(take.messages()) >= 2)  # motion comes while the audio does
    end = take.finish()
    frames = [header for header, _ in take.messages() if header["type"] == "frames"]
    assert end["type"] == "end" and end["ending"] == "stop" and end["frames"] == 45 and end["seconds"] == 1.5
    # the pieces follow one another from frame 0 to the last, each the animation layout of its frames
    assert [h["first"] for h in frames] == list(np.cumsum([0] + [h["frames"] for h in frames[:-1]]))
    assert sum(h["frames"] for h in frames) == 45
    for header, data in take.messages()[:-1]:
        assert len(data) == 4 * header["frames"] * (len(header["joints"]) * 4 + 3 + header["targets"])
        assert header["heard"] >= round((header["first"] + header["frames"]) * 16_000 / 30)
    assert end["server_latency_p95_s"] > 0 and end["windows"] >= len(frames) - 1
    body, speech, count, animation, stream = end["player"]
    assert count == 45 and stream is None   # a take's animation is a file, not Generate's route
    assert Path(animation).exists() and Path(speech).exists() and Path(end["motion"]).exists()
    assert takes.result(take.id)["motion"] == end["motion"] and not takes.running


def test_a_second_take_at_once_is_told_busy_until_the_first_ends(serve, speech_like):
    url, takes = serve()
    first = Take(url)
    busy = httpx.post(f"{url}/live/start")
    assert busy.status_code == 503 and busy.json()["error"].startswith("Live is busy")
    assert "\n" not in busy.json()["error"]
    first.send(speech_like(0.6))
    assert first.finish()["type"] == "end"
    second = Take(url)  # the slot is free again
    second.send(speech_like(0.5))
    assert second.finish()["type"] == "end"


def test_a_dropped_stream_abandons_the_take_and_frees_its_slot(serve, speech_like):
    url, takes = serve()
    take = Take(url)
    take.send(speech_like(0.6))
    running = takes.running[take.id]
    take.drop()
    wait_until(lambda: not takes.running)
    running.thread.join(10)
    assert not running.thread.is_alive() and not running.folder.exists() and take.id not in takes.finished
    again = Take(url)
    again.send(speech_like(0.5))
    assert again.finish()["type"] == "end"


def test_audio_that_stops_coming_abandons_the_take(serve, speech_like):
    url, takes = serve(idle_seconds=0.5)
    take = Take(url)
    take.send(speech_like(0.4))
    wait_until(lambda: not takes.running, seconds=10)
    take.reader.join(10)
    assert take.messages() == [] or take.messages()[-1][0]["type"] == "frames"  # no end: nothing was kept
    assert httpx.post(f"{url}/live/{take.id}/audio", params={"seq": take.seq}, content=b"\0\0").status_code == 409


def test_a_silent_microphone_ends_with_one_line_and_nothing_kept(serve):
    url, takes = serve()
    take = Take(url)
    take.send(np.zeros(16_000, np.float32))
    end = take.finish()
    assert end["type"] == "error" and end["message"].startswith("The microphone was silent")
    assert "\n" not in end["message"] and not takes.running and not takes.finished


def test_a_long_talk_stops_at_the_cap_and_keeps_the_take(serve, speech_like):
    url, takes = serve(max_seconds=1.0)   # the app's cap is 10 minutes: the same path, sooner
    take = Take(url)
    statuses = take.send(speech_like(2.0))
    take.reader.join(30)
    end = take.messages()[-1][0]
    assert end["type"] == "end" and end["ending"] == "cap" and end["seconds"] == 1.0 and end["frames"] == 30
    assert statuses[:10] == [204] * 10 and statuses[-1] == 409  # past the cap the audio is refused
    assert not takes.running and take.id in takes.finished


def test_bad_requests_get_one_line(serve):
    url, takes = serve()
    for response in (httpx.get(f"{url}/live/nope/motion"), httpx.post(f"{url}/live/nope/stop"),
                     httpx.post(f"{url}/live/nope/audio", params={"seq": 0}, content=b"\0\0")):
        assert response.status_code in (404, 409) and "\n" not in response.json()["error"]
    take = Take(url)
    odd = httpx.post(f"{url}/live/{take.id}/audio", params={"seq": 0}, content=b"\0\0\0")
    assert odd.status_code == 409 and "odd" in odd.json()["error"]
    late = httpx.post(f"{url}/live/{take.id}/audio", params={"seq": 5}, content=b"\0\0")
    assert late.status_code == 409 and "order" in late.json()["error"]
    take.drop()
    wait_until(lambda: not takes.running)


def test_a_saved_take_gives_the_page_replay_downloads_and_video(serve, speech_like):
    from asynfusion.app.live_result import take_steps
    from asynfusion.errors import InputError

    url, takes = serve()
    take = Take(url)
    take.send(speech_like(1.2))
    end = take.finish()
    page = {"take": take.id, "latency_p50_s": 0.61, "latency_p95_s": 0.83, "mouth_delay_s": "x"}
    first, downloads, last = take_steps(page, takes, takes.settings)
    assert first.player == tuple(end["player"]) and first.motion == end["motion"] and first.video is None
    table = dict(zip(first.timings["measure"], first.timings["value"]))
    assert table["latency in the page, p95: seconds"] == 0.83 and "mouth behind the voice: seconds" not in table
    assert [Path(path).suffix for path in downloads.exports] == [".glb", ".bvh", ".csv"]
    assert Path(last.video).stat().st_size > 1000 and last.exports == downloads.exports
    with pytest.raises(InputError, match="no longer here"):
        next(take_steps({"take": "0" * 16}, takes, takes.settings))
    with pytest.raises(InputError, match="no live take"):
        next(take_steps(None, takes, takes.settings))


def test_a_take_past_the_page_cap_is_not_rendered(serve, speech_like):
    from dataclasses import replace

    from asynfusion.app.live_result import take_steps

    url, takes = serve()
    take = Take(url)
    take.send(speech_like(1.2))
    take.finish()
    *_, last = take_steps({"take": take.id}, takes, replace(takes.settings, max_seconds=1.0))
    assert last.video is None and len(last.exports) == 3 and "asynfusion render" in last.note


def test_a_checkpoint_that_cannot_continue_refuses_each_take_in_one_line(tmp_path, write_tiny_checkpoint):
    from asynfusion.errors import InputError

    plain = write_tiny_checkpoint(tmp_path)
    takes = LiveTakes(Settings(checkpoint=str(plain), work_dir=tmp_path / "work", precision="fp32"))
    takes.warm_up()   # the app still starts
    with pytest.raises(InputError, match="--continuation"):
        takes.start()
    assert not takes.running


def test_the_app_takes_its_chunk_and_lookahead_from_the_live_settings(monkeypatch):
    from asynfusion.app.live_takes import LiveOptions

    assert (LiveOptions().chunk_s, LiveOptions().lookahead_s) == (0.5, 0.2)
    monkeypatch.setenv("ASYNFUSION_LIVE_CHUNK", "0.4")
    monkeypatch.setenv("ASYNFUSION_LIVE_LOOKAHEAD", "0.1")
    assert (LiveOptions().chunk_s, LiveOptions().lookahead_s) == (0.4, 0.1)   # as `asynfusion stream` reads them
