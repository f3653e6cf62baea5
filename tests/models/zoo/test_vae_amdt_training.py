"""VAE-AMDT on real cached features of the bundled sample clips: it overfits them, and trains through the CLI
with the paper's recipe (two updates per batch, the recipe's optimiser settings in the run record)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from flows.cli import main

# SentiFlow's default features, as docs/fidelity/vae_amdt.md counts them ("SentiFlow features")
DEFAULT_DIMS = {"text": 384, "audio": 128, "visual": 135}


def all_train(labels: Path, out: Path) -> Path:
    """The sample labels with every clip in the train split (an overfitting check trains and scores on them all)."""
    rows = list(csv.DictReader(labels.read_text(encoding="utf-8").splitlines()))
    with out.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({**r, "mode": "train"} for r in rows)
    return out


@pytest.mark.slow
def test_overfits_the_real_sample_clips(sample_cache, tmp_path) -> None:
    """vae_amdt_small (VAE-AMDT's architecture and losses, narrower) learns the ten sample clips by heart.

    Measured: the reconstruction term first shrinks x_m and the prediction sits at the labels' mean for ~40
    epochs (5 updates each), then the means carry the labels; train MAE 0.25 by epoch 70, 0.07 by epoch 110.
    """
    from models.training import train_model

    cache, media_root, labels = sample_cache
    run = train_model(cache, all_train(labels, tmp_path / "labels.csv"), "vae_amdt_small", tmp_path / "run",
                      media_root=media_root, device="cpu",
                      options={"train": {"epochs": 120, "batch_size": 2, "lr": 1e-3, "patience": 0,
                                         "cpu_threads": 1, "checkpoint_every": 1000},
                               "task": {"loss": "mse"}, "data": {"valid_fraction": 0.0}})
    record = json.loads((run / "run.json").read_text(encoding="utf-8"))
    assert record["spec"]["dims"] == DEFAULT_DIMS and record["dataset"]["splits"] == {"train": 10}
    summary = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    history = summary["history"]
    assert set(history[0]["train"]) >= {"task", "vae", "generator", "discriminator"}
    first, best = history[0]["train"]["task"], min(h["train"]["task"] for h in history)
    train_mae = summary["metrics"]["train"]["mae"]        # the best epoch's weights; labels in [-3, 3], std 2.0
    assert first > 3.0 and best < 0.2 and train_mae < 0.3, (first, best, train_mae)


def test_trains_through_the_cli_with_the_paper_recipe(sample_cache, tmp_path, capsys) -> None:
    cache, media_root, labels = sample_cache
    options = tmp_path / "options.yaml"
    options.write_text("train: {epochs: 2, cpu_threads: 1}\n", encoding="utf-8")
    run = tmp_path / "run"
    rc = main(["train", "--cache", str(cache), "--labels", str(labels), "--media-root", str(media_root),
               "--model", "vae_amdt", "--recipe", "paper:mosi", "--options", str(options), "--device", "cpu",
               "--out", str(run)])
    assert rc == 0
    record = json.loads((run / "run.json").read_text(encoding="utf-8"))
    assert record["recipe"] == "paper:mosi" and record["task"]["loss"] == "mse" and record["spec"]["loss"] == "mse"
    train = record["train"]
    assert (train["optimizer"], train["lr"], train["weight_decay"], train["eps"], train["batch_size"]) == \
        ("adamw", 1e-4, 0.0, 1e-8, 4)
    assert (train["schedule"], train["min_lr"], train["warmup"], train["grad_clip"]) == ("cosine", 1e-8, 0.0, 0.0)
    assert train["epochs"] == 2                           # --options win over the recipe's 200
    assert record["model_config"]["hidden"] == 128 and record["model_config"]["beta_kl"] == 0.5
    checkpoint = json.loads((run / "checkpoint" / "last.json").read_text(encoding="utf-8"))
    assert sorted(checkpoint["optimizers"]) == ["discriminator", "model"]   # two optimisers: the min-max game
    summary = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    assert all(set(h["train"]) >= {"task", "vae", "generator", "discriminator"} for h in summary["history"])
    assert summary["parameters"] == 3_221_474            # docs/fidelity/vae_amdt.md: MOSI, SentiFlow features
