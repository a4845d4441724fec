"""The app in a real headless Chromium (Debian's, driven by Playwright's Python package): a visitor
presses Generate without audio, uploads an example clip, presses Generate and sees the video play,
then presses Compare and reads the table. The page is saved to test-artifacts/app-browser.png."""

import shutil
from pathlib import Path

import pytest
from test_app_client import EXAMPLE, ROOT, running_app

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = ROOT / "test-artifacts"

if not Path(CHROMIUM).exists():
    pytest.skip(f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)", allow_module_level=True)
sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    with running_app(tmp_path_factory.mktemp("browser"), render_size=192, compare_size=128) as url, \
            sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which(CHROMIUM) or CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.set_default_timeout(180_000)
        page.goto(url)
        page.get_by_role("button", name="Generate").wait_for()
        try:
            yield page
        finally:
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "app-browser.png"), full_page=True)
            browser.close()


def test_generate_then_compare_in_a_browser(page):
    page.get_by_role("button", name="Generate").click()  # nothing uploaded yet
    page.get_by_text("No audio: upload a file, record with the microphone, or pick an example.").wait_for()

    page.locator("#speech input[type=file]").set_input_files(str(EXAMPLE))
    page.locator(f"#speech a[download][href*='{EXAMPLE.name}']").wait_for(state="attached")  # upload finished
    page.get_by_role("button", name="Generate").click()
    page.wait_for_function("() => { const v = document.querySelector('#avatar video');"
                           " return v !== null && !v.paused && v.currentTime > 0.3; }")
    video = page.evaluate("() => { const v = document.querySelector('#avatar video');"
                          " return {width: v.videoWidth, duration: v.duration}; }")
    assert video["width"] == 192 and abs(video["duration"] - 4.82) < 0.1
    timings = page.locator("#timings").inner_text()
    assert "expression branch: network evaluations" in timings and "real-time factor" in timings

    page.get_by_role("button", name="Compare").click()
    page.wait_for_function("() => document.querySelector('#compare-table').innerText.includes('async LCM')")
    rows = [[cell.strip() for cell in row.split("\n") if cell.strip()]
            for row in page.locator("#compare-table div[role=row]").all_inner_texts()]
    assert [row[:4] for row in rows] == [["DDIM", "25/25", "25", "25"], ["sync LCM", "8/8", "8", "8"],
                                         ["async LCM", "4/8", "4", "8"]]
    assert all(float(row[6]) > 0 for row in rows)  # seconds of generation, per sampler
    page.wait_for_function("() => { const v = document.querySelector('#compare-video video');"
                           " return v !== null && v.videoWidth === 3 * 128; }")
