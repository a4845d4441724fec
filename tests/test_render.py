"""Rendering: offscreen OpenGL, an mp4 with one H.264 and one AAC stream lasting as long as the
speech, frames that show a person, side by side, any SMPL-X-format body, nothing left on failure."""

import math
import re
import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import soundfile
from PIL import Image

from asynfusion.errors import InputError
from asynfusion.motion import JOINT, Motion
from asynfusion.render import render_still, render_video
from asynfusion.render.scene import BACKGROUND, FLOOR_COLOR, TILT_DEGREES, VIEW_BOTTOM, VIEW_TOP, choose_gl_platform

SIZE = 128


def tone(path, seconds: float):
    t = np.arange(int(seconds * 16_000)) / 16_000
    soundfile.write(path, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16_000)
    return path


def talking(num_frames: int) -> Motion:
    """Jaw opening and closing, the left arm waving."""
    motion = Motion.rest(num_frames, expression_space="arkit")
    phase = np.linspace(0, 4 * np.pi, num_frames)
    motion.poses[:, JOINT["jaw"] * 3] = 0.2 + 0.2 * np.sin(phase)
    motion.poses[:, JOINT["left_shoulder"] * 3 + 2] = -1.0 + 0.5 * np.sin(phase / 2)
    return motion


def probe(path) -> dict:
    """Streams, container duration and decoded video frame count, from the ffmpeg binary's own report."""
    result = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-i", str(path), "-map", "0:v",
                             "-f", "null", "-"], capture_output=True, text=True, check=False)
    report = result.stderr.split("Stream mapping")[0]  # the input file's description only
    hours, minutes, seconds = re.search(r"Duration: (\d+):(\d+):([\d.]+)", report).groups()
    return {"video": re.findall(r"Stream #0:\d+.*?: Video: (\w+).*?(yuv\w+).*?(\d+)x(\d+)", report),
            "audio": re.findall(r"Stream #0:\d+.*?: Audio: (\w+)", report),
            "duration": int(hours) * 3600 + int(minutes) * 60 + float(seconds),
            "frames": int(re.findall(r"frame=\s*(\d+)", result.stderr)[-1])}


def decoded_audio_seconds(path) -> float:
    result = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a",
                             "-ac", "1", "-ar", "16000", "-f", "f32le", "-"], capture_output=True, check=True)
    return len(result.stdout) / 4 / 16_000


def decoded_frames(path) -> np.ndarray:
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    width, height = meta["size"]
    return np.stack([np.frombuffer(frame, np.uint8).reshape(height, width, 3) for frame in reader])


def person_pixels(image: np.ndarray) -> float:
    """Fraction of the tile's central band (left of the close-up, above the floor) that is not background."""
    height, width = image.shape[:2]
    band = image[int(0.1 * height):int(0.6 * height), int(0.2 * width):int(0.55 * width)].astype(float)
    return float((np.abs(band - np.array(BACKGROUND) * 255).sum(-1) > 60).mean())


def test_an_offscreen_platform_is_chosen():
    assert choose_gl_platform() in ("egl", "osmesa")


def test_video_has_one_video_and_one_audio_stream_as_long_as_the_speech(tmp_path):
    audio = tone(tmp_path / "speech.wav", 1.05)
    out = tmp_path / "out.mp4"
    stats = render_video([talking(25)], str(audio), out, size=SIZE, progress=lambda done, total: None)
    info = probe(out)
    assert info["video"] == [("h264", "yuv420p", str(SIZE), str(SIZE))] and info["audio"] == ["aac"]
    assert stats["frames"] == info["frames"] == 32  # ceil(1.05 s x 30): the motion's last pose is held
    assert 1.05 <= info["frames"] / 30 < 1.05 + 1 / 30 and abs(info["duration"] - 1.05) <= 1 / 30 + 0.02
    assert abs(decoded_audio_seconds(out) - 1.05) < 1 / 30  # the whole speech, no trailing part dropped
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4", "speech.wav"]  # no temp files left


def test_frames_show_a_moving_person(tmp_path):
    out = tmp_path / "out.mp4"
    render_video([talking(12)], None, out, size=SIZE, progress=lambda done, total: None)
    frames = decoded_frames(out)
    assert len(frames) == 12
    assert all(person_pixels(frame) > 0.2 for frame in frames)
    assert np.abs(frames[0].astype(int) - frames[6].astype(int)).max() > 50  # the arm and jaw moved


def test_side_by_side_is_one_wider_video_with_labels(tmp_path):
    out = tmp_path / "compare.mp4"
    stats = render_video([talking(8), Motion.rest(8, expression_space="arkit")], None, out,
                         labels=["DDIM 25 steps, 1.2 s", "async LCM 4/8, 0.2 s"], size=SIZE,
                         progress=lambda done, total: None)
    frames = decoded_frames(out)
    assert stats["frames"] == len(frames) == 8 and frames.shape[1:] == (SIZE, 2 * SIZE, 3)
    left, right = frames[:, :, :SIZE], frames[:, :, SIZE:]
    assert person_pixels(left[0]) > 0.2 and person_pixels(right[0]) > 0.2
    motion_left, motion_right = (np.abs(np.diff(tile.astype(int), axis=0)).mean() for tile in (left, right))
    assert motion_right < 0.2 * motion_left  # only the talking avatar moves (the other changes by codec noise)


def test_a_user_supplied_smplx_file_renders(tmp_path, write_tiny_smplx):
    body_path = write_tiny_smplx(tmp_path / "SMPLX_NEUTRAL.npz")
    still = render_still(talking(4), 2, tmp_path / "tiny.png", body_path=body_path, size=SIZE)
    image = np.asarray(Image.open(still))
    assert image.shape == (SIZE, SIZE, 3) and 0 < person_pixels(image) < 0.1  # 55 small triangles
    out = tmp_path / "tiny.mp4"
    render_video([talking(5)], None, out, body_path=body_path, size=SIZE, progress=lambda done, total: None)
    assert probe(out)["frames"] == 5


def test_failure_leaves_nothing_behind(tmp_path):
    out = tmp_path / "out.mp4"
    with pytest.raises(InputError, match="audio file not found"):
        render_video([talking(5)], str(tmp_path / "missing.wav"), out, size=SIZE)
    with pytest.raises(InputError, match="body model file not found"):
        render_video([talking(5)], None, out, body_path=tmp_path / "SMPLX_NEUTRAL.npz", size=SIZE)

    def interrupt(done, total):
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        render_video([talking(10)], None, out, size=SIZE, progress=interrupt)
    assert list(tmp_path.iterdir()) == []


def test_an_encoder_failure_is_reported_and_cleaned_up(tmp_path, monkeypatch):
    import asynfusion.render.frames

    monkeypatch.setattr(asynfusion.render.video, "ENCODER", ["-c:v", "no-such-codec"])
    with pytest.raises(InputError, match="ffmpeg could not write the video"):
        render_video([talking(40)], None, tmp_path / "out.mp4", size=SIZE, progress=lambda done, total: None)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command, message", [
    (["sleep", "30"], "stopped taking frames"),                          # never reads a frame
    (["sh", "-c", "cat > /dev/null; sleep 30"], "did not finish the video"),  # reads them all, then hangs
])
def test_a_stalled_encoder_times_out_and_cleans_up(tmp_path, monkeypatch, command, message):
    import asynfusion.render.frames

    monkeypatch.setattr(asynfusion.render.video, "ENCODER_TIMEOUT", 1.0)
    monkeypatch.setattr(asynfusion.render.video, "_ffmpeg_command", lambda *args: command)
    with pytest.raises(InputError, match=message):
        render_video([talking(60)], None, tmp_path / "out.mp4", size=SIZE, progress=lambda done, total: None)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------
# A real capture (BEAT2) on the free body, beside a generated motion (issue 11)
# ----------------------------------------------------------------------------
REAL = Path(__file__).resolve().parents[2] / "shared" / "real"
CAPTURE = REAL / "2_scott_0_2_2"


def every(motion: Motion, step: int) -> Motion:
    """Every `step`-th frame, at the matching lower frame rate (so the clip keeps its length in seconds)."""
    return Motion(motion.poses[::step], motion.expressions[::step], motion.trans[::step], motion.betas,
                  fps=motion.fps // step, expression_space=motion.expression_space)


def person_mask(tile: np.ndarray) -> np.ndarray:
    """Pixels of the avatar in one tile: neither background nor floor, outside the close-up card's corner."""
    size = tile.shape[0]
    pixels = tile.astype(float)
    mask = np.ones(tile.shape[:2], bool)
    for color in (BACKGROUND, FLOOR_COLOR):
        mask &= np.abs(pixels - np.array(color) * 255).sum(-1) > 60
    mask[: int(0.47 * size), int(0.54 * size):] = False  # the card and its border
    mask[int(0.85 * size):] = False                      # the label strip and the legs under it
    mask[:, [0, -1]] = False                             # the divider between tiles
    return mask


@pytest.mark.skipif(not CAPTURE.with_suffix(".npz").is_file(), reason="needs ../shared/real (the BEAT2 sample)")
def test_a_beat2_capture_renders_as_an_adult_framed_like_a_generated_motion(tmp_path):
    """Same projected height as a generated motion (within 15 %) and inside the frame for the whole clip,
    though the file's betas are SMPL-X's and its root stands 1.3 m up and wanders about the mocap volume."""
    from asynfusion.audio import load_audio
    from asynfusion.motion import load_motion
    from asynfusion.pipeline import Pipeline
    from asynfusion.request import Request

    capture = load_motion(CAPTURE.with_suffix(".npz"))
    assert capture.betas.any() and capture.trans[:, 1].min() > 1.0 and capture.expression_space == "flame"
    speech = load_audio(CAPTURE.with_suffix(".wav"), max_seconds=math.inf)[: 20 * 16_000]
    generated, _ = Pipeline(precision="fp32").generate(Request(speech), count_flops=False)
    step = 15  # two frames a second of the whole minute
    out = tmp_path / "capture_and_generated.mp4"
    stats = render_video([every(capture, step), every(generated, step)], None, out, size=SIZE,
                         progress=lambda done, total: None)
    assert any("jaw only" in note for note in stats["notes"]) and any("betas" in note for note in stats["notes"])
    frames = decoded_frames(out)
    assert len(frames) == math.ceil(capture.num_frames / step)
    tilt = math.radians(TILT_DEGREES)
    floor_row = SIZE * (0.5 + (VIEW_TOP + VIEW_BOTTOM) / 2 * math.cos(tilt) / (VIEW_TOP - VIEW_BOTTOM))
    heights = {0: [], 1: []}
    for k, frame in enumerate(frames):
        for tile in (0, 1):
            if tile == 1 and k >= math.ceil(generated.num_frames / step):
                continue  # the generated motion is 20 s long and holds its last pose after that
            mask = person_mask(frame[:, tile * SIZE:(tile + 1) * SIZE])
            rows, columns = np.nonzero(mask)
            assert len(rows) > 0.05 * SIZE**2, f"frame {k}, tile {tile}: no avatar"
            assert rows.min() > 1, f"frame {k}, tile {tile}: the head is cut off at the top"
            assert columns.min() > 2 and columns.max() < SIZE - 3, f"frame {k}, tile {tile}: out of frame sideways"
            heights[tile].append(floor_row - rows.min())
    ratio = np.median(heights[0]) / np.median(heights[1])
    assert 0.85 < ratio < 1.15, f"capture {np.median(heights[0]):.0f} px tall, generated {np.median(heights[1]):.0f} px"


@pytest.mark.skipif(not CAPTURE.with_suffix(".npz").is_file(), reason="needs ../shared/real (the BEAT2 sample)")
def test_a_flame_face_on_the_free_body_still_moves_the_jaw():
    from asynfusion.motion import load_motion
    from asynfusion.render.body import body_vertices, load_body

    body = load_body()
    capture = load_motion(CAPTURE.with_suffix(".npz"))
    clip = Motion(capture.poses[:300], capture.expressions[:300], capture.trans[:300], capture.betas,
                  expression_space="flame")
    vertices = body_vertices(body, clip)
    weights = body.lbs_weights.numpy()
    jaw = np.where(weights.argmax(1) == JOINT["jaw"])[0]
    chin = jaw[np.argsort(-body.v_template.numpy()[jaw, 2])[:30]]               # the jaw's front-most vertices
    skull = np.where(weights[:, JOINT["head"]] > 0.99)[0]
    opening = (vertices[:, skull, 1].mean(1) - vertices[:, chin, 1].mean(1))    # chin below the skull
    assert np.ptp(opening) > 0.002  # millimetres of real jaw motion in 10 s of speech


# ----------------------------------------------------------------------------
# Speed-ups that must not change the picture
# ----------------------------------------------------------------------------
def test_back_face_culling_only_for_closed_meshes_wound_outward():
    from asynfusion.render.scene import _outward_faces

    tetrahedron = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], float)
    outward = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    faces, cullable = _outward_faces(tetrahedron, outward)
    assert cullable and (faces == outward).all()
    faces, cullable = _outward_faces(tetrahedron, outward[:, ::-1])             # wound inward: turned round
    assert cullable and (faces == outward).all()
    faces, cullable = _outward_faces(tetrahedron, outward[:3])                  # open: drawn two-sided
    assert not cullable and (faces == outward[:3]).all()


def test_the_culled_one_sided_picture_matches_the_two_sided_one(tmp_path, monkeypatch):
    import asynfusion.render.scene

    motion = talking(6)
    culled = np.asarray(Image.open(render_still(motion, 5, tmp_path / "culled.png", size=256)), int)
    monkeypatch.setattr(asynfusion.render.scene, "_outward_faces", lambda vertices, faces: (faces, False))
    two_sided = np.asarray(Image.open(render_still(motion, 5, tmp_path / "two-sided.png", size=256)), int)
    differing = (np.abs(culled - two_sided).max(-1) > 8).mean()
    assert differing < 1e-3  # a few pixels where the close-up's neck is cut open


def test_a_stage_set_up_in_another_thread_renders_the_same_frames(tmp_path):
    import asynfusion.render.frames
    from asynfusion.render import prepare_in_background

    motion = talking(8)
    fresh = tmp_path / "fresh.mp4"
    render_video([motion], None, fresh, size=SIZE, progress=lambda done, total: None)
    prepare_in_background(None, SIZE).join()
    if choose_gl_platform() == "egl":  # only an EGL context can move between threads
        assert len(asynfusion.render.frames._prepared) == 1
    prepared = tmp_path / "prepared.mp4"
    render_video([motion], None, prepared, size=SIZE, progress=lambda done, total: None)
    assert not asynfusion.render.frames._prepared  # taken by the render, not left behind
    assert np.array_equal(np.stack(decoded_frames(fresh)), np.stack(decoded_frames(prepared)))


@pytest.mark.parametrize("count, multisample", [(1, False), (2, True)])
def test_replayed_draws_give_pyrenders_own_picture(count, multisample):
    """The frame loop replays the draws recorded from pyrender's first render (draws.py): each frame of a
    moving motion, one avatar or two side by side, with and without multisampling, is pyrender's."""
    from asynfusion.render.body import iter_body_vertices, load_body
    from asynfusion.render.scene import _Stage

    body = load_body(None)
    stage = _Stage([body] * count, SIZE, multisample=multisample)
    try:
        vertices, normals = next(iter_body_vertices(body, talking(6)))
        for frame in (1, 4):
            for i, avatar in enumerate(stage.avatars):
                stage.place(avatar, vertices[frame + i], normals[frame + i])
            replayed = stage.render([(a.body_buffer, a.head_buffer) for a in stage.avatars])[..., 2::-1]
            pyrender_frame, _ = stage.renderer.render(stage.scene)  # pyrender's whole pass, same GPU buffers
            assert np.array_equal(replayed, pyrender_frame)
        assert len(np.unique(replayed.reshape(-1, 3), axis=0)) > 50  # a lit person, not a blank frame
    finally:
        stage.close()


def test_two_drawing_threads_make_the_one_thread_video(tmp_path, monkeypatch):
    """With EGL, two stages draw alternate frames in threads of their own: the video is frame for frame the
    one a single stage drawing in the calling thread makes, side by side too."""
    import asynfusion.render.frames

    if choose_gl_platform() != "egl":
        pytest.skip("two drawing threads need EGL")
    motions = [talking(12), talking(9)]
    videos = {}
    for count in (1, 2):
        monkeypatch.setattr(asynfusion.render.frames, "stage_count", lambda count=count: count)
        videos[count] = tmp_path / f"{count}.mp4"
        render_video(motions, None, videos[count], labels=["a", "b"], size=SIZE, progress=lambda done, total: None)
    assert np.array_equal(decoded_frames(videos[1]), decoded_frames(videos[2]))


def test_a_drawing_thread_that_fails_stops_the_video_and_leaves_nothing(tmp_path, monkeypatch):
    from asynfusion.render.scene import _Stage

    calls, open_before = [], _Stage._open

    def fail_on_the_fifth(stage, buffers, original=_Stage.render):
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("the rasteriser fell over")
        return original(stage, buffers)

    monkeypatch.setattr(_Stage, "render", fail_on_the_fifth)
    with pytest.raises(RuntimeError, match="fell over"):
        render_video([talking(30)], None, tmp_path / "out.mp4", size=SIZE, progress=lambda done, total: None)
    assert list(tmp_path.iterdir()) == []
    assert _Stage._open == open_before  # every stage closed, its threads stopped first


def test_one_usable_core_draws_with_one_stage(monkeypatch):
    """A process held to one core (its affinity, as in a container) draws in one thread, whatever the
    machine has."""
    from asynfusion import precision
    from asynfusion.render.frames import stage_count

    monkeypatch.setattr(precision, "usable_cores", lambda: 1)
    assert stage_count() == 1
    monkeypatch.setattr(precision, "usable_cores", lambda: 2)
    assert stage_count() == (2 if choose_gl_platform() == "egl" else 1)
