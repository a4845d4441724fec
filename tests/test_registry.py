"""Samplers are data: one registry entry appears in the CLI, the benchmark and the app with no other edit."""

import runpy
from pathlib import Path

import pytest
import soundfile

from asynfusion.cli import main as cli_main
from asynfusion.diffusion.registry import SAMPLERS, SamplerSpec, get_sampler
from asynfusion.errors import InputError
from asynfusion.motion import load_motion

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def ddim_10(monkeypatch):
    """DDIM 10/10 registered for the length of one test."""
    spec = SamplerSpec("ddim-10", "DDIM fast", "ddim", 10, 10, "diffusion", "the diffusion model in 10 steps")
    monkeypatch.setitem(SAMPLERS, spec.name, spec)
    return spec


def test_a_new_sampler_runs_from_the_command_line(ddim_10, tiny_checkpoint, speech_wav, tmp_path):
    out = tmp_path / "motion.npz"
    assert cli_main(["generate", str(speech_wav), "-o", str(out), "--sampler", "ddim-10",
                     "--checkpoint", str(tiny_checkpoint), "--precision", "fp32"]) == 0
    meta = load_motion(out).metadata
    assert (meta["sampler"], meta["steps_expression"], meta["steps_gesture"]) == ("ddim-10", 10, 10)


def test_a_new_sampler_is_a_row_of_the_benchmark(ddim_10, tiny_checkpoint, speech_wav):
    from asynfusion.evaluation.bench import bench_rows
    from asynfusion.pipeline import Pipeline

    samples, _ = soundfile.read(speech_wav, dtype="float32")
    rows = bench_rows(Pipeline(tiny_checkpoint, "fp32"), samples, repeats=1)
    assert [row["sampler"] for row in rows] == list(SAMPLERS)
    row = rows[-1]
    assert (row["sampler"], row["nfe_expression"], row["nfe_gesture"]) == ("ddim-10", 10, 10)


def test_a_new_sampler_is_a_choice_of_the_app(ddim_10, tiny_checkpoint, tmp_path, monkeypatch):
    import gradio as gr

    monkeypatch.setenv("ASYNFUSION_CHECKPOINT", str(tiny_checkpoint))
    monkeypatch.setenv("ASYNFUSION_CACHE_EXAMPLES", "off")
    monkeypatch.setenv("ASYNFUSION_WORK_DIR", str(tmp_path / "work"))
    monkeypatch.setenv("GRADIO_EXAMPLES_CACHE", str(tmp_path / "cache"))
    page = runpy.run_path(str(ROOT / "app.py"))["demo"]  # builds the page; launching is only under __main__
    radios = [block for block in page.blocks.values() if isinstance(block, gr.Radio) and block.label == "Sampler"]
    assert len(radios) == 1
    assert ("DDIM fast 10/10", "ddim-10") in [tuple(choice) for choice in radios[0].choices]
    assert [tuple(choice)[1] for choice in radios[0].choices] == list(SAMPLERS)


def test_each_sampler_is_defined_in_one_module():
    """grep: the three samplers' names with their default steps appear only in the registry."""
    package = ROOT / "asynfusion"
    for name in ("ddim", "sync-lcm", "async-lcm"):
        quoted = f'"{name}"'
        holders = [path.relative_to(package).as_posix() for path in package.rglob("*.py")
                   if quoted in path.read_text()]
        assert holders == ["diffusion/registry.py"], (name, holders)


def test_an_unknown_sampler_is_one_line():
    with pytest.raises(InputError, match=r"^unknown sampler 'euler': choose one of ddim, sync-lcm, async-lcm$"):
        get_sampler("euler")
