"""Seq2Seq2Sentiment variants: shapes, parameter counts, the two training phases, overfitting 16 samples.

Overfit tests use a reduced config (hidden 24, regressor 24, no dropout) on 16 samples of 6 word steps with
dims text 10 / audio 6 / visual 4, so that they finish in seconds on 2 CPU cores.
"""

from __future__ import annotations

import pytest
import torch

from models.base import ModelSpec, count_parameters
from models.registry import MODELS, build_model
from pipeline.config import ConfigError
from tests.helpers.batches import random_aligned_batch

torch.set_num_threads(1)

TYPICAL = ModelSpec(dims={"text": 384, "audio": 74, "visual": 35}, seq_lens={"text": 50, "audio": 50, "visual": 50})
SMALL = ModelSpec(dims={"text": 10, "audio": 6, "visual": 4}, seq_lens={"text": 6, "audio": 6, "visual": 6})
SMALL_CFG = {"hidden_size": 24, "regressor_hidden": 24, "dropout": 0.0, "translation_epochs": 1}
VARIANTS = ["seq2seq", "seq2seq_concat", "seq2seq_concat_out", "seq2seq_hier"]


def lstm_params(d_in: int, hidden: int) -> int:
    """Parameters of a one-layer PyTorch LSTM (two bias vectors)."""
    return 4 * hidden * (d_in + hidden) + 8 * hidden


def grads_of(model: torch.nn.Module, loss: torch.Tensor) -> dict[str, torch.Tensor | None]:
    """Gradient of `loss` for every named parameter (None where it does not reach)."""
    names, params = zip(*model.named_parameters())
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return dict(zip(names, grads))


def test_variants_are_registered_with_their_modalities():
    reg = MODELS.load_all()
    assert set(VARIANTS) <= set(reg)
    assert reg["seq2seq_concat"].Config().source == ["text", "audio"]
    assert reg["seq2seq_concat_out"].Config().target == ["audio", "visual"]
    assert reg["seq2seq_hier"].Config().hierarchical_target == ["visual"]
    assert all(reg[v].aligned for v in VARIANTS)


def test_bimodal_parameter_count_follows_the_architecture():
    model = build_model("seq2seq", TYPICAL)
    h, r, d_t, d_a = 128, 64, 384, 74
    encoder = lstm_params(d_t, h)
    decoder = (d_a * h + h) + lstm_params(2 * h, h) + h * h + (h * h + h) + h + (2 * h * d_a + d_a)
    regressor = lstm_params(h, r) + r + 1
    assert count_parameters(model) == encoder + decoder + regressor


@pytest.mark.parametrize("name", VARIANTS)
def test_default_configs_give_one_prediction_per_sample(name):
    torch.manual_seed(0)
    model = build_model(name, TYPICAL)
    batch = random_aligned_batch(TYPICAL, n=3, steps=5)
    model.train()
    out = model(batch)
    assert out.prediction.shape == (3, 1)
    assert out.representations["encoder_states"].shape == (3, 5, 128)
    expected = {"seq2seq": 74, "seq2seq_concat": 35, "seq2seq_concat_out": 74 + 35, "seq2seq_hier": 74}[name]
    assert out.extras["translation"].shape == (3, 5, expected)
    if name == "seq2seq_hier":
        assert out.extras["translation2"].shape == (3, 5, 35)
    model.eval()
    with torch.no_grad():
        out = model(batch)
    assert "translation" not in out.extras            # inference needs only the source modality
    source_only = {f"aligned_{m}" for m in model.config.source} | {"aligned_mask"}
    assert model.predict({k: v for k, v in batch.items() if k in source_only}).shape == (3,)


@pytest.mark.parametrize("name", VARIANTS)
def test_phase_one_trains_translation_phase_two_trains_the_regressor(name):
    torch.manual_seed(0)
    model = build_model(name, SMALL, SMALL_CFG).train()
    batch = random_aligned_batch(SMALL, n=5, steps=6)
    model.set_epoch(0)
    terms = model.loss_terms(batch, model(batch))
    assert set(terms) == {"task", "translation"}
    assert all(torch.isfinite(t) and t.dim() == 0 for t in terms.values())
    assert not terms["task"].requires_grad                      # phase 1 only logs the task loss
    g1 = grads_of(model, sum(terms.values()))
    for n, g in g1.items():
        if n.startswith("regressor."):
            assert g is None, n
        else:
            assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0, n

    model.set_epoch(1)
    terms = model.loss_terms(batch, model(batch))
    assert set(terms) == {"task"}
    g2 = grads_of(model, sum(terms.values()))
    for n, g in g2.items():
        if n.startswith("regressor."):
            assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0, n
        else:
            assert g is None, n                                 # translation network frozen in phase 2


def test_joint_training_without_phases_reaches_every_parameter():
    model = build_model("seq2seq_hier", SMALL, {**SMALL_CFG, "translation_epochs": 0,
                                                 "phase2_translation_weight": 0.5}).train()
    batch = random_aligned_batch(SMALL, n=4, steps=6)
    terms = model.loss_terms(batch, model(batch))
    assert set(terms) == {"task", "translation"}
    grads = grads_of(model, sum(terms.values()))
    assert all(g is not None and g.abs().sum() > 0 for g in grads.values())


@pytest.mark.parametrize("name", VARIANTS)
def test_overfits_sixteen_samples(name):
    torch.manual_seed(0)
    model = build_model(name, SMALL, SMALL_CFG)
    batch = random_aligned_batch(SMALL, n=16, steps=6, seed=1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    model.set_epoch(0)
    first = None
    for _ in range(30):                      # phase 1: translation
        opt.zero_grad()
        terms = model.loss_terms(batch, model(batch))
        first = terms["translation"].item() if first is None else first
        sum(terms.values()).backward()
        opt.step()
    assert terms["translation"].item() < first
    model.set_epoch(1)
    for _ in range(250):                     # phase 2: regression on the encoder states
        opt.zero_grad()
        sum(model.loss_terms(batch, model(batch)).values()).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        mae = (model.predict(batch) - batch["label"]).abs().mean().item()
    assert mae < 0.15, f"{name}: training MAE {mae:.3f} after 250 regression steps"


def test_bad_configs_and_missing_inputs_are_named():
    with pytest.raises(ConfigError, match="source: unknown modality lidar"):
        build_model("seq2seq", SMALL, {"source": ["lidar"]})
    with pytest.raises(ConfigError, match="uses visual but the dataset has only audio, text"):
        build_model("seq2seq_hier", ModelSpec(dims={"text": 4, "audio": 3}, seq_lens={"text": 5, "audio": 5}))
    with pytest.raises(ConfigError, match="unknown config key"):
        build_model("seq2seq", SMALL, {"hiden_size": 3})
    model = build_model("seq2seq", SMALL, SMALL_CFG).train()
    batch = random_aligned_batch(SMALL, n=2, steps=6)
    del batch["aligned_audio"]
    with pytest.raises(KeyError, match="aligned_audio"):
        model(batch)


def test_trainer_runs_both_phases(tmp_path):
    """Through the shared Trainer: translation-only epochs, then regression epochs that lower the train MAE."""
    from models.data import PackedDataset, PackedSplit
    from models.optimization import TrainConfig
    from models.trainer import Trainer

    torch.manual_seed(0)
    splits = {}
    for name, n, seed in (("train", 16, 1), ("valid", 8, 2)):
        tensors = random_aligned_batch(SMALL, n=n, steps=6, seed=seed)
        tensors["index"] = torch.arange(n)
        splits[name] = PackedSplit(tensors, [f"{name}{i}" for i in range(n)])
    data = PackedDataset(splits, list(SMALL.dims), dict(SMALL.dims), dict(SMALL.seq_lens))
    model = build_model("seq2seq", SMALL, {**SMALL_CFG, "translation_epochs": 2})
    cfg = TrainConfig(epochs=20, batch_size=8, lr=1e-2, patience=0, seed=0, checkpoint_every=1000)
    trainer = Trainer(model, data, cfg, tmp_path / "run", torch.device("cpu"))
    trainer.fit()
    history = trainer.state["history"]
    assert [set(h["train"]) - {"total"} for h in history[:3]] == [{"task", "translation"}] * 2 + [{"task"}]
    phase2 = [h["train"]["task"] for h in history[2:]]
    assert phase2[-1] < 0.9 * phase2[0], phase2


@pytest.mark.gpu
@pytest.mark.parametrize("name", [*VARIANTS, "mctn"])
def test_trains_a_step_on_cuda(name):
    """Every tensor the aligned translation models create lands on the batch's device."""
    dev = torch.device("cuda")
    cfg = SMALL_CFG if name != "mctn" else {"embed_dim": 16, "hidden_size": 24, "regressor_hidden": 24}
    model = build_model(name, SMALL, cfg).to(dev).train()
    batch = {k: v.to(dev) for k, v in random_aligned_batch(SMALL, n=4, steps=6).items()}
    terms = model.loss_terms(batch, model(batch))
    sum(terms.values()).backward()
    assert all(torch.isfinite(t) for t in terms.values())
    assert model.eval().predict(batch).device.type == "cuda"
