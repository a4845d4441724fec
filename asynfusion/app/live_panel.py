"""The page's Live panel: a microphone button and the latency the page measures, as a Gradio gr.HTML.

Its script (static/live.js) captures the microphone, talks to the Live routes (live_route.py) and poses
the page's 3D player (static/player.js) with the motion as it comes. When a take is saved, the panel's
value becomes {"take": id, "latency_p50_s", "latency_p95_s", "mouth_delay_s"}, which fires its change event:
app.py then gives the take to the player, the downloads and the video (live_result.take_steps).

The scripts are Gradio static files of this app, as the player's are: Live works with no internet.
Imported by app.py only: this module imports Gradio.
"""

import gradio as gr

from .live_takes import LiveOptions, LiveTakes
from .player import STATIC_DIR, _file_url

# Runs in the page when the panel mounts (`element` and `props` are gr.HTML's): imports live.js
# from this app, relative to the app's root URL (a Space serves it under a path), as the player does.
_BOOT = """
const root = (window.gradio_config && window.gradio_config.root || document.baseURI).replace(/\\/?$/, "/");
import(new URL(LIVE_URL, root).href)
  .then((live) => live.mount(element, props, {root, worklet: new URL(WORKLET_URL, root).href}))
  .catch((error) => {
    const status = element.querySelector(".af-live-status");
    if (status) status.textContent = "Live did not load: " + error;
    element.querySelector(".af-live")?.setAttribute("data-state", "failed");
  });
"""


def component(**kwargs) -> gr.HTML:
    """The Live panel; its change event carries a saved take (see the module's docstring)."""
    gr.set_static_paths([STATIC_DIR])
    script = (_BOOT.replace("LIVE_URL", repr(_file_url(STATIC_DIR / "live.js")))
              .replace("WORKLET_URL", repr(_file_url(STATIC_DIR / "live-capture.js"))))
    return gr.HTML(None, html_template=(STATIC_DIR / "live.html").read_text(),
                   css_template=(STATIC_DIR / "live.css").read_text(), js_on_load=script, apply_default_css=False,
                   **kwargs)


def takes(settings, options: LiveOptions | None = None) -> LiveTakes:
    """The app's takes, warmed up (a take's first window would otherwise wait for torch and the exporter)."""
    takes = LiveTakes(settings, options)
    takes.warm_up()
    return takes
