"""Use the running app the way a visitor does and save a full-page screenshot (docs/app.png).

    python app.py &                                   # prints its local URL
    python tools/app_screenshot.py http://127.0.0.1:7860 docs/app.png [SPEECH_FILE] [--timeout SECONDS]

Clicks an example, uploads SPEECH_FILE (default: the first two examples joined, about 10 s), presses
Generate and waits for the 3D player to play the new result and for its rendered video, ticks the
baseline, presses Compare and waits for the table and the side-by-side video playing; prints what it
saw and how long each step took. A step that does not happen within --timeout seconds (default 300)
ends it with one line naming the step. Drives Debian's Chromium, WebGL by SwiftShader.
tests/test_browser.py runs it against the test app.
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
                 "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
# The player's root says what it shows (asynfusion/app/static/player.js): data-state and data-frame.
# Its speech's length tells the new result from an example's; frame 15 is half a second of motion.
PLAYER_PLAYS = ("seconds => { const root = document.querySelector('#player .af-player');"
                " const audio = root && root.querySelector('audio');"
                " return audio !== null && Math.abs(audio.duration - seconds) < 0.1"
                " && root.dataset.state === 'playing' && Number(root.dataset.frame) > 15; }")
VIDEO_READY = ("seconds => { const v = document.querySelector('#avatar video');"
               " return v !== null && v.readyState >= 2 && Math.abs(v.duration - seconds) < 0.1; }")
TIMINGS_DONE = "() => document.querySelector('#timings').innerText.includes('frames: seconds')"  # rendering's row
COMPARE_DONE = "() => document.querySelector('#compare-table').innerText.includes('rule-based')"
COMPARE_PLAYS = ("() => { const v = document.querySelector('#compare-video video'); if (v === null) return false;"
                 " if (v.paused && v.readyState >= 2) v.play().catch(() => {});"  # should autoplay block it
                 " return v.currentTime > 2.0; }")


def default_speech(folder: Path) -> Path:
    examples = sorted((ROOT / "assets" / "examples").glob("*.wav"))[:2]
    samples = np.concatenate([soundfile.read(path, dtype="float32")[0] for path in examples])
    path = folder / "speech_10s.wav"
    soundfile.write(path, samples, 16_000)
    return path


def table_rows(page, selector: str) -> list[str]:
    """A table's rows as text, its header first (without the column menus' "⋮")."""
    return [" | ".join(cell.strip() for cell in row.split("\n") if cell.strip() not in ("", "⋮"))
            for row in page.locator(f"{selector} [role=row]").all_inner_texts()]


def visit(page, url: str, speech: Path, step: list[str]) -> dict:
    """The visit itself; `step` holds what it is waiting for, for the error line."""
    seen = {}
    seconds = soundfile.info(str(speech)).duration
    step[0] = f"open {url}"
    started = time.time()
    page.goto(url)
    page.get_by_role("button", name="Generate").wait_for()
    seen["page open, s"] = round(time.time() - started, 1)

    example = sorted((ROOT / "assets" / "examples").glob("*.wav"))[-1].name
    step[0] = f"the example {example} in the speech box"
    started = time.time()
    page.get_by_text(example).first.click()
    page.locator(f"#speech a[download][href*='{example}']").wait_for(state="attached")
    seen[f"example {example} shown, s"] = round(time.time() - started, 1)

    step[0] = f"the upload of {speech.name}"
    page.locator("#speech button[aria-label='Clear']").first.click()
    page.locator("#speech input[type=file]").set_input_files(str(speech))
    page.locator(f"#speech a[download][href*='{speech.name}']").wait_for(state="attached")

    step[0] = "Generate: the 3D player playing the new result past frame 15"
    started = time.time()
    page.get_by_role("button", name="Generate").click()
    page.wait_for_function(PLAYER_PLAYS, arg=seconds)
    seen["Generate: click to the 3D player past frame 15, s"] = round(time.time() - started, 1)
    step[0] = "Generate: the rendered video and the timing table's rendering row"
    page.wait_for_function(VIDEO_READY, arg=seconds)
    page.wait_for_function(TIMINGS_DONE)
    seen["Generate: click to the video, s"] = round(time.time() - started, 1)
    seen["timing table"] = table_rows(page, "#timings")

    step[0] = "Compare: the table with the baseline and the side-by-side video past 2 s"
    page.get_by_label("Add the rule-based baseline (no network)").check()
    started = time.time()
    page.get_by_role("button", name="Compare").click()
    page.wait_for_function(COMPARE_DONE)
    page.wait_for_function(COMPARE_PLAYS)
    seen["Compare: click to table and playing video, s"] = round(time.time() - started, 1)
    seen["compare table"] = table_rows(page, "#compare-table")
    return seen


def main(url: str, out: str, speech: Path, timeout: float) -> dict:
    step = ["start Chromium"]
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1500})
            page.set_default_timeout(timeout * 1000)
            seen = visit(page, url, speech, step)
            step[0] = "the screenshot"
            time.sleep(1)
            page.screenshot(path=out, full_page=True)
            browser.close()
    except PlaywrightError as error:
        reason = f"not within {timeout:g} s" if "Timeout" in error.message else error.message.strip().splitlines()[0]
        sys.exit(f"app_screenshot.py: {step[0]}: {reason}")
    from PIL import Image

    # 256 colours: a third of the bytes, and a UI screenshot barely changes
    Image.open(out).convert("RGB").quantize(256, Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        out, optimize=True)
    return seen


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("out")
    parser.add_argument("speech", nargs="?", type=Path, help="default: the first two examples joined (about 10 s)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds each step may take (default 300)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        speech = args.speech or default_speech(Path(folder))
        print(json.dumps(main(args.url, args.out, speech, args.timeout), indent=1))
