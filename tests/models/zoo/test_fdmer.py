"""FDMER (Yang et al. 2022): loss pieces, gradient reversal, shapes, masking, gradients and overfitting."""

from __future__ import annotations

import math

import pytest
import torch

from models.base import ModelSpec, count_parameters
from models.nn.layers import reverse_gradient
from models.registry import build_model
from models.zoo.fdmer import additive_angular_margin_logits, hsic
from pipeline.config import ConfigError
from tests.helpers.batches import random_batch

DIMS = {"text": 24, "audio": 16, "visual": 7}
LENS = {"text": 10, "audio": 14, "visual": 8}
# reduced sizes for the fast tests (the paper's: d_k 256, 5/4/4 encoder layers)
SMALL = {"d_k": 32, "encoder_layers": {"text": 1, "audio": 1, "visual": 1}, "encoder_heads": 2, "fusion_heads": 2,
         "dropout": 0.0}

pytestmark = pytest.mark.usefixtures("one_thread")


def make_batch(n: int, seed: int = 0, dims: dict[str, int] = DIMS) -> dict[str, torch.Tensor]:
    """Random unaligned sequences, valid lengths of at least half of T, labels in [-3, 3]."""
    return random_batch(ModelSpec(dims=dims, seq_lens=LENS), n, seed, shortest=lambda t: t // 2)


def test_gradient_reversal_flips_gradient() -> None:
    x = torch.tensor([1.0, -2.0], requires_grad=True)
    y = reverse_gradient(x, 0.5)
    assert torch.equal(y, x)
    (3 * y).sum().backward()
    assert torch.allclose(x.grad, torch.tensor([-1.5, -1.5]))


def test_additive_angular_margin_logits() -> None:
    weight = torch.eye(3)
    feats = torch.tensor([[1.0, 1.0, 0.0]])              # 45 degrees from classes 0 and 1
    logits = additive_angular_margin_logits(feats, weight, torch.tensor([0]), margin=0.5, scale=72.0)
    assert logits[0, 0].item() == pytest.approx(72 * math.cos(math.pi / 4 + 0.5), rel=1e-5)
    assert logits[0, 1].item() == pytest.approx(72 * math.cos(math.pi / 4), rel=1e-5)
    assert logits[0, 2].item() == pytest.approx(0.0, abs=1e-4)
    # beyond pi - m the target logit keeps decreasing (monotonic extension)
    far = additive_angular_margin_logits(torch.tensor([[-1.0, 0.1, 0.0]]), weight, torch.tensor([0]), 0.5, 72.0)
    assert far[0, 0] < 72 * math.cos(math.pi - 0.5)


def test_hsic_zero_for_independent_positive_for_dependent() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 8, generator=g)
    y = torch.randn(256, 8, generator=g)
    assert hsic(x, x).item() > 20 * abs(hsic(x, y).item())
    assert hsic(x, 2 * x).item() == pytest.approx(4 * hsic(x, x).item(), rel=1e-4)   # inner-product kernel
    assert hsic(x[:1], y[:1]).item() == 0.0


def test_paper_config_shapes_and_size() -> None:
    spec = ModelSpec(dims={"text": 384, "audio": 128, "visual": 7}, task="binary", n_outputs=1)
    model = build_model("fdmer", spec)
    cfg = model.config
    assert (cfg.d_k, cfg.margin, cfg.scale) == (256, 0.5, 72.0)
    assert [len(model.encoders[m].encoder.layers) for m in ("text", "audio", "visual")] == [5, 4, 4]
    assert 10_000_000 < count_parameters(model) < 14_000_000
    model.eval()
    batch = make_batch(2, dims={"text": 384, "audio": 128, "visual": 7})
    batch["label"] = torch.tensor([0.0, 1.0])
    out = model(batch)
    assert out.prediction.shape == (2, 1)
    assert out.extras["fusion_weights"].shape == (2, 6)
    assert torch.allclose(out.extras["fusion_weights"].sum(1), torch.ones(2))
    assert 0 <= model.predict(batch).min() and model.predict(batch).max() <= 1


def test_losses_finite_and_every_parameter_learns() -> None:
    model = build_model("fdmer", ModelSpec(dims=DIMS), SMALL)
    batch = make_batch(7)  # odd: L1 sign gradients cannot cancel on the bias
    terms = model.loss_terms(batch, model(batch))
    assert set(terms) == {"task", "ams", "ami", "con", "dis"}
    assert all(torch.isfinite(v) and v.dim() == 0 for v in terms.values())
    sum(terms.values()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_common_encoder_gets_reversed_discriminator_gradient() -> None:
    torch.manual_seed(0)
    model = build_model("fdmer", ModelSpec(dims=DIMS), SMALL)
    batch = make_batch(8)
    out = model(batch)
    common = [out.representations[f"common_{m}"] for m in ("text", "audio", "visual")]
    ami = model.loss_terms(batch, out)["ami"]
    grads = torch.autograd.grad(ami, common, retain_graph=True)
    plain = model._margin_loss(common, out.extras["present"]) * model.config.beta
    grads_plain = torch.autograd.grad(plain, common)
    for g, gp in zip(grads, grads_plain):
        assert torch.allclose(g, -model.config.grl_lambda * gp, atol=1e-6)


def test_absent_modality_is_masked_and_ablations_drop_terms() -> None:
    model = build_model("fdmer", ModelSpec(dims=DIMS), SMALL).eval()
    batch = make_batch(4)
    batch["present"] = torch.tensor([[1.0, 1, 1], [1, 1, 0], [1, 1, 1], [0, 1, 1]])
    out = model(batch)
    w = out.extras["fusion_weights"]
    assert w[1, 2].item() == 0 and w[1, 5].item() == 0 and w[3, 0].item() == 0 and w[3, 3].item() == 0
    changed = {k: v.clone() for k, v in batch.items()}
    changed["visual"][1] = torch.randn_like(changed["visual"][1]) * 9
    assert torch.allclose(model(changed).prediction, out.prediction, atol=1e-5)
    assert all(torch.isfinite(v) for v in model.loss_terms(batch, out).values())
    ablated = build_model("fdmer", ModelSpec(dims=DIMS), {**SMALL, "use_consistency": False,
                                                          "use_discriminator": False})
    assert set(ablated.loss_terms(batch, ablated(batch))) == {"task", "dis"}
    bare = build_model("fdmer", ModelSpec(dims=DIMS), {**SMALL, "use_discriminator": False,
                                                       "use_fusion_attention": False})
    assert count_parameters(bare) < count_parameters(ablated) < count_parameters(model)
    odd = make_batch(7)   # odd: L1 sign gradients cannot cancel on the head bias
    sum(bare.loss_terms(odd, bare(odd)).values()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in bare.parameters())
    with pytest.raises(ConfigError, match="at least two"):
        build_model("fdmer", ModelSpec(dims={"audio": 16}))
    with pytest.raises(ConfigError, match="model.fdmer.nope"):
        build_model("fdmer", ModelSpec(dims=DIMS), {"nope": 1})


def test_overfits_16_samples_with_full_objective() -> None:
    torch.manual_seed(0)
    model = build_model("fdmer", ModelSpec(dims=DIMS), SMALL)
    batch = make_batch(16, seed=1)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(120):
        terms = model.loss_terms(batch, model(batch))
        first = first if first is not None else terms["task"].item()
        opt.zero_grad()
        sum(terms.values()).backward()
        opt.step()
    model.eval()
    final = model.loss_terms(batch, model(batch))
    assert first > 1.0 and final["task"].item() < 0.25, (first, final)
    assert all(torch.isfinite(v) for v in final.values())


@pytest.mark.gpu
def test_trains_a_step_on_cuda_with_bf16_autocast() -> None:
    model = build_model("fdmer", ModelSpec(dims=DIMS), SMALL).cuda()
    batch = {k: v.cuda() for k, v in make_batch(7).items()}
    with torch.autocast("cuda", dtype=torch.bfloat16):
        terms = model.loss_terms(batch, model(batch))
    assert all(torch.isfinite(v.float()) for v in terms.values())
    sum(terms.values()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
