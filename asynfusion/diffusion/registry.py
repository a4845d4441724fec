"""The samplers, as data: every name, label, step rule, default step counts and the weights each uses.

This is the one place a sampler is defined. The CLI's `--sampler` choices, `bench`'s rows, the app's
radio buttons and Compare, `eval`'s Table 3 and the pipeline all read `SAMPLERS`; a new entry shows up
in each of them with no other edit (tests/test_registry.py does exactly that).

    name        step rule  steps E/G  weights     (paper Table 3)
    ddim        ddim       25/25      diffusion   the diffusion model, deterministic DDIM
    sync-lcm    lcm        8/8        lcm         the distilled consistency model, both branches alike
    async-lcm   lcm        4/8        lcm         the face steps half as often as the body (the paper's choice)
"""

from dataclasses import dataclass

from ..config import BRANCHES
from ..errors import InputError

RULES = ("ddim", "lcm")
# Each branch's DDIM-solver grid of distillation (the `lcm` weights); its LCM steps are spread over that
# grid. The expression grid is coarser (skipping step 50) because it is distilled for 4 steps, the gesture
# grid (skipping step 25) for 8.
LCM_SOLVER_STEPS = {"expression": 20, "gesture": 40}
MAX_DDIM_STEPS = 100  # far past the point of diminishing returns; keeps a request's cost bounded


@dataclass(frozen=True)
class SamplerSpec:
    name: str              # what the CLI, the API and motion files call it
    label: str             # what the page and the tables call it
    rule: str              # how a step moves x_t: "ddim" or "lcm" (diffusion/schedule.py)
    steps_expression: int  # default steps of the expression branch
    steps_gesture: int     # default steps of the gesture branch
    weights: str           # the checkpoint weights it samples with: "diffusion" or "lcm"
    about: str = ""        # one sentence for the page: what it does

    def __post_init__(self):
        if self.rule not in RULES:
            raise ValueError(f"sampler {self.name!r}: rule must be one of {RULES}, got {self.rule!r}")

    @property
    def default_steps(self) -> dict[str, int]:
        return {"expression": self.steps_expression, "gesture": self.steps_gesture}

    def max_steps(self, branch: str) -> int:
        """An LCM branch steps on points of its distillation grid; DDIM on any grid up to the cap."""
        return LCM_SOLVER_STEPS[branch] if self.rule == "lcm" else MAX_DDIM_STEPS

    def title(self, steps_expression: int | None = None, steps_gesture: int | None = None) -> str:
        """'async LCM 4/8': the label with the steps that run (the defaults when not given)."""
        return f"{self.label} {steps_expression or self.steps_expression}/{steps_gesture or self.steps_gesture}"

    def steps(self, steps_expression: float | None = None, steps_gesture: float | None = None) -> dict[str, int]:
        """The steps per branch that run: None or 0 means the default; InputError names a bad count."""
        chosen = {}
        for branch, value in zip(BRANCHES, (steps_expression, steps_gesture)):
            default = self.default_steps[branch]
            value = 0 if value is None else value
            if value != int(value):
                raise InputError(f"{branch} steps must be a whole number, got {value}")
            value = int(value) or default
            limit = self.max_steps(branch)
            if not 1 <= value <= limit:
                raise InputError(f"{branch} steps must be 1-{limit} for {self.label} "
                                 f"(0 = its default, {default}), got {value}")
            chosen[branch] = value
        return chosen


SAMPLERS: dict[str, SamplerSpec] = {spec.name: spec for spec in (
    SamplerSpec("ddim", "DDIM", "ddim", 25, 25, "diffusion",
                "the diffusion model, denoising both branches step by step"),
    SamplerSpec("sync-lcm", "sync LCM", "lcm", 8, 8, "lcm",
                "a distilled latent-consistency model, the same steps for both branches"),
    SamplerSpec("async-lcm", "async LCM", "lcm", 4, 8, "lcm",
                "the paper's choice: the face needs fewer steps than the body, so the expression branch steps "
                "half as often, reading the gesture branch's latest features in between"),
)}
DEFAULT_SAMPLER = "async-lcm"
REFERENCE_SAMPLER = "ddim"  # what the speed-ups are measured against


def get_sampler(name: str) -> SamplerSpec:
    """The sampler called `name`; an unknown name is an InputError listing the choices."""
    if name not in SAMPLERS:
        raise InputError(f"unknown sampler {name!r}: choose one of {', '.join(SAMPLERS)}")
    return SAMPLERS[name]


def register(spec: SamplerSpec) -> SamplerSpec:
    """Add a sampler (e.g. a DDIM 10/10 row); every list of samplers shows it from now on."""
    SAMPLERS[spec.name] = spec
    return spec


def best_available(weights: set[str] | dict) -> str:
    """The default sampler if the checkpoint has its weights, else the first sampler it can run."""
    if SAMPLERS[DEFAULT_SAMPLER].weights in weights:
        return DEFAULT_SAMPLER
    return next(name for name, spec in SAMPLERS.items() if spec.weights in weights)
