"""One generation request, from the app and the CLI to the pipeline.

A Request is checked when it is made: an unknown sampler, a step count off the sampler's grid or a bad
seed is an InputError with one line, before any work starts. What a seed draws: seeding.py.
"""

from dataclasses import dataclass, field

import numpy as np

from .diffusion.registry import DEFAULT_SAMPLER, SamplerSpec, get_sampler
from .errors import InputError

MAX_SEED = 2**31 - 1


def check_whole(value: float | None, what: str, low: int, high: int) -> int:
    """A whole number in [low, high] (None = low), or an InputError naming `what`."""
    value = low if value is None else value
    if value != int(value) or not low <= value <= high:
        raise InputError(f"{what} must be a whole number from {low} to {high}, got {value}")
    return int(value)


@dataclass
class Request:
    """What to generate: 16 kHz mono speech, the sampler and its steps per branch (0 or None: the
    sampler's default), the seed and the speaker style."""

    samples: np.ndarray
    sampler: str = DEFAULT_SAMPLER
    steps_expression: int | None = None
    steps_gesture: int | None = None
    seed: int = 0
    speaker: int = 0
    spec: SamplerSpec = field(init=False, repr=False)
    steps: dict[str, int] = field(init=False)

    def __post_init__(self):
        self.spec = get_sampler(self.sampler)
        self.steps = self.spec.steps(self.steps_expression, self.steps_gesture)
        self.steps_expression, self.steps_gesture = self.steps["expression"], self.steps["gesture"]
        self.seed = check_whole(self.seed, "The seed", 0, MAX_SEED)
        self.speaker = check_whole(self.speaker, "The speaker", 0, MAX_SEED)

    @property
    def title(self) -> str:
        """'async LCM 4/8'."""
        return self.spec.title(self.steps_expression, self.steps_gesture)
