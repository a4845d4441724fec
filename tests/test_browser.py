"""The app in a real headless Chromium (Debian's, driven by Playwright's Python package): a visitor
presses Generate without audio, uploads an example clip, presses Generate and plays the video,
then presses Compare and reads the table; every number of the two tables is in view on a desktop and
a phone; another records a fraction of a second from a (fake) microphone; and tools/app_screenshot.py
runs to the end. The page is saved to test-artifacts/app-browser.png."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
FAKE_MICROPHONE = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]  # a beeping one
RENDER_SIZE, COMPARE_SIZE = 192, 128
WINDOWS = [{"width": 1400, "height": 1000}, {"width": 390, "height": 844}]  # a desktop, a phone
# What keeps a table's cell from being read, at the window's size: the table's viewport scrolls or lies
# outside the window; a row not drawn (Gradio draws rows as they scroll into view); a cell whose box leaves
# the viewport, or a word broken inside (the cell too narrow for it; lines may break at spaces and hyphens).
UNREADABLE = r"""selector => {
  const table = document.querySelector(selector), viewport = table.querySelector('.virtual-table-viewport');
  const box = viewport.getBoundingClientRect(), problems = [];
  const [width, height] = [viewport.scrollWidth, viewport.scrollHeight];
  if (width > viewport.clientWidth || height > viewport.clientHeight)
    problems.push(`scrolls: ${width}x${height} in ${viewport.clientWidth}x${viewport.clientHeight}`);
  if (box.left < 0 || box.right > document.documentElement.clientWidth)
    problems.push(`outside the window: x ${box.left}-${box.right}`);
  const rows = Number(table.querySelector('[role=grid]').getAttribute('aria-rowcount'));
  const drawn = table.querySelectorAll('[role=row]').length;
  if (drawn !== rows) problems.push(`${drawn} of ${rows} rows drawn`);
  for (const cell of table.querySelectorAll('[role=gridcell], [role=columnheader]')) {
    const b = cell.getBoundingClientRect(), text = cell.innerText.trim();
    if (b.left < box.left - 0.5 || b.right > box.right + 0.5 || b.top < box.top - 0.5 || b.bottom > box.bottom + 0.5)
      problems.push(`'${text}' at x ${b.left}-${b.right}, y ${b.top}-${b.bottom} outside the view`);
    const node = Array.from(cell.querySelectorAll('span'), span => span.firstChild).find(n => n?.nodeType === 3);
    for (const word of node ? node.data.matchAll(/[^\s-]+-?/g) : []) {
      const range = document.createRange();
      range.setStart(node, word.index);
      range.setEnd(node, word.index + word[0].length);
      const lines = new Set(Array.from(range.getClientRects()).map(r => Math.round(r.top))).size;
      if (lines > 1) problems.push(`'${word[0]}' of '${text}' broken over ${lines} lines`);
    }
  }
  return problems;
}"""

if not Path(CHROMIUM).exists():
    pytest.skip(f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)", allow_module_level=True)
sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
PlaywrightTimeout = pytest.importorskip("playwright.sync_api").TimeoutError


@pytest.fixture(scope="module")
def app_options():
    """conftest's app_url starts the app with these: a bigger video than its default, as a visitor sees it."""
    return dict(render_size=RENDER_SIZE, compare_size=COMPARE_SIZE)


@pytest.fixture(scope="module")
def playwright():
    with sync_playwright() as playwright:
        yield playwright


def open_page(playwright, url, extra_args=(), **context):
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS + list(extra_args))
    page = browser.new_context(viewport={"width": 1400, "height": 1600}, **context).new_page()
    page.set_default_timeout(180_000)
    page.goto(url)
    page.get_by_role("button", name="Generate").wait_for()
    return browser, page


def test_generate_then_compare_in_a_browser(playwright, app_url, example_wav, repo_root):
    browser, page = open_page(playwright, app_url)
    try:
        page.get_by_role("button", name="Generate").click()  # nothing uploaded yet
        page.get_by_text("No audio: upload a file, record with the microphone, or pick an example.").wait_for()

        page.locator("#speech input[type=file]").set_input_files(str(example_wav))
        page.locator(f"#speech a[download][href*='{example_wav.name}']").wait_for(state="attached")  # upload done
        page.get_by_role("button", name="Generate").click()
        # the 3D player speaks first (tests/test_player.py); the video, rendered after it, waits for a click
        page.wait_for_function("() => { const v = document.querySelector('#avatar video');"
                               " return v !== null && v.readyState >= 2; }")
        page.locator("#avatar [aria-label='play-pause-replay-button']").click()
        page.wait_for_function("() => { const v = document.querySelector('#avatar video');"
                               " return !v.paused && v.currentTime > 0.3; }")
        video = page.evaluate("() => { const v = document.querySelector('#avatar video');"
                              " return {width: v.videoWidth, duration: v.duration}; }")
        assert video["width"] == RENDER_SIZE and abs(video["duration"] - 4.82) < 0.1
        timings = page.locator("#timings").inner_text()
        assert "expression branch: NFE" in timings and "real-time factor" in timings

        page.get_by_role("button", name="Compare").click()
        page.wait_for_function("() => document.querySelector('#compare-table').innerText.includes('async LCM')")
        rows = {row[0]: row[1:] for row in table_rows(page, "#compare-table")}  # a row per measure
        assert rows["measure"] == ["DDIM", "sync LCM", "async LCM"]
        assert rows["steps E/G"] == ["25/25", "8/8", "4/8"] and rows["NFE E"] == ["25", "8", "4"]
        assert rows["NFE G"] == ["25", "8", "8"] and all(float(s) > 0 for s in rows["seconds total"])
        page.wait_for_function(f"() => {{ const v = document.querySelector('#compare-video video');"
                               f" return v !== null && v.videoWidth === 3 * {COMPARE_SIZE}; }}")
    finally:
        artifacts = repo_root / "test-artifacts"
        artifacts.mkdir(exist_ok=True)
        page.screenshot(path=str(artifacts / "app-browser.png"), full_page=True)
        browser.close()


def table_rows(page, selector) -> list[list[str]]:
    """The table's rows as the visitor reads them, its header first (without the column menus' "⋮")."""
    return [[cell.strip() for cell in row.split("\n") if cell.strip() not in ("", "⋮")]
            for row in page.locator(f"{selector} [role=row]").all_inner_texts()]


def assert_readable(page, selectors):
    """Every cell of the tables in view, at each window size, once Gradio has laid them out for it."""
    for window in WINDOWS:
        page.set_viewport_size(window)
        for selector in selectors:
            try:
                page.wait_for_function(f"() => ({UNREADABLE})('{selector}').length === 0", timeout=10_000)
            except PlaywrightTimeout:
                pytest.fail(f"{selector} at {window['width']}x{window['height']}: "
                            f"{page.evaluate(UNREADABLE, selector)}")


def test_every_number_of_both_tables_in_view_on_a_desktop_and_a_phone(playwright, app_url, example_wav):
    browser, page = open_page(playwright, app_url)
    try:
        page.locator("#speech input[type=file]").set_input_files(str(example_wav))
        page.locator(f"#speech a[download][href*='{example_wav.name}']").wait_for(state="attached")
        page.get_by_role("button", name="Generate").click()
        page.wait_for_function("() => document.querySelector('#timings').innerText.includes('frames: seconds')")
        assert len(table_rows(page, "#timings")) == 14  # the header and 13 measures
        assert_readable(page, ["#timings"])

        page.set_viewport_size(WINDOWS[0])
        page.get_by_label("Add the rule-based baseline (no network)").check()  # the widest table: 5 columns
        page.get_by_role("button", name="Compare").click()
        page.wait_for_function("() => document.querySelector('#compare-table').innerText.includes('rule-based')")
        assert table_rows(page, "#compare-table")[0] == ["measure", "DDIM", "sync LCM", "async LCM", "rule-based"]
        assert_readable(page, ["#timings", "#compare-table"])
    finally:
        browser.close()


def test_app_screenshot_runs_to_the_end(app_url, example_wav, repo_root, tmp_path, free_port):
    """tools/app_screenshot.py against the test app: what it waits for happens, and it saves the page."""
    out = tmp_path / "app.png"
    run = subprocess.run([sys.executable, "tools/app_screenshot.py", app_url, str(out), str(example_wav),
                          "--timeout", "120"], cwd=repo_root, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    seen = json.loads(run.stdout)
    assert any(row.startswith("real-time factor | ") for row in seen["timing table"])
    assert seen["compare table"][0] == "measure | DDIM | sync LCM | async LCM | rule-based"
    from PIL import Image

    with Image.open(out) as picture:
        assert picture.width == 1400 and picture.height > 1500

    refused = subprocess.run([sys.executable, "tools/app_screenshot.py", f"http://127.0.0.1:{free_port()}",
                              str(out)], cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1 and refused.stderr.startswith("app_screenshot.py: open http://")
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr


def record_briefly(page, hold_ms: int = 60, tries: int = 3) -> None:
    """Record `hold_ms` from the fake microphone and wait for the upload. A Stop pressed while the browser's
    recorder is still starting can be lost (CI saw the upload never come, once in many runs): then the page
    is reloaded and the recording made again, at most `tries` times."""
    for attempt in range(tries):
        page.locator("#speech button[aria-label='Record audio']").click()
        page.locator("#speech button", has_text="Record").first.click()
        # stop almost at once: well under 0.25 s, but not so soon that the browser records no chunk at all
        page.locator("#speech button", has_text="Stop").first.wait_for()
        page.wait_for_timeout(hold_ms)
        page.locator("#speech button", has_text="Stop").first.click()
        try:
            page.locator("#speech a[download][href$='.wav']").wait_for(state="attached", timeout=30_000)
            return
        except PlaywrightTimeout:
            buttons = [button.inner_text() for button in page.locator("#speech button").all()]
            if attempt == tries - 1:
                pytest.fail(f"no recording uploaded after {tries} tries; the speech box's buttons: {buttons}")
            page.reload()
            page.get_by_role("button", name="Generate").wait_for()


def test_a_fraction_of_a_second_from_the_microphone(playwright, app_url):
    browser, page = open_page(playwright, app_url, FAKE_MICROPHONE, permissions=["microphone"])
    try:
        record_briefly(page)
        page.get_by_role("button", name="Generate").click()
        page.get_by_text("s long: record or upload at least 0.25 s of speech.").wait_for()
    finally:
        browser.close()
