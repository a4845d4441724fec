"""The 3D player (asynfusion/app/player.py, static/player.js): the page's Generate gives the player its
files before the video (the body's .glb, the same every time, and the result's animation alone), and in a
real headless Chromium (Debian's, WebGL through SwiftShader) the avatar wears the video's outfit, moves
while the speech plays, holds still when it is paused, shows the frame of the audio's time after a seek,
takes a second result without fetching the body again, stops waiting when Generate fails after its first
result, and the page does all of it with every request off this machine refused."""

import asyncio
import json
import math
import struct
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
import soundfile

from asynfusion.app import handlers
from asynfusion.app.animations import NOT_MADE_STATUS, Animations, NotMade, routes
from asynfusion.errors import InputError
from asynfusion.settings import Settings

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
FPS = 30
PLAYER = "#player .af-player"


# ----------------------------------------------------------------------------
# The handler: the player's files first, the video after
# ----------------------------------------------------------------------------
@pytest.fixture
def settings(checkpoint_dir, tmp_path):
    return Settings(checkpoint=str(checkpoint_dir), render_size=64, compare_size=64, max_seconds=4.0,
                    work_dir=tmp_path / "work", cache_examples="off")


def glb_header(path) -> tuple[bytes, int]:
    magic, version, length = struct.unpack("<4sII", Path(path).read_bytes()[:12])
    assert length == Path(path).stat().st_size
    return magic, version


def read_animation(path) -> dict:
    """export/animation.py's header, checked against the file's length."""
    data = Path(path).read_bytes()
    length = int.from_bytes(data[:4], "little")
    header = json.loads(data[4:4 + length])
    floats = header["frames"] * (len(header["joints"]) * 4 + 3 + header["targets"])
    assert len(data) == 4 + length + 4 * floats
    return header


def test_generate_steps_gives_the_player_first_then_the_video(settings, tmp_path, speech_like):
    audio = tmp_path / "speech.wav"
    soundfile.write(audio, speech_like(1.5), 16_000)
    waiting, moving, first, last = list(handlers.generate_steps(str(audio), "async-lcm", seed=2, settings=settings))

    # the speech first, for the page to fetch while the motion is made
    assert waiting.video is None and waiting.motion is None and waiting.player.animation is None
    assert Path(waiting.player.body) == settings.work_dir / handlers.PLAYER_BODY and waiting.player.frames == 0
    assert not waiting.player_only and not first.player_only and not last.player_only

    # then the player's animation alone, which the page plays before it updates anything else
    assert moving.player_only and moving.player == first.player and moving.exports == []

    assert first.video is None and Path(first.motion).exists()
    body, speech, frames, animation, stream = first.player
    assert (body, speech) == waiting.player[:2] and glb_header(body) == (b"glTF", 2) and frames == 45
    assert stream is None  # no route to the page: the animation came as a result of its own
    header = read_animation(animation)
    assert header["frames"] == 45 and len(header["joints"]) == 55 and header["fps"] == FPS
    assert Path(animation).stat().st_size < Path(body).stat().st_size / 10  # the result alone, no body
    assert soundfile.info(speech).samplerate == 16_000 and soundfile.info(speech).frames == 24_000
    assert first.exports == []  # the whole .glb comes with the video
    timings = dict(zip(first.timings["measure"], first.timings["value"]))
    assert timings["rendering the video"] == "in progress"
    assert timings["3D avatar (.glb): seconds"] > 0
    assert "The video is rendering." in first.note

    assert Path(last.video).stat().st_size > 1000 and last.motion == first.motion and last.player == first.player
    assert [Path(path).suffix for path in last.exports] == [".glb", ".bvh", ".csv"]
    assert all(Path(path).parent == Path(first.motion).parent for path in last.exports)
    assert Path(last.exports[0]).stat().st_size > Path(body).stat().st_size  # the download: body and animation
    assert "rendering 45 frames: seconds" in set(last.timings["measure"])

    steps = handlers.generate_steps(str(audio), "async-lcm", seed=3, settings=settings)
    next(steps)
    again = next(steps)
    assert again.player.body == body and again.player.animation != animation  # one body for every result
    steps.close()


def test_the_motion_is_made_while_the_page_takes_the_speech(settings, tmp_path, speech_like, monkeypatch):
    """The sampling starts before the first result (the speech) is handed over, not when the page's
    next step is asked for; the API's generate samples in its own thread, as before."""
    audio = tmp_path / "speech.wav"
    soundfile.write(audio, speech_like(1.5), 16_000)
    sample, started, threads = handlers._sample, threading.Event(), []

    def watched_sample(*args):
        threads.append(threading.current_thread())
        started.set()
        return sample(*args)

    monkeypatch.setattr(handlers, "_sample", watched_sample)
    steps = handlers.generate_steps(str(audio), "async-lcm", seed=2, settings=settings)
    assert next(steps).player.animation is None  # the speech alone: the generator now waits here
    assert started.wait(60), "the sampling did not start while the first result was out"
    moving = next(steps)
    assert moving.player_only and Path(moving.player.animation).exists()
    steps.close()
    handlers.generate(str(audio), "async-lcm", seed=2, settings=settings)
    assert threads[0] is not threading.current_thread() and threads[1] is threading.current_thread()


def test_with_a_route_the_animation_goes_to_the_page_past_the_results(settings, tmp_path, speech_like):
    """Given the app's Animations, the speech's result names a stream, and the animation made is handed to
    the request waiting on it, byte for byte the file the later results carry; no result of its own."""
    audio = tmp_path / "speech.wav"
    soundfile.write(audio, speech_like(1.5), 16_000)
    animations = Animations()
    waiting, first, last = handlers.generate_steps(str(audio), "async-lcm", seed=2, settings=settings,
                                                   animations=animations)
    assert waiting.player.stream.startswith("player/animation/") and waiting.player.animation is None
    assert not any(result.player_only for result in (waiting, first, last))
    assert first.player.stream == last.player.stream == waiting.player.stream
    token = waiting.player.stream.rsplit("/", 1)[-1]
    assert asyncio.run(animations.wait(token)) == Path(first.player.animation).read_bytes()
    assert read_animation(first.player.animation)["frames"] == 45
    assert asyncio.run(animations.wait(token)) is None  # handed out once


def test_a_stream_never_delivered_times_out_and_an_unknown_one_is_refused():
    animations = Animations()
    token = animations.expect().rsplit("/", 1)[-1]
    with pytest.raises(TimeoutError):
        asyncio.run(animations.wait(token, timeout=0.05))
    assert asyncio.run(animations.wait("no-such-token")) is None
    animations.deliver(f"player/animation/{token}", b"late")  # the page may come after the motion
    assert asyncio.run(animations.wait(token)) == b"late"


def test_a_stream_is_cancelled_when_its_generate_fails_or_stops_first():
    animations = Animations()

    def token(stream: str) -> str:
        return stream.rsplit("/", 1)[-1]

    with pytest.raises(InputError), animations.expecting() as stream:
        raise InputError("The audio is silent.")
    with pytest.raises(NotMade, match=r"^The audio is silent\.$"):  # at once, not after the timeout
        asyncio.run(animations.wait(token(stream), timeout=5))
    assert asyncio.run(animations.wait(token(stream))) is None  # answered once

    def steps():  # the page's Generate, closed by Gradio after its first result
        with animations.expecting() as stream:
            yield stream
            yield "never"

    generator = steps()
    stopped = next(generator)
    generator.close()
    with pytest.raises(NotMade, match=r"^Generate stopped$"):
        asyncio.run(animations.wait(token(stopped), timeout=5))

    with pytest.raises(RuntimeError), animations.expecting() as stream:  # e.g. the video failed: too late to cancel
        animations.deliver(stream, b"made")
        raise RuntimeError("the renderer broke")
    assert asyncio.run(animations.wait(token(stream), timeout=5)) == b"made"


def test_a_generate_that_fails_after_the_speech_answers_the_page_at_once(settings, tmp_path, speech_like,
                                                                          monkeypatch):
    """Sampling fails after the speech's result named the stream: the page's request, already waiting on
    the route, is answered at once with the status the player stops on and one line (it waited for the
    route's WAIT_SECONDS: 300 s), and the error itself goes on to Gradio."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    audio = tmp_path / "speech.wav"
    soundfile.write(audio, speech_like(1.5), 16_000)
    release = threading.Event()

    def failing_sample(*args):
        release.wait(60)
        raise RuntimeError("the sampler broke")

    monkeypatch.setattr(handlers, "_sample", failing_sample)
    animations = Animations()
    client = TestClient(FastAPI(routes=routes(animations)))
    steps = handlers.generate_steps(str(audio), "async-lcm", seed=2, settings=settings, animations=animations)
    stream = next(steps).player.stream
    answers = []
    asking = threading.Thread(target=lambda: answers.append((client.get(f"/{stream}"), time.monotonic())),
                              daemon=True)
    asking.start()
    time.sleep(0.5)  # the page asks for the animation as soon as the speech's result comes
    released = time.monotonic()
    release.set()
    with pytest.raises(RuntimeError, match="the sampler broke"):
        next(steps)
    asking.join(10)
    assert answers, "the page's request was still waiting"
    (response, answered), = answers
    assert answered - released < 5
    assert response.status_code == NOT_MADE_STATUS == 500
    assert response.text == "the motion was not made: Generate failed"  # the details stay in the server's log
    assert client.get(f"/{stream}").status_code == 404  # answered once
    assert not list(settings.work_dir.glob("request-*"))  # the failed request's folder went too


def test_warm_up_writes_the_body_standing_still(settings):
    path = handlers.warm_up(settings)
    assert path.parent == settings.work_dir and glb_header(path) == (b"glTF", 2)


def test_the_vendored_three_is_the_release_its_notice_names(repo_root):
    vendor = repo_root / "assets" / "vendor" / "three"
    notice = (vendor / "NOTICE").read_text()
    assert "three.js 0.187.0" in notice and "npm integrity sha512-" in notice
    assert (vendor / "LICENSE").read_text().startswith("The MIT License")
    bundle = (vendor / "three.bundle.min.js").read_text()
    assert bundle.startswith("/**\n * @license") and '="187"' in bundle[:2000]  # three's REVISION
    assert "GLTFLoader" in bundle and "OrbitControls" in bundle
    assert (repo_root / "tools" / "vendor_three.sh").exists()


# ----------------------------------------------------------------------------
# In Chromium
# ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def app_options():
    return dict(render_size=64, compare_size=64)


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)")
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def open_page(browser, url, route=None, requests=None):
    """A fresh page at `url` once the player shows the body; `requests` (a list) collects the URLs it asks for."""
    context = browser.new_context(viewport={"width": 1400, "height": 1600})
    if route is not None:
        context.route("**/*", route)
    if requests is not None:
        context.on("request", lambda request: requests.append(urlparse(request.url).path))
    page = context.new_page()
    page.set_default_timeout(180_000)
    page.goto(url)
    page.wait_for_function(f"() => document.querySelector('{PLAYER}')?.dataset.state === 'empty'")  # body loaded
    return page


def picture(page) -> bytes:
    """What the visitor sees of the 3D view: a screenshot of the canvas above the message strip along its
    foot, after two more animation frames. (Read back in the page, the same unchanged canvas gave two
    different pictures under Chromium's software WebGL; the screenshots agree.)"""
    page.evaluate("() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")
    box = page.locator("#player canvas").bounding_box()
    return page.screenshot(clip={"x": box["x"], "y": box["y"], "width": box["width"], "height": box["height"] * 0.85})


def generate(page, wav: Path) -> float:
    """Upload `wav`, press Generate and wait until the player plays; the seconds from the click to the
    first new picture in the 3D view (to within a screenshot's time, about a tenth of a second here)."""
    clear = page.locator("#speech button[aria-label='Clear']")
    if clear.count():  # the speech of a Generate before
        clear.first.click()
    page.locator("#speech input[type=file]").set_input_files(str(wav))
    page.locator(f"#speech a[download][href*='{wav.name}']").wait_for(state="attached")
    before = picture(page)
    clicked = time.monotonic()
    page.get_by_role("button", name="Generate").click()
    while picture(page) == before:
        assert time.monotonic() - clicked < 180, "the 3D view never changed"
    seconds = time.monotonic() - clicked
    page.wait_for_function(f"() => document.querySelector('{PLAYER}').dataset.state === 'playing'")
    return seconds


def player_state(page) -> dict:
    return page.evaluate(f"""() => {{ const root = document.querySelector('{PLAYER}');
      const audio = root.querySelector('audio');
      return {{state: root.dataset.state, frame: Number(root.dataset.frame), time: audio.currentTime,
               paused: audio.paused, duration: audio.duration}}; }}""")


def seek(page, seconds: float) -> dict:
    """Seek the speech (the player's own control does the same); the player's state once it has drawn."""
    page.evaluate(f"""(seconds) => new Promise((resolve) => {{
      const audio = document.querySelector('{PLAYER} audio');
      audio.addEventListener('seeked', resolve, {{once: true}});
      audio.currentTime = seconds;
    }})""", seconds)
    page.evaluate("() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")
    return player_state(page)


def test_the_avatar_moves_with_the_speech_holds_when_paused_and_follows_a_seek(browser, app_url, tmp_path,
                                                                              speech_like):
    wav = tmp_path / "speech.wav"
    soundfile.write(wav, speech_like(8.0), 16_000)  # long enough for a few screenshots while it plays
    page = open_page(browser, app_url)
    seconds = generate(page, wav)
    print(f"\nfrom the click to the first new picture in the 3D view: {seconds:.2f} s (tiny checkpoint)")

    pictures = {picture(page)}
    while len(pictures) < 3 and not player_state(page)["paused"]:  # software WebGL: a few frames a second
        pictures.add(picture(page))
    assert len(pictures) == 3, "the 3D view did not change while the speech played"

    page.evaluate(f"() => document.querySelector('{PLAYER} audio').pause()")
    still = picture(page)  # the player has drawn the time it paused at
    paused = player_state(page)
    assert paused["paused"] and paused["state"] == "paused"
    page.wait_for_timeout(1000)
    assert picture(page) == still and player_state(page)["frame"] == paused["frame"]

    frames = round(8.0 * FPS)  # the motion's frame count
    for target in (0.5, 2.0, 7.99, paused["duration"]):
        state = seek(page, target)
        expected = min(math.floor(state["time"] * FPS), frames - 1)
        assert abs(state["frame"] - expected) <= 1, (target, state, expected)
    assert seek(page, paused["duration"])["frame"] == frames - 1  # past the last key: the last frame

    state = seek(page, 2.0)
    full_view = picture(page)
    page.get_by_role("button", name="Face close-up").click()
    assert page.get_by_role("button", name="Face close-up").get_attribute("aria-pressed") == "true"
    assert picture(page) != full_view and player_state(page)["frame"] == state["frame"]
    page.get_by_role("button", name="Reset view").click()
    assert picture(page) == full_view

    page.evaluate(f"() => document.querySelector('{PLAYER} audio').play()")
    page.wait_for_function(f"() => document.querySelector('{PLAYER}').dataset.state === 'playing'")
    page.wait_for_function("() => document.querySelector('#avatar video') !== null")  # the video, rendered after
    page.context.close()


def outfit_shares(png: bytes) -> dict[str, float]:
    """The share of a picture's pixels in the shirt's blue, the trousers' dark grey and the skin's tone."""
    from io import BytesIO

    import numpy as np
    from PIL import Image

    r, g, b = np.asarray(Image.open(BytesIO(png)).convert("RGB")).astype(int).transpose(2, 0, 1)
    return {"shirt": float(((b > r + 12) & (b > g) & (b > 50)).mean()),
            "trousers": float(((np.maximum(r, np.maximum(g, b)) < 100) & (b >= r)).mean()),
            "skin": float(((r > b + 35) & (r > g + 15)).mean())}


def test_the_outfit_and_a_second_result_without_the_body_again(browser, app_url, tmp_path, speech_like):
    requests = []
    page = open_page(browser, app_url, requests=requests)
    shares = outfit_shares(picture(page))
    # the body standing: the video's shirt and trousers cover most of it (naked, the skin tone did)
    assert shares["shirt"] > 0.03 and shares["trousers"] > 0.02 and shares["skin"] < shares["shirt"], shares

    for seconds in (3.0, 5.0):
        wav = tmp_path / f"speech-{seconds:g}s.wav"
        soundfile.write(wav, speech_like(seconds, seed=int(seconds)), 16_000)
        generate(page, wav)
        before = picture(page)
        page.wait_for_function(f"() => Number(document.querySelector('{PLAYER}').dataset.frame) > 15")
        assert picture(page) != before, "the avatar did not move"
        state = player_state(page)
        assert abs(state["duration"] - seconds) < 0.05  # this result's speech
        assert seek(page, state["duration"])["frame"] == round(seconds * FPS) - 1  # and its animation

    bodies = [path for path in requests if path.endswith(".glb")]
    animations = [path for path in requests if "/player/animation/" in path]  # past Gradio's queue
    files = [path for path in requests if path.endswith(".animation.bin")]  # the same, later, as a file: unused
    assert len(bodies) == 1 and len(animations) == 2 and not files, (bodies, animations, files)
    page.context.close()


def test_the_player_stops_waiting_when_generate_fails(browser, app_url):
    """A second player on the page is given Generate's first result (the speech, and the stream for its
    animation), and the stream answers as animations.py does when Generate fails next: the player stops
    'Making the motion…' at once and says why (no later result comes to end the wait)."""
    requests = []
    page = open_page(browser, app_url, requests=requests)
    modules = [next(path for path in requests if path.endswith(name)) for name in ("three.bundle.min.js", "/player.js")]
    page.route("**/player/animation/**",
               lambda route: route.fulfill(status=NOT_MADE_STATUS, body="the motion was not made: Generate failed"))
    page.evaluate(r"""async ([threeUrl, playerUrl]) => {
      const [THREE, player] = await Promise.all([import(threeUrl), import(playerUrl)]);
      const element = document.createElement("div");
      element.id = "failing";
      element.innerHTML = document.querySelector("#player .af-player").outerHTML;
      document.body.append(element);
      const value = {body: {url: "missing-body.glb"}, speech: {url: "missing-speech.wav"}, fps: 30, frames: 0,
                     animation: null, stream: "player/animation/failed-token"};
      const root = (window.gradio_config && window.gradio_config.root || document.baseURI).replace(/\/?$/, "/");
      player.mount(THREE, element, {value}, () => {}, root);
    }""", [f"{app_url}{path}" for path in modules])
    page.wait_for_function("() => document.querySelector('#failing .af-player').dataset.state === 'failed'",
                           timeout=20_000)
    assert page.locator("#failing .af-message").text_content() == "The motion was not made: Generate failed."
    page.context.close()


def test_the_page_works_with_the_network_blocked(browser, app_url, example_wav):
    left, three = [], []

    def local_only(route):
        url = urlparse(route.request.url)
        if url.scheme in ("http", "https", "ws", "wss") and url.hostname not in ("127.0.0.1", "localhost"):
            left.append(route.request.url)
            return route.abort()
        if url.path.endswith("three.bundle.min.js"):
            three.append(url.hostname)
        return route.continue_()

    page = open_page(browser, app_url, local_only)
    generate(page, example_wav)
    page.wait_for_function(f"() => Number(document.querySelector('{PLAYER}').dataset.frame) > 15")  # it plays
    assert three == ["127.0.0.1"]  # three.js came from the app itself
    assert left == [], f"the page asked for {left}"
    page.context.close()
