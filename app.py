"""The Gradio app: speech in, a talking SMPL-X avatar out, and the samplers compared side by side.

    python app.py      # host and port: GRADIO_SERVER_NAME / GRADIO_SERVER_PORT; the rest: asynfusion/settings.py

The page only lays things out; asynfusion.app.handlers does the work and returns file paths and tables,
asynfusion.app.texts has the words, asynfusion.app.player is the 3D player, and the samplers come from
asynfusion/diffusion/registry.py. The page's Generate shows the 3D player as soon as the motion is made,
then the rendered video (the player's animation comes past Gradio's queue: asynfusion.app.animations);
the API's /generate returns the video, motion, timings and note at the end.
Live (asynfusion.app.live_panel, live_route): the microphone's speech moves the player as it is heard,
through routes beside Gradio's on the same server; a stopped take then comes as Generate's results do.
"""

import os
import random
import sys

import gradio as gr

from asynfusion.app import animations, examples, handlers, live_panel, live_result, live_route, player, texts
from asynfusion.diffusion.registry import DEFAULT_SAMPLER
from asynfusion.errors import InputError
from asynfusion.request import MAX_SEED
from asynfusion.settings import Settings, one_blas_thread

TABLE_HEIGHT = 1200  # px: above the tallest table, so that no table scrolls inside itself
# On a phone Compare's five columns are 65 px each: a smaller font and padding keep "12.345" on one line
NARROW_TABLES = """@media (max-width: 480px) {
  #compare-table [role=gridcell], #compare-table [role=columnheader] { font-size: var(--text-sm); }
  #compare-table .cell-wrap { padding: var(--size-1); }
}"""

one_blas_thread()
try:
    settings = Settings.from_env()
    introduction = handlers.about(settings)  # loads the checkpoint: a bad path or setting stops here, in one line
    avatar_standing = handlers.warm_up(settings)  # and what the first Generate needs
    live_takes = live_panel.takes(settings)  # and a live take's first window
    player_animations = animations.Animations()  # Generate's animation to the page, past Gradio's queue
except InputError as error:
    sys.exit(f"app.py: {error}")
# Cached example results depend on the checkpoint: a folder per checkpoint keeps old results from showing.
os.environ.setdefault("GRADIO_EXAMPLES_CACHE", str(examples.examples_cache_dir(settings)))


def generate(audio, sampler, steps_expression, steps_gesture, seed, trim, speaker, progress=gr.Progress()):
    try:
        result = handlers.generate(audio, sampler, steps_expression, steps_gesture, seed, trim, speaker,
                                   settings=settings, progress=progress)
    except InputError as error:
        raise gr.Error(str(error), print_exception=False) from None
    return result.video, result.motion, result.timings, result.note


def generate_in_steps(audio, sampler, steps_expression, steps_gesture, seed, trim, speaker, progress=gr.Progress()):
    try:
        for result in handlers.generate_steps(audio, sampler, steps_expression, steps_gesture, seed, trim, speaker,
                                              settings=settings, progress=progress, animations=player_animations):
            # the 3D player's animation alone: the page has nothing else to update before the avatar moves
            rest = [gr.skip()] * 5 if result.player_only else [result.video, result.motion, result.exports,
                                                               result.timings, result.note]
            yield player.value(result.player), *rest
    except InputError as error:
        raise gr.Error(str(error), print_exception=False) from None


def show_live_take(value, progress=gr.Progress()):
    try:
        for result in live_result.take_steps(value, live_takes, settings, progress=progress):
            yield player.value(result.player), result.video, result.motion, result.exports, result.timings, result.note
    except InputError as error:
        raise gr.Error(str(error), print_exception=False) from None


def generate_example(audio, progress=gr.Progress()):
    yield from generate_in_steps(audio, DEFAULT_SAMPLER, 0, 0, 0, False, 0, progress)


def compare(audio, seed, trim, baseline, speaker, progress=gr.Progress()):
    try:
        result = handlers.compare(audio, seed, trim, baseline, speaker, settings=settings, progress=progress)
    except InputError as error:
        raise gr.Error(str(error), print_exception=False) from None
    return result.video, result.table, result.chart, result.note


def compare_on_page(audio, seed, trim, baseline, speaker, progress=gr.Progress()):
    """`compare` with its table a row per measure, its columns of equal width (4 or 5: the baseline's)."""
    video, table, chart, note = compare(audio, seed, trim, baseline, speaker, progress)
    by_measure = texts.comparison_by_measure(table)
    widths = [f"{100 / len(by_measure.columns):.2f}%"] * len(by_measure.columns)
    return video, gr.Dataframe(by_measure, column_widths=widths), chart, note


with gr.Blocks(title="AsynFusion", delete_cache=(settings.keep_seconds, settings.keep_seconds)) as demo:
    gr.Markdown(introduction)
    with gr.Row():
        with gr.Column():
            audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Speech", elem_id="speech")
            trim = gr.Checkbox(label=texts.trim_label(settings.max_seconds))
            sampler = gr.Radio(texts.sampler_choices(), value=DEFAULT_SAMPLER, label="Sampler")
            with gr.Accordion("Advanced", open=False):
                with gr.Row():
                    steps_expression = gr.Number(0, precision=0, minimum=0, label="Expression steps (0 = default)")
                    steps_gesture = gr.Number(0, precision=0, minimum=0, label="Gesture steps (0 = default)")
                with gr.Row():
                    seed = gr.Number(0, precision=0, minimum=0, maximum=MAX_SEED, label="Seed")
                    dice = gr.Button("Random seed", size="sm")
                speakers = handlers.speaker_count(settings)
                speaker = gr.Number(0, precision=0, minimum=0, maximum=max(speakers - 1, 0), visible=speakers > 0,
                                    label=f"Speaker style (0-{speakers - 1})")
            generate_button = gr.Button("Generate", variant="primary")
            examples_column = gr.Column()
        with gr.Column():
            avatar_3d = player.component((avatar_standing, None, 0), label="Avatar in 3D", elem_id="player")
            live = live_panel.component(label="Live", elem_id="live")
            # no autoplay: the 3D player has already said it by the time the video is rendered
            video = gr.Video(label="Avatar video (rendered after the 3D view)", elem_id="avatar")
            # wrapped and tall enough for every row: each number in view, also on a phone (tests/test_browser.py)
            timings = gr.Dataframe(headers=texts.TIMING_COLUMNS, label="Timing", interactive=False, wrap=True,
                                   column_widths=["45%", "55%"], max_height=TABLE_HEIGHT, elem_id="timings")
            gr.Markdown(texts.TIMING_NOTE, elem_id="timings-note")
            motion = gr.File(label="Motion (.npz, BEAT2 / SMPL-X layout)")
            exports = gr.File(label="For Blender, Unity, Unreal, three.js: .glb (body, face shapes, animation), "
                                    ".bvh (skeleton), .csv (ARKit curves, Live Link Face)", file_count="multiple",
                              elem_id="exports")
            note = gr.Markdown(label="Note")
    generate_outputs = [avatar_3d, video, motion, exports, timings, note]
    # a saved live take (the panel's new value) comes as Generate's results do
    live.change(show_live_take, live, generate_outputs, show_progress_on=[video], api_visibility="private",
                concurrency_id="work")
    with examples_column:  # under the inputs; declared here because it needs the outputs
        gr.Examples([[path] for path in examples.example_paths()], [audio], generate_outputs,
                    fn=generate_example,
                    cache_examples=settings.cache_examples != "off",
                    cache_mode=None if settings.cache_examples == "off" else settings.cache_examples,
                    preload=0 if settings.cache_examples == "eager" else False)

    gr.Markdown("## Compare the samplers on the same speech and seed")
    with gr.Row():
        baseline = gr.Checkbox(label="Add the rule-based baseline (no network)")
        compare_button = gr.Button("Compare", variant="primary")
    compare_video = gr.Video(label="Side by side", autoplay=True, elem_id="compare-video")
    compare_table = gr.Dataframe(headers=["measure"], label="Per sampler", interactive=False, wrap=True,
                                 max_height=TABLE_HEIGHT, elem_id="compare-table")
    with gr.Row():
        chart = gr.BarPlot(x="sampler", y="seconds", color="part", sort=texts.chart_order(), y_title="seconds",
                           label="Generation time per sampler, split by branch", scale=3)
        compare_note = gr.Markdown(label="Compare note")

    dice.click(lambda: random.randint(0, MAX_SEED), outputs=seed, api_visibility="private", queue=False)
    generate_inputs = [audio, sampler, steps_expression, steps_gesture, seed, trim, speaker]
    generate_button.click(generate_in_steps, generate_inputs, generate_outputs,
                          show_progress_on=[video], api_visibility="private", concurrency_id="work")
    # the API's /generate, on no trigger of the page: the same work, its four results at the end
    gr.on([], generate, generate_inputs, [video, motion, timings, note], api_name="generate", concurrency_id="work")
    compare_inputs = [audio, seed, trim, baseline, speaker]
    compare_outputs = [compare_video, compare_table, chart, compare_note]
    compare_button.click(compare_on_page, compare_inputs, compare_outputs, api_visibility="private",
                         concurrency_id="work")
    # the API's /compare: a row per sampler, as the paper's Table 3 (the page shows it a row per measure)
    gr.on([], compare, compare_inputs, compare_outputs, api_name="compare", concurrency_id="work")
demo.queue(max_size=settings.queue_size, default_concurrency_limit=1)

if __name__ == "__main__":
    demo.launch(allowed_paths=[str(settings.work_dir)], max_file_size=settings.max_upload, css=NARROW_TABLES,
                # Live's and the player's animation's routes, beside Gradio's own
                app_kwargs={"routes": live_route.routes(live_takes) + animations.routes(player_animations)})
