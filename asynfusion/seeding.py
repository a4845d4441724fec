"""The project's one seed convention.

Every random stream is a torch.Generator seeded from (seed, stream, *position): `stream` names what
it draws and `position` where in that stream, e.g. (seed, NOISE, branch, step) for the sampler's
noise of one branch at one step, (seed, TRAIN_BATCH, step, rank) for one training batch. numpy's
SeedSequence hashes the tuple into the generator's 64-bit seed, so no two streams overlap (the old
`seed * 7919 + ...` arithmetic let seed 1's streams collide with seed 0's), and a run resumed at step
k draws exactly what a straight run draws there.
"""

import numpy as np

NOISE = 0          # generation: the starting noise and LCM's re-noising, per branch and step
TRAIN_BATCH = 1    # diffusion training: the batch, timesteps and noise of one step on one rank
DISTILL_BATCH = 2  # consistency distillation: the same for one distillation step
FOLD_BATCH = 3     # folding the LCM student's guidance into its weights (training/fold.py)


def generator_for(seed: int, stream: int, *position: int):
    """The torch.Generator of one random stream of `seed` (see above)."""
    import torch

    state = np.random.SeedSequence([seed, stream, *position]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
