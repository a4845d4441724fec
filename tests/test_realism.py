"""The realism command: kinematic statistics against a capture, its reference rows and its targets."""

from pathlib import Path

import numpy as np
import pytest

from asynfusion.cli import main
from asynfusion.evaluation.realism import Reference, jaw_depth, statistics, targets
from asynfusion.motion import FPS, JOINT, Motion, load_motion, save_motion

REAL = Path(__file__).resolve().parents[2] / "shared" / "real"
needs_capture = pytest.mark.skipif(not (REAL / "2_scott_0_2_2.npz").is_file(), reason="../shared/real is absent")


def _swinging_arms(frames: int, amplitude: float, hz: float = 1.0) -> Motion:
    """Both arms swing sinusoidally at the shoulder: a motion with a known speed."""
    poses = np.zeros((frames, 165))
    t = np.arange(frames) / FPS
    for side, sign in (("left", -1), ("right", 1)):
        poses[:, 3 * JOINT[f"{side}_shoulder"] + 2] = sign * (1.0 + amplitude * np.sin(2 * np.pi * hz * t))
    return Motion(poses, np.zeros((frames, 100)))


def test_statistics_grow_with_the_motion_and_a_still_pose_scores_zero():
    small, large = (statistics(_swinging_arms(300, a), None, "") for a in (0.1, 0.3))
    assert large.upper_body_speed == pytest.approx(3 * small.upper_body_speed, rel=0.05)
    assert large.wrist_reach == pytest.approx(3 * small.wrist_reach, rel=0.1)
    still = statistics(_swinging_arms(300, 0.0), None, "")
    assert still.upper_body_speed == 0.0 and still.wrist_reach < 1e-9 and still.wrist_speed_p95 == 0.0
    lowered = _swinging_arms(300, 0.0)
    lowered.poses[:, 3 * JOINT["left_shoulder"] + 2] = -1.4   # arms hanging by the sides
    lowered.poses[:, 3 * JOINT["right_shoulder"] + 2] = 1.4
    assert statistics(lowered, None, "").hand_height < still.hand_height - 0.05


def test_jaw_depth_separates_syllabic_from_held_open_mouths():
    t = np.arange(300) / FPS
    speech = np.ones(300, bool)
    syllabic = 0.15 * (1 + np.sin(2 * np.pi * 4 * t))         # opens and closes 4 times a second
    held = 0.15 + 0.01 * np.sin(2 * np.pi * 0.5 * t)           # stays open, drifts slowly
    assert jaw_depth(syllabic, speech) > 0.5 and jaw_depth(held, speech) < 0.05


def test_reference_rows_and_targets_on_a_synthetic_capture(speech_like):
    rng = np.random.default_rng(0)
    capture = _swinging_arms(600, 0.3)
    capture.poses += np.cumsum(rng.normal(0, 0.003, capture.poses.shape), axis=0)
    reference = Reference(capture, speech_like(20.0))
    rows = reference.reference_rows()
    assert [r.label for r in rows][0] == "capture" and rows[2].frechet_vs_still == 1.0
    assert rows[1].frechet < rows[2].frechet  # one half of a take is nearer the other than a still pose is
    itself = reference.row(capture, "itself")
    assert itself.frechet < 1e-6 and all(v for k, v in targets(itself, rows[0]).items() if k != "jaw_depth")
    slow = reference.row(_swinging_arms(600, 0.1), "slow")
    met = targets(slow, rows[0])
    assert not met["upper_body_speed"] and slow.frechet_vs_still > itself.frechet_vs_still


def test_realism_command_prints_the_table(tmp_path, capsys, speech_like):
    capture = _swinging_arms(400, 0.3)
    save_motion(tmp_path / "capture.npz", capture)
    save_motion(tmp_path / "half.npz", _swinging_arms(400, 0.15))
    import soundfile

    soundfile.write(tmp_path / "speech.wav", speech_like(400 / FPS), 16_000)
    code = main(["realism", str(tmp_path / "half.npz"), "--reference", str(tmp_path / "capture.npz"),
                 "--audio", str(tmp_path / "speech.wav"), "--baseline", "0.5", "--json", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert code == 0 and "| half |" in out and "still pose" in out and "rule-based, mood 0.5" in out
    assert (tmp_path / "r.json").is_file()


def test_realism_command_refuses_speech_of_another_length(tmp_path, capsys, speech_like):
    import soundfile

    save_motion(tmp_path / "capture.npz", _swinging_arms(400, 0.3))
    soundfile.write(tmp_path / "speech.wav", speech_like(3.0), 16_000)
    code = main(["realism", "--reference", str(tmp_path / "capture.npz"), "--audio", str(tmp_path / "speech.wav")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "capture's own speech" in err


@needs_capture
def test_capture_reference_rows_match_the_issue():
    """The capture's own figures, as measured when this command was written (issue #10's first column)."""
    import soundfile

    capture = load_motion(REAL / "2_scott_0_2_2.npz")
    samples, _ = soundfile.read(REAL / "2_scott_0_2_2.wav", dtype="float32")
    real, floor, still = Reference(capture, samples).reference_rows()
    assert real.upper_body_speed == pytest.approx(0.115, abs=0.005)
    assert real.wrist_speed_p95 == pytest.approx(0.86, abs=0.02)
    assert real.wrist_reach == pytest.approx(0.092, abs=0.005)
    assert 0.15 <= real.jaw_depth <= 0.25
    assert floor.frechet_vs_still < 0.15 and still.upper_body_speed == 0.0
