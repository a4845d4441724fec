"""Classifier-free guidance on the audio (Ho & Salimans 2022), per branch and in a timestep interval.

A model trained with audio dropout (training/train.py) is also its own unconditional model: F_aud = 0.
A guided evaluation runs each window twice in one batch, with and without its audio, and moves the
prediction w times as far from the unconditional one: u + w (c - u).

Each set of weights has its own Guidance, named by the checkpoint (info["guidance"]):

    {"diffusion": 3.0, "max_t": 800,                      DDIM: both branches w = 3 at t <= 800
     "lcm": {"gesture": 2.25, "max_t": 800}}              LCM: the gesture branch only (the face, guided,
                                                           kept moving its jaw in pauses)

A number applies to both branches; a table names branches (the others are unguided) and may set its
own max_t (else the top-level one, else every timestep). Guidance applies at t <= max_t only
(Kynkäänniemi et al. 2024, guidance in a limited interval): a tick where it applies to no branch runs
the plain conditional evaluation, so the interval saves the second half's cost above it.
"""

from dataclasses import dataclass, field

import torch

from ..config import BRANCHES
from ..model import AsynFusionModel, FeatureBuffer


@dataclass(frozen=True)
class Guidance:
    scales: dict[str, float] = field(default_factory=dict)  # branch -> w; absent branches 1.0 (unguided)
    max_t: int = 1000                                       # guided at timesteps <= max_t

    @classmethod
    def uniform(cls, scale: float, max_t: int = 1000) -> "Guidance":
        """The same scale for both branches."""
        return cls(dict.fromkeys(BRANCHES, float(scale)), int(max_t))

    @classmethod
    def parse(cls, value, max_t: int) -> "Guidance":
        """A checkpoint's entry: a number (both branches) or {branch: w, ..., "max_t": t}."""
        if isinstance(value, dict):
            unknown = set(value) - {*BRANCHES, "max_t"}
            if unknown:
                raise ValueError(f"guidance names unknown branches {sorted(unknown)}")
            return cls({b: float(value[b]) for b in BRANCHES if b in value}, int(value.get("max_t", max_t)))
        return cls.uniform(float(value), max_t)

    def scale(self, branch: str) -> float:
        return self.scales.get(branch, 1.0)

    @property
    def active(self) -> bool:
        """Whether any branch is guided (then the audio features carry the unconditional rows)."""
        return any(self.scale(b) != 1.0 for b in BRANCHES)

    def guided(self, branch: str, t: torch.Tensor) -> torch.Tensor:
        """(B,) bool: the samples of `branch` at timesteps `t` (B,) that are guided."""
        return (t <= self.max_t) & (self.scale(branch) != 1.0)

    def describe(self) -> str:
        """'none', 'w=3 at t <= 800' or 'gesture w=2.5 at t <= 400'."""
        if not self.active:
            return "none"
        scales = {self.scale(b) for b in BRANCHES}
        which = f"w={scales.pop():g}" if len(scales) == 1 else \
            ", ".join(f"{b} w={self.scale(b):g}" for b in BRANCHES if self.scale(b) != 1.0)
        return which + (f" at t <= {self.max_t}" if self.max_t < 999 else "")  # 999: every step of 1000

    def to_dict(self) -> dict:
        return {**{b: self.scale(b) for b in BRANCHES}, "max_t": self.max_t}


NONE = Guidance()


def unconditional_rows(audio_features: torch.Tensor, speaker) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(B, N, W) features -> (2B, N, W): the windows, then the same windows without audio (F_aud = 0)."""
    speaker = None if speaker is None else torch.cat([speaker, speaker])
    return torch.cat([audio_features, torch.zeros_like(audio_features)]), speaker


def evaluate(model: AsynFusionModel, x: dict[str, torch.Tensor], t: dict[str, torch.Tensor],
             audio_features: torch.Tensor, speaker, buffer: FeatureBuffer,
             guidance: Guidance = NONE, known: dict[str, torch.Tensor] | None = None,
             ) -> tuple[dict[str, torch.Tensor], int]:
    """One network evaluation of the branches in `x`: (raw predictions, rows per window: 1 or 2).

    With `guidance` active, `audio_features` (and `speaker`) hold the rows of `unconditional_rows`.
    When some sample of some branch here is guided, every branch runs on both halves (the
    unconditional gesture reads the unconditional face through the interaction layers) and each guided
    sample follows u + w (c - u) (`guide`); otherwise only the conditional half runs. The buffer of
    the branch that does not step is resized to match (the conditional features stand in for the
    unconditional ones on the first guided tick after an unguided one).
    """
    batch = next(iter(x.values())).shape[0]
    where = {b: guidance.guided(b, t[b]) for b in x}
    if not any(w.any() for w in where.values()):
        buffer.match_rows(batch)
        rows = audio_features[:batch], None if speaker is None else speaker[:batch]
        return model.denoise(x, t, *rows, buffer, known), 1
    buffer.match_rows(2 * batch)
    known = None if known is None else {b: torch.cat([k, k]) for b, k in known.items()}
    output = model.denoise({b: torch.cat([x[b], x[b]]) for b in x}, {b: torch.cat([t[b], t[b]]) for b in t},
                           audio_features, speaker, buffer, known)
    return {b: guide(output[b], guidance.scale(b), where[b]) for b in output}, 2


def guide(output: torch.Tensor, scale: float, where: torch.Tensor | None = None) -> torch.Tensor:
    """Classifier-free guidance of a prediction whose first half of rows saw the audio and second half
    did not: u + w (c - u) (linear, so it holds for x0, v or noise predictions alike), for the samples
    `where` (B,) is True (default all), the conditional prediction c for the others."""
    conditional, unconditional = output.chunk(2)
    guided = unconditional + scale * (conditional - unconditional)
    return guided if where is None else torch.where(where.view(-1, 1, 1), guided, conditional)
