"""Binary, 7-class and multi-label training runs on the real sample cache: run records, metrics, predictions."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pandas as pd
import pytest

from flows.cli import main
from pipeline.config import ConfigError

TRAIN = {"epochs": 2, "batch_size": 4, "cpu_threads": 1, "patience": 0}
MODEL = "vae_amdt_small"


def _in_unit(value: float) -> bool:
    return 0.0 <= value <= 1.0


def _emotion_labels(labels: Path, out: Path) -> Path:
    """The sample labels plus emotion columns derived from the sentiment score (intensities 0..3)."""
    rows = list(csv.DictReader(labels.read_text(encoding="utf-8").splitlines()))
    with out.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*rows[0].keys(), "happy", "sad", "surprise"])
        writer.writeheader()
        for r in rows:
            y = float(r["label"])
            writer.writerow({**r, "happy": max(y, 0.0), "sad": max(-y, 0.0), "surprise": 1.0 if abs(y) >= 2.5 else 0})
    return out


def test_binary_run_records_auto_pos_weight_and_evaluates(sample_cache, tmp_path) -> None:
    from models.evaluation import evaluate_run
    from models.training import train_model

    cache, media_root, labels = sample_cache
    run = train_model(cache, labels, MODEL, tmp_path / "binary", media_root=media_root, device="cpu",
                      options={"train": TRAIN, "task": {"kind": "binary", "pos_weight": "auto"}})
    record = json.loads((run / "run.json").read_text(encoding="utf-8"))
    assert record["task"]["kind"] == "binary" and record["task"]["pos_weight"] == "auto"
    # train labels 3, -3, 0, 1, -1, -2: 2 positive (> 0), 4 not -> neg/pos = 2
    assert record["pos_weight"] == [2.0] and record["spec"]["pos_weight"] == [2.0]
    assert record["spec"]["task"] == "binary" and record["spec"]["n_outputs"] == 1
    assert record["train"]["monitor"] == "f1" and record["train"]["monitor_mode"] == "max"
    summary = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    assert set(summary["metrics"]) == {"train", "valid", "test"}
    for m in summary["metrics"].values():
        assert {"acc2", "f1", "precision", "recall", "n"} <= set(m) and "mae" not in m
        assert all(_in_unit(m[k]) for k in ("acc2", "f1", "precision", "recall"))
    assert summary["monitor"] == "f1" and "f1" in summary["history"][0]["valid"]
    frame = pd.read_csv(run / "plots" / "valid" / "predictions.csv")
    assert list(frame.columns) == ["id", "label", "prediction", "predicted"]
    assert dict(zip(frame["id"], frame["label"])) == {"astro_front_04": 1, "astro_mirror_03": 0}
    assert frame["prediction"].between(0, 1).all() and (frame["predicted"] == (frame["prediction"] > 0.5)).all()
    assert (run / "plots" / "valid" / "pr_curve.png").stat().st_size > 1000

    m = evaluate_run(run, labels, cache, media_root=media_root, out_dir=tmp_path / "eval", device="cpu",
                     extract_missing=False)
    assert m["task"] == "binary" and m["n"] == 10 and m["n_pos"] == 4 and _in_unit(m["acc2"])
    evaluated = pd.read_csv(tmp_path / "eval" / "predictions.csv")
    assert len(evaluated) == 10 and set(evaluated["label"]) == {0, 1}
    assert (tmp_path / "eval" / "pr_curve.png").is_file() and "pr_curve" in m["plots"]


def test_seven_class_run_writes_class_probabilities(sample_cache, tmp_path) -> None:
    from models.training import train_model

    cache, media_root, labels = sample_cache
    run = train_model(cache, labels, MODEL, tmp_path / "acc7", media_root=media_root, device="cpu",
                      modalities=["text"], options={"train": TRAIN, "task": {"kind": "classification"}})
    record = json.loads((run / "run.json").read_text(encoding="utf-8"))
    assert record["spec"]["n_outputs"] == 7 and record["pos_weight"] is None
    assert record["train"]["monitor"] == "acc7"
    summary = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    for m in summary["metrics"].values():
        assert {"acc7", "f1_macro", "f1_weighted"} <= set(m) and _in_unit(m["acc7"]) and _in_unit(m["f1_macro"])
    frame = pd.read_csv(run / "plots" / "valid" / "predictions.csv")
    assert list(frame.columns) == ["id", "label", "prediction", *[f"prob_{k}" for k in range(7)]]
    # valid labels 2.0 -> class 5, -2.0 -> class 1
    assert dict(zip(frame["id"], frame["label"])) == {"astro_front_04": 5, "astro_mirror_03": 1}
    probs = frame[[f"prob_{k}" for k in range(7)]].to_numpy()
    assert abs(probs.sum(1) - 1).max() < 1e-5
    assert (probs.argmax(1) == frame["prediction"].to_numpy()).all()


def test_multilabel_cli_train_and_evaluate(sample_cache, tmp_path, capsys) -> None:
    cache, media_root, labels = sample_cache
    emo = _emotion_labels(labels, tmp_path / "emotions.csv")
    options = tmp_path / "options.yaml"
    options.write_text(json.dumps({"train": TRAIN}), encoding="utf-8")
    run = tmp_path / "emotions"
    rc = main(["train", "--cache", str(cache), "--labels", str(emo), "--media-root", str(media_root), "--model", MODEL,
               "--out", str(run), "--options", str(options), "--device", "cpu", "--modalities", "text,audio",
               "--task", "multilabel", "--label-columns", "happy,sad,surprise", "--pos-weight", "auto"])
    assert rc == 0
    assert "f1_mean=" in capsys.readouterr().out
    record = json.loads((run / "run.json").read_text(encoding="utf-8"))
    assert record["task"]["label_columns"] == ["happy", "sad", "surprise"] and record["task"]["pos_weight"] == "auto"
    # train rows 3, -3, 0, 1, -1, -2: happy 2 of 6, sad 3 of 6, surprise (|y| >= 2.5) 2 of 6
    assert record["pos_weight"] == pytest.approx([2.0, 1.0, 2.0])
    assert record["spec"]["n_outputs"] == 3 and record["train"]["monitor"] == "f1_mean"
    summary = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    train = summary["metrics"]["train"]
    for name in ("happy", "sad", "surprise"):
        assert _in_unit(train[f"f1_{name}"]) and _in_unit(train[f"wacc_{name}"])
    assert train["f1_mean"] == pytest.approx(sum(train[f"f1_{n}"] for n in ("happy", "sad", "surprise")) / 3)
    out = tmp_path / "eval"
    rc = main(["evaluate", "--model", str(run), "--labels", str(emo), "--cache", str(cache), "--media-root",
               str(media_root), "--out", str(out), "--device", "cpu", "--task", "multilabel"])
    assert rc == 0
    frame = pd.read_csv(out / "predictions.csv")
    assert list(frame.columns) == ["id", *[f"{p}_{n}" for n in ("happy", "sad", "surprise")
                                           for p in ("label", "prob", "pred")]]
    assert len(frame) == 10 and frame["label_happy"].sum() == 4 and frame["label_surprise"].sum() == 3
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["task"] == "multilabel" and not math.isnan(metrics["wacc_mean"])
    assert (out / "pr_curve.png").is_file()
    from models.report.build import build_report  # the report shows the per-emotion columns of both

    files = build_report([run, out], tmp_path / "report")
    markdown = files.markdown.read_text(encoding="utf-8")
    assert "F1 (mean)" in markdown and "F1 happy" in markdown and "F1 surprise" in markdown
    # evaluate refuses task flags that contradict the run's task
    rc = main(["evaluate", "--model", str(run), "--labels", str(emo), "--cache", str(cache), "--media-root",
               str(media_root), "--out", str(out), "--device", "cpu", "--task", "binary"])
    assert rc == 2 and "--task binary (the run has multilabel)" in capsys.readouterr().err


def test_missing_label_column_is_named(sample_cache, tmp_path) -> None:
    from models.training import train_model

    cache, media_root, labels = sample_cache
    with pytest.raises(ConfigError, match=r"column\(s\) 'joy' not in the labels"):
        train_model(cache, labels, MODEL, tmp_path / "x", media_root=media_root, device="cpu",
                    options={"train": TRAIN, "task": {"kind": "multilabel", "label_columns": ["joy"]}})


def test_experiments_run_classification_tasks(sample_cache, tmp_path) -> None:
    from models.experiments.ablation import run_ablation
    from models.experiments.cross_validation import run_cross_validation

    cache, media_root, labels = sample_cache
    emo = _emotion_labels(labels, tmp_path / "emotions.csv")
    tiny = {"epochs": 1, "batch_size": 4, "cpu_threads": 1, "patience": 0}
    multilabel = {"train": tiny,
                  "task": {"kind": "multilabel", "label_columns": ["happy", "sad"], "pos_weight": "auto"}}
    result = run_ablation(cache, emo, MODEL, tmp_path / "abl", modality_sets=["T"], components=[], seeds=(1,),
                          options=multilabel, device="cpu", media_root=media_root, eval_split="valid")
    assert list(result.table.columns) == ["modalities", "components", "F1 (mean)", "F1 happy", "F1 sad",
                                          "WAcc (mean)", "n"]
    assert result.table.notna().all().all()
    binary = {"train": tiny, "task": {"kind": "binary"}}
    cv = run_cross_validation(cache, labels, MODEL, tmp_path / "cv", folds=3, standard_split=False, options=binary,
                              device="cpu", media_root=media_root, modalities=["text"])
    assert {"Acc-2", "F1"} <= set(cv.table.columns)
    pooled = json.loads((tmp_path / "cv" / "pooled" / "seed1" / "metrics.json").read_text(encoding="utf-8"))
    assert pooled["n"] == 10 and pooled["n_pos"] == 4 and _in_unit(pooled["acc2"])


def test_same_command_gives_the_same_run(sample_cache, tmp_path) -> None:
    """Initial weights come from train.seed, not from whatever the global RNG held: two runs are identical."""
    import torch
    from safetensors.torch import load_file

    from models.training import train_model

    cache, media_root, labels = sample_cache
    runs = []
    for i in range(2):
        torch.rand(17 + i)          # disturb the global RNG differently before each run
        runs.append(train_model(cache, labels, MODEL, tmp_path / f"run{i}", media_root=media_root, device="cpu",
                                options={"train": TRAIN, "task": {"kind": "binary"}}))
    weights = [load_file(r / "model.safetensors") for r in runs]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    history = [json.loads((r / "metrics.json").read_text(encoding="utf-8"))["history"] for r in runs]
    assert history[0][0]["train"] == history[1][0]["train"]
