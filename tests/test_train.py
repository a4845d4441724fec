"""Training, resuming, distributed replicas and distillation, each a few steps on a tiny BEAT2-shaped folder."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from asynfusion.checkpoint import load_checkpoint
from asynfusion.diffusion.guidance import Guidance
from asynfusion.pipeline import Pipeline
from asynfusion.request import Request
from asynfusion.training.distill import DistillConfig, distill
from asynfusion.training.train import TrainConfig, diffusion_loss, frame_weights, sample_timesteps, train

CLIPS = {"1_a_0_1_1": (80, "train"), "2_b_0_2_2": (70, "train"), "3_c_0_3_3": (60, "test")}


@pytest.fixture
def data(tmp_path, build_beat2_folder):
    return build_beat2_folder(tmp_path / "beat2", CLIPS)


def config(data, out, steps, **overrides):
    values = dict(data=str(data), out=str(out), steps=steps, batch_size=4, window=32, stride=16, warmup=2,
                  save_every=2, bf16=False)
    values.update(overrides)
    return TrainConfig(**values)


def test_training_lowers_the_loss_and_writes_a_checkpoint(data, tmp_path, tiny_config):
    model_config = tiny_config(expression_coeffs=100, expression_space="flame")
    out = train(config(data, tmp_path / "ckpt", 30, lr=3e-3), model_config, {"trained_on": "tiny test data"})
    checkpoint = load_checkpoint(out)
    assert checkpoint.trained and checkpoint.info["training"]["completed_steps"] == 30
    # the trained EMA model fits its data better than a fresh one on the same noisy batch
    from asynfusion.diffusion.schedule import NoiseSchedule
    from asynfusion.model import AsynFusionModel
    from asynfusion.training.loop import load_training_data

    train_data = load_training_data(str(data), model_config, 32, 16, checkpoint.stats)
    generator = torch.Generator().manual_seed(0)
    x0, audio, speaker = train_data.batch(torch.arange(len(train_data.expression)))
    t = sample_timesteps(len(audio), 1000, 0.25, generator)
    noise = {b: torch.randn(x0[b].shape, generator=generator) for b in x0}
    trained, _ = diffusion_loss(checkpoint.models["diffusion"], NoiseSchedule(), x0, audio, speaker, t, noise, False)
    fresh, _ = diffusion_loss(AsynFusionModel(model_config), NoiseSchedule(), x0, audio, speaker, t, noise, False)
    assert trained.item() < fresh.item()


def test_a_batch_draws_the_asked_share_of_windows_with_pauses():
    from asynfusion.training.loop import TrainingData

    pause = torch.zeros(100, 8, dtype=torch.bool)
    pause[:5, 3:6] = True                                   # 5 of 100 windows hold a settled pause
    data = TrainingData(torch.zeros(100, 8, 1), torch.zeros(100, 8, 1), torch.zeros(100, 8, 1),
                        torch.zeros(100, dtype=torch.long), pause, None, "arkit")

    def share(fraction):
        index = torch.cat([data.draw(64, torch.Generator().manual_seed(step), fraction) for step in range(20)])
        return pause[index].any(1).float().mean().item()
    assert share(0.0) < 0.12                                 # uniform: about 5 %
    assert 0.3 <= share(0.3) < 0.42                          # at least the asked 30 %, plus the uniform draws'
    # no share asked: the very draws of a plain randint, so older runs replay unchanged
    assert torch.equal(data.draw(64, torch.Generator().manual_seed(3)),
                       torch.randint(0, 100, (64,), generator=torch.Generator().manual_seed(3)))


def test_the_snr_floor_keeps_high_noise_timesteps_in_the_loss():
    from asynfusion.diffusion.schedule import NoiseSchedule
    from asynfusion.training.train import noise_loss_weights

    schedule = NoiseSchedule()
    t = torch.tensor([0, 300, 500, 800, 999])
    alpha = schedule.alpha_bar_at(t)
    snr = alpha / (1 - alpha)
    # the weight the clean-motion error gets through the noise term: weight x SNR
    plain = noise_loss_weights(schedule, t, 5.0) * snr
    floored = noise_loss_weights(schedule, t, 5.0, floor=1.0) * snr
    assert torch.allclose(plain, snr.clamp(max=5.0), rtol=1e-4)           # min-SNR-5 unchanged without a floor
    assert plain[3] < 0.11 and plain[4] < 1e-6                             # t = 800, 999: almost nothing
    assert torch.allclose(floored, snr.clamp(1.0, 5.0), rtol=1e-4)         # truncated: at least 1, at most 5
    assert floored[0] == pytest.approx(5.0) and floored[4] == pytest.approx(1.0)
    assert torch.isfinite(noise_loss_weights(schedule, torch.tensor([999]), 5.0, floor=1.0)).all()


def loss_inputs(data, tiny_config):
    """An untrained tiny model and two training windows, noised at random timesteps: diffusion_loss's inputs."""
    from asynfusion.model import AsynFusionModel
    from asynfusion.training.loop import load_training_data

    model_config = tiny_config(expression_coeffs=100, expression_space="flame")
    x0, audio, speaker = load_training_data(str(data), model_config, 32, 16).batch(torch.arange(2))
    generator = torch.Generator().manual_seed(0)
    t = sample_timesteps(2, 1000, 0.25, generator)
    noise = {b: torch.randn(x0[b].shape, generator=generator) for b in x0}
    return AsynFusionModel(model_config), x0, audio, speaker, t, noise


def test_settled_pauses_weigh_more_in_the_loss(data, tiny_config):
    from asynfusion.diffusion.schedule import NoiseSchedule

    pause = torch.zeros(2, 10, dtype=torch.bool)
    pause[0, 6:] = True
    weights = frame_weights(pause, 5.0)
    torch.testing.assert_close(weights.mean(1), torch.ones(2))
    assert weights[0, 7] == pytest.approx(5 * weights[0, 0]) and torch.all(weights[1] == 1)

    model, x0, audio, speaker, t, noise = loss_inputs(data, tiny_config)
    plain, _ = diffusion_loss(model, NoiseSchedule(), x0, audio, speaker, t, noise, False)
    ones = {"gesture": torch.ones(2, 32)}
    same, _ = diffusion_loss(model, NoiseSchedule(), x0, audio, speaker, t, noise, False, weights=ones)
    torch.testing.assert_close(same, plain)
    # an error only in the last frames of the gesture branch costs more when those frames are a pause
    late = torch.zeros(2, 32, dtype=torch.bool)
    late[:, 24:] = True
    off = {b: x0[b].clone() for b in x0}
    off["gesture"][:, 24:] += 1.0
    costs = [diffusion_loss(model, NoiseSchedule(), off, audio, speaker, t, noise, False,
                            weights={"gesture": frame_weights(mask, 5.0)})[0] - diffusion_loss(
                                model, NoiseSchedule(), x0, audio, speaker, t, noise, False,
                                weights={"gesture": frame_weights(mask, 5.0)})[0]
             for mask in (torch.zeros_like(late), late)]
    assert costs[1] > costs[0]
    # the velocity term alone can be raised: a target that moves only through the pause (the arms drifting
    # where the capture rests them) costs more with velocity weights, and weights of 1 change nothing
    drift = {b: x0[b].clone() for b in x0}
    drift["gesture"][:, 24:] += torch.linspace(0, 1, 8).view(1, 8, 1)
    weights = {"gesture": frame_weights(late, 5.0)}

    def velocity_cost(velocity_weights):
        return diffusion_loss(model, NoiseSchedule(), drift, audio, speaker, t, noise, False, weights=weights,
                              velocity_weights=velocity_weights)[1]["g_velocity"]
    assert velocity_cost({"gesture": weights["gesture"]}) == pytest.approx(velocity_cost(None))
    assert velocity_cost({"gesture": weights["gesture"] * (1 + 29 * late)}) > 10 * velocity_cost(None)


def test_resume_after_a_crash_matches_a_straight_run(data, tmp_path, monkeypatch, tiny_config):
    import asynfusion.training.loop as training

    model_config = tiny_config(expression_coeffs=100, expression_space="flame")
    straight = load_checkpoint(train(config(data, tmp_path / "straight", 6), model_config))
    calls = {"n": 0}
    original = training.ema_update

    def crash_after_four(*args):
        original(*args)
        calls["n"] += 1
        if calls["n"] == 5:  # dies during step 5; the state of step 4 is on disk
            raise KeyboardInterrupt

    monkeypatch.setattr(training, "ema_update", crash_after_four)
    with pytest.raises(KeyboardInterrupt):
        train(config(data, tmp_path / "resumed", 6), model_config)
    monkeypatch.setattr(training, "ema_update", original)
    resumed = load_checkpoint(train(config(data, tmp_path / "resumed", 6), model_config))
    assert resumed.info["training"]["completed_steps"] == 6
    for key, value in straight.models["diffusion"].state_dict().items():
        torch.testing.assert_close(resumed.models["diffusion"].state_dict()[key], value)


def test_two_process_ddp_keeps_replicas_identical(data, tmp_path, free_port, tiny_config):
    checker = tmp_path / "check.py"
    checker.write_text(f"""
import torch, torch.distributed as dist
import asynfusion.training.loop as L
import asynfusion.training.train as T
from asynfusion.config import ModelConfig
captured = {{}}
original = L.ema_update
def spy(target, source, decay):
    original(target, source, decay)
    captured['model'] = source
L.ema_update = spy
T.train(T.TrainConfig(data={str(data)!r}, out={str(tmp_path / 'ddp')!r}, steps=3, batch_size=2, window=32,
                      stride=16, warmup=1, save_every=3, bf16=False),
        ModelConfig(**{tiny_config(expression_coeffs=100, expression_space="flame").to_dict()!r}))
vector = torch.cat([p.detach().flatten() for p in captured['model'].parameters()])
torch.save(vector, {str(tmp_path)!r} + f"/rank{{dist.get_rank()}}.pt")
""")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent.parent)}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                             f"--master_port={free_port()}", str(checker)], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert torch.equal(rank0, rank1)
    assert load_checkpoint(tmp_path / "ddp").info["training"]["world_size"] == 2


def test_distillation_adds_lcm_weights_the_samplers_use(data, tmp_path, tiny_config):
    model_config = tiny_config(expression_coeffs=100, expression_space="flame")
    teacher = train(config(data, tmp_path / "teacher", 4), model_config)
    out = distill(DistillConfig(data=str(data), teacher=str(teacher), out=str(tmp_path / "student"), steps=4,
                                batch_size=4, warmup=1, save_every=2, bf16=False))
    checkpoint = load_checkpoint(out)
    assert set(checkpoint.models) == {"diffusion", "lcm"}
    assert checkpoint.info["distillation"]["completed_steps"] == 4
    assert checkpoint.model_for("lcm") is checkpoint.models["lcm"]
    assert checkpoint.model_for("ddim") is checkpoint.models["diffusion"]
    lcm_params = dict(checkpoint.models["lcm"].named_parameters())
    assert any(not torch.equal(p, lcm_params[n]) for n, p in checkpoint.models["diffusion"].named_parameters())
    motion, report = Pipeline(checkpoint).generate(Request(torch.randn(16000 * 2).numpy() * 0.1, "async-lcm"))
    assert motion.num_frames == 60 and report.sampling.nfe_expression == 4


def test_distillation_with_the_data_terms_pulls_the_students_gestures_to_the_data(data, tmp_path, tiny_config):
    from asynfusion.diffusion.schedule import NoiseSchedule
    from asynfusion.training.loop import load_training_data

    model_config = tiny_config(expression_coeffs=100, expression_space="flame")
    teacher = train(config(data, tmp_path / "teacher", 2), model_config)
    common = dict(data=str(data), teacher=str(teacher), steps=40, batch_size=4, lr=3e-3, warmup=1, save_every=40,
                  bf16=False)
    plain = load_checkpoint(distill(DistillConfig(out=str(tmp_path / "plain"), **common)))
    pulled = load_checkpoint(distill(DistillConfig(out=str(tmp_path / "pulled"), data_weight=20.0, **common)))
    assert pulled.info["distillation"]["data_weight"] == 20.0 and plain.info["distillation"]["data_weight"] == 0.0
    windows = load_training_data(str(data), model_config, 32, 16, plain.stats)
    x0, audio, speaker = windows.batch(torch.arange(len(windows.expression)))
    schedule, generator = NoiseSchedule(), torch.Generator().manual_seed(3)
    t = {b: torch.full((len(audio),), 600) for b in x0}
    x_t = {b: schedule.add_noise(x0[b], torch.randn(x0[b].shape, generator=generator), t[b]) for b in x0}

    def gesture_error(checkpoint):  # the student's clean-gesture estimate against the data
        with torch.no_grad():
            output = checkpoint.models["lcm"](x_t, t, audio, speaker)["gesture"]
        return (output - x0["gesture"]).abs().mean().item()  # an x0-predicting model
    assert gesture_error(pulled) < 0.8 * gesture_error(plain)   # 0.51 against 0.82 when written


def test_audio_dropout_records_guidance_and_distillation_learns_the_guided_teacher(data, tmp_path, tiny_config):
    from asynfusion.training.distill import guided_teacher

    model_config = tiny_config(expression_coeffs=100, expression_space="flame")
    out = train(config(data, tmp_path / "cfg", 2, audio_dropout=0.5, guidance=2.5, guidance_max_t=700), model_config)
    teacher_checkpoint = load_checkpoint(out)
    assert teacher_checkpoint.guidance_for("diffusion") == Guidance.uniform(2.5, 700)
    assert teacher_checkpoint.guidance_for("lcm") == Guidance.uniform(2.5, 700)  # undistilled: diffusion
    plain = load_checkpoint(train(config(data, tmp_path / "plain", 2, audio_dropout=0.0), model_config))
    assert not plain.guidance_for("diffusion").active

    distilled = load_checkpoint(distill(DistillConfig(data=str(data), teacher=str(out), out=str(tmp_path / "lcm"),
                                                      steps=2, batch_size=2, bf16=False)))
    assert distilled.info["distillation"]["guidance"] == {"expression": 2.5, "gesture": 2.5, "max_t": 700}
    assert not distilled.guidance_for("lcm").active and distilled.guidance_for("diffusion").scale("gesture") == 2.5
    told = load_checkpoint(distill(DistillConfig(data=str(data), teacher=str(out), out=str(tmp_path / "lcm2"),
                                                 steps=1, batch_size=2, bf16=False,
                                                 sample_guidance={"gesture": 2.0, "max_t": 300})))
    assert told.guidance_for("lcm") == Guidance({"gesture": 2.0}, 300)

    teacher = teacher_checkpoint.models["diffusion"]
    with torch.no_grad():
        for parameter in teacher.parameters():  # give the zero-initialised layers values: audio must matter
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=torch.Generator().manual_seed(0)))
    x = {"expression": torch.randn(2, 32, model_config.expression_dim),
         "gesture": torch.randn(2, 32, model_config.gesture_dim)}
    t = {b: torch.tensor([100, 700]) for b in x}
    audio = torch.randn(2, 32, model_config.audio_dim)
    with torch.no_grad():
        conditional = teacher(x, t, audio)
        unconditional = teacher(x, t, audio, keep_audio=torch.zeros(2, dtype=torch.bool))
        guided = guided_teacher(teacher, x, t, audio, None, Guidance.uniform(2.5))
        unguided = guided_teacher(teacher, x, t, audio, None, Guidance())
        below = guided_teacher(teacher, x, t, audio, None, Guidance.uniform(2.5, 500))  # at t = 100, not at 700
        gesture_only = guided_teacher(teacher, x, t, audio, None, Guidance({"gesture": 2.5}))
    for b in x:
        torch.testing.assert_close(guided[b], unconditional[b] + 2.5 * (conditional[b] - unconditional[b]),
                                   atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(unguided[b], conditional[b])
        torch.testing.assert_close(below[b][0], guided[b][0], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(below[b][1], conditional[b][1], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(gesture_only["gesture"], guided["gesture"], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(gesture_only["expression"], conditional["expression"], atol=1e-5, rtol=1e-4)


def test_continuation_and_pooled_audio_train_and_warm_start_from_a_model_without(data, tmp_path, tiny_config):
    from asynfusion.training.train import prefix_mask

    mask = prefix_mask(4000, 32, 0.5, 12, torch.Generator().manual_seed(0))
    lengths = mask.sum(1)
    assert mask.shape == (4000, 32) and lengths.max() == 12
    assert abs((lengths > 0).float().mean().item() - 0.5) < 0.03  # a prefix on half the samples
    assert torch.equal(mask, torch.arange(32) < lengths.unsqueeze(1))  # always the first frames
    model_config = tiny_config(expression_coeffs=100, expression_space="flame")
    plain = train(config(data, tmp_path / "plain", 2), model_config)
    continuing = tiny_config(expression_coeffs=100, expression_space="flame", continuation=True, pooled_audio=True)
    out = train(config(data, tmp_path / "continuing", 4, init=str(plain), lr=3e-3), continuing)
    checkpoint = load_checkpoint(out)
    assert checkpoint.config.continuation and checkpoint.config.pooled_audio
    gesture = checkpoint.models["diffusion"].branches["gesture"]
    assert gesture.known.weight.abs().sum() > 0 and gesture.pooled_audio.weight.abs().sum() > 0  # learnt to read them
    student = load_checkpoint(distill(DistillConfig(data=str(data), teacher=str(out), out=str(tmp_path / "lcm"),
                                                    steps=2, batch_size=2, bf16=False)))
    assert student.models["lcm"].continues
    with pytest.raises(Exception, match="differs"):  # and not the other way round
        train(config(data, tmp_path / "back", 1, init=str(out)), model_config)


def test_a_warm_start_keeps_the_normalization_its_weights_were_learnt_in(data, tmp_path, tiny_config,
                                                                         build_beat2_folder):
    """A fine-tune on another corpus (v10 -> v11: corpus v4 -> v5) reads its data in the starting checkpoint's
    stats, which the LCM student shipped beside it shares; a fresh run fits its own."""
    model_config = tiny_config(expression_coeffs=100, expression_space="flame")
    other = build_beat2_folder(tmp_path / "other", {"4_d_0_4_4": (90, "train"), "5_e_0_5_5": (60, "train")}, seed=3)
    start = load_checkpoint(train(config(data, tmp_path / "start", 1), model_config))
    tuned = load_checkpoint(train(config(other, tmp_path / "tuned", 1, init=str(tmp_path / "start")), model_config))
    fresh = load_checkpoint(train(config(other, tmp_path / "fresh", 1), model_config))
    for kind in ("gesture", "expression", "audio"):
        assert (getattr(tuned.stats, f"{kind}_mean") == getattr(start.stats, f"{kind}_mean")).all()
        assert not (getattr(fresh.stats, f"{kind}_mean") == getattr(start.stats, f"{kind}_mean")).all()


def test_folding_the_lcm_guidance_gives_one_evaluation_what_the_guided_pair_gave(data, tmp_path, tiny_config):
    from asynfusion.diffusion.schedule import NoiseSchedule
    from asynfusion.errors import InputError
    from asynfusion.training.distill import guided_teacher
    from asynfusion.training.fold import FoldConfig, fold_guidance
    from asynfusion.training.loop import load_training_data

    model_config = tiny_config(expression_coeffs=100, expression_space="flame", continuation=True)
    teacher = train(config(data, tmp_path / "teacher", 2, audio_dropout=0.5), model_config)
    guided = distill(DistillConfig(data=str(data), teacher=str(teacher), out=str(tmp_path / "guided"), steps=2,
                                   batch_size=2, bf16=False, sample_guidance={"gesture": 2.0, "max_t": 800}))
    student = load_checkpoint(guided)
    with torch.no_grad():  # zero-initialised layers given values, so that the audio (and guidance) matters
        for parameter in student.models["lcm"].parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=torch.Generator().manual_seed(1)))
    from asynfusion.checkpoint import save_checkpoint
    save_checkpoint(guided, student)
    with pytest.raises(InputError, match="no distilled LCM"):
        fold_guidance(FoldConfig(data=str(data), checkpoint=str(teacher), out=str(tmp_path / "x"), bf16=False))
    unguided = distill(DistillConfig(data=str(data), teacher=str(teacher), out=str(tmp_path / "unguided"), steps=1,
                                     batch_size=2, bf16=False))
    with pytest.raises(InputError, match="not guided"):
        fold_guidance(FoldConfig(data=str(data), checkpoint=str(unguided), out=str(tmp_path / "x"), bf16=False))
    out = fold_guidance(FoldConfig(data=str(data), checkpoint=str(guided), out=str(tmp_path / "folded"), steps=40,
                                   batch_size=4, lr=3e-3, warmup=2, save_every=20, bf16=False,
                                   fresh_noise={"gesture": 0.8}))
    folded = load_checkpoint(out)
    assert not folded.guidance_for("lcm").active and folded.info["fold_guidance"]["completed_steps"] == 40
    assert folded.fresh_noise_for("lcm") == {"gesture": 0.8} and student.fresh_noise_for("lcm") == {}
    assert folded.info["fold_guidance"]["guidance"]["gesture"] == 2.0

    batch_data = load_training_data(str(data), model_config, 32, 16, folded.stats)
    x0, audio, speaker = batch_data.batch(torch.arange(len(batch_data.expression)))
    generator = torch.Generator().manual_seed(5)
    t = {b: torch.full((len(audio),), 500) for b in x0}
    x_t = {b: NoiseSchedule().add_noise(x0[b], torch.randn(x0[b].shape, generator=generator), t[b]) for b in x0}
    with torch.no_grad():
        goal = guided_teacher(student.models["lcm"], x_t, t, audio, speaker, student.guidance_for("lcm"))
        before = student.models["lcm"](x_t, t, audio, speaker)
        after = folded.models["lcm"](x_t, t, audio, speaker)
    # the folded student alone comes closer to the guided pair than the student alone was
    assert (after["gesture"] - goal["gesture"]).abs().mean() < 0.5 * (before["gesture"] - goal["gesture"]).abs().mean()
    motion, report = Pipeline(folded).generate(Request(torch.randn(16000 * 2).numpy() * 0.1, "async-lcm"))
    assert (report.sampling.nfe_expression, report.sampling.nfe_gesture) == (4, 8)  # what its steps say


def test_the_data_terms_ask_the_gesture_x0_for_the_data_and_for_rest_in_pauses():
    from asynfusion.diffusion.schedule import NoiseSchedule
    from asynfusion.training.distill import data_terms

    schedule = NoiseSchedule()
    generator = torch.Generator().manual_seed(0)
    x0 = {"expression": torch.randn(2, 16, 3, generator=generator), "gesture": torch.zeros(2, 16, 4)}
    t = {b: torch.full((2,), 10) for b in x0}
    x_t = {b: schedule.add_noise(x0[b], torch.randn(x0[b].shape, generator=generator), t[b]) for b in x0}
    pause = torch.zeros(2, 16, dtype=torch.bool)
    pause[:, 8:] = True
    moving = torch.zeros(2, 16, 4)
    moving[:, 1::2] = 1.0                                  # an x0 prediction that shakes on every frame

    def added(output, data_weight=0.0, pause_velocity=0.0):
        losses = {b: torch.tensor(0.0) for b in x0}
        data_terms(losses, data_weight, pause_velocity, schedule, "x0", output, x_t, t, x0, pause)
        return {b: float(v) for b, v in losses.items()}

    still_in_pauses = moving.clone()
    still_in_pauses[:, 7:] = 0.0                         # settled from the frame before the pause
    shaking = {"expression": x0["expression"], "gesture": moving}
    assert added(shaking, pause_velocity=1.0)["gesture"] == pytest.approx(1.0)            # (±1)² on every step
    assert added({**shaking, "gesture": still_in_pauses}, pause_velocity=1.0)["gesture"] < 1e-9  # moves outside only
    assert added(shaking, data_weight=2.0)["gesture"] == pytest.approx(2 * 0.5 * 0.5)  # Huber(1) on half the frames
    face_off = {**shaking, "expression": x0["expression"] + 1}
    assert added(face_off, data_weight=2.0, pause_velocity=1.0)["expression"] == 0     # the face: untouched


def test_the_speed_envelope_counts_gestures_not_tremble_and_the_energy_term_asks_for_it(data, tiny_config):
    from asynfusion.diffusion.schedule import NoiseSchedule
    from asynfusion.training.train import relative, speed_envelope

    frames = torch.arange(40, dtype=torch.float32).view(1, 40, 1)
    steady = frames.expand(1, 40, 4) * 0.1                                       # every step 0.2 long
    tremble = ((frames % 2) * 0.1 - 0.05).expand(1, 40, 4)                       # steps as long, back and forth
    assert speed_envelope(torch.zeros(1, 40, 4)).abs().max() == 0
    torch.testing.assert_close(speed_envelope(steady)[0, 10:30], torch.full((20,), 0.2))
    assert speed_envelope(tremble)[0, 10:30].max() < 0.25 * 0.2
    assert speed_envelope(steady).shape == (1, 39)
    # the term compares where a window moves more or less, not how much it moves in all
    envelope = speed_envelope((frames ** 2).expand(1, 40, 4) * 0.015)    # ever faster; the data's mean 0.9
    assert relative(3 * envelope).sub(relative(envelope)).abs().max() < 0.05 * relative(envelope).max()
    assert relative(envelope)[0, -5] > 1.2 > 0.8 > relative(envelope)[0, 5]

    model, x0, audio, speaker, t, noise = loss_inputs(data, tiny_config)
    plain, plain_log = diffusion_loss(model, NoiseSchedule(), x0, audio, speaker, t, noise, False)
    assert "g_energy" not in plain_log                                           # off by default: v8's loss
    with_energy, log = diffusion_loss(model, NoiseSchedule(), x0, audio, speaker, t, noise, False, energy_weight=2.0)
    assert "e_energy" not in log and log["g_energy"] > 0
    torch.testing.assert_close(with_energy, plain + 2.0 * log["g_energy"])


def test_train_reads_the_energy_weight_option(monkeypatch, tmp_path):
    from asynfusion import cli
    from asynfusion.training import train as train_module

    seen = {}
    monkeypatch.setattr(train_module, "train", lambda config, model_config, info: seen.update(config=config))
    monkeypatch.setattr("asynfusion.data.beat2.expression_space", lambda root: "arkit")
    cli.main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "out"), "--energy-weight", "2.5"])
    assert seen["config"].energy_weight == 2.5
    cli.main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "out")])
    assert seen["config"].energy_weight == TrainConfig.energy_weight == 0.0


def test_a_finished_run_is_not_trained_again_silently(data, tmp_path, tiny_config):
    """A second `train` into the same --out resumed the finished state and trained nothing, then said it wrote
    the checkpoint (so a fine-tune with --init from that folder did nothing): now a one-line InputError."""
    from asynfusion.errors import InputError

    model_config = tiny_config(expression_coeffs=100, expression_space="flame")
    out = tmp_path / "run"
    train(config(data, out, 2), model_config)
    with pytest.raises(InputError, match=r"holds a finished run of 2 steps \(--steps 2\): nothing to train"):
        train(config(data, out, 2, init=str(out)), model_config)
    assert load_checkpoint(train(config(data, out, 3), model_config)).info["training"]["completed_steps"] == 3
