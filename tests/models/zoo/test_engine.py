"""The baselines (early-fusion LSTM, unimodal head): registry, finite loss terms with gradients.

VAE-AMDT's tests live in test_vae_amdt.py.
"""

from __future__ import annotations

import pytest
import torch

from models.base import ModelSpec
from models.registry import MODELS, build_model
from tests.helpers.batches import random_batch

pytestmark = pytest.mark.usefixtures("one_thread")


SMALL = ModelSpec(dims={"text": 12, "audio": 6, "visual": 4}, seq_lens={"text": 7, "audio": 9, "visual": 5})
SMALL_OPTIONS = {"ef_lstm": {"steps": 6, "hidden": 8}, "unimodal": {"hidden": 8}}


def make_batch(spec: ModelSpec, n: int = 6, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random features with ragged masks and one sample per missing modality."""
    return random_batch(spec, n, seed, absent={1: ["audio"], 2: ["visual"], 3: ["audio", "visual"]})


def test_registry_has_the_engine_models():
    assert {"vae_amdt", "vae_amdt_small", "ef_lstm", "unimodal"} <= set(MODELS.names())


@pytest.mark.parametrize("name", ["ef_lstm", "unimodal"])
def test_every_loss_term_is_finite_and_has_gradients(name):
    torch.manual_seed(0)
    model = build_model(name, SMALL, SMALL_OPTIONS[name])
    model.train()
    batch = make_batch(SMALL)
    out = model(batch)
    assert out.prediction.shape == (6, 1)
    terms = model.loss_terms(batch, out)
    assert "task" in terms
    params = [p for p in model.parameters() if p.requires_grad]
    for key, term in terms.items():
        assert term.dim() == 0 and torch.isfinite(term), f"{key} = {term}"
        grads = torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
        total = sum(float(g.abs().sum()) for g in grads if g is not None)
        assert total > 0 and all(torch.isfinite(g).all() for g in grads if g is not None), key
