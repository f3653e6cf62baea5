"""Hybrid-modal attention as published: MSG (Eqs. 4-8), MBA (Eqs. 9-17), the stage order of Fig. 2, the Shifting
Huber loss (Eqs. 19-20), the paper-sized shapes and parameter counts docs/fidelity/hybrid_modal.md prints, the
subsets of Table IV, the rows of Table III, and training on real cached clips with the paper's recipe."""

from __future__ import annotations

import json
import math

import pytest
import torch

from extractors.text.encoder import PACKAGED_MINILM, resolve_text_model
from models.base import ModelSpec, count_parameters
from models.nn.text_encoder import TextEncoder
from models.registry import build_model
from models.zoo.hybrid_modal import (
    NONVERBAL,
    HybridModal,
    HybridModalConfig,
    MaskedBimodalAdjustment,
    MultimodalShiftingGate,
    shifting_huber,
)
from pipeline.config import ConfigError
from tests.helpers.batches import TOKEN_SPEC as SPEC
from tests.helpers.batches import token_batch as make_batch

pytestmark = pytest.mark.usefixtures("one_thread")

# The paper's input sizes: BERT-base (12 x 768), COVAREP 74-d, Facet 47-d (MOSI); MAG-BERT's 50 tokens [33].
PAPER_SPEC = ModelSpec(dims={"text": 768, "audio": 74, "visual": 47})
PAPER_TOKENS = 50
# SentiFlow's default word-aligned features: MiniLM 384-d, acoustic 31-d (13 MFCC + deltas + 5 prosody), FER
# 135-d (7 FER2013 probabilities + the 128-d embedding); 100 tokens (the text extractor's seq_len).
OUR_SPEC = ModelSpec(dims={"text": 384, "audio": 31, "visual": 135})
# docs/fidelity/hybrid_modal.md prints these
PAPER_PARAMETERS, PAPER_ENCODER = 111_866_217, 108_891_648
OUR_PARAMETERS, OUR_ENCODER = 23_936_380, 22_565_376


@pytest.fixture(scope="module")
def tokenizer():
    """The real tokenizer of the packaged text encoder (BERT's uncased vocabulary, as BERT-base's)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_text_model(PACKAGED_MINILM))


@pytest.fixture(scope="module")
def bert_width():
    """BERT-base's width and vocabulary with 3 of its 12 layers (random weights: BERT-base is not available offline;
    the stage shapes depend on the width only, and 3 layers keep the MSG-T cut after layer 2)."""
    from transformers import BertConfig

    torch.manual_seed(0)
    return TextEncoder.from_config(BertConfig(num_hidden_layers=3)).eval()


def paper_sized(text_encoder: TextEncoder) -> HybridModal:
    """Hybrid-modal attention at the paper's input sizes around `text_encoder`."""
    return HybridModal(HybridModalConfig(max_tokens=PAPER_TOKENS), PAPER_SPEC, text_encoder=text_encoder)


def _capture(model: torch.nn.Module, names: list[str]) -> dict[str, tuple]:
    """Forward hooks that keep each named module's (args, output) of the next forward pass."""
    seen: dict[str, tuple] = {}
    modules = dict(model.named_modules())
    for name in names:
        modules[name].register_forward_hook(lambda mod, args, out, name=name: seen.__setitem__(name, (args, out)))
    return seen


# --- the paper's sizes ------------------------------------------------------------------------------------------
def test_parameter_count_at_the_papers_sizes() -> None:
    """Counted on the meta device: BERT-base's architecture without allocating its 109M weights."""
    from transformers import BertConfig

    with torch.device("meta"):
        model = paper_sized(TextEncoder.from_config(BertConfig()))
    assert count_parameters(model.text_encoder) == PAPER_ENCODER      # BERT-base without its (unused) pooler
    assert count_parameters(model) == PAPER_PARAMETERS


def test_stage_shapes_at_the_papers_sizes(tokenizer, bert_width) -> None:
    model = paper_sized(bert_width).eval()
    batch = make_batch(tokenizer, 3)
    batch["aligned_audio"] = torch.randn(3, batch["aligned_mask"].shape[1], 74)
    batch["aligned_visual"] = torch.randn(3, batch["aligned_mask"].shape[1], 47)
    n = int(batch["text_attention_mask"].sum(1).max())
    seen = _capture(model, ["rnns.audio", "rnns.visual", "msgs.text", "mbas.audio", "mbas.visual", "msgs.audio",
                            "msgs.visual", "fusion", "regression"])
    with torch.no_grad():
        model(batch)
    assert seen["rnns.audio"][1][0].data.shape[-1] == 74 and seen["rnns.visual"][1][0].data.shape[-1] == 47   # F_a, F_v
    assert [tuple(t.shape) for t in seen["msgs.text"][1]] == [(3, n, 768)] * 2          # F_t*, h_s (Eq. 7)
    assert tuple(seen["mbas.audio"][1].shape) == tuple(seen["mbas.visual"][1].shape) == (3, n, 768)   # M_ta*, M_tv*
    assert [tuple(t.shape) for t in seen["msgs.audio"][1]] == [(3, n, 74)] * 2          # M_a*
    assert [tuple(t.shape) for t in seen["msgs.visual"][1]] == [(3, n, 47)] * 2         # M_v*
    assert tuple(seen["fusion"][0][0].shape) == (3, n, 768 + 74 + 47)                   # M*
    assert tuple(seen["fusion"][1].shape) == (3, n, 768)                                # M_f*
    assert tuple(seen["regression"][1].shape) == (3, 1)


def test_parameter_count_with_our_default_features() -> None:
    model = build_model("hybrid_modal", OUR_SPEC)
    assert count_parameters(model.text_encoder) == OUR_ENCODER    # MiniLM-L6 (BERT, 6 x 384) without its pooler
    assert count_parameters(model) == OUR_PARAMETERS
    assert model.text_encoder.n_layers == 6 and model.config.msg_t_after_layer == 2


# --- the equations ----------------------------------------------------------------------------------------------
def test_shifting_gate_equals_eqs_4_to_8_by_hand() -> None:
    gate = MultimodalShiftingGate(2, {"audio": 1}, mu_init=1.0)
    with torch.no_grad():
        gate.gates["audio"].weight.copy_(torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, -1.0]]))   # W_ga on [F; X]
        gate.gate_biases["audio"].fill_(0.5)                                                # scalar b_ga
        gate.projections["audio"].weight.copy_(torch.tensor([[1.0], [-1.0]]))              # W_a
        gate.shift_bias.copy_(torch.tensor([0.1, 0.2]))                                     # b_h
    main, x = torch.tensor([[[3.0, 4.0]]]), torch.tensor([[[2.0]]])
    # g_a = ReLU([3 + 2 + .5, 4 - 2 + .5]) = [5.5, 2.5]; W_a x = [2, -2]; h_s = [11.1, -4.8]
    h = [5.5 * 2 + 0.1, 2.5 * -2 + 0.2]
    eta = min(5.0 / (math.hypot(*h) + 1e-6) * 1.0, 1.0)       # ||F|| = 5
    shifted, h_s = gate(main, {"audio": x}, {"audio": torch.ones(1, 1)})
    assert h_s.flatten().tolist() == pytest.approx(h)
    assert shifted.flatten().tolist() == pytest.approx([3.0 + eta * h[0], 4.0 + eta * h[1]])
    assert 0 < eta < 1
    with torch.no_grad():
        gate.mu.fill_(10.0)                                     # eta capped at 1: F* = F + h_s
    assert gate(main, {"audio": x}, {"audio": torch.ones(1, 1)})[0].flatten().tolist() == pytest.approx(
        [3.0 + h[0], 4.0 + h[1]])
    # an absent auxiliary modality contributes nothing: h_s = b_h
    assert gate(main, {"audio": x}, {"audio": torch.zeros(1, 1)})[1].flatten().tolist() == pytest.approx([0.1, 0.2])


def test_shifting_gate_mu_learns_below_the_cap() -> None:
    torch.manual_seed(0)
    gate = MultimodalShiftingGate(8, {"audio": 4, "visual": 4}, mu_init=0.5)
    z = torch.randn(2, 3, 8) * 0.01
    aux = {"audio": torch.randn(2, 3, 4) * 10, "visual": torch.randn(2, 3, 4) * 10}
    keep = {m: torch.ones(2, 3) for m in aux}
    shifted, _ = gate(z, aux, keep)
    assert torch.allclose((shifted - z).norm(dim=-1), 0.5 * z.norm(dim=-1), rtol=1e-4)   # ||eta h_s|| = mu ||F||
    (shifted - z).pow(2).sum().backward()
    assert gate.mu.grad is not None and gate.mu.grad.abs() > 0


def test_masked_bimodal_adjustment_equals_eqs_9_to_17_by_hand() -> None:
    torch.manual_seed(0)
    mba = MaskedBimodalAdjustment(2, 1, 2, 1, 1, max_tokens=4)      # kernels 1: Conv1D is a per-position matrix
    text, other = torch.randn(1, 3, 2), torch.randn(1, 3, 1)
    mask = torch.tensor([[1.0, 1.0, 0.0]])                           # the third token is padding
    got = mba(text, mask, other, mask)
    # the equations written out
    wt, wo = mba.conv_text.weight[:, :, 0], mba.conv_other.weight[:, :, 0]
    m_ = (text * mask[..., None]) @ wt.T                                          # Eq. 9
    f_ = (other * mask[..., None]) @ wo.T                                         # Eq. 10
    m_bar = m_ / torch.sqrt(m_.norm(dim=-1, keepdim=True) + 1e-6) * mask[..., None]   # Eq. 11 (padding zero)
    f_bar = f_ / torch.sqrt(f_.norm(dim=-1, keepdim=True) + 1e-6) * mask[..., None]   # Eq. 12
    p_t = torch.tanh(mba.w_text[:3, :3] @ (m_bar @ m_bar.transpose(1, 2)) + mba.b_text)    # Eq. 13
    p_v = torch.tanh(mba.w_other[:3, :3] @ (f_bar @ f_bar.transpose(1, 2)) + mba.b_other)  # Eq. 14
    p_att = p_t * p_v                                                                   # Eq. 15
    scores = p_t + p_att + torch.tensor([0.0, 0.0, -math.inf])                          # Eq. 16's mask
    x_att = torch.softmax(scores, dim=-1)
    expected = text + x_att @ text                                                       # Eq. 17
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    # padding never reaches a token; without the other modality p_att = 0
    padded = text.clone()
    padded[0, 2] = 100.0
    torch.testing.assert_close(mba(padded, mask, other, mask)[:, :2], got[:, :2], atol=1e-5, rtol=1e-5)
    without = mba(text, mask, other, torch.zeros(1, 3))
    torch.testing.assert_close(without, text + torch.softmax(p_t + torch.tensor([0.0, 0.0, -math.inf]), -1) @ text,
                               atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="max_tokens"):
        mba(torch.randn(1, 5, 2), torch.ones(1, 5), torch.randn(1, 5, 1), torch.ones(1, 5))


def test_shifting_huber_loss_equals_eqs_19_and_20_by_hand(tokenizer) -> None:
    h = torch.tensor([[[0.5, -2.0], [3.0, 0.1]]])
    # valid position 0 only: 1/2 * 0.5^2 = 0.125 and 1 * (2 - 1/2) = 1.5 (delta 1) -> mean 0.8125
    assert shifting_huber(h, torch.tensor([[1.0, 0.0]]), delta=1.0).item() == pytest.approx(0.8125)
    # delta 2.5: 0.125, 2.0, 2.5 * (3 - 1.25) = 4.375, 0.005 -> mean 1.62625
    assert shifting_huber(h, torch.ones(1, 2), delta=2.5).item() == pytest.approx(1.62625)
    weights = {"shift_weight_text": 0.5, "shift_weight_audio": 0.25, "shift_weight_visual": 2.0, "huber_delta": 0.3}
    model = build_model("hybrid_modal", SPEC, weights).eval()
    batch = make_batch(tokenizer, 4)
    out = model(batch)
    terms = model.loss_terms(batch, out)
    assert set(terms) == {"task", "shift_text", "shift_audio", "shift_visual"}
    assert terms["task"].item() == pytest.approx(torch.nn.functional.l1_loss(out.prediction.squeeze(-1),
                                                                              batch["label"]).item())
    for m, w in (("text", 0.5), ("audio", 0.25), ("visual", 2.0)):
        h_s, mask = out.extras["shifts"][m]
        assert terms[f"shift_{m}"].item() == pytest.approx(w * shifting_huber(h_s, mask, 0.3).item(), rel=1e-5)


# --- the stage order (Fig. 2) and what each term trains -------------------------------------------------------
@pytest.mark.parametrize("pairing,into_audio,into_visual", [("crossed", "visual", "audio"),
                                                            ("matched", "audio", "visual")])
def test_stages_run_in_the_papers_order(tokenizer, pairing, into_audio, into_visual) -> None:
    model = build_model("hybrid_modal", SPEC, {"mba_pairing": pairing}).eval()
    cut = model.config.msg_t_after_layer
    layers = [f"text_encoder.model.encoder.layer.{i}" for i in (cut - 1, cut, 5)]
    seen = _capture(model, ["msgs.text", "mbas.audio", "mbas.visual", "msgs.audio", "msgs.visual", "fusion",
                            *layers])
    batch = make_batch(tokenizer, 3)
    with torch.no_grad():
        model(batch)
    f_t = seen[layers[0]][1]
    assert torch.equal(seen["msgs.text"][0][0], f_t)                    # MSG-T on the output of layer 2 ...
    assert torch.equal(seen[layers[1]][0][0], seen["msgs.text"][1][0])  # ... feeds layer 3 with F_t* (Eq. 7)
    m_t = seen[layers[2]][1]                                            # M_t*: the last layer's output
    for m in ("audio", "visual"):
        assert torch.equal(seen[f"mbas.{m}"][0][0], m_t)                # MBA adjusts M_t* ...
    assert torch.equal(seen["msgs.audio"][0][1]["text"], seen[f"mbas.{into_audio}"][1])   # ... into MSG-A
    assert torch.equal(seen["msgs.visual"][0][1]["text"], seen[f"mbas.{into_visual}"][1])
    mask = batch["text_attention_mask"][:, : m_t.shape[1]].float().unsqueeze(-1)
    m_star = torch.cat([m_t, seen["msgs.audio"][1][0] * mask, seen["msgs.visual"][1][0] * mask], dim=-1)
    torch.testing.assert_close(seen["fusion"][0][0], m_star)            # M* = [M_t*; M_a*; M_v*]


def _grad_norms(model: torch.nn.Module, loss: torch.Tensor) -> dict[str, float]:
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, [p for _, p in named], retain_graph=True, allow_unused=True)
    return {n: 0.0 if g is None else float(g.abs().sum()) for (n, _), g in zip(named, grads)}


def _reached(norms: dict[str, float], prefix: str) -> bool:
    return any(v > 0 for n, v in norms.items() if n.startswith(prefix))


def test_each_loss_term_trains_what_it_must_and_nothing_else(tokenizer) -> None:
    torch.manual_seed(0)
    model = build_model("hybrid_modal", SPEC).eval()
    batch = make_batch(tokenizer, 5)
    terms = model.loss_terms(batch, model(batch))
    task = _grad_norms(model, terms["task"])
    # the label loss reaches every stage: M_a* and M_v* reach the head through [CLS], the MBAs through MSG-A/V
    for prefix in ("text_encoder.", "rnns.audio", "rnns.visual", "msgs.text.", "msgs.audio.", "msgs.visual.",
                   "mbas.audio.", "mbas.visual.", "fusion.", "regression."):
        assert _reached(task, prefix), prefix
    # every parameter learns from the label loss (mu only below its cap; embedding rows of unseen tokens are 0)
    assert [n for n, v in task.items() if v == 0 and not n.endswith(".mu")] == []
    text = _grad_norms(model, terms["shift_text"])       # MSG-T's h_s: layers 1-2, the RNNs, MSG-T; nothing after
    assert _reached(text, "msgs.text.") and _reached(text, "rnns.") and _reached(text, "text_encoder.model.embeddings")
    assert _reached(text, "text_encoder.model.encoder.layer.1.")
    for prefix in ("text_encoder.model.encoder.layer.2.", "text_encoder.model.encoder.layer.5.", "mbas.", "msgs.audio",
                   "msgs.visual", "fusion.", "regression."):
        assert not _reached(text, prefix), prefix
    audio = _grad_norms(model, terms["shift_audio"])     # MSG-A's h_s: M_tv* (MBA-V), F_a, F_v; not the head
    assert _reached(audio, "msgs.audio.") and _reached(audio, "mbas.visual.") and _reached(audio, "rnns.visual")
    for prefix in ("mbas.audio.", "msgs.visual.", "fusion.", "regression."):
        assert not _reached(audio, prefix), prefix


def test_longer_padding_changes_nothing(tokenizer) -> None:
    """A batch padded to the extractor's 100 tokens gives what the batch's own length gives (trimmed inside)."""
    model = build_model("hybrid_modal", SPEC).eval()
    batch = make_batch(tokenizer, 4)
    padded = dict(batch)
    extra = 100 - batch["text_ids"].shape[1]
    for key, fill in (("text_ids", 0), ("text_attention_mask", 0), ("text_word_index", -1)):
        padded[key] = torch.cat([batch[key], torch.full((4, extra), fill, dtype=batch[key].dtype)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(model(padded).prediction, model(batch).prediction, atol=1e-5, rtol=1e-5)


def test_word_features_are_laid_on_their_word_pieces(tokenizer) -> None:
    batch = make_batch(tokenizer, 3)
    states = torch.arange(3 * batch["aligned_mask"].shape[1], dtype=torch.float).view(3, -1, 1) + 1
    tok, keep = HybridModal.words_to_tokens(states, batch["aligned_mask"], batch["text_word_index"])
    wi = batch["text_word_index"]
    for b in range(3):
        for t in range(wi.shape[1]):
            if wi[b, t] >= 0:
                assert tok[b, t, 0] == states[b, wi[b, t], 0] and keep[b, t] == 1
            else:
                assert tok[b, t, 0] == 0 and keep[b, t] == 0


# --- subsets (Table IV), rows (Table III), absent modalities, errors ------------------------------------------
def test_every_modality_subset_builds_and_trains_a_step(tokenizer) -> None:
    full = make_batch(tokenizer, 4)
    dims = {"text": 384, "audio": 16, "visual": 7}
    expected = {"T": ([], []), "TA": (["audio", "text"], ["audio"]), "TV": (["text", "visual"], ["visual"]),
                "A": ([], []), "V": ([], []), "AV": (["audio", "visual"], [])}
    names = {"T": "text", "A": "audio", "V": "visual"}
    for code, (msgs, mbas) in expected.items():
        mods = [names[c] for c in code]
        torch.manual_seed(0)
        model = build_model("hybrid_modal", ModelSpec(dims={m: dims[m] for m in mods}))
        assert sorted(model.msgs) == msgs and sorted(model.mbas) == mbas, code
        batch = {k: v for k, v in full.items() if not k.startswith("aligned_") or k == "aligned_mask"
                 or k.removeprefix("aligned_") in mods}
        terms = model.loss_terms(batch, model(batch))
        assert all(torch.isfinite(t) for t in terms.values()), code
        sum(terms.values()).backward()
        assert model.regression.weight.grad.abs().sum() > 0, code
    # a bimodal MSG-A takes the MBA of its own modality (its crossed partner, visual, is not there)
    ta = build_model("hybrid_modal", ModelSpec(dims={"text": 384, "audio": 16})).eval()
    seen = _capture(ta, ["mbas.audio", "msgs.audio"])
    with torch.no_grad():
        ta({k: v for k, v in full.items() if k != "aligned_visual"})
    assert torch.equal(seen["msgs.audio"][0][1]["text"], seen["mbas.audio"][1])


def test_without_text_the_prediction_reads_the_last_valid_word(tokenizer) -> None:
    model = build_model("hybrid_modal", ModelSpec(dims={"audio": 16, "visual": 7})).eval()
    batch = {k: v for k, v in make_batch(tokenizer, 4).items() if k.startswith("aligned_") or k == "label"}
    with torch.no_grad():
        before = model(batch).prediction
        after_end = dict(batch)
        after_end["aligned_audio"] = batch["aligned_audio"] + 50 * (1 - batch["aligned_mask"]).unsqueeze(-1)
        torch.testing.assert_close(model(after_end).prediction, before)
        last = int(batch["aligned_mask"][1].sum()) - 1
        moved = dict(batch)
        moved["aligned_audio"] = batch["aligned_audio"].clone()
        moved["aligned_audio"][1, last] += 3.0
        assert not torch.allclose(model(moved).prediction[1], before[1])


def test_table_iii_rows_switch_the_papers_components(tokenizer) -> None:
    batch = make_batch(tokenizer, 3)
    expected = {"no proposed modules": ([], []), "only MSG-T": (["text"], []), "MSG-T&A": (["audio", "text"], []),
                "MSG-T&V": (["text", "visual"], []), "MSG-T&A&V": (["audio", "text", "visual"], []),
                "MSG-T&A&V + MBA": (["audio", "text", "visual"], ["audio", "visual"])}
    assert list(HybridModal.ablations) == list(expected)
    for row, (msgs, mbas) in expected.items():
        model = build_model("hybrid_modal", SPEC, HybridModal.ablations[row]).eval()
        assert sorted(model.msgs) == msgs and sorted(model.mbas) == mbas, row
        assert set(model.loss_terms(batch, model(batch))) == {"task"}, row     # the shift loss comes last
    proposed = build_model("hybrid_modal", SPEC).eval()
    assert set(proposed.loss_terms(batch, proposed(batch))) == {"task", "shift_text", "shift_audio", "shift_visual"}
    # MSG-A off: MSG-V still takes M_ta*, so only MBA-A is built
    assert sorted(build_model("hybrid_modal", SPEC, {"use_msg_a": False}).mbas) == ["audio"]


def test_absent_modalities_and_clear_errors(tokenizer) -> None:
    model = build_model("hybrid_modal", SPEC).eval()
    batch = make_batch(tokenizer, 3)
    batch["present"] = torch.tensor([[1.0, 0, 1], [1, 1, 0], [1, 1, 1]])
    with torch.no_grad():
        before = model(batch).prediction
        changed = dict(batch)
        changed["aligned_audio"] = batch["aligned_audio"].clone()
        changed["aligned_audio"][0] *= -5
        torch.testing.assert_close(model(changed).prediction, before)
    no_index = {k: v for k, v in batch.items() if k != "text_word_index"}
    with pytest.raises(ValueError, match="text_word_index"):
        model(no_index)
    with pytest.raises(ConfigError, match="model.hybrid_modal.text_model"):
        build_model("hybrid_modal", SPEC, {"text_model": "bert-base-uncased-not-in-any-cache"})
    with pytest.raises(ConfigError, match=r"model.hybrid_modal.msg_t_after_layer must be in \[0, 6\]"):
        build_model("hybrid_modal", SPEC, {"msg_t_after_layer": 7})
    with pytest.raises(ConfigError, match="rnn"):
        build_model("hybrid_modal", SPEC, {"rnn": "transformer"})
    with pytest.raises(ConfigError, match="mba_text_kernel must be an odd"):
        build_model("hybrid_modal", SPEC, {"mba_text_kernel": 2})
    with pytest.raises(ConfigError, match="mba_pairing"):
        build_model("hybrid_modal", SPEC, {"mba_pairing": "diagonal"})
    with pytest.raises(ValueError, match="max_tokens"):
        build_model("hybrid_modal", SPEC, {"max_tokens": 4}).eval()(batch)
    gru = build_model("hybrid_modal", SPEC, {"rnn": "gru", "bidirectional": True, "msg_t_after_layer": 0,
                                             "gradient_checkpointing": True})
    assert gru.widths == {"text": 384, "audio": 32, "visual": 14}       # bGRU: 2 d_m (Section III-B)
    assert all(layer.gradient_checkpointing for layer in gru.text_encoder.model.encoder.layer)
    gru.loss_terms(batch, out := gru(batch))["task"].backward()
    assert out.prediction.shape == (3, 1) and gru.msgs["text"].gates["audio"].weight.grad.abs().sum() > 0


# --- recipe and real data ---------------------------------------------------------------------------------------
def test_paper_recipes_hold_section_iv_e() -> None:
    from models.recipes import load_recipe, recipe_names

    assert recipe_names("hybrid_modal") == ["paper:mosei", "paper:mosi"]
    for name, epochs in (("paper:mosi", 40), ("paper:mosei", 20)):
        r = load_recipe("hybrid_modal", name)
        t = r["train"]
        assert (t["optimizer"], t["lr"], t["schedule"], t["batch_size"], t["eval_batch_size"], t["epochs"],
                t["monitor"], t["seeds"]) == ("adamw", 2e-5, "linear", 48, 128, epochs, "loss:task", [1, 2, 3, 4, 5])
        assert 0 < t["warmup"] < 1 and r["task"] == {"loss": "mse"} and "IV-E" in r["source"]


@pytest.mark.slow
def test_overfits_the_real_cached_clips(sample_cache, tmp_path) -> None:
    """All ten sample clips' real features (word-aligned acoustic and FER, MiniLM token ids), the full model with
    the paper's recipe at a higher constant learning rate: the train loss (eval mode, MSE) gets low."""
    from models.training import train_model

    cache, media_root, labels = sample_cache
    every_row = tmp_path / "all_train.csv"
    lines = labels.read_text(encoding="utf-8").splitlines()
    every_row.write_text("\n".join([lines[0]] + [line.rsplit(",", 1)[0] + ",train" for line in lines[1:]]) + "\n",
                         encoding="utf-8")
    run = train_model(cache, every_row, "hybrid_modal", tmp_path / "overfit", media_root=media_root, device="cpu",
                      recipe="paper:mosi", options={
                          "model": {"dropout": 0.0}, "data": {"valid_fraction": 0.0},
                          "train": {"epochs": 12, "lr": 2e-4, "warmup": 0.0, "schedule": "constant", "seeds": [1],
                                    "batch_size": 10, "cpu_threads": 1, "checkpoint_every": 100}})
    record = json.loads((run / "run.json").read_text(encoding="utf-8"))
    assert record["dataset"]["splits"] == {"train": 10}
    assert {m: record["spec"]["dims"][m] for m in ("audio", "visual")} == {m: OUR_SPEC.dims[m] for m in NONVERBAL}
    summary = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    losses = [h["monitored"] for h in summary["history"]]        # the train split's MSE in eval mode
    assert losses[0] > 1.0 and min(losses) < 0.1, [round(v, 3) for v in losses]
    assert summary["metrics"]["train"]["mae"] < 0.3


@pytest.mark.slow
def test_trains_through_the_cli_with_the_paper_recipe(sample_cache, tmp_path, capsys) -> None:
    from flows.cli import main

    cache, media_root, labels = sample_cache
    out, opts = tmp_path / "recipe", tmp_path / "two_epochs.yaml"
    opts.write_text("train: {epochs: 2, cpu_threads: 1}\n", encoding="utf-8")
    rc = main(["train", "--cache", str(cache), "--labels", str(labels), "--media-root", str(media_root),
               "--model", "hybrid_modal", "--recipe", "paper:mosi", "--options", str(opts), "--seeds", "1,2",
               "--out", str(out), "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    record = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert record["recipe"] == "paper:mosi" and record["task"]["loss"] == "mse"
    train = record["train"]
    assert (train["lr"], train["monitor"], train["batch_size"], train["schedule"]) == (2e-5, "loss:task", 48, "linear")
    seeds = json.loads((out / "seeds.json").read_text(encoding="utf-8"))
    assert seeds["seeds"] == [1, 2] and seeds["monitor"] == "loss:task"
    assert set(seeds["metrics"]["valid"]["mae"]) == {"mean", "std", "values"}


@pytest.mark.slow
def test_table_iii_and_iv_rows_run_through_sentiflow_ablate(sample_cache, tmp_path, capsys) -> None:
    import pandas as pd

    from flows.cli import main

    cache, media_root, labels = sample_cache
    out = tmp_path / "ablation"
    rc = main(["ablate", "--cache", str(cache), "--labels", str(labels), "--media-root", str(media_root),
               "--model", "hybrid_modal", "--recipe", "paper:mosi", "--epochs", "1", "--seeds", "1",
               "--modality-sets", "TAV,TA,TV,T,AV", "--components", "MSG-T&A&V + MBA", "--eval-split", "valid",
               "--out", str(out), "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    table = pd.read_csv(out / "table.csv")
    cells = set(zip(table["modalities"], table["components"]))
    assert cells == {("TAV", "full"), ("TAV", "MSG-T&A&V + MBA"), ("TA", "full"), ("TV", "full"), ("T", "full"),
                     ("AV", "full")}
    assert table.drop(columns=["modalities", "components"]).notna().all().all()
