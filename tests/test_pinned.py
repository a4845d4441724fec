"""A seeded end-to-end regression: the same input, sampler, steps and seed give the same motion as
when the values were pinned (bit-identical on the CPU kind they were pinned on, fp32).

Re-pin only for a deliberate change of the numbers (say so in the commit):
    python tests/test_pinned.py --write
"""

import sys
from pathlib import Path

import numpy as np
import torch

PINNED = Path(__file__).resolve().parent / "data" / "pinned_motion.npz"
CASES = (("ddim", 6, 6, 0), ("sync-lcm", 4, 4, 1), ("async-lcm", 2, 4, 2))  # sampler, steps E/G, seed


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


def test_pinned_motion(tiny_config, speech_like, randomize_zero_inits):
    pinned = np.load(PINNED)
    actual = generate_cases(tiny_config, speech_like, randomize_zero_inits)
    assert sorted(actual) == sorted(k for k in pinned.files if "/" in k)
    same_cpu = str(pinned["cpu_capability"]) == torch.backends.cpu.get_cpu_capability()
    for key, value in actual.items():
        if same_cpu:  # the kernels that computed the pinned values: exactly the same bits
            np.testing.assert_array_equal(value, pinned[key], err_msg=key)
        else:  # another CPU kind sums in another order: the same motion up to rounding
            np.testing.assert_allclose(value, pinned[key], rtol=0, atol=1e-4, err_msg=key)


if __name__ == "__main__" and "--write" in sys.argv:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import conftest

    arrays = generate_cases(conftest.tiny_config, conftest.speech_like, conftest.randomize_zero_inits)
    PINNED.parent.mkdir(exist_ok=True)
    np.savez_compressed(PINNED, cpu_capability=torch.backends.cpu.get_cpu_capability(), **arrays)
    print(f"pinned {len(arrays)} arrays in {PINNED}")
