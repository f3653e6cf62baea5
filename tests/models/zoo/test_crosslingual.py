"""Cross-lingual NCE model, InfoNCE, few-shot rehearsal sampling and per-language evaluation.

Reduced config for the overfit test: hidden 24, projections 16, no dropout; 16 samples with sequence
lengths text 8 / audio 12 / visual 10 and dims 10 / 6 / 4, translations as a second text sequence.
"""

from __future__ import annotations

import math

import pytest
import torch

from models.base import ModelSpec, count_parameters
from models.experiments.rehearsal import RehearsalConfig, per_language, rehearsal_table
from models.nn.losses import info_nce
from models.registry import build_model
from pipeline.config import ConfigError
from pipeline.labels import LabelRow, LabelTable, read_labels
from tests.helpers.batches import random_batch

torch.set_num_threads(1)

TYPICAL = ModelSpec(dims={"text": 384, "audio": 31, "visual": 35}, seq_lens={"text": 50, "audio": 128, "visual": 64})
SMALL = ModelSpec(dims={"text": 10, "audio": 6, "visual": 4}, seq_lens={"text": 8, "audio": 12, "visual": 10})
SMALL_CFG = {"hidden_size": 24, "projection_dim": 16, "dropout": 0.0}


def make_batch(spec: ModelSpec, n: int, seed: int = 0, translations: bool = True) -> dict[str, torch.Tensor]:
    """Random unaligned features; translations are the transcript plus noise (row 2 has none)."""
    batch = random_batch(spec, n, seed, full_first=True, absent={})
    if translations:
        g = torch.Generator().manual_seed(seed + 1)
        batch["text_translation"] = batch["text"] + 0.3 * torch.randn(batch["text"].shape, generator=g)
        batch["text_translation_mask"] = batch["text_mask"].clone()
        batch["text_translation_mask"][2] = 0.0
    return batch


def test_info_nce_matches_its_definition():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    k = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    t = 0.5
    # cosine similarities [[1, 0], [0, 1]] / t: each row's positive has logit 2, the negative 0
    expected = -math.log(math.exp(2) / (math.exp(2) + 1))
    assert info_nce(q, k, t).item() == pytest.approx(expected, rel=1e-6)
    assert info_nce(q, k.flip(0), t).item() > info_nce(q, k, t).item()
    valid = torch.tensor([True, False])
    assert info_nce(q, k, t, valid=valid).item() == 0.0           # one pair: no negatives
    with pytest.raises(ValueError, match="temperature must be > 0"):
        info_nce(q, k, 0.0)


def test_default_config_shapes_and_terms():
    torch.manual_seed(0)
    model = build_model("crosslingual_nce", TYPICAL).train()
    assert count_parameters(model) > 0
    batch = make_batch(TYPICAL, n=4)
    out = model(batch)
    assert out.prediction.shape == (4, 1)
    assert out.representations["fused"].shape == out.representations["fused_translation"].shape == (4, 128)
    terms = model.loss_terms(batch, out)
    assert set(terms) == {"task", "augmentation", "nce", "intermodal"}
    assert all(torch.isfinite(v) and v.dim() == 0 for v in terms.values())


def test_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    model = build_model("crosslingual_nce", SMALL, SMALL_CFG).train()
    batch = make_batch(SMALL, n=6)
    terms = model.loss_terms(batch, model(batch))
    names, params = zip(*model.named_parameters())
    grads = torch.autograd.grad(sum(terms.values()), params, allow_unused=True)
    for n, g in zip(names, grads):
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0, n


def test_missing_translations_are_an_error_in_training_only():
    model = build_model("crosslingual_nce", SMALL, SMALL_CFG).train()
    batch = make_batch(SMALL, n=4, translations=False)
    with pytest.raises(KeyError, match="translation_nce_weight to 0"):
        model.loss_terms(batch, model(batch))
    model.eval()
    with torch.no_grad():
        assert set(model.loss_terms(batch, model(batch))) == {"task", "intermodal"}
    plain = build_model("crosslingual_nce", SMALL, {**SMALL_CFG, "augmentation_weight": 0.0,
                                                     "translation_nce_weight": 0.0}).train()
    assert set(plain.loss_terms(batch, plain(batch))) == {"task", "intermodal"}


def test_text_only_configuration():
    spec = ModelSpec(dims={"text": 10}, seq_lens={"text": 8})
    with pytest.raises(ConfigError, match="intermodal_nce_weight must be 0"):
        build_model("crosslingual_nce", spec, {"modalities_used": ["text"]})
    model = build_model("crosslingual_nce", spec, {**SMALL_CFG, "modalities_used": ["text"],
                                                   "intermodal_nce_weight": 0.0}).train()
    batch = {k: v for k, v in make_batch(SMALL, n=4).items() if k.startswith("text") or k == "label"}
    assert set(model.loss_terms(batch, model(batch))) == {"task", "augmentation", "nce"}


def test_overfits_sixteen_samples_and_aligns_translations():
    torch.manual_seed(0)
    model = build_model("crosslingual_nce", SMALL, SMALL_CFG).train()
    batch = make_batch(SMALL, n=16, seed=1)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    for step in range(200):
        opt.zero_grad()
        terms = model.loss_terms(batch, model(batch))
        if step == 0:
            first = {k: v.item() for k, v in terms.items()}
        sum(terms.values()).backward()
        opt.step()
    assert terms["nce"].item() < 0.5 * first["nce"]
    assert terms["intermodal"].item() < first["intermodal"]
    model.eval()
    with torch.no_grad():
        mae = (model.predict(batch) - batch["label"]).abs().mean().item()
    assert mae < 0.15, f"training MAE {mae:.3f}"


def _table() -> LabelTable:
    rows = [LabelRow(id=f"en{i}", text="", label=0.0, mode="train", language="en") for i in range(10)]
    rows += [LabelRow(id=f"es{i:02d}", text="", label=0.0, mode="train", language="es") for i in range(40)]
    rows += [LabelRow(id=f"es_v{i}", text="", label=0.0, mode="valid", language="es") for i in range(5)]
    rows += [LabelRow(id=f"de{i}", text="", label=0.0, mode="train", language="de") for i in range(5)]
    return LabelTable(rows, "mem")


def test_rehearsal_mixes_a_seeded_fraction_of_the_target_language():
    table = _table()
    cfg = RehearsalConfig(source_language="en", target_language="es", fraction=0.25, seed=7)
    out = rehearsal_table(table, cfg)
    train = out.split("train")
    assert sum(r.language == "en" for r in train) == 10
    picked = [r.id for r in train if r.language == "es"]
    assert len(picked) == 10                                     # 25 % of 40
    assert not any(r.language == "de" for r in train)            # other languages leave training
    assert len(out.split("valid")) == 5                          # evaluation rows all stay
    assert [r.id for r in rehearsal_table(table, cfg).split("train") if r.language == "es"] == picked
    other = rehearsal_table(table, RehearsalConfig("en", "es", 0.25, seed=8))
    assert {r.id for r in other.split("train") if r.language == "es"} != set(picked)
    zero = rehearsal_table(table, RehearsalConfig("en", "es", 0.0))
    assert {r.language for r in zero.split("train")} == {"en"}


def test_rehearsal_refuses_bad_settings():
    with pytest.raises(ConfigError, match="fraction must lie in"):
        rehearsal_table(_table(), RehearsalConfig("en", "es", 1.5))
    with pytest.raises(ConfigError, match="source_language 'fr' has no rows"):
        rehearsal_table(_table(), RehearsalConfig("fr", "es", 0.1))
    with pytest.raises(ConfigError, match="target_language 'it' has no rows"):
        rehearsal_table(_table(), RehearsalConfig("en", "it", 0.1))


def test_per_language_metrics_split_rows_by_language():
    pred = torch.tensor([1.0, 2.0, 3.0, 4.0])
    label = torch.tensor([1.0, 1.0, 3.0, 3.0])
    mae = lambda p, y: {"mae": (p - y).abs().mean().item()}  # noqa: E731
    out = per_language(mae, pred, label, ["en", "es", "en", "es"])
    assert out == {"all": {"mae": 0.5}, "en": {"mae": 0.0}, "es": {"mae": 1.0}}
    assert per_language(mae, pred, label, [0, 1, 0, 1])["0"] == {"mae": 0.0}     # language indices
    with pytest.raises(ValueError, match="must match"):
        per_language(mae, pred, label, ["en"])


def test_rehearsal_reads_the_language_column_of_a_label_file(tmp_path):
    csv = tmp_path / "labels.csv"
    lines = ["id,text,label,mode,language"]
    lines += [f"en_{i},good,1.0,train,en" for i in range(6)]
    lines += [f"fr_{i},bien,1.0,train,fr" for i in range(20)]
    lines += [f"fr_v{i},bien,1.0,test,fr" for i in range(3)]
    csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    table = rehearsal_table(read_labels(csv), RehearsalConfig("en", "fr", 0.1, seed=1))
    assert sorted(r.language for r in table.split("train")) == ["en"] * 6 + ["fr"] * 2
    assert len(table.split("test")) == 3


@pytest.mark.gpu
def test_trains_a_step_on_cuda():
    """Every tensor the model creates lands on the batch's device."""
    dev = torch.device("cuda")
    model = build_model("crosslingual_nce", SMALL, SMALL_CFG).to(dev).train()
    batch = {k: v.to(dev) for k, v in make_batch(SMALL, n=4).items()}
    terms = model.loss_terms(batch, model(batch))
    sum(terms.values()).backward()
    assert all(torch.isfinite(t) for t in terms.values())
    assert model.eval().predict(batch).device.type == "cuda"
