"""A finished live take on the page, as after Generate: the 3D player replays it, then the downloads
(.npz, .glb, .bvh, .csv) and the rendered video come. The take's files were saved when it stopped
(live_takes.py); this gives them to the page's components in handlers.GenerateResult's shape.

Nothing here imports Gradio: app.py calls `take_steps` from the Live panel's change event.
"""

import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from ..errors import InputError
from ..settings import Settings
from . import exports, handlers, rendering, texts
from .live_takes import LiveTakes


def page_figures(value) -> tuple[str, dict]:
    """The take id and the latency figures the page measured, from the Live panel's value
    ({"take": id, "latency_p50_s": ..., "latency_p95_s": ..., "mouth_delay_s": ...})."""
    if not isinstance(value, dict) or not isinstance(value.get("take"), str):
        raise InputError("no live take to show: press Live, talk, then Stop")
    figures = {}
    for name in ("latency_p50_s", "latency_p95_s", "mouth_delay_s"):
        number = value.get(name)
        if isinstance(number, (int, float)) and 0 <= number < 3600:
            figures[name] = round(float(number), 3)
    return value["take"], figures


def timing_table(result: dict, page: dict, render: dict | None, export_seconds: float | None,
                 rendered: bool) -> pd.DataFrame:
    """The take's timing panel: what the page measured, what the server measured, what ran."""
    rows = [("precision", result["precision"]),
            ("sampler steps (expression/gesture)", f"{result['steps_expression']}/{result['steps_gesture']}"),
            ("chunk / lookahead: seconds", f"{result['chunk_s']:.2f} / {result['lookahead_s']:.2f}")]
    names = {"latency_p50_s": "latency in the page, p50: seconds", "latency_p95_s": "latency in the page, p95: seconds",
             "mouth_delay_s": "mouth behind the voice: seconds"}
    rows += [(label, page[name]) for name, label in names.items() if name in page]
    rows += [("latency on the server, p50: seconds", result["server_latency_p50_s"]),
             ("latency on the server, p95: seconds", result["server_latency_p95_s"]),
             ("windows sampled", result["windows"]),
             ("sampling in all: seconds", result["seconds_sampling"])]
    if export_seconds is not None:
        rows.append(("exports (.glb, .bvh, .csv): seconds", round(export_seconds, 3)))
    if render is not None:
        rows.append((f"rendering {render['frames']} frames: seconds", round(render["seconds"], 2)))
    elif rendered:
        rows.append(("rendering the video", "in progress"))
    rows.append(("take length: seconds", result["seconds"]))
    return pd.DataFrame(rows, columns=texts.TIMING_COLUMNS, dtype=object)


def take_steps(value, takes: LiveTakes, settings: Settings,
               progress: rendering.Progress | None = None) -> Iterator[handlers.GenerateResult]:
    """A saved take for the page: first the 3D player's files (to replay it) and the .npz, then the
    .glb/.bvh/.csv downloads and the video. Takes longer than Settings.max_seconds are not rendered here
    (the video of 10 minutes would hold the renderer for as long): the note says how to render one."""
    from ..motion import load_motion

    progress = progress or rendering.no_progress
    take_id, page = page_figures(value)
    result = takes.result(take_id)
    motion_path = Path(result["motion"])
    files = exports.PlayerFiles(*result["player"])
    said = (f"Live take: {result['seconds']:.1f} s of speech, {result['frames']} frames made as you talked, "
            f"{result['chunk_s']:.2f} s at a time with {result['lookahead_s']:.2f} s of lookahead "
            f"({result['precision']}).")
    rendered = result["seconds"] <= settings.max_seconds
    yield handlers.GenerateResult(None, str(motion_path), timing_table(result, page, None, None, rendered),
                                  f"{said} The downloads are on their way.", files)
    progress(0.1, desc="exports")
    motion = load_motion(motion_path)
    started = time.perf_counter()
    downloads = exports.other_formats(motion, motion_path, settings.body)
    export_seconds = time.perf_counter() - started
    if not rendered:
        note = (f"{said} Takes longer than {settings.max_seconds:g} s are not rendered on this page: "
                f"`asynfusion render {motion_path.name} --audio {Path(files.speech).name} -o avatar.mp4` renders "
                "the video from the downloads.")
        yield handlers.GenerateResult(None, str(motion_path), timing_table(result, page, None, export_seconds, False),
                                      note, files, downloads)
        return
    yield handlers.GenerateResult(None, str(motion_path), timing_table(result, page, None, export_seconds, True),
                                  f"{said} The video is rendering.", files, downloads)
    video_path = motion_path.parent / "avatar.mp4"
    render = rendering.render([motion], files.speech, video_path, ["live"], settings, settings.render_size, progress,
                              0.3)
    yield handlers.GenerateResult(str(video_path), str(motion_path),
                                  timing_table(result, page, render, export_seconds, True),
                                  f"{said} Rendered in {render['seconds']:.1f} s.", files, downloads)
