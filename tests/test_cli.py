"""The CLI contract: generate/bench flags, one-line errors with exit status 2, nothing written on failure."""

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from asynfusion.cli import main
from asynfusion.motion import load_motion


def run(*args):
    return subprocess.run([sys.executable, "-m", "asynfusion", *map(str, args)], capture_output=True, text=True)


def test_generate_writes_a_beat2_npz(tmp_path, tiny_checkpoint, speech_wav, capsys):
    out = tmp_path / "m.npz"
    assert main(["generate", str(speech_wav), "-o", str(out), "--checkpoint", str(tiny_checkpoint), "--seed", "5"]) == 0
    motion = load_motion(out)
    assert motion.num_frames == 90 and motion.metadata["seed"] == 5 and motion.metadata["sampler"] == "async-lcm"
    out = capsys.readouterr().out
    assert "UNTRAINED" in out and (" in fp32 (" in out or " in bf16 (" in out)


def test_generate_is_deterministic_across_processes(tmp_path, tiny_checkpoint, speech_wav):
    for name in ("a", "b"):
        result = run("generate", speech_wav, "-o", tmp_path / f"{name}.npz", "--checkpoint", tiny_checkpoint,
                     "--sampler", "ddim", "--steps-expression", "3", "--steps-gesture", "5")
        assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(load_motion(tmp_path / "a.npz").poses, load_motion(tmp_path / "b.npz").poses)
    assert load_motion(tmp_path / "a.npz").metadata["steps_gesture"] == 5


def test_bench_json_report(tiny_checkpoint, speech_wav, capsys, monkeypatch):
    monkeypatch.delenv("ASYNFUSION_PRECISION", raising=False)
    assert main(["bench", str(speech_wav), "--json", "--repeats", "1", "--checkpoint", str(tiny_checkpoint),
                 "--render-seconds", "0.5", "--size", "64"]) == 0
    report = json.loads(capsys.readouterr().out)
    rows = report["samplers"]
    assert [r["sampler"] for r in rows] == ["ddim", "sync-lcm", "async-lcm"]
    keys = {"sampler", "steps_expression", "steps_gesture", "nfe_expression", "nfe_gesture", "seconds_expression",
            "seconds_gesture", "seconds_features", "seconds_sampling", "seconds_stitch", "seconds_total", "gflops",
            "gflops_expression", "gflops_gesture", "audio_seconds", "realtime_factor"}
    assert all(keys <= set(r) for r in rows)
    assert [(r["nfe_expression"], r["nfe_gesture"]) for r in rows] == [(25, 25), (8, 8), (4, 8)]
    # FLOPs are counted per evaluation: the gesture branch did 25 / 8 / 8 of the same evaluations
    per_eval = [r["gflops_gesture"] / r["nfe_gesture"] for r in rows]
    assert max(per_eval) - min(per_eval) < 1e-2 * max(per_eval)
    assert "cores" in report["machine"] and "threads" in report["machine"]
    assert report["matmul_gflops_per_second"]["bf16"] > 0 and report["matmul_gflops_per_second"]["fp32"] > 0
    assert report["precision"] in ("bf16", "fp32") and report["precision_reason"].startswith("auto: ")
    variants = {r["interaction"]: r for r in report["interactions"]}
    assert set(variants) == {"none", "e2g", "g2e", "naive", "cosync"}
    assert variants["none"]["gflops"] < variants["cosync"]["gflops"]
    assert variants["none"]["parameters_millions"] < variants["cosync"]["parameters_millions"]
    assert report["render"]["frames"] == 15 and report["render"]["fps"] > 0


def test_bench_table(tiny_checkpoint, speech_wav, capsys):
    assert main(["bench", str(speech_wav), "--repeats", "1", "--checkpoint", str(tiny_checkpoint),
                 "--no-variants", "--render-seconds", "0", "--precision", "fp32"]) == 0
    out = capsys.readouterr().out
    assert "machine:" in out and "async-lcm" in out and "vs DDIM" in out
    assert "precision: fp32 (requested)" in out
    assert "interaction variants" not in out and "rendering" not in out


def bad_inputs(tmp_path, speech_like):
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "text.wav").write_text("not audio\n" * 50)
    (tmp_path / "notes.xyz").write_bytes(b"\x00\x01garbage" * 100)
    soundfile.write(tmp_path / "long.wav", speech_like(3.0), 16000)
    return {
        "missing": (tmp_path / "missing.wav", [], "not found"),
        "empty": (tmp_path / "empty.wav", [], "empty"),
        "text": (tmp_path / "text.wav", [], "cannot decode"),
        "unsupported": (tmp_path / "notes.xyz", [], "cannot decode"),
        "too long": (tmp_path / "long.wav", ["--max-seconds", "2"], "--max-seconds"),
    }


@pytest.mark.parametrize("case", ["missing", "empty", "text", "unsupported", "too long"])
def test_bad_audio_gives_one_line_and_writes_nothing(tmp_path, tiny_checkpoint, speech_like, case):
    path, extra, message = bad_inputs(tmp_path, speech_like)[case]
    out = tmp_path / "out.npz"
    result = run("generate", path, "-o", out, "--checkpoint", tiny_checkpoint, *extra)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and message in result.stderr and "Traceback" not in result.stderr
    assert not out.exists() and not list(tmp_path.glob(".tmp-*"))


def test_mismatched_checkpoint(tmp_path, tiny_checkpoint, speech_wav):
    record = json.loads((tiny_checkpoint / "config.json").read_text())
    record["model"]["depth"] = 3
    (tiny_checkpoint / "config.json").write_text(json.dumps(record))
    result = run("generate", speech_wav, "-o", tmp_path / "out.npz", "--checkpoint", tiny_checkpoint)
    assert result.returncode == 2 and "do not match its config" in result.stderr
    assert not (tmp_path / "out.npz").exists()


def test_wrong_output_suffix(tmp_path, tiny_checkpoint, speech_wav):
    result = run("generate", speech_wav, "-o", tmp_path / "out.txt", "--checkpoint", tiny_checkpoint)
    assert result.returncode == 2 and ".npz" in result.stderr


def test_generate_with_video_and_side_by_side_render(tmp_path, tiny_checkpoint, speech_wav):
    out, video = tmp_path / "m.npz", tmp_path / "m.mp4"
    assert main(["generate", str(speech_wav), "-o", str(out), "--checkpoint", str(tiny_checkpoint),
                 "--video", str(video), "--size", "128"]) == 0
    assert video.stat().st_size > 1000
    assert main(["generate", str(speech_wav), "-o", str(tmp_path / "d.npz"), "--checkpoint", str(tiny_checkpoint),
                 "--sampler", "ddim", "--steps-expression", "2", "--steps-gesture", "2"]) == 0
    both = tmp_path / "both.mp4"
    assert main(["render", str(out), str(tmp_path / "d.npz"), "--audio", str(speech_wav), "-o", str(both),
                 "--size", "128"]) == 0
    assert both.stat().st_size > 1000


def test_render_of_a_bad_motion_file(tmp_path, speech_wav):
    (tmp_path / "bad.npz").write_text("no")
    result = run("render", tmp_path / "bad.npz", "--audio", speech_wav, "-o", tmp_path / "x.mp4")
    assert result.returncode == 2 and "not a readable" in result.stderr and not (tmp_path / "x.mp4").exists()


def test_sample_guidance_option_names_branches_and_an_interval_or_fails_in_one_line():
    from asynfusion.cli import guidance_table
    from asynfusion.diffusion.guidance import Guidance
    from asynfusion.errors import InputError

    table = guidance_table(["gesture=2.25", "max_t=800"])
    assert table == {"gesture": 2.25, "max_t": 800}
    assert Guidance.parse(table, 1000) == Guidance({"gesture": 2.25}, 800)
    assert guidance_table(None) is None
    for bad in (["gesture=lots"], ["hands=2"], ["max_t=0.5"]):
        with pytest.raises(InputError, match="--sample-guidance"):
            guidance_table(bad)


def test_fresh_noise_option_names_a_branch_and_a_share_or_fails_in_one_line():
    from asynfusion.errors import InputError
    from asynfusion.training.commands import fresh_noise_table

    assert fresh_noise_table(["gesture=0.8"]) == {"gesture": 0.8}
    assert fresh_noise_table(["expression=1", "gesture=0"]) == {"expression": 1.0, "gesture": 0.0}
    assert fresh_noise_table(None) is None
    for bad in (["gesture=some"], ["hands=0.5"], ["gesture=1.5"], ["gesture=-0.1"]):
        with pytest.raises(InputError, match="--fresh-noise") as error:
            fresh_noise_table(bad)
        assert "\n" not in str(error.value)
