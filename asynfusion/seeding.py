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
EVAL_CLIP = 4      # evaluation: the request seed of one held-out clip (clip_seed)


def generator_for(seed: int, stream: int, *position: int):
    """The torch.Generator of one random stream of `seed` (see above)."""
    import torch

    state = np.random.SeedSequence([seed, stream, *position]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def clip_seed(seed: int, index: int) -> int:
    """The request seed of clip `index` of an evaluation run with `seed`: every clip its own draw.

    A test split sampled with one request seed starts every clip from the same noise, so every clip
    draws the same hidden style (how animated, how much it smiles) and the samples' spread across clips,
    their distribution (FMD) and any correlation across clips (face-body coherence) measure that one
    draw, not the model. The data's clips are independent draws (the corpus animates clip i with seed
    i); so are these. A whole number in 0..2**31 - 1, Request's range.
    """
    return int(np.random.SeedSequence([seed, EVAL_CLIP, index]).generate_state(1, np.uint32)[0] >> 1)
