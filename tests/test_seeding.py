"""The one seed convention (asynfusion/seeding.py): a stream is a function of (seed, stream, position)."""

import torch

from asynfusion.seeding import NOISE, TRAIN_BATCH, generator_for


def draw(*key) -> torch.Tensor:
    return torch.randn(64, generator=generator_for(*key))


def test_the_same_key_draws_the_same_numbers():
    assert torch.equal(draw(3, NOISE, 1, 0), draw(3, NOISE, 1, 0))


def test_no_two_streams_share_numbers():
    """The old arithmetic (seed * 7919 + 2k + branch) made seed 1, step 0 replay seed 0, step 3959:
    every key here must draw its own numbers."""
    keys = [(seed, stream, branch, step) for seed in (0, 1, 7919) for stream in (NOISE, TRAIN_BATCH)
            for branch in (0, 1) for step in (0, 1, 3959)]
    draws = torch.stack([draw(*key) for key in keys])
    first = draws[:, 0]
    assert len(torch.unique(first)) == len(keys)


def test_every_evaluated_clip_draws_its_own_seed():
    """eval samples clip i of a run with clip_seed(seed, i): one request seed for every clip would start
    them all from the same noise (the same hidden style in every clip)."""
    from asynfusion.request import MAX_SEED
    from asynfusion.seeding import clip_seed

    seeds = [clip_seed(seed, index) for seed in (0, 1, 2) for index in range(200)]
    assert len(set(seeds)) == len(seeds)
    assert all(0 <= s <= MAX_SEED for s in seeds)
    assert clip_seed(0, 5) == clip_seed(0, 5)
