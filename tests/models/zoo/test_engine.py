"""VAE-AMDT and the baselines: parameter counts, finite loss terms with gradients, masked modalities."""

from __future__ import annotations

import pytest
import torch

from models.base import ModelSpec, count_parameters
from models.registry import MODELS, build_model
from models.zoo.vae_amdt import VAEAMDTConfig
from pipeline.config import ConfigError
from tests.helpers.batches import random_batch

pytestmark = pytest.mark.usefixtures("one_thread")


# VAE-AMDT Table 2 input sizes: V 64 x 8, L 100 x 1024, A 128 x 128
TABLE2 = ModelSpec(dims={"text": 1024, "audio": 128, "visual": 8}, seq_lens={"text": 100, "audio": 128, "visual": 64})
SMALL = ModelSpec(dims={"text": 12, "audio": 6, "visual": 4}, seq_lens={"text": 7, "audio": 9, "visual": 5})
SMALL_OPTIONS = {"vae_amdt": {"hidden": 16, "heads": 2, "latent": 8}, "ef_lstm": {"steps": 6, "hidden": 8},
                 "unimodal": {"hidden": 8}}


def make_batch(spec: ModelSpec, n: int = 6, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random features with ragged masks and one sample per missing modality."""
    return random_batch(spec, n, seed, absent={1: ["audio"], 2: ["visual"], 3: ["audio", "visual"]})


@pytest.mark.parametrize("preset,paper", [("mosi", 3.3e6), ("mosei", 1.7e6)])
def test_vae_amdt_parameter_count_matches_the_paper(preset, paper):
    model = build_model("vae_amdt", TABLE2, VAEAMDTConfig.preset(preset).to_dict())
    n = count_parameters(model)
    assert abs(n - paper) / paper < 0.15, f"{preset}: {n} parameters vs the paper's {paper:.0f}"


def test_registry_has_the_engine_models():
    assert {"vae_amdt", "ef_lstm", "unimodal"} <= set(MODELS.names())


@pytest.mark.parametrize("name", ["vae_amdt", "ef_lstm", "unimodal"])
def test_every_loss_term_is_finite_and_has_gradients(name):
    torch.manual_seed(0)
    model = build_model(name, SMALL, SMALL_OPTIONS[name])
    model.train()
    batch = make_batch(SMALL)
    out = model(batch)
    assert out.prediction.shape == (6, 1)
    terms = model.loss_terms(batch, out)
    assert "task" in terms
    if name == "vae_amdt":
        assert set(terms) == {"task", "vae", "adversarial", "transfer"}
    params = [p for p in model.parameters() if p.requires_grad]
    for key, term in terms.items():
        assert term.dim() == 0 and torch.isfinite(term), f"{key} = {term}"
        grads = torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
        total = sum(float(g.abs().sum()) for g in grads if g is not None)
        assert total > 0 and all(torch.isfinite(g).all() for g in grads if g is not None), key


def test_vae_amdt_discriminator_and_generators_pull_in_opposite_directions():
    """Gradient reversal: the adversarial term's gradient on a generator is the negative of plain BCE's."""
    torch.manual_seed(0)
    model = build_model("vae_amdt", SMALL, SMALL_OPTIONS["vae_amdt"])
    model.eval()   # no sampling: the same forward twice
    batch = make_batch(SMALL)
    out = model(batch)
    adv = model.loss_terms(batch, out)["adversarial"]
    gen_w = model.generators["audio"][2].weight
    g_rev = torch.autograd.grad(adv, gen_w, retain_graph=True)[0]
    # the same loss without reversal
    fake = model.discriminator(out.representations["audio"]).squeeze(-1)
    w = out.extras["present"]["audio"] * out.extras["present"]["text"]
    plain = (torch.nn.functional.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake), reduction="none")
             * w).sum() / w.sum() / 2
    g_plain = torch.autograd.grad(plain, gen_w)[0]
    assert torch.allclose(g_rev, -g_plain, atol=1e-6)


def test_masked_modalities_do_not_change_other_samples_or_give_nan():
    torch.manual_seed(0)
    model = build_model("vae_amdt", SMALL, SMALL_OPTIONS["vae_amdt"]).eval()
    batch = make_batch(SMALL)
    pred = model(batch).prediction
    assert torch.isfinite(pred).all()
    # a text-only sample ignores whatever sits in its (masked) audio/visual tensors
    changed = {k: v.clone() for k, v in batch.items()}
    changed["audio"][3] += 100.0
    changed["visual"][3] -= 50.0
    assert torch.allclose(model(changed).prediction[3], pred[3], atol=1e-5)


def test_vae_amdt_without_text_is_refused_clearly():
    spec = ModelSpec(dims={"audio": 6}, seq_lens={"audio": 9})
    with pytest.raises(ConfigError, match="needs text features"):
        build_model("vae_amdt", spec, {})


def test_ablation_switches_build_smaller_models():
    full = count_parameters(build_model("vae_amdt", SMALL, SMALL_OPTIONS["vae_amdt"]))
    no_cross = count_parameters(build_model("vae_amdt", SMALL, {**SMALL_OPTIONS["vae_amdt"],
                                                                "use_cross_attention": False}))
    assert no_cross < full
    model = build_model("vae_amdt", SMALL, {**SMALL_OPTIONS["vae_amdt"], "use_vae": False, "use_adversarial": False})
    batch = make_batch(SMALL)
    assert set(model.loss_terms(batch, model(batch))) == {"task", "transfer"}


def test_vae_amdt_attention_equals_multihead_attention_with_padding():
    """The SDPA attention path gives nn.MultiheadAttention's outputs and gradients, padded and empty rows included."""
    from models.nn.masking import key_padding_mask
    from models.zoo.vae_amdt import AttentionBlock

    torch.manual_seed(0)
    block = AttentionBlock(48, 4, dropout=0.0)
    q, kv = torch.randn(4, 6, 48, requires_grad=True), torch.randn(4, 9, 48)
    mask = torch.ones(4, 9)
    mask[1, 5:] = 0          # padded tail
    mask[2] = 0              # modality absent: the empty row attends to every key, so no NaN
    for train in (True, False):
        block.train(train)
        ours = block.attend(q, kv, mask)
        ref, _ = block.attn(q, kv, kv, key_padding_mask=key_padding_mask(mask), need_weights=False)
        assert torch.isfinite(ours).all()
        torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
        g_ours, = torch.autograd.grad(ours.sum(), q)
        g_ref, = torch.autograd.grad(ref.sum(), q)
        torch.testing.assert_close(g_ours, g_ref, atol=1e-5, rtol=1e-5)


def test_padded_head_attention_equals_plain_sdpa_at_table2_head_dim():
    """Zero-padding the head dim (30, Table 2's) to 32 for CUDA's fused kernels changes neither outputs nor grads."""
    from models.zoo.vae_amdt import padded_head_attention

    torch.manual_seed(0)
    q = torch.randn(3, 8, 5, 30, requires_grad=True)
    k, v = torch.randn(3, 8, 7, 30), torch.randn(3, 8, 7, 30)
    keep = torch.ones(3, 1, 1, 7, dtype=torch.bool)
    keep[0, ..., 4:] = False
    ours = padded_head_attention(q, k, v, keep)
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=keep)
    assert ours.shape == (3, 8, 5, 30)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    g_ours, = torch.autograd.grad(ours.sum(), q)
    g_ref, = torch.autograd.grad(ref.sum(), q)
    torch.testing.assert_close(g_ours, g_ref, atol=1e-5, rtol=1e-5)
