"""Multilogue-Net as the multilingual paper uses it (word steps): recurrences, pairwise attention, gradients,
overfitting 16 samples.

Reduced config for the gradient/overfit tests: D_g = D_p = 24, D_e = D_h = 16, no dropout; 16 samples of 7
word-aligned steps with dims 10 / 6 / 4.
"""

from __future__ import annotations

import pytest
import torch

from models.base import ModelSpec, count_parameters
from models.registry import build_model
from models.zoo.multilogue import MonologueRNN, pairwise_attention
from tests.helpers.batches import random_aligned_batch
from tests.helpers.fidelity import check_parameter_table

torch.set_num_threads(1)

TYPICAL = ModelSpec(dims={"text": 384, "audio": 31, "visual": 135})     # our default word-aligned features
SMALL = ModelSpec(dims={"text": 10, "audio": 6, "visual": 4})
SMALL_CFG = {"global_size": 24, "party_size": 24, "emotion_size": 16, "hidden_size": 16, "dropout": 0.0}


def make_batch(spec: ModelSpec, n: int, seed: int = 0, steps: int = 7) -> dict[str, torch.Tensor]:
    """Random word-aligned features with ragged word masks; sample 1 has no visual."""
    batch = random_aligned_batch(spec, n, steps, seed)
    batch["present"] = torch.ones(n, 3)
    batch["present"][1, 2] = 0.0
    return batch


def test_empty_steps_leave_the_states_unchanged():
    torch.manual_seed(0)
    rnn = MonologueRNN(5, 8, 8, 6, 0.0)
    u = torch.randn(2, 4, 5)
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0]])
    e = rnn(u, mask)
    assert e.shape == (2, 4, 6)
    assert torch.equal(e[1, 2], e[1, 1]) and torch.equal(e[1, 3], e[1, 1])
    # the second row's states do not depend on its empty windows' features
    u2 = u.clone()
    u2[1, 2:] += 10.0
    assert torch.allclose(rnn(u2, mask)[1], e[1])


def test_pairwise_attention_is_the_mmmu_ba_formula():
    x = torch.randn(1, 3, 4)
    y = torch.randn(1, 3, 4)
    a1, a2 = pairwise_attention(x, y, torch.ones(1, 3))
    assert torch.allclose(a1, torch.softmax(x @ y.transpose(1, 2), -1) @ y * x)
    assert torch.allclose(a2, torch.softmax(y @ x.transpose(1, 2), -1) @ x * y)
    masked, _ = pairwise_attention(x, y, torch.tensor([[1.0, 1.0, 0.0]]))
    expected = torch.softmax(x @ y[:, :2].transpose(1, 2), -1) @ y[:, :2] * x
    assert torch.allclose(masked, expected, atol=1e-6)


def test_default_config_shapes():
    torch.manual_seed(0)
    model = build_model("multilogue", TYPICAL).eval()
    assert model.aligned
    out = model(make_batch(TYPICAL, n=3))
    assert out.prediction.shape == (3, 1)
    assert out.representations["fused"].shape == (3, 100)
    assert out.representations["text"].shape == (3, 100)
    assert out.representations["text|visual"].shape == (3, 200)      # the pair's bimodal-attention state [A_1; A_2]
    no_pairs = build_model("multilogue", TYPICAL, {"use_pairwise_attention": False})
    assert count_parameters(no_pairs) < count_parameters(model)


def test_each_word_is_a_step_and_the_prediction_reads_the_last_word():
    torch.manual_seed(0)
    model = build_model("multilogue", SMALL, SMALL_CFG).eval()
    batch = make_batch(SMALL, n=4)
    batch["aligned_mask"][2] = torch.tensor([1.0, 1, 1, 0, 0, 0, 0])      # sample 2 has three words
    with torch.no_grad():
        out = model(batch)
        inputs = model._inputs(batch)
        e_text = model.rnns["text"](*inputs["text"])
        assert torch.allclose(out.representations["text"][2], e_text[2, 2])     # the state after word 3
        changed = {k: v.clone() for k, v in batch.items()}
        changed["aligned_text"][2, 3:] += 10.0                             # words after the last one
        assert torch.allclose(model(changed).prediction[2], out.prediction[2], atol=1e-5)
        changed["aligned_text"][2, 1] += 1.0                               # a word inside the segment
        assert not torch.allclose(model(changed).prediction[2], out.prediction[2])
        padded = {k: torch.nn.functional.pad(v, (0, 0, 0, 5) if v.dim() == 3 else (0, 5)) if k.startswith("aligned")
                  else v for k, v in batch.items()}                        # five more empty steps: skipped
        assert torch.allclose(model(padded).prediction, out.prediction, atol=1e-6)


def test_every_parameter_gets_a_gradient_and_absent_modalities_are_ignored():
    torch.manual_seed(0)
    model = build_model("multilogue", SMALL, SMALL_CFG).train()
    batch = make_batch(SMALL, n=7)   # odd: L1 sign gradients cannot cancel on the bias
    terms = model.loss_terms(batch, model(batch))
    assert set(terms) == {"task"} and torch.isfinite(terms["task"])
    names, params = zip(*model.named_parameters())
    grads = torch.autograd.grad(terms["task"], params, allow_unused=True)
    for n, g in zip(names, grads):
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0, n
    model.eval()
    with torch.no_grad():
        pred = model(batch).prediction
        changed = {k: v.clone() for k, v in batch.items()}
        changed["aligned_visual"][1] += 100.0              # sample 1 has no visual
        assert torch.allclose(model(changed).prediction[1], pred[1], atol=1e-5)


@pytest.mark.parametrize("modalities", [["text", "audio", "visual"], ["text"]])
def test_overfits_sixteen_samples(modalities):
    torch.manual_seed(0)
    model = build_model("multilogue", SMALL, {**SMALL_CFG, "modalities_used": modalities}).train()
    batch = make_batch(SMALL, n=16, seed=1, steps=5)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(100):
        opt.zero_grad()
        model.loss_terms(batch, model(batch))["task"].backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        mae = (model.predict(batch) - batch["label"]).abs().mean().item()
    assert mae < 0.15, f"training MAE {mae:.3f}"


def test_the_fidelity_tables_parameter_counts():
    """docs/fidelity/multilogue.md prints these counts: each row's model is built and counted here."""
    check_parameter_table("multilogue", 4)


@pytest.mark.gpu
def test_trains_a_step_on_cuda():
    """Every tensor the model creates lands on the batch's device."""
    dev = torch.device("cuda")
    model = build_model("multilogue", SMALL, SMALL_CFG).to(dev).train()
    batch = {k: v.to(dev) for k, v in make_batch(SMALL, n=4).items()}
    terms = model.loss_terms(batch, model(batch))
    sum(terms.values()).backward()
    assert all(torch.isfinite(t) for t in terms.values())
    assert model.eval().predict(batch).device.type == "cuda"
