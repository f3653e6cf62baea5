"""FDMER as published (Yang et al. 2022): stage shapes at the paper's sizes, parameter counts of the fidelity table,
each loss term against a hand computation, where each term's gradient goes, Table 4's rows, and real training."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch
from torch.nn import functional as F

from models.base import ModelSpec, count_parameters
from models.registry import build_model, get_model_class
from models.zoo.fdmer import additive_angular_margin_logits, attention_heads, consistency_loss, disparity_loss, hsic
from pipeline.config import ConfigError
from tests.helpers.batches import random_aligned_batch
from tests.helpers.paths import ROOT

FIDELITY = ROOT / "docs" / "fidelity" / "fdmer.md"
PAPER_GLOVE = {"text": 300, "audio": 74, "visual": 35}    # Section 4.2: GloVe, COVAREP, Facet (MOSI / MOSEI)
PAPER_BERT = {"text": 768, "audio": 74, "visual": 35}     # BERT-base hidden states instead of GloVe
OURS = {"text": 384, "audio": 31, "visual": 135}          # default word-aligned features: MiniLM, acoustic, FER
WORDS = 50                                                # word-aligned steps (the aligned extractor's seq_len)
DIMS = {"text": 24, "audio": 16, "visual": 7}
# reduced sizes for the fast tests (the paper's: d_k 256, d 128, 5/4/4 encoder layers)
SMALL = {"d_k": 32, "d": 16, "encoder_layers": {"text": 1, "audio": 1, "visual": 1}, "dropout": 0.0}
MODS = ("text", "audio", "visual")

pytestmark = pytest.mark.usefixtures("one_thread")


def spec_of(dims: dict[str, int], steps: int = 10, **kw) -> ModelSpec:
    return ModelSpec(dims=dims, seq_lens={m: steps for m in dims}, **kw)


def make_batch(n: int, seed: int = 0, dims: dict[str, int] = DIMS, steps: int = 10) -> dict[str, torch.Tensor]:
    """Word-aligned random features with ragged word masks, every modality present, labels in [-3, 3]."""
    batch = random_aligned_batch(spec_of(dims, steps), n, steps, seed)
    batch["present"] = torch.ones(n, 3)
    return batch


def small_model(**overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("fdmer", spec_of(DIMS, loss="mse"), {**SMALL, **overrides})


# ---- sizes


def test_encoder_heads_divide_every_feature_width() -> None:
    assert [attention_heads(w, 8) for w in (300, 74, 35, 768, 384, 31, 135)] == [6, 2, 7, 8, 8, 1, 5]


def test_stage_shapes_at_the_papers_input_sizes() -> None:
    """Section 3's shapes, seen through forward hooks: Z_m (L x d_m) then d_k, C_m and P_m in R^{d_k}, h-hat in
    R^{128}, W_D in R^{128 x 3}, F_so in R^{4 d_k} with 4 d_k x 4 d_k embeddings, Y_fin in R^{d_k}."""
    torch.manual_seed(0)
    model = build_model("fdmer", spec_of(PAPER_GLOVE, WORDS)).eval()
    assert [len(model.encoders[m].encoder.layers) for m in MODS] == [5, 4, 4]
    seen: dict[str, tuple[int, ...]] = {}

    def hook(name):
        def record(module, args, out):
            seen[name] = tuple((out[0] if isinstance(out, tuple) else out).shape)
        return record

    for m in MODS:
        model.encoders[m].encoder.register_forward_hook(hook(f"Z_{m} sequence"))
        model.encoders[m].fc.register_forward_hook(hook(f"Z_{m}"))
        model.private[m].register_forward_hook(hook(f"P_{m}"))
    model.common.register_forward_hook(hook("C_m"))
    model.discriminator_fc.register_forward_hook(hook("h_hat"))
    model.fusion.norm_source.register_forward_hook(hook("F_so"))
    model.fusion.query.register_forward_hook(hook("Q_so"))
    model.fusion.target[0].register_forward_hook(hook("G_c"))
    model.fusion.register_forward_hook(hook("Y_fin"))
    model.head.register_forward_hook(hook("prediction"))
    out = model(make_batch(2, dims=PAPER_GLOVE, steps=WORDS))
    for m in MODS:
        assert seen[f"Z_{m} sequence"] == (2, WORDS, PAPER_GLOVE[m])
        assert seen[f"Z_{m}"] == seen[f"P_{m}"] == (2, 256)
    assert seen["C_m"] == (2, 256) and out.representations["common"].shape == (2, 256)
    assert seen["h_hat"] == (2, 128) and tuple(model.discriminator_weight.shape) == (128, 3)
    assert seen["F_so"] == seen["Q_so"] == (2, 4 * 256) and tuple(model.fusion.query.weight.shape) == (1024, 1024)
    assert seen["G_c"] == (2, 256) and tuple(model.fusion.target[0].weight.shape) == (256, 256)
    assert seen["Y_fin"] == (2, 256) and seen["prediction"] == (2, 1)
    assert out.extras["cmaf_attention"].shape == (2, 4, 4) and out.extras["fusion_weights"].shape == (2, 4)
    assert torch.allclose(out.extras["fusion_weights"].sum(1), torch.ones(2))
    probs = out.extras["modality_probabilities"]["private_text"]
    assert probs.shape == (2, 3) and torch.allclose(probs.sum(1), torch.ones(2))


def fidelity_rows() -> dict[str, tuple[dict[str, int], int]]:
    """The parameter counts docs/fidelity/fdmer.md prints: label -> (input widths, count)."""
    rows = {}
    for model, dims in (("paper, GloVe features", PAPER_GLOVE), ("paper, BERT features", PAPER_BERT),
                        ("SentiFlow default features", OURS)):
        rows[model] = (dims, count_parameters(build_model("fdmer", spec_of(dims, WORDS))))
    return rows


def test_the_fidelity_table_prints_the_exact_parameter_counts() -> None:
    doc = FIDELITY.read_text(encoding="utf-8")
    for label, (dims, count) in fidelity_rows().items():
        row = f"| {label} | {dims['text']}, {dims['audio']}, {dims['visual']} | {count:,} |"
        assert row in doc, f"{FIDELITY.name} lacks the row {row}"
    model = build_model("fdmer", spec_of(PAPER_GLOVE, WORDS))
    parts = {"transformer encoders + FC to d_k (Eq. 1)": [model.encoders],
             "common encoder I (Eq. 2)": [model.common], "private encoders S_t, S_a, S_v (Eq. 3)": [model.private],
             "discriminator F and W_D (Eq. 8)": [model.discriminator_fc, model.discriminator_weight],
             "CMAF phases 1 and 2 (Eqs. 12-17)": [model.fusion], "prediction head": [model.head]}
    total = 0
    for label, part in parts.items():
        n = sum(p.numel() for x in part for p in (x.parameters() if isinstance(x, torch.nn.Module) else [x]))
        total += n
        assert f"| {label} | {n:,} |" in doc, label
    assert total == count_parameters(model)


# ---- loss terms by hand


def test_hsic_by_hand_and_on_selected_rows() -> None:
    x = torch.tensor([[1.0], [2.0], [3.0]])
    y = torch.tensor([[1.0], [0.0], [2.0]])
    # one-dimensional inner-product kernels: Tr(U xx^T U yy^T) = (x_c . y_c)^2, x_c = (-1, 0, 1), y_c = (0, -1, 1)
    assert hsic(x, y).item() == pytest.approx(1.0 / 4, rel=1e-5)    # float32: 0.24999967 on an AMD EPYC's BLAS
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(9, 5, generator=g), torch.randn(9, 5, generator=g)
    keep = torch.tensor([1, 0, 1, 1, 0, 1, 1, 1, 0.0])
    assert hsic(a, b, keep).item() == pytest.approx(hsic(a[keep > 0], b[keep > 0]).item(), rel=1e-5)
    assert hsic(a, 2 * a).item() == pytest.approx(4 * hsic(a, a).item(), rel=1e-5)   # no normalisation
    assert hsic(a, b, torch.tensor([1.0] + [0.0] * 8)).item() == 0.0                  # one sample: nothing to say


def test_disparity_is_the_mean_hsic_of_the_private_pairs() -> None:
    g = torch.Generator().manual_seed(1)
    p = [torch.randn(6, 4, generator=g) for _ in range(3)]
    want = (hsic(p[0], p[1]) + hsic(p[0], p[2]) + hsic(p[1], p[2])) / 3
    assert disparity_loss(p, torch.ones(6, 3)).item() == pytest.approx(want.item())


def test_consistency_by_hand() -> None:
    c_t = torch.tensor([[1.0, 0.0], [0.0, 1.0]])      # S_t = I
    c_a = torch.tensor([[1.0, 0.0], [2.0, 0.0]])      # S_a = all ones
    c_v = torch.tensor([[3.0, 4.0], [0.0, 2.0]])      # normalised (0.6, 0.8), (0, 1): S_v = [[1, .8], [.8, 1]]
    # ||S_t - S_a||^2 = 2, ||S_t - S_v||^2 = 2 * 0.64, ||S_a - S_v||^2 = 2 * 0.04; mean over the three pairs
    assert consistency_loss([c_t, c_a, c_v], torch.ones(2, 3)).item() == pytest.approx((2 + 1.28 + 0.08) / 3)
    # sample 1 lacks visual: the pairs with visual keep only entry (0, 0), which is 0 for both
    present = torch.tensor([[1.0, 1, 1], [1, 1, 0]])
    assert consistency_loss([c_t, c_a, c_v], present).item() == pytest.approx(2 / 3)


def test_angular_margin_loss_by_hand() -> None:
    weight = torch.eye(3)                                    # W_D's columns (as rows here)
    h = torch.tensor([[2.0, 2.0, 0.0]])                      # 45 degrees from classes 0 and 1, 90 from class 2
    alpha, tau = 4.0, 0.5
    logits = additive_angular_margin_logits(h, weight, torch.tensor([0]), tau, alpha)
    target = math.exp(alpha * math.cos(math.pi / 4 + tau))
    others = math.exp(alpha * math.cos(math.pi / 4)) + math.exp(alpha * math.cos(math.pi / 2))
    assert F.cross_entropy(logits, torch.tensor([0])).item() == pytest.approx(-math.log(target / (target + others)),
                                                                             rel=1e-5)
    # past pi - tau the target logit keeps falling (ArcFace's continuation) instead of rising again
    far = additive_angular_margin_logits(torch.tensor([[-1.0, 0.1, 0.0]]), weight, torch.tensor([0]), tau, alpha)
    assert far[0, 0] < alpha * math.cos(math.pi - tau)


def test_adversarial_terms_by_hand() -> None:
    """L_ami and L_ams = beta/n sum_i sum_m L_am, with Eq. 9 written out on D's own F and W_D."""
    model = small_model().eval()
    batch = make_batch(5)
    out = model(batch)
    terms = model.loss_terms(batch, out)
    w = F.normalize(model.discriminator_weight.detach().T, dim=-1)
    cfg = model.config
    for term, kind in (("ami", "common"), ("ams", "private")):
        total = 0.0
        for y, m in enumerate(MODS):
            for i in range(5):
                hat = F.normalize(model.discriminator_fc(out.representations[f"{kind}_{m}"][i]).detach(), dim=-1)
                theta = torch.arccos(w @ hat)
                num = math.exp(cfg.scale * math.cos(theta[y].item() + cfg.margin))
                rest = sum(math.exp(cfg.scale * math.cos(theta[k].item())) for k in range(3) if k != y)
                total += -math.log(num / (num + rest))
        assert terms[term].item() == pytest.approx(cfg.beta * total / 5, rel=1e-4), term
    assert set(terms) == {"task", "ami", "ams", "con", "dis"}
    assert terms["task"].item() == pytest.approx(F.mse_loss(out.prediction.squeeze(-1), batch["label"]).item())
    assert terms["con"].item() == pytest.approx(
        cfg.gamma * consistency_loss([out.representations[f"common_{m}"] for m in MODS], torch.ones(5, 3)).item())


def test_cross_entropy_discriminator_is_eq_8_without_normalisation() -> None:
    model = small_model(discriminator_loss="cross_entropy").eval()
    batch = make_batch(4)
    out = model(batch)
    plain = torch.cat([model.discriminator_fc(out.representations[f"private_{m}"]) @ model.discriminator_weight
                       for m in MODS])
    target = torch.arange(3).repeat_interleave(4)
    want = F.cross_entropy(plain, target, reduction="sum") / 4
    assert model.loss_terms(batch, out)["ams"].item() == pytest.approx(model.config.beta * want.item(), rel=1e-5)


# ---- gradients


def grad_groups(model, term: torch.Tensor) -> dict[str, float]:
    """Gradient mass of one term on each part of the model."""
    groups = {"encoders": model.encoders, "common": model.common, "private": model.private,
              "discriminator": [model.discriminator_fc.weight, model.discriminator_fc.bias, model.discriminator_weight],
              "fusion": model.fusion, "head": model.head}
    flat = {k: list(v.parameters()) if isinstance(v, torch.nn.Module) else v for k, v in groups.items()}
    params = [p for ps in flat.values() for p in ps]
    grads = torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
    mass, i = {}, 0
    for k, ps in flat.items():
        mass[k] = sum(float(g.abs().sum()) for g in grads[i: i + len(ps)] if g is not None)
        i += len(ps)
    return mass


def test_each_term_trains_what_it_must_and_nothing_else() -> None:
    model = small_model()
    batch = make_batch(7)
    terms = model.loss_terms(batch, model(batch))
    reaches = {"task": {"encoders", "common", "private", "fusion", "head"},
               "ami": {"encoders", "common", "discriminator"}, "ams": {"encoders", "private", "discriminator"},
               "con": {"encoders", "common"}, "dis": {"encoders", "private"}}
    for name, want in reaches.items():
        mass = grad_groups(model, terms[name])
        assert {k for k, v in mass.items() if v > 0} == want, (name, mass)


def test_the_common_path_is_reversed_and_the_discriminator_is_not() -> None:
    """Eq. 10 through the gradient reversal layer: the common encoder climbs L_ami while D descends it."""
    model = small_model().eval()
    batch = make_batch(6)
    out = model(batch)
    common = [out.representations[f"common_{m}"] for m in MODS]
    wrt = common + [model.discriminator_fc.weight, model.discriminator_weight]
    g_ami = torch.autograd.grad(model.loss_terms(batch, out)["ami"], wrt, retain_graph=True)
    g_plain = torch.autograd.grad(model.config.beta * model.adversarial_loss(common, out.extras["present"]), wrt)
    for k, (a, b) in enumerate(zip(g_ami, g_plain)):
        assert b.abs().sum() > 0
        torch.testing.assert_close(a, -b if k < len(common) else b, atol=1e-6, rtol=1e-5)


def test_the_prediction_follows_the_fused_representation() -> None:
    model = small_model().eval()
    batch = make_batch(3)
    base = model(batch).prediction
    moved = {k: v.clone() for k, v in batch.items()}
    moved["aligned_audio"][1] += 3.0
    changed = model(moved).prediction
    assert torch.allclose(changed[[0, 2]], base[[0, 2]]) and not torch.allclose(changed[1], base[1])


# ---- missing modalities, Table 4, settings


def test_an_absent_modality_gets_no_weight_and_changes_nothing() -> None:
    model = small_model().eval()
    batch = make_batch(4)
    batch["present"] = torch.tensor([[1.0, 1, 1], [1, 1, 0], [1, 1, 1], [0, 1, 1]])
    out = model(batch)
    w = out.extras["modality_attention"]
    assert list(w) == ["common", "private_text", "private_audio", "private_visual"]
    assert w["private_visual"][1].item() == 0 and w["private_text"][3].item() == 0
    assert out.extras["cmaf_attention"][1, :, 3].abs().max().item() == 0        # no target attends to it
    changed = {k: v.clone() for k, v in batch.items()}
    changed["aligned_visual"][1] = torch.randn_like(changed["aligned_visual"][1]) * 9
    assert torch.allclose(model(changed).prediction, out.prediction, atol=1e-5)
    terms = model.loss_terms(batch, out)
    assert all(torch.isfinite(v) for v in terms.values())
    assert model.loss_terms(changed, model(changed))["dis"].item() == pytest.approx(terms["dis"].item(), rel=1e-5)


EXPECTED_TERMS = {"w/o L_ami+L_ams": {"task", "con", "dis"}, "w/o L_con": {"task", "ami", "ams", "dis"},
                  "w/o L_dis": {"task", "ami", "ams", "con"}, "non-disentangled": {"task"}}


@pytest.mark.parametrize("row", list(get_model_class("fdmer").ablations))
def test_every_table4_row_builds_and_trains_every_parameter(row: str) -> None:
    full = small_model()
    model = small_model(**get_model_class("fdmer").ablations[row])
    batch = make_batch(7)
    out = model(batch)
    terms = model.loss_terms(batch, out)
    assert set(terms) == EXPECTED_TERMS.get(row, {"task", "ami", "ams", "con", "dis"})
    assert out.prediction.shape == (7, 1) and all(torch.isfinite(v) for v in terms.values())
    sum(terms.values()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    if row in ("w/o L_con", "w/o L_dis", "cross-entropy"):
        assert count_parameters(model) == count_parameters(full)       # a loss changes, the network does not
    else:
        assert count_parameters(model) < count_parameters(full)


def test_table4_fusions_and_parts() -> None:
    batch = make_batch(3)
    common_only = small_model(fuse_private=False).eval()
    assert list(common_only(batch).extras["modality_attention"]) == ["common"]
    plain = small_model(disentangle=False, use_adversarial=False, use_consistency=False, use_disparity=False).eval()
    assert list(plain(batch).extras["modality_attention"]) == ["z_text", "z_audio", "z_visual"]
    equal = small_model(cmaf_phase2=False).eval()
    assert torch.allclose(equal(batch).extras["fusion_weights"], torch.full((3, 4), 0.25))
    for fusion, width in (("concat", 4 * 32), ("addition", 32), ("multiplication", 32)):
        model = small_model(fusion=fusion).eval()
        out = model(batch)
        assert out.representations["fused"].shape == (3, width) and "modality_attention" not in out.extras
    parts = torch.stack([small_model(fusion="addition").eval()(batch).representations[n]
                         for n in ("common", "private_text", "private_audio", "private_visual")], 1)
    model = small_model(fusion="multiplication").eval()
    torch.testing.assert_close(model(batch).representations["fused"], parts.prod(1))


def test_bimodal_fdmer_builds_with_a_two_class_discriminator() -> None:
    torch.manual_seed(0)
    dims = {"text": 24, "visual": 7}
    model = build_model("fdmer", spec_of(dims), SMALL).eval()
    batch = make_batch(4, dims=dims)
    out = model(batch)
    assert tuple(model.discriminator_weight.shape) == (16, 2) and out.extras["fusion_weights"].shape == (4, 3)
    assert all(torch.isfinite(v) for v in model.loss_terms(batch, out).values())


def test_contradictory_or_unknown_settings_are_refused_by_name() -> None:
    spec = spec_of(DIMS)
    cases = [({"disentangle": False}, "disentangle=false leaves no common or private"),
             ({"fusion": "sum"}, "fusion must be one of cmaf, concat, addition, multiplication"),
             ({"fusion": "concat", "cmaf_phase2": False}, "cmaf_phase1/cmaf_phase2"),
             ({"fuse_common": False, "fuse_private": False}, "nothing would be fused"),
             ({"discriminator_loss": "hinge"}, "discriminator_loss must be one of"),
             ({"nope": 1}, "model.fdmer.nope"),
             ({"encoder_layers": {"text": 5}}, "encoder_layers lacks entries for audio, visual")]
    for options, message in cases:
        with pytest.raises(ConfigError, match=re.escape(message)):
            build_model("fdmer", spec, options)
    with pytest.raises(ConfigError, match="at least two"):
        build_model("fdmer", spec_of({"audio": 16}))
    with pytest.raises(KeyError, match="aligned_text"):
        build_model("fdmer", spec, SMALL)({"text": torch.zeros(2, 3, 24)})


# ---- real data: the sample cache


def test_overfits_the_sample_cache_rows(sample_cache, tmp_path) -> None:
    """On the real word-aligned features of the bundled clips, with the MOSI recipe, the train loss falls to a
    small share of its start (a reduced width and depth keeps the test fast; the full model is trained below)."""
    from extractors.config import SentiFlowConfig
    from models.data import build_dataset
    from models.prepare import label_table
    from models.recipes import apply_recipe
    from models.trainer import Trainer
    from models.training import RunOptions, task_spec
    from pipeline.cache import FeatureCache

    cache, media_root, labels = sample_cache
    opts = RunOptions.from_dict(apply_recipe("fdmer", "paper:mosi", {
        "model": {"d_k": 64, "d": 32, "encoder_layers": {"text": 1, "audio": 1, "visual": 1}, "dropout": 0.0},
        "train": {"epochs": 30, "cpu_threads": 1}, "data": {"aligned": True}}))
    dataset = build_dataset(SentiFlowConfig(), FeatureCache(cache), label_table(labels, media_root), opts.data)
    assert dataset.dims == OURS and len(dataset.splits["train"]) == 6
    torch.manual_seed(0)
    model = build_model("fdmer", task_spec(opts, dataset), opts.model)
    state = Trainer(model, dataset, opts.train, tmp_path, torch.device("cpu")).fit()
    first, last = state["history"][0]["train"]["task"], state["history"][-1]["train"]["task"]
    assert first > 1.0 and last < 0.1 * first, (first, last)
    assert all(math.isfinite(v) for h in state["history"] for v in h["train"].values())


def test_trains_through_the_cli_with_the_paper_recipe(sample_cache, tmp_path) -> None:
    import yaml

    from flows.cli import main

    cache, media_root, labels = sample_cache
    opts = tmp_path / "opts.yaml"
    opts.write_text(yaml.safe_dump({"train": {"epochs": 1, "cpu_threads": 1}}), encoding="utf-8")
    run = tmp_path / "run"
    rc = main(["train", "--cache", str(cache), "--labels", str(labels), "--media-root", str(media_root),
               "--model", "fdmer", "--recipe", "paper:mosei", "--options", str(opts), "--out", str(run),
               "--device", "cpu"])
    assert rc == 0
    record = json.loads((run / "run.json").read_text(encoding="utf-8"))
    assert record["recipe"] == "paper:mosei" and record["task"]["loss"] == "mse"
    assert record["data"]["aligned"] is True and record["spec"]["dims"] == OURS
    assert record["parameters"] == fidelity_rows()["SentiFlow default features"][1]     # the paper-sized model
    assert (record["model_config"]["beta"], record["model_config"]["gamma"]) == (3e-2, 4e-2)
    train = record["train"]
    assert (train["optimizer"], train["lr"], train["batch_size"], train["weight_decay"], train["monitor"],
            train["epochs"]) == ("adam", 1e-3, 16, 0.0, "loss:task", 1)
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["epochs_run"] == 1 and set(metrics["history"][0]["train"]) == {"task", "ami", "ams", "con", "dis",
                                                                                  "total"}


def test_ablate_runs_table4_rows_and_modality_rows(sample_cache, tmp_path, capsys) -> None:
    import pandas as pd
    import yaml

    from flows.cli import main

    cache, media_root, labels = sample_cache
    opts = tmp_path / "opts.yaml"
    opts.write_text(yaml.safe_dump({"model": {"d_k": 32, "d": 16, "encoder_layers": {"text": 1, "audio": 1,
                                                                                      "visual": 1}},
                                    "train": {"epochs": 1, "batch_size": 4, "cpu_threads": 1, "patience": 0}}),
                    encoding="utf-8")
    out = tmp_path / "ablation"
    rc = main(["ablate", "--cache", str(cache), "--labels", str(labels), "--media-root", str(media_root),
               "--model", "fdmer", "--recipe", "paper:mosi", "--options", str(opts), "--out", str(out),
               "--device", "cpu", "--modality-sets", "T,TAV,AV", "--components", "w/o CMAF,cross-entropy",
               "--seeds", "1"])
    assert rc == 0
    assert "| TAV | w/o CMAF |" in capsys.readouterr().out
    table = pd.read_csv(out / "table.csv", dtype=str)
    assert list(zip(table["modalities"], table["components"])) == [
        ("TAV", "full"), ("TAV", "w/o CMAF"), ("TAV", "cross-entropy"), ("AV", "full")]
    assert not table.isna().any().any()
    record = json.loads((out / "experiment.json").read_text(encoding="utf-8"))
    assert "at least two" in record["settings"]["modality_sets_skipped"]["T"]
    configs = {r["cell"]["components"]: json.loads((out / r["run_dir"] / "run.json").read_text())["model_config"]
               for r in record["runs"] if r["cell"]["modalities"] == "TAV"}
    assert configs["w/o CMAF"]["fusion"] == "concat" and configs["full"]["fusion"] == "cmaf"
    assert configs["cross-entropy"]["discriminator_loss"] == "cross_entropy"
    assert configs["full"]["beta"] == 2e-2      # the recipe's weights under every member run


@pytest.mark.gpu
def test_trains_a_step_on_cuda_with_bf16_autocast() -> None:
    model = small_model().cuda()
    batch = {k: v.cuda() for k, v in make_batch(7).items()}
    with torch.autocast("cuda", dtype=torch.bfloat16):
        terms = model.loss_terms(batch, model(batch))
    assert all(torch.isfinite(v.float()) for v in terms.values())
    sum(terms.values()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
