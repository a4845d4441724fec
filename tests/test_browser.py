"""The app in a real headless Chromium (Debian's, driven by Playwright's Python package): a visitor
presses Generate without audio, uploads an example clip, presses Generate and plays the video,
then presses Compare and reads the table; another records a fraction of a second from a (fake)
microphone. The page is saved to test-artifacts/app-browser.png."""

from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
FAKE_MICROPHONE = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]  # a beeping one
RENDER_SIZE, COMPARE_SIZE = 192, 128

if not Path(CHROMIUM).exists():
    pytest.skip(f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)", allow_module_level=True)
sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright


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
        assert "expression branch: network evaluations" in timings and "real-time factor" in timings

        page.get_by_role("button", name="Compare").click()
        page.wait_for_function("() => document.querySelector('#compare-table').innerText.includes('async LCM')")
        rows = [[cell.strip() for cell in row.split("\n") if cell.strip()]
                for row in page.locator("#compare-table div[role=row]").all_inner_texts()]
        assert [row[:4] for row in rows] == [["DDIM", "25/25", "25", "25"], ["sync LCM", "8/8", "8", "8"],
                                             ["async LCM", "4/8", "4", "8"]]
        assert all(float(row[6]) > 0 for row in rows)  # seconds of generation, per sampler
        page.wait_for_function(f"() => {{ const v = document.querySelector('#compare-video video');"
                               f" return v !== null && v.videoWidth === 3 * {COMPARE_SIZE}; }}")
    finally:
        artifacts = repo_root / "test-artifacts"
        artifacts.mkdir(exist_ok=True)
        page.screenshot(path=str(artifacts / "app-browser.png"), full_page=True)
        browser.close()


def test_a_fraction_of_a_second_from_the_microphone(playwright, app_url):
    browser, page = open_page(playwright, app_url, FAKE_MICROPHONE, permissions=["microphone"])
    try:
        page.locator("#speech button[aria-label='Record audio']").click()
        page.locator("#speech button", has_text="Record").first.click()
        # stop almost at once: well under 0.25 s, but not so soon that the browser records no chunk at all
        page.locator("#speech button", has_text="Stop").first.wait_for()
        page.wait_for_timeout(60)
        page.locator("#speech button", has_text="Stop").first.click()
        page.locator("#speech a[download][href$='.wav']").wait_for(state="attached")  # the recording, uploaded
        page.get_by_role("button", name="Generate").click()
        page.get_by_text("s long: record or upload at least 0.25 s of speech.").wait_for()
    finally:
        browser.close()
