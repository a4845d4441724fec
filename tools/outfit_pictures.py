"""The README's outfit pictures: the 3D player in Chromium, the downloaded .glb in Blender, a video frame.

    .venv/bin/python tools/outfit_pictures.py [--url URL] [--speech FILE] [--seconds 2.3] [--out docs]

Starts `python app.py` from this checkout (or uses a running app at URL), uploads the speech (default:
assets/examples/idea_en-us_andy.wav), presses Generate, pauses the 3D player at SECONDS and screenshots
it (OUT/player-outfit.png), then takes the result's rendered video and .glb from the page as a visitor
would: the video's frame at SECONDS (ffmpeg), and the .glb rendered by Blender at the same frame
(tools/blender_render.py, OUT/glb-blender.png). OUT/outfit-compare.png puts the three side by side.
"""

import argparse
import contextlib
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urljoin

from PIL import Image, ImageDraw, ImageFont
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from first_motion import CHROMIUM_ARGS, PLAYER, running_app  # noqa: E402

BLENDER_PYTHON = ROOT / "tools" / "blender-venv" / "bin" / "python"
FPS, SIZE = 30, 512


def player_and_files(url: str, speech: Path, seconds: float, out: Path, folder: Path) -> tuple[Path, Path]:
    """Generate in the page, screenshot the paused player; (the video, the .glb) downloaded into `folder`."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.set_default_timeout(600_000)
        page.goto(url)
        page.wait_for_function(f"() => document.querySelector('{PLAYER}')?.dataset.state === 'empty'")
        page.locator("#speech input[type=file]").set_input_files(str(speech))
        page.locator(f"#speech a[download][href*='{speech.name}']").wait_for(state="attached")
        page.get_by_role("button", name="Generate").click()
        page.wait_for_function(f"() => Number(document.querySelector('{PLAYER}').dataset.frame) > 15")
        page.evaluate(f"""(seconds) => new Promise((resolve) => {{
          const audio = document.querySelector('{PLAYER} audio');
          audio.pause();
          audio.addEventListener('seeked', resolve, {{once: true}});
          audio.currentTime = seconds;
        }})""", seconds)
        page.evaluate("() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")
        page.locator(PLAYER).screenshot(path=str(out / "player-outfit.png"))
        page.locator("#player canvas").screenshot(path=str(folder / "player-canvas.png"))

        page.locator("#exports a[download][href$='.glb']").wait_for(state="attached")  # with the video
        files = {}
        for name, selector in (("video.mp4", "#avatar video"), ("avatar.glb", "#exports a[download][href$='.glb']")):
            link = page.locator(selector).first.get_attribute("src" if name.endswith("mp4") else "href")
            files[name] = folder / name
            files[name].write_bytes(page.request.get(urljoin(page.url, link)).body())
        browser.close()
    return files["video.mp4"], files["avatar.glb"]


def labelled(path: Path, label: str) -> Image.Image:
    image = Image.open(path).convert("RGB").resize((SIZE, SIZE), Image.Resampling.LANCZOS)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=20)
    box = draw.textbbox((12, 10), label, font=font)  # top left: the video's own label is at the bottom
    draw.rectangle((box[0] - 6, box[1] - 5, box[2] + 6, box[3] + 6), fill=(255, 255, 255))
    draw.text((12, 10), label, fill=(20, 20, 20), font=font)
    return image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running app (default: start app.py here)")
    parser.add_argument("--speech", type=Path, default=ROOT / "assets" / "examples" / "idea_en-us_andy.wav")
    parser.add_argument("--seconds", type=float, default=2.3)
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    frame = round(args.seconds * FPS)
    with tempfile.TemporaryDirectory() as temporary, contextlib.ExitStack() as stack:
        folder = Path(temporary)
        url = args.url or stack.enter_context(running_app(folder))
        video, glb = player_and_files(url, args.speech, frame / FPS, args.out, folder)
        import imageio_ffmpeg

        still = folder / "video-frame.png"
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-i", str(video),
                        "-vf", f"select=eq(n\\,{frame})", "-frames:v", "1", str(still)], check=True)
        subprocess.run([str(BLENDER_PYTHON), str(ROOT / "tools" / "blender_render.py"), str(glb),
                        str(args.out / "glb-blender.png"), "--frame", str(frame), "--size", str(SIZE)], check=True,
                       stdout=subprocess.DEVNULL)
        tiles = [labelled(still, "the video"), labelled(folder / "player-canvas.png", "3D player (Chromium)"),
                 labelled(args.out / "glb-blender.png", ".glb in Blender (Cycles)")]
    row = Image.new("RGB", (SIZE * len(tiles), SIZE))
    for k, tile in enumerate(tiles):
        row.paste(tile, (k * SIZE, 0))
    row.save(args.out / "outfit-compare.png", optimize=True)
    print(f"{args.out}: player-outfit.png, glb-blender.png, outfit-compare.png (frame {frame}, {args.speech.name})")


if __name__ == "__main__":
    main()
