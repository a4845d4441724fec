"""Use the running app the way a visitor does and save a full-page screenshot (docs/app.png).

    python app.py &                                   # prints its local URL
    python tools/app_screenshot.py http://127.0.0.1:7860 docs/app.png [SPEECH_FILE]

Clicks an example, uploads SPEECH_FILE (default: the first two examples joined, about 10 s), presses
Generate and waits for the video to play, ticks the baseline, presses Compare and waits for the
table; prints what it saw and how long each step took. Drives Debian's Chromium.
"""

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PLAYING = ("seconds => { const v = document.querySelector('#avatar video');"
           " return v !== null && Math.abs(v.duration - seconds) < 0.1 && !v.paused && v.currentTime > 0.3; }")


def default_speech(folder: Path) -> Path:
    examples = sorted((ROOT / "assets" / "examples").glob("*.wav"))[:2]
    samples = np.concatenate([soundfile.read(path, dtype="float32")[0] for path in examples])
    path = folder / "speech_10s.wav"
    soundfile.write(path, samples, 16_000)
    return path


def main(url: str, out: str, speech: Path) -> dict:
    seen = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1500})
        page.set_default_timeout(300_000)
        started = time.time()
        page.goto(url)
        page.get_by_role("button", name="Generate").wait_for()
        seen["page open, s"] = round(time.time() - started, 1)

        example = sorted((ROOT / "assets" / "examples").glob("*.wav"))[-1].name
        started = time.time()
        page.get_by_text(example).first.click()
        page.locator(f"#speech a[download][href*='{example}']").wait_for(state="attached")
        seen[f"example {example} shown, s"] = round(time.time() - started, 1)

        page.locator("#speech button[aria-label='Clear']").first.click()
        page.locator("#speech input[type=file]").set_input_files(str(speech))
        page.locator(f"#speech a[download][href*='{speech.name}']").wait_for(state="attached")
        started = time.time()
        page.get_by_role("button", name="Generate").click()
        page.wait_for_function(PLAYING, arg=soundfile.info(str(speech)).duration)  # the new video, not the example's
        seen["Generate: click to playing video, s"] = round(time.time() - started, 1)
        cells = [cell for cell in page.locator("#timings div[role=row]").all_inner_texts()]
        seen["timing table"] = [" | ".join(part for part in cell.split("\n") if part.strip()) for cell in cells]

        page.get_by_label("Add the rule-based baseline (no network)").check()
        started = time.time()
        page.get_by_role("button", name="Compare").click()
        page.wait_for_function("() => document.querySelector('#compare-table').innerText.includes('rule-based')")
        page.wait_for_function("() => { const v = document.querySelector('#compare-video video');"
                               " return v !== null && v.currentTime > 2.0; }")
        seen["Compare: click to table and playing video, s"] = round(time.time() - started, 1)
        seen["compare table"] = [" | ".join(cell for cell in row.split("\n") if cell.strip())
                                 for row in page.locator("#compare-table div[role=row]").all_inner_texts()]
        time.sleep(1)
        page.screenshot(path=out, full_page=True)
        browser.close()
    from PIL import Image

    # 256 colours: a third of the bytes, and a UI screenshot barely changes
    Image.open(out).convert("RGB").quantize(256, Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        out, optimize=True)
    return seen


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as folder:
        speech = Path(sys.argv[3]) if len(sys.argv) > 3 else default_speech(Path(folder))
        print(json.dumps(main(sys.argv[1], sys.argv[2], speech), indent=1))
