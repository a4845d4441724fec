"""`auto` precision: bf16 only where the hardware has it (mocked CPUs and GPUs), forced choices, and
every entry point (generate, bench, the app, train, distill) defaulting to it."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from asynfusion import precision as precision_module
from asynfusion.cli import build_parser, training_bf16
from asynfusion.errors import InputError
from asynfusion.pipeline import Pipeline
from asynfusion.precision import choose_precision
from asynfusion.request import Request
from asynfusion.settings import Settings

AVX2_EPYC = {"architecture": "x86_64", "avx2": True, "avx512_f": False, "avx512_bf16": False, "amx_bf16": False}
AVX512_SKYLAKE = {**AVX2_EPYC, "avx512_f": True}
AVX512_BF16_ZEN4 = {**AVX512_SKYLAKE, "avx512_bf16": True}
AMX_SAPPHIRE_RAPIDS = {**AVX512_BF16_ZEN4, "amx_bf16": True, "amx_tile": True}
GRAVITON3 = {"architecture": "arm64", "neon": True, "sve": True, "bf16": True}


@pytest.fixture
def cpu(monkeypatch):
    """Make this machine look like another CPU: its cpuinfo features and torch's dispatch level."""
    monkeypatch.delenv("ASYNFUSION_PRECISION", raising=False)
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)  # read by torch at start only; named in reasons

    def pretend(features: dict, isa: str):
        monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: features)
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: isa)
    return pretend


@pytest.mark.parametrize("features, isa, expected, why", [
    (AVX2_EPYC, "AVX2", "fp32", "CPU (AVX2) has no bf16 units"),
    (AVX512_SKYLAKE, "AVX512", "fp32", "CPU (AVX512) has no bf16 units"),  # AVX-512 alone is not bf16
    (AVX512_BF16_ZEN4, "AVX512", "bf16", "CPU has AVX512_BF16"),
    (AMX_SAPPHIRE_RAPIDS, "AVX512", "bf16", "CPU has AMX-BF16 and AVX512_BF16"),
    (GRAVITON3, "SVE256", "bf16", "CPU has ARM BF16"),
    (GRAVITON3, "DEFAULT", "bf16", "CPU has ARM BF16"),  # NEON kernels: ARM's bf16 needs no SVE
    ({}, "DEFAULT", "fp32", "CPU (DEFAULT) has no bf16 units"),
    # x86 bf16 units, but torch held below its AVX-512 kernels: they are not used (or AMX fails)
    (AVX512_BF16_ZEN4, "AVX2", "fp32", "torch runs AVX2 kernels; its bf16 needs AVX512 ones"),
    (AMX_SAPPHIRE_RAPIDS, "AVX2", "fp32", "torch runs AVX2 kernels; its bf16 needs AVX512 ones"),
    (AMX_SAPPHIRE_RAPIDS, "DEFAULT", "fp32", "torch runs DEFAULT kernels; its bf16 needs AVX512 ones"),
])
def test_auto_picks_bf16_only_on_cpus_with_bf16_units(cpu, features, isa, expected, why):
    cpu(features, isa)
    chosen = choose_precision("auto")
    assert chosen.name == expected and chosen.reason.startswith("auto: ") and why in chosen.reason
    assert chosen.dtype == (torch.bfloat16 if expected == "bf16" else torch.float32)
    assert choose_precision().name == expected  # no argument, no environment: auto


def test_auto_says_when_torch_was_held_to_avx2_kernels(cpu, monkeypatch, tiny_checkpoint):
    """The AVX2 emulation on a bf16 CPU: fp32, as on the AVX2-only CPU it stands for, and the reason names
    the setting, wherever precision is chosen."""
    cpu(AMX_SAPPHIRE_RAPIDS, "AVX2")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    assert str(choose_precision()) == ("fp32 (auto: torch runs AVX2 kernels (ATEN_CPU_CAPABILITY=avx2); its bf16 "
                                       "needs AVX512 ones (else emulated, or failing on AMX))")
    assert Pipeline(tiny_checkpoint, device="cpu").dtype == torch.float32

    from asynfusion.training.train import TrainConfig

    assert not TrainConfig("d", "o").bf16
    cpu(AMX_SAPPHIRE_RAPIDS, "AVX512")  # the same CPU, torch on its own kernels
    assert str(choose_precision()) == "bf16 (auto: CPU has AMX-BF16 and AVX512_BF16)"


def test_auto_on_a_gpu_asks_the_gpu(cpu, monkeypatch):
    cpu(AVX2_EPYC, "AVX2")
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: not including_emulation)
    assert str(choose_precision("auto", "cuda")) == "bf16 (auto: NVIDIA H200 has native bf16)"
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert str(choose_precision("auto", "cuda")) == "fp32 (auto: Tesla T4 has no native bf16)"


def test_forced_choices_and_the_environment_win(cpu, monkeypatch):
    cpu(AVX2_EPYC, "AVX2")
    assert str(choose_precision("bf16")) == "bf16 (requested)"
    cpu(AMX_SAPPHIRE_RAPIDS, "AVX512")
    assert str(choose_precision("fp32")) == "fp32 (requested)"
    monkeypatch.setenv("ASYNFUSION_PRECISION", "FP32")
    assert str(choose_precision()) == "fp32 (ASYNFUSION_PRECISION=fp32)"
    assert choose_precision("bf16").name == "bf16"  # the option beats the environment
    monkeypatch.setenv("ASYNFUSION_PRECISION", "fp8")
    with pytest.raises(InputError, match="ASYNFUSION_PRECISION=fp8: choose one of auto, bf16, fp32"):
        choose_precision()
    with pytest.raises(InputError, match="got 'half'"):
        choose_precision("half")


def test_proc_cpuinfo_is_read_where_torch_has_no_capability_list(cpu, monkeypatch, tmp_path):
    cpu(AVX2_EPYC, "AVX512")
    monkeypatch.delattr(torch.cpu, "get_capabilities")
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_tile\n")
    original = precision_module.Path
    monkeypatch.setattr(precision_module, "Path", lambda p: original(cpuinfo) if p == "/proc/cpuinfo" else original(p))
    assert str(choose_precision()) == "bf16 (auto: CPU has AVX512_BF16)"


def test_every_entry_point_defaults_to_auto(cpu, monkeypatch, tiny_checkpoint):
    cpu(AVX2_EPYC, "AVX2")
    parser = build_parser()
    for argv in (["generate", "a.wav", "-o", "m.npz"], ["bench", "a.wav"], ["train", "--data", "d", "--out", "o"],
                 ["distill", "--data", "d", "--teacher", "t"]):
        assert parser.parse_args(argv).precision is None  # None: ASYNFUSION_PRECISION, else auto
    assert Settings.from_env({}).precision == "auto"
    assert Settings.from_env({"ASYNFUSION_PRECISION": "bf16"}).precision == "bf16"
    pipeline = Pipeline(tiny_checkpoint, device="cpu")
    assert pipeline.precision.name == "fp32" and pipeline.dtype == torch.float32
    cpu(AVX512_BF16_ZEN4, "AVX512")
    assert Pipeline(tiny_checkpoint, device="cpu").dtype == torch.bfloat16

    from asynfusion.training.distill import DistillConfig
    from asynfusion.training.train import TrainConfig

    assert TrainConfig("d", "o").bf16 and DistillConfig("d", "t", "o").bf16
    cpu(AVX2_EPYC, "AVX2")
    assert not TrainConfig("d", "o").bf16 and not DistillConfig("d", "t", "o").bf16


def test_train_options(cpu, capsys):
    cpu(AMX_SAPPHIRE_RAPIDS, "AVX512")
    parser = build_parser()
    assert training_bf16(parser.parse_args(["train", "--data", "d", "--out", "o"]))
    assert "precision: bf16 (auto: CPU has AMX-BF16" in capsys.readouterr().out
    assert not training_bf16(parser.parse_args(["train", "--data", "d", "--out", "o", "--fp32"]))  # still works
    assert not training_bf16(parser.parse_args(["distill", "--data", "d", "--teacher", "t", "--precision", "fp32"]))
    cpu(AVX2_EPYC, "AVX2")
    assert training_bf16(parser.parse_args(["train", "--data", "d", "--out", "o", "--precision", "bf16"]))
    with pytest.raises(InputError, match="--fp32 contradicts --precision bf16"):
        training_bf16(parser.parse_args(["train", "--data", "d", "--out", "o", "--fp32", "--precision", "bf16"]))


@pytest.mark.parametrize("running, expected", [("1/90", 2), ("2/90", 1), ("3/95", 1), ("9/95", 1)])
def test_sampling_threads_leave_busy_cores_alone(tmp_path, monkeypatch, running, expected):
    """/proc/loadavg's runnable count includes the caller: 1 means an idle machine."""
    from asynfusion import pipeline

    loadavg = tmp_path / "loadavg"
    loadavg.write_text(f"3.10 3.30 3.60 {running} 19106\n")
    real = pipeline.other_running_tasks
    monkeypatch.setattr(pipeline, "other_running_tasks", lambda: real(samples=2, interval=0, loadavg=str(loadavg)))
    monkeypatch.setattr(pipeline, "usable_cores", lambda: 2)
    assert pipeline.sampling_threads(limit=2) == expected
    assert pipeline.sampling_threads(limit=1) == 1
    monkeypatch.setattr(pipeline, "other_running_tasks", lambda: real(loadavg=str(tmp_path / "missing")))
    assert pipeline.sampling_threads(limit=2) == 2  # nothing to go by: torch's own choice


def test_the_generation_report_says_how_many_threads_sampled(tiny_checkpoint, monkeypatch):
    from asynfusion import pipeline

    monkeypatch.setattr(pipeline, "sampling_threads", lambda: 1)
    samples = np.random.default_rng(0).normal(0, 0.1, 16_000).astype(np.float32)
    _, report = Pipeline(tiny_checkpoint, "fp32").generate(Request(samples), count_flops=False)
    assert report.threads == 1 and report.row()["threads"] == 1
    before = torch.get_num_threads()
    try:
        _, report = Pipeline(tiny_checkpoint, "fp32", threads=2).generate(Request(samples), count_flops=False)
        assert report.threads == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


BLAS_THREADS = ("from asynfusion import settings; import numpy; settings.one_blas_thread(); import scipy.linalg, "
                "threadpoolctl; print(sorted({i['num_threads'] for i in threadpoolctl.threadpool_info() "
                "if i['internal_api'] == 'openblas'}))")


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="OpenBLAS runs one thread on one core anyway")
@pytest.mark.parametrize("numpy_first", [False, True])
def test_the_cli_and_the_app_run_blas_on_one_thread_unless_told(numpy_first):
    """numpy's OpenBLAS (loaded before or after the call) and scipy's (loaded after it) both end on one
    thread; a user's OPENBLAS_NUM_THREADS is left as it is."""
    code = ("import numpy; " if numpy_first else "") + BLAS_THREADS
    environ = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    run = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[1]"
    run = subprocess.run([sys.executable, "-c", code], env={**environ, "OPENBLAS_NUM_THREADS": "2"},
                         capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[2]"
