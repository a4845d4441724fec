"""The page's 3D player: the avatar played on the speech's clock in three.js, as a Gradio gr.HTML.

The body comes as .glb (skinned mesh, face shapes, the outfit's materials), the same file for every
result, and each result as its animation alone (export/animation.py): the page loads the body once.

Its markup and style are static files (static/player.html, player.css); its script (static/player.js)
is imported by the page together with the vendored three.js bundle (assets/vendor/three, see its
NOTICE). The app serves both itself, as Gradio static files, so the player works with no internet
access. The player's value names the avatar and the speech as Gradio files, which Gradio copies into
its cache and serves as it does a video's, and copies again into cached examples.

Imported by app.py only: this module imports Gradio (handlers.py and texts.py do not).
"""

from pathlib import Path
from urllib.parse import quote

import gradio as gr
from gradio.data_classes import FileData, GradioModel

from ..motion import FPS
from ..settings import ROOT
from .exports import PlayerFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"
THREE_BUNDLE = ROOT / "assets" / "vendor" / "three" / "three.bundle.min.js"


class PlayerValue(GradioModel):
    body: FileData                     # .glb: skinned body, face morph targets, materials, its own pose
    speech: FileData | None = None     # what the player plays and follows; None: the body standing still
    fps: float = FPS
    frames: int = 0                    # motion frames; 0: from the animation's length
    animation: FileData | None = None  # the result's animation alone (export/animation.py)
    stream: str | None = None          # Generate's: where the animation comes as soon as it is made (animations.py)


def value(files: tuple | None) -> PlayerValue | None:
    """The player's value from the handlers' exports.PlayerFiles, or a tuple of its first fields (the body
    .glb, speech or None, frames)."""
    if files is None:
        return None
    files = PlayerFiles(*files)
    return PlayerValue(body=_file_data(files.body), speech=_file_data(files.speech), frames=files.frames,
                       animation=_file_data(files.animation), stream=files.stream)


def _file_data(path) -> FileData | None:
    return FileData(path=str(path)) if path else None


def _file_url(path: Path) -> str:
    """The URL, relative to the app's root, at which Gradio serves a static file."""
    return "gradio_api/file=" + quote(str(path))


# Runs in the page when the component mounts (`element`, `props` and `watch` are gr.HTML's): imports
# three.js and the player from this app, relative to the app's root URL (a Space serves it under a path).
_BOOT = """
const root = (window.gradio_config && window.gradio_config.root || document.baseURI).replace(/\\/?$/, "/");
Promise.all([import(new URL(THREE_URL, root).href), import(new URL(PLAYER_URL, root).href)])
  .then(([THREE, player]) => player.mount(THREE, element, props, watch, root))
  .catch((error) => {
    const message = element.querySelector(".af-message");
    if (message) message.textContent = "The 3D player did not load: " + error;
    element.querySelector(".af-player")?.setAttribute("data-state", "failed");
  });
"""


def component(files: tuple | None = None, **kwargs) -> gr.HTML:
    """The 3D player: orbit, zoom, a face close-up, and the speech's own play/pause/seek controls.
    `files`: what it shows before any result, e.g. (the body standing still as .glb, None, 0): the body
    every result's animation then plays on."""
    gr.set_static_paths([STATIC_DIR, THREE_BUNDLE])
    script = (_BOOT.replace("THREE_URL", repr(_file_url(THREE_BUNDLE)))
              .replace("PLAYER_URL", repr(_file_url(STATIC_DIR / "player.js"))))
    component = gr.HTML(value(files), html_template=(STATIC_DIR / "player.html").read_text(),
                        css_template=(STATIC_DIR / "player.css").read_text(), js_on_load=script,
                        apply_default_css=False, **kwargs)
    # A plain gr.HTML with a data model rather than a subclass (Gradio writes a .pyi stub beside the
    # module of every component subclass): with it, Gradio copies the value's files into cached examples.
    component.data_model = PlayerValue
    return component
