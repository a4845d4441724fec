import pytest
import torch
from conftest import randomize_zero_inits, tiny_config

from asynfusion.config import INTERACTIONS
from asynfusion.model import BRANCHES, AsynFusionModel, FeatureBuffer


def inputs(config, batch=2, frames=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = {"expression": torch.randn(batch, frames, config.expression_dim, generator=g),
         "gesture": torch.randn(batch, frames, config.gesture_dim, generator=g)}
    t = {"expression": torch.tensor([10, 900]), "gesture": torch.tensor([500, 3])}
    audio = torch.randn(batch, frames, config.audio_dim, generator=g)
    return x, t, audio


@pytest.mark.parametrize("interaction", INTERACTIONS)
def test_shapes_for_every_variant(interaction):
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
def test_information_flows_only_where_the_variant_allows(interaction):
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


def test_each_branch_reads_its_own_timestep():
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


def test_buffered_features_equal_live_features():
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


def test_a_branch_cannot_read_an_empty_buffer():
    config = tiny_config()
    model = AsynFusionModel(config)
    x, t, audio = inputs(config)
    with pytest.raises(RuntimeError, match="feature buffer"):
        model.denoise({"gesture": x["gesture"]}, {"gesture": t["gesture"]}, model.encode_audio(audio))


def test_zero_initialized_model_predicts_zero():
    config = tiny_config()
    x, t, audio = inputs(config)
    out = AsynFusionModel(config)(x, t, audio)
    for b in BRANCHES:
        assert torch.count_nonzero(out[b]) == 0


def test_speaker_embedding_conditions_both_branches():
    config = tiny_config(num_speakers=3)
    model = AsynFusionModel(config).eval()
    randomize_zero_inits(model)
    x, t, audio = inputs(config)
    a = model(x, t, audio, torch.tensor([0, 0]))
    b = model(x, t, audio, torch.tensor([2, 2]))
    assert all(not torch.allclose(a[k], b[k]) for k in BRANCHES)
