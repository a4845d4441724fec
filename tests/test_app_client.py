"""The app as a visitor's program sees it: `python app.py` on a free localhost port, called with
gradio_client through the named endpoints /generate and /compare."""

import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile

from asynfusion.motion import load_motion


@pytest.fixture(scope="module")
def client(app_url):
    from gradio_client import Client

    return Client(app_url, verbose=False)


def test_named_endpoints(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/generate", "/compare"} <= set(endpoints)
    assert [p["parameter_name"] for p in endpoints["/generate"]["parameters"]] == [
        "audio", "sampler", "steps_expression", "steps_gesture", "seed", "trim", "speaker"]
    assert [p["parameter_name"] for p in endpoints["/compare"]["parameters"]] == [
        "audio", "seed", "trim", "baseline", "speaker"]


def test_generate(client, example_wav):
    from gradio_client import handle_file

    video, motion, timings, note = client.predict(handle_file(str(example_wav)), "ddim", 5, 10, 2, False, 0,
                                                  api_name="/generate")
    assert Path(video).suffix == ".mp4" and Path(video).stat().st_size > 1000
    assert load_motion(motion).num_frames == round(soundfile.info(str(example_wav)).duration * 30)
    values = dict(timings["data"])
    assert values["expression branch: NFE"] == 5 and values["gesture branch: NFE"] == 10
    assert "DDIM 5/10 steps, seed 2" in note and "trained on: **untrained**" in note


def test_compare(client, example_wav):
    from gradio_client import handle_file

    video, table, chart, note = client.predict(handle_file(str(example_wav)), 0, False, False, 0, api_name="/compare")
    rows = [dict(zip(table["headers"], row)) for row in table["data"]]
    assert [(r["sampler"], r["steps E/G"], r["NFE E"], r["NFE G"]) for r in rows] == [
        ("DDIM", "25/25", 25, 25), ("sync LCM", "8/8", 8, 8), ("async LCM", "4/8", 4, 8)]
    assert len(chart["data"]) == 9 and chart["columns"] == ["sampler", "part", "seconds"]
    assert Path(video).stat().st_size > 1000 and "seed 0 for every sampler" in note


@pytest.mark.parametrize("audio, seconds, message", [
    ("silence", 2.0, "The audio is silent"),
    ("speech", 0.1, "only 0.10 s long"),
    ("speech", 11.0, "past the 10 s limit"),
])
def test_bad_audio_is_one_clear_line(client, tmp_path, speech_like, audio, seconds, message):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    samples = np.zeros(round(seconds * 16_000), np.float32) if audio == "silence" else speech_like(seconds)
    path = tmp_path / "bad.wav"
    soundfile.write(path, samples, 16_000)
    with pytest.raises(AppError) as error:
        client.predict(handle_file(str(path)), "async-lcm", 0, 0, 0, False, 0, api_name="/generate")
    assert message in str(error.value) and "Traceback" not in str(error.value)


def test_past_the_cap_with_trim_uses_the_start(client, tmp_path, speech_like):
    from gradio_client import handle_file

    path = tmp_path / "long.wav"
    soundfile.write(path, speech_like(11.0), 16_000)
    _, motion, _, note = client.predict(handle_file(str(path)), "async-lcm", 0, 0, 0, True, 0, api_name="/generate")
    assert load_motion(motion).num_frames == 300 and "its first 10 s" in note


def test_two_visitors_at_once_each_get_their_own_result(app_url, example_wav):
    from gradio_client import Client, handle_file

    results = {}

    def visit(seed):
        visitor = Client(app_url, verbose=False)
        results[seed] = visitor.predict(handle_file(str(example_wav)), "sync-lcm", 0, 0, seed, False, 0,
                                        api_name="/generate")

    visitors = [threading.Thread(target=visit, args=(seed,)) for seed in (11, 12)]
    for thread in visitors:
        thread.start()
    for thread in visitors:
        thread.join(300)
    assert set(results) == {11, 12}
    motions = {seed: load_motion(result[1]) for seed, result in results.items()}
    assert motions[11].metadata["seed"] == 11 and motions[12].metadata["seed"] == 12
    assert not np.array_equal(motions[11].poses, motions[12].poses)
