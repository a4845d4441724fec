"""Talk to the running app's Live mode from a fake microphone and save a picture of it (docs/live.png).

    python app.py &                                   # prints its local URL
    python tools/live_screenshot.py http://127.0.0.1:7860 docs/live.png [SPEECH_FILE] [--seconds 12]

Chromium's fake microphone plays SPEECH_FILE (default: the app's examples joined, about 15 s; the file
loops), the page's Live button starts a take, and after --seconds of talk the page is saved while the
avatar moves; then Stop, and it waits for the take's downloads. Prints, as one JSON object, what the page
measured (latency p50/p95, the mouth's delay), the 3D player's frame each second, and the downloads. A
step that does not happen within --timeout seconds (default 120) ends it with one line naming the step.
tests/test_live_browser.py runs it against the test app. Drives Debian's Chromium, WebGL by SwiftShader.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--use-fake-device-for-media-stream", "--autoplay-policy=no-user-gesture-required"]
PLAYER = "#player .af-player"
LIVE = "#live .af-live"
# What the page shows (static/live.js, static/player.js): the panel's state and figures, the player's frame
PAGE_STATE = f"""() => {{ const live = document.querySelector('{LIVE}'), player = document.querySelector('{PLAYER}');
  return {{state: live.dataset.state, status: live.querySelector('.af-live-status').textContent,
           shown: live.querySelector('.af-live-latency').textContent, frames: Number(live.dataset.frames),
           latency_p50_s: Number(live.dataset.latencyP50), latency_p95_s: Number(live.dataset.latencyP95),
           mouth_delay_s: Number(live.dataset.delay), shown_frame: Number(live.dataset.shown || 0),
           player_state: player.dataset.state,
           player_frame: Number(player.dataset.frame)}}; }}"""
DOWNLOADS = ("() => [...document.querySelectorAll('a[download]')].map((a) => a.getAttribute('download') || '')"
             ".filter((name) => name.startsWith('motion_live_'))")  # the take's files (live_takes.py names them)


def default_speech(folder: Path) -> Path:
    examples = sorted((ROOT / "assets" / "examples").glob("*.wav"))
    samples = np.concatenate([soundfile.read(path, dtype="float32")[0] for path in examples])
    path = folder / "speech_examples.wav"
    soundfile.write(path, samples, 16_000, subtype="PCM_16")
    return path


def visit(page, url: str, seconds: float, timeout: float, picture: Path, step: list[str]) -> dict:
    """The visit; `step` holds what it is waiting for, for the error line."""
    step[0] = f"open {url}"
    page.goto(url)
    step[0] = "the 3D player showing the body"
    page.wait_for_function(f"() => ['empty', 'failed'].includes(document.querySelector('{PLAYER}')?.dataset.state)")
    page.locator(LIVE).scroll_into_view_if_needed()
    step[0] = "Live starting"
    page.locator(f"{LIVE} .af-live-button").click()
    page.wait_for_function(f"() => document.querySelector('{LIVE}').dataset.state === 'live'")
    seen = {"player frames": [], "shown frames": []}
    began = time.monotonic()
    step[0] = "the avatar moving (three frames of motion on screen)"
    # a second's look at the frame on screen for --seconds, and on until it has shown three (a busy machine)
    while time.monotonic() - began < seconds or len(set(seen["shown frames"])) < 3:
        page.wait_for_timeout(1000)
        state = page.evaluate(PAGE_STATE)
        if state["state"] != "live":
            raise RuntimeError(f"Live stopped by itself: {state['status']}")
        seen["player frames"].append(state["player_frame"])
        seen["shown frames"].append(state["shown_frame"])
        if time.monotonic() - began > seconds + timeout:
            raise RuntimeError(f"the page showed frames {sorted(set(seen['shown frames']))} only")
    page.locator(PLAYER).scroll_into_view_if_needed()
    box = page.locator(PLAYER).bounding_box()
    panel = page.locator(LIVE).bounding_box()
    top, bottom = box["y"] - 8, panel["y"] + panel["height"] + 8
    page.screenshot(path=str(picture), clip={"x": box["x"] - 8, "y": top, "width": box["width"] + 16,
                                             "height": bottom - top})
    seen["while live"] = page.evaluate(PAGE_STATE)
    step[0] = "the take saved after Stop"
    page.locator(f"{LIVE} .af-live-button").click()
    page.wait_for_function(f"() => document.querySelector('{LIVE}').dataset.state !== 'stopping'")
    seen["after stop"] = page.evaluate(PAGE_STATE)
    if seen["after stop"]["state"] != "idle":
        raise RuntimeError(f"the take was not saved: {seen['after stop']['status']}")
    step[0] = "the take's downloads (.npz, .glb, .bvh, .csv)"
    page.wait_for_function(f"() => ({DOWNLOADS})().length >= 4")
    seen["downloads"] = page.evaluate(DOWNLOADS)
    step[0] = "the take replaying in the 3D player"
    page.wait_for_function(f"() => ['playing', 'failed'].includes(document.querySelector('{PLAYER}').dataset.state)")
    return seen


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("out", type=Path, help="the picture (.png)")
    parser.add_argument("speech", nargs="?", type=Path, help="what the fake microphone says (a .wav)")
    parser.add_argument("--seconds", type=float, default=12.0, help="talk this long before the picture")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for each step")
    parser.add_argument("--width", type=int, default=1400, help="the window's width in pixels")
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="the browser to drive")
    parser.add_argument("--no-webgl", action="store_true",
                        help="no 3D drawing (the page's latency without Chromium's software WebGL on these cores)")
    args = parser.parse_args(argv)
    step = ["start Chromium"]
    with tempfile.TemporaryDirectory() as folder, sync_playwright() as playwright:
        speech = args.speech or default_speech(Path(folder))
        try:
            browser = playwright.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS + [
                f"--use-file-for-fake-audio-capture={speech}"] + (["--disable-webgl"] if args.no_webgl else []))
            page = browser.new_context(viewport={"width": args.width, "height": 1000},
                                       permissions=["microphone"]).new_page()
            page.set_default_timeout(args.timeout * 1000)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            seen = visit(page, args.url, args.seconds, args.timeout, args.out, step)
        except (PlaywrightError, RuntimeError) as error:
            print(f"live_screenshot.py: {step[0]}: {str(error).splitlines()[0]}", file=sys.stderr)
            return 1
        browser.close()
    print(json.dumps(seen, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
