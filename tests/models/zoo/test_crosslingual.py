"""Cross-lingual NCE on Multilogue-Net (multilingual paper 5.1 / 7.1), few-shot rehearsal sampling and
per-language evaluation.

Reduced config: D_g = D_p = 24, D_e = D_h = 16, no dropout; word-aligned batches of 7 steps with dims 10 / 6 / 4,
translations as a second text sequence one word shorter (row 2 has none).
"""

from __future__ import annotations

import pytest
import torch

from models.base import ModelSpec
from models.experiments.rehearsal import RehearsalConfig, per_language, rehearsal_table
from models.nn.losses import nce_loss
from models.registry import build_model, get_model_class
from pipeline.config import ConfigError
from pipeline.labels import LabelRow, LabelTable, read_labels
from tests.helpers.batches import random_aligned_batch
from tests.helpers.fidelity import check_parameter_table

torch.set_num_threads(1)

TYPICAL = ModelSpec(dims={"text": 384, "audio": 31, "visual": 135})
SMALL = ModelSpec(dims={"text": 10, "audio": 6, "visual": 4})
SMALL_CFG = {"global_size": 24, "party_size": 24, "emotion_size": 16, "hidden_size": 16, "dropout": 0.0}


def make_batch(spec: ModelSpec, n: int, seed: int = 0, translations: bool = True, steps: int = 7
               ) -> dict[str, torch.Tensor]:
    """Random word-aligned features; translations are the transcript's first steps - 1 words plus noise (row 2 has
    none)."""
    batch = random_aligned_batch(spec, n, steps, seed)
    if translations:
        g = torch.Generator().manual_seed(seed + 1)
        words = batch["aligned_text"][:, :steps - 1]
        batch["aligned_text_translation"] = words + 0.3 * torch.randn(words.shape, generator=g)
        batch["aligned_text_translation_mask"] = batch["aligned_mask"][:, :steps - 1].clone()
        batch["aligned_text_translation_mask"][2] = 0.0
    return batch


def test_the_papers_default_row_is_l_cross_t_given_v_with_translation_augmentation():
    torch.manual_seed(0)
    model = build_model("crosslingual_nce", TYPICAL).train()
    assert model.aligned and model.config.cross_lingual == "visual" and model.config.translation_augmentation
    batch = make_batch(TYPICAL, n=4)
    out = model(batch)
    assert out.prediction.shape == (4, 1)
    translated = out.extras["translation"]
    assert out.representations["text|visual"].shape == translated.representations["text|visual"].shape == (4, 200)
    terms = model.loss_terms(batch, out)
    assert set(terms) == {"task", "augmentation", "cross_visual"}
    assert all(torch.isfinite(v) and v.dim() == 0 for v in terms.values())


def test_l_cross_is_the_nce_of_the_bimodal_states_of_the_transcript_and_its_translation():
    torch.manual_seed(0)
    model = build_model("crosslingual_nce", ModelSpec(dims=SMALL.dims, loss="mse"), SMALL_CFG).eval()
    batch = make_batch(SMALL, n=5)
    with torch.no_grad():
        out = model(batch)
        # T_2 | V_1: the translation in the text channel, the same audio and visual words
        inputs = model._inputs(batch)
        tr_x = torch.nn.functional.pad(batch["aligned_text_translation"], (0, 0, 0, 1))
        tr_mask = torch.nn.functional.pad(batch["aligned_text_translation_mask"], (0, 1))
        by_hand = model.encode({**inputs, "text": (tr_x, tr_mask)})
        assert torch.allclose(out.extras["translation"].representations["text|visual"],
                              by_hand.representations["text|visual"])
        terms = model.loss_terms(batch, out)
        with_tr = torch.tensor([True, True, False, True, True])
        expected = nce_loss(out.representations["text|visual"], by_hand.representations["text|visual"], with_tr)
        assert terms["cross_visual"].item() == pytest.approx(expected.item(), rel=1e-6)
        augmentation = ((by_hand.prediction.squeeze(-1) - batch["label"])[with_tr] ** 2).mean()
        assert terms["augmentation"].item() == pytest.approx(augmentation.item(), rel=1e-5)    # the task's MSE
        # a row without a translation takes no part: its (masked) translation may hold anything
        changed = {k: v.clone() for k, v in batch.items()}
        changed["aligned_text_translation"][2] += 50.0
        again = model.loss_terms(changed, model(changed))
        assert again["cross_visual"].item() == pytest.approx(terms["cross_visual"].item(), rel=1e-6)


def test_each_objective_is_selectable():
    batch = make_batch(SMALL, n=6)

    def terms(**cfg):
        torch.manual_seed(0)
        model = build_model("crosslingual_nce", SMALL, {**SMALL_CFG, **cfg}).train()
        return model.loss_terms(batch, model(batch))

    assert set(terms(cross_lingual="audio")) == {"task", "augmentation", "cross_audio"}
    both = terms(cross_lingual="both", translation_augmentation=False)
    assert set(both) == {"task", "cross_visual", "cross_audio"}       # L_cross(T|V, A) = their sum (the trainer's)
    assert set(terms(cross_lingual="none", inter_modal=True, translation_augmentation=False)) == {"task", "inter"}
    plain = terms(cross_lingual="none", translation_augmentation=False)
    assert set(plain) == {"task"}
    half = terms(cross_lingual="visual", translation_augmentation=False, cross_weight=0.5, nce_reduction="mean")
    full = terms(cross_lingual="visual", translation_augmentation=False)
    assert half["cross_visual"].item() == pytest.approx(0.5 * full["cross_visual"].item() / 5, rel=1e-5)  # 5 pairs


def test_which_settings_need_translations():
    cls = get_model_class("crosslingual_nce")
    cfg = cls.Config.from_dict({})
    assert cls.needs_translations(cfg) == ("model.crosslingual_nce.cross_lingual: visual and "
                                           "model.crosslingual_nce.translation_augmentation: true")
    assert cls.needs_translations(cls.Config.from_dict({"cross_lingual": "none", "inter_modal": True,
                                                        "translation_augmentation": False})) == ""
    assert get_model_class("multilogue").needs_translations(get_model_class("multilogue").Config()) == ""
    assert set(cls.ablations) == {"Multilogue-net", "L_cross(T|V)", "L_inter(T,V)", "L_cross(T|V), L_cross(T|A)"}


def test_a_training_batch_without_translations_is_a_clear_error_and_evaluation_needs_none():
    model = build_model("crosslingual_nce", SMALL, SMALL_CFG).train()
    batch = make_batch(SMALL, n=4, translations=False)
    with pytest.raises(ConfigError, match="text_translation column in the labels, or "
                                          "extraction.options.translation.model"):
        model.loss_terms(batch, model(batch))
    model.eval()
    with torch.no_grad():
        assert set(model.loss_terms(batch, model(batch))) == {"task"}


def test_settings_the_data_cannot_serve_are_refused():
    with pytest.raises(ConfigError, match="cross_lingual must be one of none, visual, audio, both"):
        build_model("crosslingual_nce", SMALL, {"cross_lingual": "video"})
    with pytest.raises(ConfigError, match="need text, visual, but the model has text"):
        build_model("crosslingual_nce", ModelSpec(dims={"text": 10}))
    with pytest.raises(ConfigError, match="use_pairwise_attention"):
        build_model("crosslingual_nce", SMALL, {"use_pairwise_attention": False})


def test_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    model = build_model("crosslingual_nce", SMALL, {**SMALL_CFG, "cross_lingual": "both", "inter_modal": True}).train()
    batch = make_batch(SMALL, n=7)
    terms = model.loss_terms(batch, model(batch))
    names, params = zip(*model.named_parameters())
    grads = torch.autograd.grad(sum(terms.values()), params, allow_unused=True)
    for n, g in zip(names, grads):
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0, n


def test_overfits_sixteen_samples_and_aligns_translations():
    torch.manual_seed(0)
    model = build_model("crosslingual_nce", SMALL, {**SMALL_CFG, "nce_reduction": "mean"}).train()
    batch = make_batch(SMALL, n=16, seed=1, steps=5)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(80):
        opt.zero_grad()
        terms = model.loss_terms(batch, model(batch))
        if step == 0:
            first = {k: v.item() for k, v in terms.items()}
        sum(terms.values()).backward()
        opt.step()
    assert terms["cross_visual"].item() < 0.5 * first["cross_visual"]
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


def test_transfer_defaults_to_the_papers_few_shot_fractions():
    """Section 7.3: French plus 13 % (230 segments of the filtered Spanish training set) or 1 % of Spanish."""
    from flows.cli import build_parser
    from models.experiments.language_transfer import DEFAULT_FRACTIONS, training_label

    assert DEFAULT_FRACTIONS == (0.0, 0.01, 0.13)
    args = build_parser().parse_args(["transfer", "--cache", "c", "--labels", "l", "--out", "o", "--source", "fr",
                                      "--targets", "es"])
    assert args.fractions is None                                   # run_transfer then takes DEFAULT_FRACTIONS
    rows = [LabelRow(id=f"fr{i}", text="", label=1.0, language="fr") for i in range(20)]
    rows += [LabelRow(id=f"es{i:04d}", text="", label=1.0, language="es") for i in range(1769)]
    picked = rehearsal_table(LabelTable(rows, "mem"), RehearsalConfig("fr", "es", 0.13, seed=0))
    assert sum(r.language == "es" for r in picked) == 230
    assert training_label("fr", "es", 0.13) == "fr + 13% es"


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


def test_the_fidelity_tables_parameter_counts():
    """docs/fidelity/crosslingual_nce.md prints these counts: each row's model is built and counted here."""
    check_parameter_table("crosslingual_nce", 2)


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
