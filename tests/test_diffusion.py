import pytest
import torch

from asynfusion.diffusion.registry import SAMPLERS
from asynfusion.diffusion.sampler import sample, tick_plan
from asynfusion.diffusion.schedule import (
    NoiseSchedule,
    boundary_scalings,
    consistency_output,
    ddim_step,
    ddim_timesteps,
    lcm_step,
    lcm_timesteps,
)
from asynfusion.model import AsynFusionModel


def test_boundary_conditions():
    c_skip, c_out = boundary_scalings(0)
    assert c_skip.item() == 1.0 and c_out.item() == 0.0
    c_skip, c_out = boundary_scalings(999)
    assert c_skip.item() < 1e-6 and abs(c_out.item() - 1) < 1e-6


def test_v_prediction_recovers_x0_and_noise():
    schedule = NoiseSchedule()
    x0, noise = torch.randn(3, 8, 5), torch.randn(3, 8, 5)
    t = torch.tensor([0, 500, 999])
    x_t = schedule.add_noise(x0, noise, t)
    v = schedule.velocity(x0, noise, t)
    torch.testing.assert_close(schedule.predicted_x0(v, x_t, t), x0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(schedule.predicted_noise(v, x_t, t), noise, atol=1e-5, rtol=1e-5)


def test_ddim_with_the_true_v_lands_on_x0():
    schedule = NoiseSchedule()
    x0, noise = torch.randn(2, 4, 3), torch.randn(2, 4, 3)
    x = schedule.add_noise(x0, noise, torch.tensor(999))
    grid = ddim_timesteps(5)
    for t, t_prev in zip(grid, grid[1:] + [-1]):
        x, _ = ddim_step(schedule, schedule.velocity(x0, noise, torch.tensor(t)), t, t_prev, x)
    torch.testing.assert_close(x, x0, atol=1e-4, rtol=1e-4)


def test_one_step_lcm_returns_the_denoised_estimate():
    schedule = NoiseSchedule()
    x_t, v = torch.randn(2, 4, 3), torch.randn(2, 4, 3)
    t = lcm_timesteps(1, 20)[0]
    x, denoised = lcm_step(schedule, v, t, -1, x_t, noise=None)
    assert torch.equal(x, denoised)
    torch.testing.assert_close(denoised, consistency_output(schedule, v, torch.tensor(t), x_t))


def test_lcm_fresh_noise_share_keeps_part_of_the_trajectory():
    schedule = NoiseSchedule()
    generator = torch.Generator().manual_seed(0)
    x0, carried, noise = (torch.randn(4, 64, 32, generator=generator) for _ in range(3))
    x_t = schedule.add_noise(x0, carried, torch.tensor(574))
    v = schedule.velocity(x0, carried, torch.tensor(574))            # a network that knows x0: denoised is x0
    step = {fresh: lcm_step(schedule, v, 574, 449, x_t, noise, fresh)[0] for fresh in (1.0, 0.5, 0.0)}
    torch.testing.assert_close(step[1.0], lcm_step(schedule, v, 574, 449, x_t, noise)[0])  # LCM's own
    torch.testing.assert_close(step[1.0], schedule.add_noise(x0, noise, torch.tensor(449)), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(step[0.0], schedule.add_noise(x0, carried, torch.tensor(449)), atol=1e-4, rtol=1e-4)
    a = schedule.alpha_bar_at(torch.tensor(449))
    mixed = (step[0.5] - a.sqrt() * x0) / (1 - a).sqrt()            # the noise the half-fresh step put in
    torch.testing.assert_close(mixed, 0.5 ** 0.5 * (carried + noise), atol=1e-4, rtol=1e-4)
    assert mixed.std().item() == pytest.approx(1.0, abs=0.02)       # still unit variance


def test_timestep_grids():
    assert ddim_timesteps(25)[0] == 999 and len(ddim_timesteps(25)) == 25
    assert lcm_timesteps(4, 20) == [999, 699, 349, 49]             # from the grid's first point to its last
    assert lcm_timesteps(8, 40) == [999, 849, 724, 574, 449, 299, 174, 24]
    assert lcm_timesteps(1, 20) == [999] and lcm_timesteps(20, 20) == list(range(999, -1, -50))
    with pytest.raises(ValueError):
        lcm_timesteps(30, 20)


def test_tick_plan():
    assert tick_plan(8, 8) == [("expression", "gesture")] * 8
    plan = tick_plan(4, 8)
    assert len(plan) == 8 and plan[0] == plan[-1] == ("expression", "gesture")
    assert sum("expression" in tick for tick in plan) == 4 and all("gesture" in tick for tick in plan)


@pytest.mark.parametrize("sampler, nfe", [("ddim", (25, 25)), ("sync-lcm", (8, 8)), ("async-lcm", (4, 8))])
def test_nfe_counts(sampler, nfe, tiny_config):
    model = AsynFusionModel(tiny_config()).eval()
    audio = torch.randn(2, 16, model.config.audio_dim)
    x, stats = sample(model, audio, sampler, generator=torch.Generator().manual_seed(0))
    assert (stats.nfe_expression, stats.nfe_gesture) == nfe
    assert (stats.steps_expression, stats.steps_gesture) == (SAMPLERS[sampler].steps_expression,
                                                             SAMPLERS[sampler].steps_gesture)
    assert stats.gflops > 0 and stats.seconds_total > 0
    assert x["expression"].shape == (2, 16, model.config.expression_dim)


def test_async_never_computes_the_idle_branch(tiny_config):
    model = AsynFusionModel(tiny_config()).eval()
    audio = torch.randn(1, 16, model.config.audio_dim)
    sample(model, audio, "async-lcm")  # the one-off FLOP count evaluates the branches once; not counted below
    calls = {"expression": 0, "gesture": 0}
    for name, branch in model.branches.items():
        branch.final.register_forward_hook(lambda *_, name=name: calls.__setitem__(name, calls[name] + 1))
    sample(model, audio, "async-lcm", generator=torch.Generator().manual_seed(0))
    assert calls["expression"] == 4 and calls["gesture"] == 8
    # asymmetric the other way round too: the steps are free parameters
    calls.update(expression=0, gesture=0)
    sample(model, audio, "async-lcm", {"expression": 6, "gesture": 2})
    assert calls["expression"] == 6 and calls["gesture"] == 2


def test_async_flops_are_less_than_sync(tiny_config):
    model = AsynFusionModel(tiny_config()).eval()
    audio = torch.randn(2, 16, model.config.audio_dim)
    _, sync = sample(model, audio, "sync-lcm")
    _, async_ = sample(model, audio, "async-lcm")
    assert async_.gflops_gesture == pytest.approx(sync.gflops_gesture)
    assert async_.gflops_expression == pytest.approx(sync.gflops_expression / 2)


def test_flop_counting_can_be_skipped_without_changing_the_motion(randomize_zero_inits, tiny_config):
    model = AsynFusionModel(tiny_config()).eval()
    randomize_zero_inits(model)
    audio = torch.randn(2, 16, model.config.audio_dim)
    counted, stats = sample(model, audio, "async-lcm", generator=torch.Generator().manual_seed(1))
    skipped, bare = sample(model, audio, "async-lcm", generator=torch.Generator().manual_seed(1), count_flops=False)
    assert stats.gflops > 0 and bare.gflops == 0 and (bare.nfe_expression, bare.nfe_gesture) == (4, 8)
    assert all(torch.equal(counted[b], skipped[b]) for b in counted)


def test_seeded_sampling_is_deterministic(randomize_zero_inits, tiny_config):
    model = AsynFusionModel(tiny_config()).eval()
    randomize_zero_inits(model)
    audio = torch.randn(2, 16, model.config.audio_dim)
    a, _ = sample(model, audio, "async-lcm", generator=torch.Generator().manual_seed(3))
    b, _ = sample(model, audio, "async-lcm", generator=torch.Generator().manual_seed(3))
    c, _ = sample(model, audio, "async-lcm", generator=torch.Generator().manual_seed(4))
    assert torch.equal(a["gesture"], b["gesture"]) and not torch.equal(a["gesture"], c["gesture"])


def test_flop_counts_follow_the_architecture_not_the_object(tiny_config):
    """Counts are cached; a model built after another one is freed must not get the old model's count."""
    audio = torch.randn(1, 16, tiny_config().audio_dim)
    counts = {}
    for interaction in ("cosync", "none", "cosync"):
        model = AsynFusionModel(tiny_config(interaction=interaction)).eval()
        counts.setdefault(interaction, []).append(sample(model, audio, "async-lcm")[1].gflops)
        del model
    assert counts["none"][0] < counts["cosync"][0] == counts["cosync"][1]


def test_classifier_free_guidance_extrapolates_from_the_unconditional_prediction(randomize_zero_inits, tiny_config):
    """A guided step evaluates each window with and without its audio and moves w times as far from the
    unconditional prediction; w = 1 is the plain conditional sampler; NFE and FLOPs count both halves."""
    from asynfusion.diffusion.guidance import Guidance, guide

    model = AsynFusionModel(tiny_config()).eval()
    randomize_zero_inits(model)
    audio = torch.randn(2, 16, model.config.audio_dim)
    x = {b: torch.randn(2, 16, d) for b, d in (("expression", model.config.expression_dim),
                                                ("gesture", model.config.gesture_dim))}
    t = {b: torch.full((2,), 500) for b in x}
    with torch.no_grad():
        conditional = model(x, t, audio)
        unconditional = model(x, t, audio, keep_audio=torch.zeros(2, dtype=torch.bool))
        silent = model.denoise(x, t, torch.zeros_like(model.encode_audio(audio)))
        doubled = {b: torch.cat([conditional[b], unconditional[b]]) for b in x}
    torch.testing.assert_close(unconditional["gesture"], silent["gesture"])  # no audio: F_aud = 0
    assert not torch.allclose(conditional["gesture"], unconditional["gesture"])
    torch.testing.assert_close(guide(doubled["gesture"], 3.0),
                               unconditional["gesture"] + 3 * (conditional["gesture"] - unconditional["gesture"]))

    plain, plain_stats = sample(model, audio, "ddim", {"expression": 3, "gesture": 3},
                                generator=torch.Generator().manual_seed(0))
    same, _ = sample(model, audio, "ddim", {"expression": 3, "gesture": 3},
                     generator=torch.Generator().manual_seed(0), guidance=1.0)
    guided, guided_stats = sample(model, audio, "ddim", {"expression": 3, "gesture": 3},
                                  generator=torch.Generator().manual_seed(0), guidance=2.0)
    assert torch.equal(plain["gesture"], same["gesture"]) and not torch.allclose(plain["gesture"], guided["gesture"])
    assert (guided_stats.nfe_expression, guided_stats.nfe_gesture) == (6, 6) and guided_stats.guidance == "w=2"
    assert guided_stats.gflops_gesture == pytest.approx(2 * plain_stats.gflops_gesture)
    # guided only at timesteps up to max_t: with none that low, every step is the plain conditional one
    never, never_stats = sample(model, audio, "ddim", {"expression": 3, "gesture": 3},
                                generator=torch.Generator().manual_seed(0), guidance=Guidance.uniform(2.0, -1))
    torch.testing.assert_close(never["gesture"], plain["gesture"], atol=1e-5, rtol=1e-4)
    assert (never_stats.nfe_expression, never_stats.nfe_gesture) == (3, 3)  # nothing guided: no second half
    where = torch.tensor([True, False])
    mixed = guide(doubled["gesture"], 3.0, where)
    torch.testing.assert_close(mixed[1], conditional["gesture"][1])
    torch.testing.assert_close(mixed[0], guide(doubled["gesture"], 3.0)[0])
    # the first window of a guided batch is the same whether sampled alone or beside another
    alone, _ = sample(model, audio[:1], "ddim", {"expression": 3, "gesture": 3},
                      draw_noise=lambda b, k: torch.zeros(1, 16, model.config.gesture_dim if b == "gesture"
                                                          else model.config.expression_dim), guidance=2.0)
    beside, _ = sample(model, audio, "ddim", {"expression": 3, "gesture": 3},
                       draw_noise=lambda b, k: torch.zeros(2, 16, model.config.gesture_dim if b == "gesture"
                                                           else model.config.expression_dim), guidance=2.0)
    torch.testing.assert_close(alone["gesture"][0], beside["gesture"][0], atol=1e-5, rtol=1e-4)


def test_guidance_of_one_branch_in_an_interval_runs_the_second_half_only_where_it_applies(randomize_zero_inits,
                                                                                         tiny_config):
    """async LCM with the gesture branch guided at t <= 400: only the ticks with a guided gesture step run
    the unconditional half (the face stepping on them too, since the gesture reads it), and the branch
    that does not step reads features of the matching rows."""
    from asynfusion.diffusion.guidance import Guidance
    from asynfusion.diffusion.sampler import branch_timesteps

    model = AsynFusionModel(tiny_config()).eval()
    randomize_zero_inits(model)
    audio = torch.randn(2, 16, model.config.audio_dim)
    guidance = Guidance({"gesture": 2.0}, max_t=400)
    plan = tick_plan(4, 8)
    gesture_t = branch_timesteps("lcm", "gesture", 8, model.config.num_train_timesteps)
    guided_ticks = [i for i, t in enumerate(gesture_t) if t <= 400]
    assert 0 < len(guided_ticks) < 8
    plain, _ = sample(model, audio, "async-lcm", generator=torch.Generator().manual_seed(0))
    guided, stats = sample(model, audio, "async-lcm", generator=torch.Generator().manual_seed(0), guidance=guidance)
    assert stats.nfe_gesture == 8 + len(guided_ticks)
    assert stats.nfe_expression == 4 + sum("expression" in plan[i] for i in guided_ticks)
    assert stats.guidance == "gesture w=2 at t <= 400"
    assert not torch.allclose(plain["gesture"], guided["gesture"])
    # the face is not guided: with a gesture scale of 1 the same run is the plain one
    same, same_stats = sample(model, audio, "async-lcm", generator=torch.Generator().manual_seed(0),
                              guidance=Guidance({"gesture": 1.0}, max_t=400))
    torch.testing.assert_close(same["expression"], plain["expression"])
    assert same_stats.nfe_gesture == 8
