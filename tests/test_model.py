import pytest
import torch

from asynfusion.config import BRANCHES, INTERACTIONS
from asynfusion.diffusion.schedule import NoiseSchedule
from asynfusion.model import AsynFusionModel, FeatureBuffer


def inputs(config, batch=2, frames=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = {"expression": torch.randn(batch, frames, config.expression_dim, generator=g),
         "gesture": torch.randn(batch, frames, config.gesture_dim, generator=g)}
    t = {"expression": torch.tensor([10, 900]), "gesture": torch.tensor([500, 3])}
    audio = torch.randn(batch, frames, config.audio_dim, generator=g)
    return x, t, audio


@pytest.mark.parametrize("interaction", INTERACTIONS)
def test_shapes_for_every_variant(interaction, tiny_config):
    config = tiny_config(interaction=interaction)
    model = AsynFusionModel(config)
    x, t, audio = inputs(config)
    out = model(x, t, audio)
    assert out["expression"].shape == (2, 16, config.expression_dim)
    assert out["gesture"].shape == (2, 16, config.gesture_dim)


# which direction each variant lets information flow: (gesture -> expression, expression -> gesture)
FLOWS = {"none": (False, False), "e2g": (False, True), "g2e": (True, False), "naive": (True, True),
         "cosync": (True, True)}


@pytest.mark.parametrize("interaction", INTERACTIONS)
def test_information_flows_only_where_the_variant_allows(interaction, randomize_zero_inits, tiny_config):
    config = tiny_config(interaction=interaction)
    model = AsynFusionModel(config).eval()
    randomize_zero_inits(model)
    x, t, audio = inputs(config)
    base = model(x, t, audio)
    g_to_e, e_to_g = FLOWS[interaction]
    perturbed_gesture = model({**x, "gesture": x["gesture"] + 1.0}, t, audio)
    perturbed_expression = model({**x, "expression": x["expression"] + 1.0}, t, audio)
    assert (not torch.allclose(base["expression"], perturbed_gesture["expression"])) == g_to_e
    assert (not torch.allclose(base["gesture"], perturbed_expression["gesture"])) == e_to_g


def test_each_branch_reads_its_own_timestep(randomize_zero_inits, tiny_config):
    config = tiny_config()
    model = AsynFusionModel(config).eval()
    randomize_zero_inits(model)
    x, t, audio = inputs(config)
    base = model(x, t, audio)
    moved = model(x, {**t, "gesture": torch.tensor([0, 999])}, audio)
    assert not torch.allclose(base["gesture"], moved["gesture"])
    # the expression output changes only through CoSync, never through a shared timestep embedding
    no_interaction = AsynFusionModel(tiny_config(interaction="none")).eval()
    randomize_zero_inits(no_interaction)
    a = no_interaction(x, t, audio)
    b = no_interaction(x, {**t, "gesture": torch.tensor([0, 999])}, audio)
    assert torch.allclose(a["expression"], b["expression"])


def test_buffered_features_equal_live_features(randomize_zero_inits, tiny_config):
    """A gesture-only evaluation reading the buffer equals the joint evaluation when nothing changed."""
    config = tiny_config()
    model = AsynFusionModel(config).eval()
    randomize_zero_inits(model)
    x, t, audio = inputs(config)
    features = model.encode_audio(audio)
    buffer = FeatureBuffer()
    joint = model.denoise(x, t, features, buffer=buffer)
    alone = model.denoise({"gesture": x["gesture"]}, {"gesture": t["gesture"]}, features, buffer=buffer)
    assert set(alone) == {"gesture"}
    torch.testing.assert_close(alone["gesture"], joint["gesture"])


def test_a_branch_cannot_read_an_empty_buffer(tiny_config):
    config = tiny_config()
    model = AsynFusionModel(config)
    x, t, audio = inputs(config)
    with pytest.raises(RuntimeError, match="feature buffer"):
        model.denoise({"gesture": x["gesture"]}, {"gesture": t["gesture"]}, model.encode_audio(audio))


@pytest.mark.parametrize("prediction", ["x0", "v"])
def test_zero_initialized_model_predicts_the_mean_motion(prediction, tiny_config):
    """adaLN-Zero: the untrained network outputs 0, i.e. x0 = 0 (the normalized mean) or v = 0."""
    config = tiny_config(prediction=prediction)
    x, t, audio = inputs(config)
    out = AsynFusionModel(config)(x, t, audio)
    schedule = NoiseSchedule(config.num_train_timesteps)
    for b in BRANCHES:
        assert torch.count_nonzero(out[b]) == 0  # the raw output, whatever it means
        x0 = schedule.predicted_x0(schedule.velocity_from(out[b], x[b], t[b], prediction), x[b], t[b])
        if prediction == "x0":
            assert torch.allclose(x0, torch.zeros_like(x0), atol=1e-4)
        else:
            assert torch.count_nonzero(out[b]) == 0


def test_x0_prediction_round_trips_through_v(tiny_config):
    """The schedule turns an x0-network's raw output into v; recovering x0 and noise from that v gives
    back what the network meant, and a v-network's output passes through as it is."""
    config = tiny_config()
    schedule = NoiseSchedule(config.num_train_timesteps)
    x0, noise = torch.randn(3, 8, 5), torch.randn(3, 8, 5)
    t = torch.tensor([0, 500, 999])
    x_t = schedule.add_noise(x0, noise, t)
    v = schedule.velocity_from(x0, x_t, t, "x0")
    assert torch.allclose(schedule.predicted_x0(v, x_t, t), x0, atol=1e-4)
    assert torch.allclose(schedule.predicted_noise(v, x_t, t)[1:], noise[1:], atol=1e-3)
    assert torch.equal(schedule.velocity_from(v, x_t, t, "v"), v)



def test_speaker_embedding_conditions_both_branches(randomize_zero_inits, tiny_config):
    config = tiny_config(num_speakers=3)
    model = AsynFusionModel(config).eval()
    randomize_zero_inits(model)
    x, t, audio = inputs(config)
    a = model(x, t, audio, torch.tensor([0, 0]))
    b = model(x, t, audio, torch.tensor([2, 2]))
    assert all(not torch.allclose(a[k], b[k]) for k in BRANCHES)


def test_continuation_reads_known_frames_only_once_trained_to(randomize_zero_inits, tiny_config):
    from asynfusion.model import known_frames

    config = tiny_config(continuation=True)
    model = AsynFusionModel(config).eval()
    x, t, audio = inputs(config)
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[:, :6] = True
    known = {b: known_frames(torch.randn_like(x[b]), mask) for b in BRANCHES}
    assert known["gesture"].shape == (2, 16, config.gesture_dim + 1)
    assert torch.equal(known["gesture"][:, 6:], torch.zeros_like(known["gesture"][:, 6:]))  # unknown frames blank
    plain = AsynFusionModel(tiny_config()).eval()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if ".known." not in k})
    with torch.no_grad():  # zero-initialised: a warm start from a model without it changes nothing
        for b, out in model(x, t, audio, known=known).items():
            torch.testing.assert_close(out, plain(x, t, audio)[b])
        randomize_zero_inits(model)
        base = model(x, t, audio)
        told = model(x, t, audio, known=known)
    assert all(not torch.allclose(base[b], told[b]) for b in BRANCHES)
    assert plain.branches["gesture"].known is None and not plain.continues and model.continues


def test_pooled_audio_conditions_every_block_only_once_trained_to(randomize_zero_inits, tiny_config):
    config = tiny_config(pooled_audio=True)
    model = AsynFusionModel(config).eval()
    x, t, audio = inputs(config)
    plain = AsynFusionModel(tiny_config()).eval()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if ".pooled_audio." not in k})
    with torch.no_grad():  # zero-initialised: a warm start from a model without it changes nothing
        for b, out in model(x, t, audio).items():
            torch.testing.assert_close(out, plain(x, t, audio)[b])
        randomize_zero_inits(model)
        features = model.encode_audio(audio)
        base = model.denoise(x, t, features)
        # the same per-frame audio in the tokens, another window mean in the conditioning: the output changes
        model.branches["gesture"].pooled_audio.bias.add_(1.0)
        moved = model.denoise(x, t, features)
    assert not torch.allclose(base["gesture"], moved["gesture"])
    timed = model.branch_modules("gesture")
    assert model.branches["gesture"].pooled_audio in timed and plain.branches["gesture"].pooled_audio is None
