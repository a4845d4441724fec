"""A seeded end-to-end regression: the same input, sampler, steps and seed give the same motion as
when the values were pinned (fp32), up to the rounding of the CPU kernels that computed it.

Values are pinned per torch kernel level (AVX2, AVX512; a CPU on any other level is held to the AVX2
pins), but the same level is not the same bits: oneDNN picks its own kernels by CPU (ISA, AMX, cache
sizes). So the motion is compared within tolerances set from the spread between kernels: across torch
AVX2/AVX512/scalar x oneDNN SSE4.1/AVX2/AVX-512 on an AMD EPYC, one value moved by 9.1e-5 at most and
an array's mean absolute difference was 6e-7 at most; an Intel AMX machine was 1.45e-4 off the AVX2
pins at most. A 0.01% change of LCM's c_out moves the mean by 7e-6 and the largest value by 1.2e-3.

Re-pin only for a deliberate change of the numbers (say so in the commit), on an AVX-512 CPU if you
can: it pins each level up to the CPU's own (an AVX2-only CPU pins AVX2 alone, which AVX512 CPUs then
are held to):
    python tests/test_pinned.py --write
"""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

PINNED = Path(__file__).resolve().parent / "data" / "pinned_motion.npz"
CASES = (("ddim", 6, 6, 0), ("sync-lcm", 4, 4, 1), ("async-lcm", 2, 4, 2))  # sampler, steps E/G, seed
# torch kernel level -> the oneDNN kernels a CPU of that level runs: an AVX2-only CPU runs AVX2 ones
PINNED_LEVELS = {"AVX2": "AVX2", "AVX512": "AVX512_CORE"}
MAX_DIFFERENCE = 5e-4    # any one value: 3.4x the largest difference seen between kernels (1.45e-4)
MEAN_DIFFERENCE = 5e-6   # an array's mean: 8x the largest seen between kernels (6e-7)


def generate_cases(tiny_config, speech_like, randomize_zero_inits) -> dict[str, np.ndarray]:
    from asynfusion.checkpoint import untrained_checkpoint
    from asynfusion.pipeline import Pipeline
    from asynfusion.request import Request

    torch.set_num_threads(1)
    checkpoint = untrained_checkpoint(tiny_config(), seed=3)
    randomize_zero_inits(checkpoint.models["diffusion"], seed=4)
    pipeline = Pipeline(checkpoint, precision="fp32", threads=1, device="cpu")
    samples = speech_like(2.5, seed=5)  # 75 frames: three overlapping windows of 32
    arrays = {}
    for sampler, steps_e, steps_g, seed in CASES:
        motion, _ = pipeline.generate(Request(samples, sampler, steps_e, steps_g, seed), count_flops=False)
        arrays[f"{sampler}/poses"] = motion.poses.astype(np.float32)
        arrays[f"{sampler}/expressions"] = motion.expressions.astype(np.float32)
    return arrays


def differences(actual: dict[str, np.ndarray], pinned: dict[str, np.ndarray]) -> dict[str, tuple[float, float]]:
    """Per array: the largest and the mean absolute difference."""
    gaps = {key: np.abs(value.astype(np.float64) - pinned[key]) for key, value in actual.items()}
    return {key: (float(gap.max()), float(gap.mean())) for key, gap in gaps.items()}


def test_pinned_motion(tiny_config, speech_like, randomize_zero_inits):
    level = torch.backends.cpu.get_cpu_capability()
    with np.load(PINNED) as stored:
        level = level if any(key.startswith(f"{level}/") for key in stored.files) else "AVX2"
        pinned = {key.removeprefix(f"{level}/"): stored[key] for key in stored.files if key.startswith(f"{level}/")}
    actual = generate_cases(tiny_config, speech_like, randomize_zero_inits)
    assert sorted(actual) == sorted(pinned)
    failed = [f"{key}: max {largest:.2g}, mean {mean:.2g}"
              for key, (largest, mean) in differences(actual, pinned).items()
              if largest > MAX_DIFFERENCE or mean > MEAN_DIFFERENCE]
    assert not failed, (f"motion moved from the {level} pins (tolerance max {MAX_DIFFERENCE:g}, "
                        f"mean {MEAN_DIFFERENCE:g}): " + "; ".join(failed))


def write_pins() -> None:
    """Pin each kernel level up to this CPU's own, each in its own process: torch reads ATEN_CPU_CAPABILITY
    and oneDNN its ISA once, at start, and torch would run AVX-512 kernels on a CPU without them if told to."""
    levels = list(PINNED_LEVELS)
    here = torch.backends.cpu.get_cpu_capability()
    if here not in levels:
        sys.exit(f"pin on an x86 CPU that runs {' or '.join(levels)} kernels; this one runs {here}")
    arrays = {}
    with tempfile.TemporaryDirectory() as folder:
        for level in levels[: levels.index(here) + 1]:
            path = Path(folder) / f"{level}.npz"
            environ = {**os.environ, "ATEN_CPU_CAPABILITY": level.lower(), "ONEDNN_MAX_CPU_ISA": PINNED_LEVELS[level]}
            subprocess.run([sys.executable, __file__, "--cases", str(path)], env=environ, check=True)
            with np.load(path) as cases:
                arrays[level] = {key: cases[key] for key in cases.files}
    PINNED.parent.mkdir(exist_ok=True)
    np.savez_compressed(PINNED, **{f"{level}/{key}": value for level, cases in arrays.items()
                                   for key, value in cases.items()})
    print(f"pinned {', '.join(arrays)} in {PINNED}")
    if len(arrays) == 2:  # the spread between kernels, to hold against the tolerances
        for key, (largest, mean) in differences(arrays["AVX512"], arrays["AVX2"]).items():
            print(f"  AVX2 vs AVX512 {key}: max {largest:.2g} (tolerance {MAX_DIFFERENCE:g}), "
                  f"mean {mean:.2g} (tolerance {MEAN_DIFFERENCE:g})")


if __name__ == "__main__" and "--write" in sys.argv:
    write_pins()
elif __name__ == "__main__" and "--cases" in sys.argv:  # one level, for write_pins
    import conftest  # this file's folder is first on sys.path when it runs as a script

    cases = generate_cases(conftest.tiny_config, conftest.speech_like, conftest.randomize_zero_inits)
    np.savez(sys.argv[sys.argv.index("--cases") + 1], **cases)
