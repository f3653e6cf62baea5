"""Seq2Seq2Sentiment, its baseline and MCTN through `sentiflow train --recipe` and `sentiflow ablate` on the real
sample cache: the recipe's settings reach the run, the phases run in order, the Tables 1-3 metrics are reported,
and the papers' named table rows run as ablation cells.

Runs are tiny (one epoch per phase, one CPU thread); MCTN is built at hidden 64 (its recipe keeps the rest).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from flows.cli import main

TINY = {"epochs": 1, "batch_size": 4, "cpu_threads": 1}
RECIPES = [("seq2seq", "paper:mosi"), ("seq2seq_concat", "paper:mosi"), ("seq2seq_concat_out", "paper:mosi"),
           ("seq2seq_concat_both", "paper:mosi"), ("seq2seq_hier", "paper:mosi"), ("word_lstm", "paper:mosi"),
           ("mctn", "paper:moseas"), ("mctn", "paper:moseas-trimodal"), ("mctn", "paper:moseas-shared-encoder")]
PHASES = {"seq2seq_hier": ["translation", "translation2", "regression"], "word_lstm": None, "mctn": None}
TABLE_METRICS = ("precision_non0", "recall_non0", "f1_non0", "precision7", "recall7", "f1_7")


def _options(tmp_path: Path, options: dict) -> Path:
    path = tmp_path / "options.yaml"
    path.write_text(yaml.safe_dump(options), encoding="utf-8")
    return path


@pytest.mark.parametrize("model,recipe", RECIPES)
def test_trains_with_its_recipe_from_the_command_line(model, recipe, sample_cache, tmp_path):
    cache, media_root, labels = sample_cache
    options = {"train": TINY, **({"model": {"hidden_size": 64, "regressor_hidden": 32}} if model == "mctn" else {})}
    run = tmp_path / "run"
    rc = main(["train", "--cache", str(cache), "--labels", str(labels), "--media-root", str(media_root),
               "--model", model, "--recipe", recipe, "--options", str(_options(tmp_path, options)),
               "--out", str(run), "--device", "cpu"])
    assert rc == 0
    record = json.loads((run / "run.json").read_text(encoding="utf-8"))
    assert record["recipe"] == recipe and record["data"]["aligned"] is True
    train = record["train"]
    assert (train["optimizer"], train["lr"], train["weight_decay"], train["epochs"]) == ("adam", 1e-3, 0.0, 1)
    assert record["task"]["loss"] == "l1"
    summary = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    phases = PHASES.get(model, ["translation", "regression"])
    assert [p["name"] for p in summary.get("phases", [])] == (phases or [])
    assert summary["epochs_run"] == len(phases or [None])
    assert all(0.0 <= summary["metrics"]["valid"][k] <= 1.0 for k in TABLE_METRICS)
    if model == "mctn":
        config = record["model_config"]
        shared = recipe.endswith("shared-encoder")
        assert config["second_target"] == ([] if recipe == "paper:moseas" else ["visual"])
        assert config["shared_encoder"] is shared and config["target"] == ["audio"]
        terms = set(summary["history"][0]["train"]) - {"total"}
        assert terms == ({"task", "translation", "cycle"} | ({"translation2", "cycle2"}
                                                            if recipe != "paper:moseas" else set()))


def test_ablate_runs_the_papers_table_rows(sample_cache, tmp_path, capsys):
    """Table 2's "T -> V" and Table 3's "embed(T+A) -> V" as cells beside the full model (T -> A)."""
    cache, media_root, labels = sample_cache
    out = tmp_path / "ablation"
    rc = main(["ablate", "--cache", str(cache), "--labels", str(labels), "--media-root", str(media_root),
               "--model", "seq2seq", "--out", str(out), "--device", "cpu", "--seeds", "1", "--modality-sets", "TAV",
               "--components", "T -> V,embed(T+A) -> V", "--recipe", "paper:mosi",
               "--options", str(_options(tmp_path, {"train": TINY}))])
    assert rc == 0
    table = pd.read_csv(out / "table.csv", dtype=str)
    assert table["components"].tolist() == ["full", "T -> V", "embed(T+A) -> V"]
    record = json.loads((out / "experiment.json").read_text(encoding="utf-8"))
    configs = {r["cell"]["components"]: json.loads((out / r["run_dir"] / "run.json").read_text())["model_config"]
               for r in record["runs"]}
    assert configs["T -> V"]["target"] == ["visual"] and configs["T -> V"]["hierarchical_target"] == []
    assert configs["embed(T+A) -> V"]["hierarchical_target"] == ["visual"]
    assert "embed(T+A) -> V" in capsys.readouterr().out
