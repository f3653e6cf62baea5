"""MCTN: cyclic + hierarchical translation losses, gradients, test-time robustness, overfitting 16 samples.

Reduced config for speed: embeddings 16, hidden 24, two layers (as in the default), regressor 24, no dropout,
16 samples of 6 word steps with dims text 10 / audio 6 / visual 4.
"""

from __future__ import annotations

import pytest
import torch

from models.base import ModelSpec, count_parameters
from models.registry import build_model
from pipeline.config import ConfigError
from tests.helpers.batches import random_aligned_batch

torch.set_num_threads(1)

TYPICAL = ModelSpec(dims={"text": 300, "audio": 74, "visual": 35}, seq_lens={"text": 50, "audio": 50, "visual": 50})
SMALL = ModelSpec(dims={"text": 10, "audio": 6, "visual": 4}, seq_lens={"text": 6, "audio": 6, "visual": 6})
SMALL_CFG = {"embed_dim": 16, "hidden_size": 24, "regressor_hidden": 24, "dropout": 0.0}


def test_default_config_is_the_hierarchical_trimodal_model():
    model = build_model("mctn", TYPICAL)
    cfg = model.config
    assert (cfg.lambda_t, cfg.lambda_c) == (0.1, 0.1)
    assert cfg.source == ["text"] and cfg.target == ["visual"] and cfg.hierarchical_target == ["audio"]
    bimodal = build_model("mctn", TYPICAL, {"hierarchical_target": []})
    # level 2 adds an encoder over the level-1 states and a decoder to audio
    assert count_parameters(model) - count_parameters(bimodal) == (
        count_parameters(model.encoder2) + count_parameters(model.decode_third))
    assert 20e6 < count_parameters(model) < 35e6


def test_loss_terms_are_weighted_and_reach_every_parameter():
    torch.manual_seed(0)
    model = build_model("mctn", SMALL, SMALL_CFG).train()
    batch = random_aligned_batch(SMALL, n=5, steps=6)
    out = model(batch)
    assert out.prediction.shape == (5, 1)
    assert out.extras["translation"].shape == (5, 6, 4)      # text -> visual
    assert out.extras["cycle"].shape == (5, 6, 10)           # visual^ -> text
    assert out.extras["translation2"].shape == (5, 6, 6)     # joint representation -> audio
    terms = model.loss_terms(batch, out)
    assert set(terms) == {"task", "translation", "cycle"}
    for key, term in terms.items():
        assert term.dim() == 0 and torch.isfinite(term), key
    names, params = zip(*model.named_parameters())
    grads = torch.autograd.grad(sum(terms.values()), params, allow_unused=True)
    for n, g in zip(names, grads):
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0, n
    # lambda scales exactly: doubling lambda_c doubles the cycle term on the same forward
    model.config.lambda_c = 0.2
    assert torch.allclose(model.loss_terms(batch, out)["cycle"], 2 * terms["cycle"])


def test_cycle_loss_can_be_ablated():
    model = build_model("mctn", SMALL, {**SMALL_CFG, "lambda_c": 0.0}).train()
    batch = random_aligned_batch(SMALL, n=3, steps=6)
    out = model(batch)
    assert "cycle" not in out.extras
    assert set(model.loss_terms(batch, out)) == {"task", "translation"}


def test_inference_needs_only_the_source_modality():
    torch.manual_seed(0)
    model = build_model("mctn", SMALL, SMALL_CFG).eval()
    batch = random_aligned_batch(SMALL, n=4, steps=6)
    text_only = {k: batch[k] for k in ("aligned_text", "aligned_mask")}
    with torch.no_grad():
        full = model.predict(batch)
        alone = model.predict(text_only)
    assert alone.shape == (4,)
    assert torch.allclose(full, alone)
    # padding beyond a row's length does not change its prediction
    changed = {k: v.clone() for k, v in text_only.items()}
    row = int((batch["aligned_mask"].sum(1) < 6).nonzero()[0])
    changed["aligned_text"][row, -1] += 50.0
    with torch.no_grad():
        assert torch.allclose(model.predict(changed)[row], alone[row], atol=1e-6)


def test_overfits_sixteen_samples():
    torch.manual_seed(0)
    model = build_model("mctn", SMALL, SMALL_CFG).train()
    batch = random_aligned_batch(SMALL, n=16, steps=6, seed=2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for step in range(150):
        opt.zero_grad()
        terms = model.loss_terms(batch, model(batch))
        if step == 0:
            first = {k: v.item() for k, v in terms.items()}
        sum(terms.values()).backward()
        opt.step()
    assert terms["translation"].item() < first["translation"]
    assert terms["cycle"].item() < first["cycle"]
    model.eval()
    with torch.no_grad():
        mae = (model.predict(batch) - batch["label"]).abs().mean().item()
    assert mae < 0.15, f"training MAE {mae:.3f}"


def test_bad_config_is_named():
    with pytest.raises(ConfigError, match="lambda_t and lambda_c must be >= 0"):
        build_model("mctn", SMALL, {"lambda_c": -1.0})
    with pytest.raises(ConfigError, match="target: unknown modality"):
        build_model("mctn", SMALL, {"target": ["speech"]})
