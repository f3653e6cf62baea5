"""The trainer: overfitting 16 samples, bit-exact checkpoints, resuming on the same curve, run outputs."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from models.base import ModelSpec
from models.checkpoint import CheckpointError, load_training_state, load_weights, save_training_state, save_weights
from models.data import PackedDataset, PackedSplit
from models.optimization import TrainConfig
from models.registry import build_model
from models.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")


SPEC = ModelSpec(dims={"text": 12, "audio": 6, "visual": 4}, seq_lens={"text": 7, "audio": 9, "visual": 5})
SMALL_VAE = {"hidden": 16, "latent": 8, "vae_hidden": 32, "adversary_hidden": 16}


def random_split(n: int, seed: int) -> PackedSplit:
    g = torch.Generator().manual_seed(seed)
    tensors = {}
    for m, d in SPEC.dims.items():
        t = SPEC.seq_lens[m]
        tensors[m] = torch.randn(n, t, d, generator=g)
        tensors[f"{m}_mask"] = torch.ones(n, t)
    tensors["present"] = torch.ones(n, 3)
    tensors["label"] = (torch.rand(n, generator=g) * 6 - 3).round(decimals=1)
    tensors["index"] = torch.arange(n)
    return PackedSplit(tensors, [f"s{i}" for i in range(n)])


def dataset(n_train: int = 16, n_valid: int = 8) -> PackedDataset:
    splits = {"train": random_split(n_train, 1), "valid": random_split(n_valid, 2)}
    return PackedDataset(splits, list(SPEC.dims), dict(SPEC.dims), dict(SPEC.seq_lens))


def test_the_trainer_overfits_16_samples(tmp_path):
    """Random features and labels, learnt by heart, by the early-fusion LSTM. (On random features VAE-AMDT's
    reconstruction term shrinks x_m before the task can use it: it still predicts the mean after 400 epochs;
    its own overfitting check runs on the real sample clips, tests/models/zoo/test_vae_amdt_training.py.)"""
    torch.manual_seed(0)
    model = build_model("ef_lstm", SPEC, {"hidden": 16})
    cfg = TrainConfig(epochs=150, batch_size=16, lr=3e-3, patience=0, monitor="mae", seed=0, checkpoint_every=1000)
    trainer = Trainer(model, dataset(), cfg, tmp_path / "run", torch.device("cpu"))
    trainer.fit()
    first, last = trainer.state["history"][0]["train"]["task"], trainer.state["history"][-1]["train"]["task"]
    train_mae = trainer.evaluate("train")["mae"]
    assert first > 1.0
    assert train_mae < 0.25, f"train MAE {train_mae:.3f} after 150 epochs (started at {first:.3f}, last {last:.3f})"


def test_weights_and_training_state_round_trip_bit_exactly(tmp_path):
    torch.manual_seed(0)
    model = build_model("vae_amdt", SPEC, SMALL_VAE)
    trainer = Trainer(model, dataset(), TrainConfig(epochs=2, batch_size=8, seed=3), tmp_path / "a",
                      torch.device("cpu"))
    trainer.fit()
    save_weights(model, tmp_path / "w.safetensors")
    other = build_model("vae_amdt", SPEC, SMALL_VAE)
    load_weights(other, tmp_path / "w.safetensors")
    for (k, a), (_, b) in zip(model.state_dict().items(), other.state_dict().items()):
        assert torch.equal(a, b), k
    # every optimizer's state (exp_avg, exp_avg_sq, step) survives the safetensors + JSON split exactly
    save_training_state(tmp_path / "ck", model, trainer.optimizers, trainer.schedules, trainer.scaler, {"epoch": 2})
    assert set(trainer.optimizers) == {"discriminator", "model"}      # VAE-AMDT's two updates per batch
    steps = other.training_phases()[0].steps
    opts2 = {s.name: torch.optim.AdamW(s.parameters, lr=1.0) for s in steps}
    scheds2 = {n: torch.optim.lr_scheduler.LambdaLR(o, lambda step: 1.0) for n, o in opts2.items()}
    state = load_training_state(tmp_path / "ck", other, lambda saved: (opts2, scheds2), None, "cpu")
    assert state == {"epoch": 2}
    for name, opt2 in opts2.items():
        s1, s2 = trainer.optimizers[name].state_dict(), opt2.state_dict()
        assert json.loads(json.dumps(s1["param_groups"])) == json.loads(json.dumps(s2["param_groups"]))
        for pid in s1["state"]:
            for key, value in s1["state"][pid].items():
                assert torch.equal(value, s2["state"][pid][key]), (name, pid, key)
        assert scheds2[name].state_dict() == trainer.schedules[name].state_dict()
    assert all(not str(p).endswith((".pt", ".pkl", ".pth")) for p in tmp_path.rglob("*"))
    assert set(load_file(str(tmp_path / "ck.safetensors"))) >= {"rng.cpu"}


def test_weights_that_do_not_match_the_model_are_refused(tmp_path):
    model = build_model("vae_amdt", SPEC, SMALL_VAE)
    save_weights(model, tmp_path / "w.safetensors")
    other = build_model("unimodal", SPEC, {"hidden": 8})
    with pytest.raises(CheckpointError, match="does not match the model"):
        load_weights(other, tmp_path / "w.safetensors")
    with pytest.raises(CheckpointError, match="no complete checkpoint"):
        load_training_state(tmp_path / "nothing", model, lambda saved: ({}, {}), None, "cpu")


def _curve(run_dir, stop_after=None, resume=False):
    torch.manual_seed(123)   # model init; training seeds itself from the config
    model = build_model("vae_amdt", SPEC, {**SMALL_VAE, "dropout": 0.2})
    cfg = TrainConfig(epochs=6, batch_size=5, seed=7, patience=0)
    trainer = Trainer(model, dataset(), cfg, run_dir, torch.device("cpu"))
    trainer.fit(resume=resume, max_epochs_this_call=stop_after)
    return [h["train"]["total"] for h in trainer.state["history"]], [h["valid"]["mae"] for h in trainer.state["history"]]


def test_resuming_continues_the_same_curve(tmp_path):
    straight = _curve(tmp_path / "straight")
    part = _curve(tmp_path / "resumed", stop_after=3)
    assert len(part[0]) == 3
    resumed = _curve(tmp_path / "resumed", resume=True)   # a fresh process would do exactly this
    assert len(resumed[0]) == 6
    assert resumed[0] == straight[0]    # bit-identical losses (dropout and VAE noise RNG restored)
    assert resumed[1] == straight[1]


def test_run_directory_outputs_and_early_stopping(tmp_path):
    torch.manual_seed(0)
    model = build_model("unimodal", SPEC, {"hidden": 8})
    cfg = TrainConfig(epochs=30, batch_size=8, lr=1e-6, patience=2, seed=0, min_delta=0.01)  # lr too small
    trainer = Trainer(model, dataset(), cfg, tmp_path / "run", torch.device("cpu"))
    state = trainer.fit()
    summary = trainer.write_summary()
    assert state["stopped_early"] and state["epoch"] < 30
    run = tmp_path / "run"
    for name in ("model.safetensors", "checkpoint/last.safetensors", "checkpoint/last.json", "metrics.json",
                 "loss_curve.png", "train.log"):
        assert (run / name).is_file(), name
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["best_epoch"] == summary["best_epoch"] >= 1
    assert set(saved["metrics"]) == {"train", "valid"}
    assert (run / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "early stopping" in (run / "train.log").read_text()


def test_bad_train_config_is_named():
    from pipeline.config import ConfigError

    with pytest.raises(ConfigError, match="train.amp"):
        TrainConfig(amp="fp8").validate()
    with pytest.raises(ConfigError, match="train.lr"):
        TrainConfig(lr=0).validate()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_training_uses_amp_and_keeps_the_split_on_the_device(tmp_path):
    torch.manual_seed(0)
    model = build_model("vae_amdt", SPEC, SMALL_VAE)
    trainer = Trainer(model, dataset(), TrainConfig(epochs=2, batch_size=8), tmp_path / "run", torch.device("cuda"))
    assert trainer.splits["train"].device.type == "cuda"
    assert trainer.dtype in (torch.bfloat16, torch.float16)
    trainer.fit()
    assert all(torch.isfinite(torch.tensor(h["train"]["total"])) for h in trainer.state["history"])


@pytest.mark.slow
def test_compiled_training_matches_eager_and_saves_plain_weights(tmp_path):
    """train.compile: same losses as eager within float tolerance; the weights file keeps the model's own keys."""
    curves = {}
    for compiled in (False, True):
        torch.manual_seed(0)
        model = build_model("ef_lstm", SPEC, {"hidden": 16})
        cfg = TrainConfig(epochs=3, batch_size=8, patience=0, seed=0, compile=compiled)
        trainer = Trainer(model, dataset(), cfg, tmp_path / f"run{compiled}", torch.device("cpu"))
        trainer.fit()
        curves[compiled] = [h["train"]["total"] for h in trainer.state["history"]]
    assert curves[True] == pytest.approx(curves[False], rel=1e-4, abs=1e-5)
    keys = set(load_file(str(tmp_path / "runTrue" / "model.safetensors")))
    assert keys == set(load_file(str(tmp_path / "runFalse" / "model.safetensors")))
    assert not any(k.startswith("_orig_mod") for k in keys)
