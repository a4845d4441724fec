"""Noise schedule, DDIM and LCM steps: every formula defined once, shared by training and sampling.

Notation (code -> paper):
    alpha_bar[t]   \\bar{alpha}_t of eq. 1, cosine schedule over num_train_timesteps
    output         the network's raw prediction: x0 or v, as the checkpoint's `prediction` field says
    v              v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x0, what every step works from
                   (`velocity_from` turns any output into it: one interface for every step rule)
    x0, eps        clean motion and noise, both recovered from v (predicted_x0 / predicted_noise)
    c_skip, c_out  LCM boundary scalings: f(x_t, t) = c_skip(t) x_t + c_out(t) x0_hat (eq. 2, 7)

Steps are stateless functions of (model_out, t, t_prev, x_t): two branches stepping on different
grids cannot disturb each other, which asynchronous sampling needs.
"""

import math

import numpy as np
import torch


class NoiseSchedule:
    """Cosine alpha-bar schedule (Nichol & Dhariwal 2021), indexed by integer timestep."""

    def __init__(self, num_train_timesteps: int = 1000):
        self.num_train_timesteps = num_train_timesteps
        steps = np.arange(num_train_timesteps + 1, dtype=np.float64) / num_train_timesteps

        def f(s):
            return np.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2

        betas = np.clip(1 - f(steps[1:]) / f(steps[:-1]), 0, 0.999)
        self.alpha_bar = torch.tensor(np.cumprod(1 - betas), dtype=torch.float32)  # (T,)

    def alpha_bar_at(self, t: torch.Tensor | int) -> torch.Tensor:
        """alpha_bar at integer timestep(s); t = -1 means 'fully denoised' (alpha_bar = 1)."""
        t = torch.as_tensor(t)
        value = self.alpha_bar[t.clamp(min=0)]
        return torch.where(t < 0, torch.ones_like(value), value)

    @staticmethod
    def _expand(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return value.to(like.dtype).reshape(-1, *([1] * (like.dim() - 1))) if value.dim() else value.to(like.dtype)

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """q(x_t | x_0), eq. 1."""
        a = self._expand(self.alpha_bar_at(t), x0)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def velocity(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The training target v for (x0, noise) at t."""
        a = self._expand(self.alpha_bar_at(t), x0)
        return a.sqrt() * noise - (1 - a).sqrt() * x0

    def velocity_from(self, output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, prediction: str) -> torch.Tensor:
        """The v of a raw network output (float32): itself for a v-network; for an x0-network the v that
        predicts that x0 from x_t at t, v = (sqrt(a) x_t - x0) / sqrt(1 - a)."""
        if prediction == "v":
            return output.float()
        a = self.alpha_bar.to(t.device)[t].reshape(-1, 1, 1)
        return (a.sqrt() * x_t.float() - output.float()) / (1 - a).sqrt()

    def predicted_x0(self, v: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = self._expand(self.alpha_bar_at(t), x_t)
        return a.sqrt() * x_t - (1 - a).sqrt() * v

    def predicted_noise(self, v: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = self._expand(self.alpha_bar_at(t), x_t)
        return (1 - a).sqrt() * x_t + a.sqrt() * v


# ----------------------------------------------------------------------------
# Timestep grids
# ----------------------------------------------------------------------------
def ddim_timesteps(num_steps: int, num_train_timesteps: int = 1000) -> list[int]:
    """'Trailing' spacing: the first step starts from the last training timestep (pure noise)."""
    if num_steps < 1:
        raise ValueError("need at least one step")
    grid = np.round(np.linspace(num_train_timesteps, 0, num_steps + 1))[:-1].astype(int) - 1
    return grid.tolist()


def solver_grid(solver_steps: int, num_train_timesteps: int = 1000) -> list[int]:
    """The DDIM-solver grid that LCM distillation walks along (descending; skipping step T/solver_steps)."""
    skip = num_train_timesteps // solver_steps
    return list(range(num_train_timesteps - 1, -1, -skip))[:solver_steps]


def lcm_timesteps(num_steps: int, solver_steps: int = 50, num_train_timesteps: int = 1000) -> list[int]:
    """num_steps points evenly spread over the solver grid, from its noisiest point to its least noisy.

    LCM's own schedule stops a step short of the grid's end (8 of 40 points: 999, 874, ..., 124), so the
    last step denoises motion re-noised to t = 124, and what it leaves of that noise shows as arms that
    never quite settle. Ending on the grid's last point (8 of 40: 999, 849, ..., 24) took the LCM samplers'
    arm motion in pauses from 0.64 to 0.59 of that in speech on the corpus test split, FMD 5.2 -> 5.0
    (async, checkpoint v8); the points are all on the grid the student was distilled on."""
    grid = solver_grid(solver_steps, num_train_timesteps)
    if not 1 <= num_steps <= len(grid):
        raise ValueError(f"LCM steps must be between 1 and {len(grid)}, got {num_steps}")
    index = np.round(np.linspace(0, len(grid) - 1, num_steps)).astype(int)
    return [grid[i] for i in index]


def previous_timesteps(timesteps: list[int]) -> list[int]:
    """The t_prev that follows each t in a descending grid; -1 after the last step."""
    return timesteps[1:] + [-1]


# ----------------------------------------------------------------------------
# Steps
# ----------------------------------------------------------------------------
def ddim_step(schedule: NoiseSchedule, v: torch.Tensor, t, t_prev, x_t: torch.Tensor):
    """Deterministic DDIM (eta = 0): returns (x_{t_prev}, x0_hat). t, t_prev: ints or (B,) tensors.

    The sampler's step and the ODE solver of LCM distillation are this one function.
    """
    t, t_prev = torch.as_tensor(t), torch.as_tensor(t_prev)
    # 1. clean motion and noise implied by the prediction
    x0 = schedule.predicted_x0(v, x_t, t)
    eps = schedule.predicted_noise(v, x_t, t)
    # 2. move along the deterministic trajectory to t_prev
    a_prev = schedule._expand(schedule.alpha_bar_at(t_prev), x_t)
    return a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps, x0


SIGMA_DATA = 0.5
TIMESTEP_SCALING = 10.0


def boundary_scalings(t: torch.Tensor | int) -> tuple[torch.Tensor, torch.Tensor]:
    """LCM's c_skip(t), c_out(t) with c_skip(0) = 1, c_out(0) = 0 (the consistency boundary condition)."""
    scaled = torch.as_tensor(t, dtype=torch.float32) * TIMESTEP_SCALING
    c_skip = SIGMA_DATA**2 / (scaled**2 + SIGMA_DATA**2)
    c_out = scaled / (scaled**2 + SIGMA_DATA**2).sqrt()
    return c_skip, c_out


def consistency_output(schedule: NoiseSchedule, v: torch.Tensor, t: torch.Tensor, x_t: torch.Tensor) -> torch.Tensor:
    """f_theta(x_t, t) = c_skip x_t + c_out x0_hat: the consistency function of the student (eq. 7)."""
    c_skip, c_out = boundary_scalings(t)
    c_skip, c_out = schedule._expand(c_skip, x_t), schedule._expand(c_out, x_t)
    return c_skip * x_t + c_out * schedule.predicted_x0(v, x_t, t)


def lcm_step(schedule: NoiseSchedule, v: torch.Tensor, t: int, t_prev: int, x_t: torch.Tensor, noise: torch.Tensor,
             fresh: float = 1.0):
    """Multistep LCM: returns (x_{t_prev}, denoised); after the last step (t_prev = -1) x = denoised.

    `fresh` is the share of new noise in the re-noising (its variance; like DDIM's eta): 1 is LCM's
    sampler, every step's noise new; below 1 the rest is the noise that x_t carries over its estimate
    (sqrt(1 - fresh) eps_hat + sqrt(fresh) noise, still unit variance), so a step keeps part of the
    trajectory it is on; 0 is deterministic.
    """
    t = torch.tensor(t)
    # 1. jump to the clean estimate with the consistency function
    denoised = consistency_output(schedule, v, t, x_t)
    if t_prev < 0:
        return denoised, denoised
    if fresh < 1.0:
        alpha_bar = schedule._expand(schedule.alpha_bar_at(t), x_t)
        carried = (x_t - alpha_bar.sqrt() * denoised) / (1 - alpha_bar).sqrt()
        noise = (1.0 - fresh) ** 0.5 * carried + fresh ** 0.5 * noise
    # 2. re-noise it to the next, lower noise level
    return schedule.add_noise(denoised, noise, torch.tensor(t_prev)), denoised
