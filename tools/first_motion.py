"""Time to first motion: from pressing Generate to the 3D player's avatar moving; prints the median.

    .venv/bin/python tools/first_motion.py                  # starts `python app.py` from this checkout, 5 runs
    .venv/bin/python tools/first_motion.py --runs 7 URL ...  # apps already running: the runs alternate between them

One run is a new visitor: a fresh page, the player showing the body standing, the speech uploaded
(default: the first two shipped examples joined, 10.3 s, as tools/app_screenshot.py), then a click on
Generate. Timed in the page's own clock, from the click event to the first moment the player plays the
new result past frame 0 (its data-state "playing" and data-frame > 0, after it said "loading"). Also
printed per run: when the page asked for the result's first player file and when that file was in (both
from the click). Generate's animation is asked for with the speech and answered once the motion is made
(asynfusion/app/animations.py): "in" is then when the result reached the page. Each run then waits for
the rendered video and 3 s more, so the next run's Generate does not queue behind it. Headless Chromium
with software WebGL (SwiftShader), as tests/test_player.py drives it. Several URLs (e.g. the app before
and after a change, started side by side) are measured in turn, run by run, so both see the same load.
"""

import argparse
import contextlib
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile
from app_screenshot import default_speech  # the same 10 s of speech (tools/ is on the path)
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
PLAYER = "#player .af-player"
# Set up before the click: resolves with {moving, requested, fetched} in ms after the click on Generate.
WATCH = """(player) => {
  const root = document.querySelector(player);
  window.firstMotion = new Promise((resolve) => {
    let clicked = null, loading = false;
    document.addEventListener("click", (event) => {
      const button = event.target.closest("button");
      if (clicked === null && button?.textContent.trim() === "Generate") clicked = performance.now();
    }, true);
    const observer = new MutationObserver(() => {
      if (clicked === null) return;
      loading ||= root.dataset.state === "loading";
      if (!loading || root.dataset.state !== "playing" || !(Number(root.dataset.frame) > 0)) return;
      const moving = performance.now();
      observer.disconnect();
      // the player's files: a .glb or .animation.bin from Gradio, or Generate's animation past its queue
      const files = performance.getEntriesByType("resource").filter((entry) => entry.startTime > clicked
        && /[.](glb|bin)$|[/]player[/]animation[/]/.test(new URL(entry.name).pathname));
      resolve({ moving: moving - clicked, requested: files.length ? files[0].startTime - clicked : null,
                fetched: files.length ? Math.max(...files.map((entry) => entry.responseEnd)) - clicked : null,
                files: files.map((entry) => new URL(entry.name).pathname.split("/").pop()) });
    });
    observer.observe(root, { attributes: true, attributeFilter: ["data-state", "data-frame"] });
  });
}"""


@contextlib.contextmanager
def running_app(folder: Path):
    """`python app.py` from this checkout (its settings from the environment, no example caching): its URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1", "ASYNFUSION_CACHE_EXAMPLES": "off",
           "ASYNFUSION_WORK_DIR": str(folder / "work"), "GRADIO_TEMP_DIR": str(folder / "gradio")}
    log_path = folder / "app.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 600
        while not (found := re.search(r"Running on local URL:\s+(http://\S+)", log_path.read_text())):
            if process.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"the app did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield found.group(1)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def one_run(browser, url: str, speech: Path) -> dict:
    """A fresh page: upload, click Generate, wait for the avatar to move; the page's times in seconds."""
    context = browser.new_context(viewport={"width": 1400, "height": 1600})
    try:
        page = context.new_page()
        page.set_default_timeout(300_000)
        page.goto(url)
        page.wait_for_function(f"() => document.querySelector('{PLAYER}')?.dataset.state === 'empty'")
        page.locator("#speech input[type=file]").set_input_files(str(speech))
        page.locator(f"#speech a[download][href*='{speech.name}']").wait_for(state="attached")
        page.evaluate(WATCH, PLAYER)
        page.get_by_role("button", name="Generate").click()
        times = page.evaluate("() => window.firstMotion")
        # the app works on one request at a time: the next run's Generate must not wait for this one's video
        # or the tidying up after it
        page.locator("#avatar video").wait_for(state="attached")
        page.wait_for_timeout(3000)
        return {key: (round(value / 1000, 3) if isinstance(value, (int, float)) else value)
                for key, value in times.items()}
    finally:
        context.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("urls", nargs="*", help="running apps to measure in turn (default: start app.py here)")
    parser.add_argument("--runs", type=int, default=5, help="runs per app (default 5)")
    parser.add_argument("--speech", type=Path, help="speech file (default: two examples joined, 10.3 s)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, contextlib.ExitStack() as stack:
        speech = args.speech or default_speech(Path(folder))
        duration = soundfile.info(str(speech)).duration
        urls = args.urls or [stack.enter_context(running_app(Path(folder)))]
        playwright = stack.enter_context(sync_playwright())
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        seconds = {url: [] for url in urls}
        for run in range(args.runs):
            for url in urls:
                times = one_run(browser, url, speech)
                seconds[url].append((times["moving"], times["fetched"]))
                print(f"run {run + 1} {url}: moving at {times['moving']:.2f} s (result's file asked for at "
                      f"{times['requested']} s, in at {times['fetched']} s: {', '.join(times['files'])})", flush=True)
        browser.close()
    for url, runs in seconds.items():
        moving = [m for m, _ in runs]
        print(f"{url}: median {statistics.median(moving):.2f} s over {len(runs)} runs (min {min(moving):.2f}, max "
              f"{max(moving):.2f}; speech {duration:.1f} s); the result's animation in the page at "
              f"{statistics.median(r for _, r in runs):.2f} s, moving "
              f"{statistics.median(m - r for m, r in runs):.2f} s after it (medians)")


if __name__ == "__main__":
    main()
