"""AdaMML: window pooling, Gumbel-softmax decisions, the modality-budget loss, overfitting 16 samples.

Reduced config for the overfit test: 4 windows, policy 16/32, features 24, fusion 24, no dropout; 16 samples
with sequence lengths text 8 / audio 12 / visual 10 and dims 10 / 6 / 4.
"""

from __future__ import annotations

import pytest
import torch

from models.base import ModelSpec, count_parameters
from models.nn.losses import modality_budget_loss
from models.nn.masking import window_pool
from models.registry import build_model
from pipeline.config import ConfigError
from tests.helpers.batches import random_batch

torch.set_num_threads(1)

TYPICAL = ModelSpec(dims={"text": 384, "audio": 31, "visual": 35}, seq_lens={"text": 50, "audio": 128, "visual": 64})
SMALL = ModelSpec(dims={"text": 10, "audio": 6, "visual": 4}, seq_lens={"text": 8, "audio": 12, "visual": 10})
SMALL_CFG = {"n_windows": 4, "policy_embed": 16, "policy_hidden": 32, "feature_dim": 24, "fusion_hidden": 24,
             "dropout": 0.0}


def make_batch(spec: ModelSpec, n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random unaligned features with ragged masks; sample 1 has no audio."""
    batch = random_batch(spec, n, seed, full_first=True, absent={1: ["audio"]})
    batch["audio_mask"][1] = 0.0
    return batch


def test_window_pool_averages_equal_consecutive_windows():
    x = torch.arange(12, dtype=torch.float32).view(1, 12, 1).repeat(2, 1, 1)
    mask = torch.ones(2, 12)
    mask[1, 6:] = 0.0                                     # second row: 6 valid steps
    pooled, wmask = window_pool(x, mask, 3)
    assert torch.allclose(pooled[0, :, 0], torch.tensor([1.5, 5.5, 9.5]))
    assert torch.allclose(pooled[1, :, 0], torch.tensor([0.5, 2.5, 4.5]))
    assert wmask.tolist() == [[1, 1, 1], [1, 1, 1]]
    short, smask = window_pool(x[:, :2], torch.ones(2, 2), 3)   # fewer steps than windows
    assert smask.tolist() == [[1, 1, 0], [1, 1, 0]]
    assert torch.allclose(short[0, :2, 0], torch.tensor([0.0, 1.0]))


def test_budget_loss_is_the_squared_gap_to_the_target():
    d = torch.tensor([[[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]]])      # 2 and 1 modalities: mean 1.5
    assert torch.isclose(modality_budget_loss(d, torch.ones(1, 2), 2.0), torch.tensor(0.25))
    assert torch.isclose(modality_budget_loss(d, torch.tensor([[1.0, 0.0]]), 2.0), torch.tensor(0.0))


def test_default_config_shapes_and_decisions():
    torch.manual_seed(0)
    model = build_model("adamml", TYPICAL)
    assert model.config.temperature == 5.0 and model.config.temperature_decay == 0.965
    assert count_parameters(model) > 0
    batch = make_batch(TYPICAL, n=4)
    out = model.train()(batch)
    assert out.prediction.shape == (4, 1)
    d = out.extras["decisions"]
    assert d.shape == (4, 8, 3)
    assert set(d.unique().tolist()) <= {0.0, 1.0}
    assert d[1, :, 1].sum() == 0                                # the absent audio is never chosen
    model.set_epoch(10)
    assert model.tau == pytest.approx(5.0 * 0.965 ** 10)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(batch).prediction, model(batch).prediction)   # argmax policy: deterministic


def test_every_parameter_gets_a_gradient_and_losses_are_finite():
    torch.manual_seed(0)
    model = build_model("adamml", SMALL, SMALL_CFG).train()
    batch = make_batch(SMALL, n=6)
    terms = model.loss_terms(batch, model(batch))
    assert set(terms) == {"task", "decision"}
    names, params = zip(*model.named_parameters())
    grads = torch.autograd.grad(sum(terms.values()), params, allow_unused=True)
    for n, g in zip(names, grads):
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0, n


def test_policy_ablation_uses_every_present_modality():
    model = build_model("adamml", SMALL, {**SMALL_CFG, "use_policy": False}).train()
    batch = make_batch(SMALL, n=4)
    out = model(batch)
    d = out.extras["decisions"]
    assert d[0].sum() == 4 * 3 and d[1, :, 1].sum() == 0
    assert set(model.loss_terms(batch, out)) == {"task"}


def test_text_only_configuration_runs():
    spec = ModelSpec(dims={"text": 10}, seq_lens={"text": 8})
    model = build_model("adamml", spec, {**SMALL_CFG, "modalities_used": ["text"], "target_modalities": 1.0})
    batch = {k: v for k, v in make_batch(SMALL, n=3).items() if k in ("text", "text_mask", "label")}
    assert model(batch).prediction.shape == (3, 1)
    with pytest.raises(ConfigError, match="target_modalities must lie in"):
        build_model("adamml", spec, {"modalities_used": ["text"]})


def test_decision_loss_drives_the_policy_towards_the_target():
    torch.manual_seed(0)
    model = build_model("adamml", SMALL, {**SMALL_CFG, "target_modalities": 1.0, "decision_weight": 5.0}).train()
    batch = make_batch(SMALL, n=16, seed=3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(120):
        opt.zero_grad()
        out = model(batch)
        terms = model.loss_terms(batch, out)
        terms["decision"].backward()
        opt.step()
    rates = []
    with torch.no_grad():                       # the sampled (training-mode) policy: its expected usage
        for _ in range(20):
            out = model(batch)
            wm = out.extras["window_mask"]
            rates.append(((out.extras["decisions"].sum(-1) * wm).sum() / wm.sum()).item())
    assert abs(sum(rates) / len(rates) - 1.0) < 0.25, rates


def test_overfits_sixteen_samples():
    torch.manual_seed(0)
    model = build_model("adamml", SMALL, SMALL_CFG).train()
    batch = make_batch(SMALL, n=16, seed=1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        sum(model.loss_terms(batch, model(batch)).values()).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        mae = (model.predict(batch) - batch["label"]).abs().mean().item()
    assert mae < 0.15, f"training MAE {mae:.3f}"


@pytest.mark.gpu
def test_trains_a_step_on_cuda():
    """Every tensor the model creates lands on the batch's device."""
    dev = torch.device("cuda")
    model = build_model("adamml", SMALL, SMALL_CFG).to(dev).train()
    batch = {k: v.to(dev) for k, v in make_batch(SMALL, n=4).items()}
    terms = model.loss_terms(batch, model(batch))
    sum(terms.values()).backward()
    assert all(torch.isfinite(t) for t in terms.values())
    assert model.eval().predict(batch).device.type == "cuda"
