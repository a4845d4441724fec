"""The motion autoencoder and the `eval` command end to end on a tiny BEAT2-shaped folder."""

import json

import numpy as np
import pytest
import torch

from asynfusion.checkpoint import save_checkpoint, untrained_checkpoint
from asynfusion.cli import main as cli_main
from asynfusion.errors import InputError
from asynfusion.evaluation import autoencoder as autoencoder_module
from asynfusion.evaluation.autoencoder import AutoencoderConfig, MotionAutoencoder, load_autoencoder, save_autoencoder

CLIPS = {"1_a_0_1_1": (100, "train"), "2_b_0_2_2": (90, "train"), "3_c_0_3_3": (75, "test"),
         "4_d_0_4_4": (80, "test"), "5_e_0_5_5": (70, "test"), "6_f_0_6_6": (70, "val")}
TINY_AUTOENCODER = AutoencoderConfig(expression_coeffs=52, expression_space="arkit", hidden=8, latent=4, window=32)


@pytest.fixture
def data(tmp_path, build_beat2_folder):
    root = build_beat2_folder(tmp_path / "beat2", CLIPS)
    (root / "corpus.json").write_text(json.dumps({"expression_space": "arkit"}))  # what tiny_config generates
    return root


def test_autoencoder_round_trip(tmp_path):
    torch.manual_seed(0)
    model = MotionAutoencoder(TINY_AUTOENCODER)
    model.branches["gesture"].std.fill_(2.0)  # the normalization travels with the weights
    path = save_autoencoder(tmp_path / "ae", model, {"trained_on": "nothing"})
    loaded = load_autoencoder(path)
    assert loaded.config == model.config and loaded.info["trained_on"] == "nothing"
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key])
    rng = np.random.default_rng(0)
    expression, gesture = rng.normal(size=(3, 32, 58)), rng.normal(size=(3, 32, 258))
    latents = loaded.latents(expression, gesture)
    assert latents["expression"].shape == (3 * 8, 4) and latents["gesture"].shape == (3 * 8, 4)
    np.testing.assert_array_equal(latents["gesture"], model.latents(expression, gesture)["gesture"])
    (path / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(InputError, match="invalid"):
        load_autoencoder(path)
    with pytest.raises(InputError, match="no motion autoencoder"):
        load_autoencoder(tmp_path / "nowhere")


def test_autoencoder_training_lowers_the_reconstruction_error(data):
    def train(steps):
        return autoencoder_module.train_autoencoder(data, TINY_AUTOENCODER, steps, batch_size=4, lr=1e-2,
                                                    progress=False)
    trained, record = train(40)
    _, barely = train(1)
    assert record["windows"] > 0 and not trained.training
    assert sum(record["val_reconstruction_mse"].values()) < sum(barely["val_reconstruction_mse"].values())


def test_eval_prints_the_tables_and_writes_json(data, tmp_path, tiny_checkpoint, monkeypatch, capsys, tiny_config):
    model, record = autoencoder_module.train_autoencoder(data, TINY_AUTOENCODER, steps=5, batch_size=4, progress=False)
    monkeypatch.setenv("ASYNFUSION_AUTOENCODER", str(save_autoencoder(tmp_path / "ae", model, record)))
    save_checkpoint(tmp_path / "none", untrained_checkpoint(tiny_config(interaction="none")))
    out = tmp_path / "tables.json"
    argv = ["eval", "--data", str(data), "--checkpoint", str(tiny_checkpoint), "--ablation", str(tmp_path / "none"),
            "--clips", "3", "--json", str(out)]
    assert cli_main(argv) == 0
    printed = capsys.readouterr().out
    for heading in ("Table 1", "Table 2", "Table 3", "Seeds"):
        assert heading in printed
    report = json.loads(out.read_text())
    assert [r["method"] for r in report["table1"]] == ["ground truth", "rule-based", "ddim 25/25", "sync-lcm 8/8",
                                                       "async-lcm 4/8"]
    assert [r["interaction"] for r in report["table2"]] == ["cosync", "none"]
    assert report["ablation_sampler"] == "ddim"  # untrained checkpoints have no distilled weights
    assert [r["sampler"] for r in report["table3"]] == ["ddim 25/25", "sync-lcm 8/8", "async-lcm 4/8"]
    assert all(r["seconds"] > 0 for r in report["table3"]) and len(report["seeds"]) == 3
    generated = report["table1"][2]
    assert generated["fmd"] > 0 and generated["fgd"] > 0 and -1 <= generated["lip_sync"] <= 1
    assert report["table1"][0]["fmd"] is None  # the ground truth is the reference, not a row to score
    assert report["seeds"][0]["gesture_l1"] > 0  # another seed, other gestures

    # deterministic: a second run gives the same numbers (timings aside)
    assert cli_main(argv) == 0
    again = json.loads(out.read_text())
    for key in ("table1", "seeds"):
        assert again[key] == report[key]
    assert [r["fmd"] for r in again["table3"]] == [r["fmd"] for r in report["table3"]]


def test_eval_refuses_an_autoencoder_of_another_expression_space(data, tmp_path, tiny_checkpoint, monkeypatch):
    flame = AutoencoderConfig(expression_coeffs=100, expression_space="flame", hidden=8, latent=4, window=32)
    monkeypatch.setenv("ASYNFUSION_AUTOENCODER", str(save_autoencoder(tmp_path / "ae", MotionAutoencoder(flame))))
    assert cli_main(["eval", "--data", str(data), "--checkpoint", str(tiny_checkpoint)]) == 2


def test_eval_samples_every_clip_from_its_own_seed(data, tiny_checkpoint):
    """Two clips of the same speech get different motion: each clip is its own draw, as in the data."""
    from asynfusion.checkpoint import load_checkpoint
    from asynfusion.data.beat2 import load_clips
    from asynfusion.evaluation.evaluate import Generator

    clip = load_clips(data, "test")[0]
    method = Generator(load_checkpoint(tiny_checkpoint), [clip, clip]).generate("async-lcm", seed=0)
    first, second = method.motions
    assert not np.allclose(first.poses, second.poses)
    again = Generator(load_checkpoint(tiny_checkpoint), [clip, clip]).generate("async-lcm", seed=0)
    np.testing.assert_array_equal(again.motions[1].poses, second.poses)  # still deterministic
