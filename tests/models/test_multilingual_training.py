"""The multilingual paper's models on the real sample cache: translations (a tiny random MarianMT model and the
labels' text_translation column) packed and fed end to end into the NCE loss, the start-up error without them,
each model overfitting the cached clips, and training through `sentiflow train --recipe paper:moseas`."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch

from extractors.config import SentiFlowConfig
from extractors.runner import ExtractionRunner
from flows.cli import main
from models.data import build_dataset
from models.registry import build_model
from models.training import RunOptions, set_model_data_needs, task_spec, train_model
from pipeline.cache import FeatureCache
from pipeline.config import ConfigError
from pipeline.labels import read_labels, row_extras
from tests.helpers.translation import tiny_marian

pytestmark = pytest.mark.usefixtures("one_thread")

# French translations of sample_videos/labels.csv (astro_cool/03 left without one)
FRENCH = {
    "astro_front_01": "J'ai absolument adoré ce film. Il était merveilleux et m'a rendu si heureux.",
    "astro_front_02": "Ce film était horrible. Je l'ai détesté, quelle affreuse perte de temps.",
    "astro_front_03": "Le film dure environ deux heures et sort vendredi.",
    "astro_front_04": "Le jeu des acteurs était vraiment bon et j'ai aimé l'histoire.",
    "astro_mirror_01": "La musique était belle et la fin plutôt agréable.",
    "astro_mirror_02": "Le milieu était un peu lent et assez décevant.",
    "astro_mirror_03": "Je n'ai pas aimé les personnages. Les dialogues étaient mauvais et ennuyeux.",
    "astro_cool_01": "Honnêtement, l'intrigue était faible et les blagues plutôt ennuyeuses.",
    "astro_cool_02": "Quel grand film ! La distribution était brillante et j'ai adoré chaque scène.",
}
SMALL = {"global_size": 24, "party_size": 24, "emotion_size": 16, "hidden_size": 16, "dropout": 0.0}


@pytest.fixture
def cache_copy(sample_cache, tmp_path: Path) -> Path:
    """A writable copy of the session's sample cache (tests here add translation entries)."""
    return Path(shutil.copytree(sample_cache[0], tmp_path / "cache"))


def write_labels(sample_cache, folder: Path, translations: bool, all_train: bool = False) -> Path:
    """The sample labels (optionally every row in train), with a text_translation column when asked."""
    _, media_root, labels = sample_cache
    rows = list(csv.DictReader(labels.read_text(encoding="utf-8").splitlines()))
    fields = list(rows[0]) + (["text_translation"] if translations else [])
    out = folder / ("labels_fr.csv" if translations else "labels.csv")
    with open(out, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        for r in rows:
            if all_train:
                r["mode"] = "train"
            if translations:
                r["text_translation"] = FRENCH.get(f"{r['video_id']}_{r['clip_id']}", "")
            w.writerow(r)
    return out


def test_tiny_marian_translations_feed_the_nce_loss_end_to_end(sample_cache, cache_copy, tmp_path):
    _, media_root, labels = sample_cache
    marian = tiny_marian(tmp_path / "marian")
    config = SentiFlowConfig.from_dict({"extraction": {"isolate": False, "options": {
        "translation": {"model": str(marian), "num_beams": 1, "max_new_tokens": 12}}}})
    table = read_labels(labels, media_root)
    summary = ExtractionRunner(config, FeatureCache(cache_copy), only=["translation", "translated_text"]).run(
        [r.path for r in table], progress=False, extras={r.path: row_extras(r) for r in table})
    assert summary.count("failed") == 0, summary.table()
    opts = RunOptions.from_dict({"model": SMALL})
    needed = set_model_data_needs("crosslingual_nce", opts)
    assert opts.data.aligned and opts.data.translations and "cross_lingual: visual" in needed
    dataset = build_dataset(config, FeatureCache(cache_copy), table, opts.data, translations_for=needed)
    train = dataset.splits["train"]
    x, mask = train.tensors["aligned_text_translation"], train.tensors["aligned_text_translation_mask"]
    assert x.shape[1:] == (50, 384) and (mask.sum(1) > 0).all()                    # every row got a translation
    torch.manual_seed(0)
    model = build_model("crosslingual_nce", task_spec(opts, dataset), opts.model).train()
    batch = train.batch(torch.arange(len(train)))
    terms = model.loss_terms(batch, model(batch))
    assert set(terms) == {"task", "augmentation", "cross_visual"}
    assert all(torch.isfinite(v) for v in terms.values()) and terms["cross_visual"].item() > 0
    sum(terms.values()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_without_translations_training_stops_at_start_with_one_line_naming_both_ways(sample_cache, tmp_path,
                                                                                      capsys):
    cache, media_root, labels = sample_cache
    rc = main(["train", "--cache", str(cache), "--labels", str(labels), "--media-root", str(media_root),
               "--model", "crosslingual_nce", "--out", str(tmp_path / "run"), "--device", "cpu"])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("sentiflow: error:")]
    assert rc == 2 and len(errors) == 1                    # one line (the rest of stderr is the progress bar)
    err = errors[0]
    assert "model.crosslingual_nce.cross_lingual: visual" in err
    assert "text_translation column" in err and "extraction.options.translation.model" in err
    assert not (tmp_path / "run" / "model.safetensors").exists()
    with pytest.raises(ConfigError, match="no row has a cached 'translated_text' translation"):
        train_model(cache, labels, "crosslingual_nce", tmp_path / "api", media_root=media_root, device="cpu")


@pytest.mark.parametrize("name, options", [
    ("multilogue", {"model": SMALL}),
    pytest.param("crosslingual_nce", {"model": {**SMALL, "nce_reduction": "mean"}}, marks=pytest.mark.slow),
    ("mult", {"model": {"dim": 16, "heads": 2, "layers": 1, "memory_layers": 1}}),
])
def test_each_model_overfits_the_cached_clips(name, options, sample_cache, cache_copy, tmp_path):
    _, media_root, _ = sample_cache
    labels = write_labels(sample_cache, tmp_path, translations=name == "crosslingual_nce", all_train=True)
    train = {"epochs": 40, "lr": 5e-3, "batch_size": 16, "patience": 0, "weight_decay": 0.0, "schedule": "constant"}
    run = train_model(cache_copy, labels, name, tmp_path / "run", media_root=media_root, device="cpu",
                      options={**options, "train": train, "data": {"valid_fraction": 0.0}},
                      recipe="paper:moseas", extract_missing=name == "crosslingual_nce")
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["splits"] == {"train": 10}
    first, last = metrics["history"][0]["train"], metrics["history"][-1]["train"]
    assert last["task"] < 0.2 * first["task"], (first, last)
    assert metrics["metrics"]["train"]["mae"] < 0.35, metrics["metrics"]["train"]
    if name == "crosslingual_nce":
        assert {"augmentation", "cross_visual"} <= set(last) and last["cross_visual"] < first["cross_visual"]


@pytest.mark.parametrize("name", ["multilogue", "crosslingual_nce", "mult"])
def test_trains_through_the_cli_with_the_papers_recipe(name, sample_cache, cache_copy, tmp_path):
    _, media_root, _ = sample_cache
    labels = write_labels(sample_cache, tmp_path, translations=name == "crosslingual_nce")
    opts = tmp_path / "opts.yaml"
    opts.write_text("train: {epochs: 2, cpu_threads: 1}\n", encoding="utf-8")
    run = tmp_path / "run"
    rc = main(["train", "--cache", str(cache_copy), "--labels", str(labels), "--media-root", str(media_root),
               "--model", name, "--recipe", "paper:moseas", "--options", str(opts), "--out", str(run),
               "--device", "cpu", "--extract"])
    assert rc == 0
    record = json.loads((run / "run.json").read_text(encoding="utf-8"))
    assert record["recipe"] == "paper:moseas" and record["train"]["optimizer"] == "adam"
    assert record["task"]["loss"] == ("l1" if name == "mult" else "mse")
    assert record["train"]["lr"] == (1e-3 if name == "mult" else 1e-4)
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["epochs_run"] == 2 and "valid" in metrics["metrics"]
    if name == "crosslingual_nce":
        assert record["data"]["translations"] and "cross_visual" in metrics["history"][-1]["train"]
    if name == "mult":
        assert record["data"]["sources"]["text"]["extractor"] == "aligned"   # word-aligned inputs, unaligned mode
