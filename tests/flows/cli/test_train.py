"""End to end on real clips: extract -> packed dataset -> `sentiflow train` -> `score` -> `evaluate`."""

from __future__ import annotations

import csv
import json

import pandas as pd
import pytest
import torch

from extractors.config import SentiFlowConfig
from extractors.runner import ExtractionRunner
from flows.cli import main
from models.data import DataConfig, PackedDataset, build_dataset
from pipeline.cache import FeatureCache
from pipeline.config import ConfigError
from pipeline.labels import read_labels
from tests.helpers.media_factory import make_clip
from tests.helpers.paths import ROOT

SAMPLES = ROOT / "sample_videos"

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """Six sample clips (MMSA layout) with a label file, plus a cache holding their log-mel features."""
    if not (SAMPLES / "labels.csv").is_file():
        pytest.skip("sample_videos/labels.csv is not there")
    rows = list(csv.DictReader((SAMPLES / "labels.csv").read_text(encoding="utf-8").splitlines()))[:6]
    d = tmp_path_factory.mktemp("labelled")
    with open(d / "labels.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["video_id", "clip_id", "text", "label", "mode"])
        w.writeheader()
        for i, r in enumerate(rows):
            w.writerow({k: r[k] for k in ("video_id", "clip_id", "text", "label")} | {"mode": "valid" if i % 3 == 2 else "train"})
    cache = FeatureCache(d / "cache")
    table = read_labels(d / "labels.csv", SAMPLES, require_media=True)
    ExtractionRunner(SentiFlowConfig(), cache, only=["logmel"]).run([r.path for r in table], progress=False)
    return d, table


def test_dataset_packs_real_features_and_round_trips(labelled, tmp_path):
    d, table = labelled
    data = DataConfig(modalities=["audio"])
    ds = build_dataset(SentiFlowConfig(), FeatureCache(d / "cache"), table, data, require_modalities=True)
    assert ds.modalities == ["audio"] and ds.dims == {"audio": 128} and ds.seq_lens == {"audio": 128}
    assert len(ds.splits["train"]) == 4 and len(ds.splits["valid"]) == 2
    tr = ds.splits["train"]
    assert tr.tensors["audio"].shape == (4, 128, 128) and tr.tensors["present"][:, 1].eq(1).all()
    assert torch.isfinite(tr.tensors["audio"]).all()
    ds.save(tmp_path / "packed")
    back = PackedDataset.load(tmp_path / "packed")
    for k, v in tr.tensors.items():
        assert torch.equal(back.splits["train"].tensors[k], v), k
    assert back.splits["train"].ids == tr.ids
    idx = torch.tensor([2, 0])
    assert torch.equal(tr.batch(idx)["label"], tr.tensors["label"][idx])


def test_dataset_masks_missing_modalities_and_skips_rows_without_features(labelled, tmp_path):
    d, table = labelled
    (tmp_path / "vid").mkdir()
    silent = make_clip(tmp_path / "vid" / "silent.mp4", seconds=1.0, audio=False)
    cache = FeatureCache(tmp_path / "cache")
    ExtractionRunner(SentiFlowConfig(), cache, only=["logmel"]).run([table.rows[0].path, str(silent)], progress=False)
    rows = [table.rows[0], type(table.rows[0])(id="vid_silent", text="", label=1.0, path=str(silent)),
            type(table.rows[0])(id="never", text="a transcript nobody extracted", label=0.5)]
    ds = build_dataset(SentiFlowConfig(), cache, rows, DataConfig(modalities=["audio"], valid_fraction=0))
    reasons = {s["id"]: s["reason"] for s in ds.skipped}
    assert "no audio stream" in reasons["vid_silent"]
    assert "not extracted" in reasons["never"]
    assert len(ds.splits["train"]) == 1
    with pytest.raises(ConfigError, match="no labelled row has cached features"):
        build_dataset(SentiFlowConfig(), cache, rows[1:], DataConfig(modalities=["audio"]))
    with pytest.raises(ConfigError, match="unknown modality"):
        build_dataset(SentiFlowConfig(), cache, rows, DataConfig(modalities=["smell"]))


def test_train_score_evaluate_from_the_command_line(labelled, tmp_path, capsys):
    d, table = labelled
    opts = tmp_path / "opts.yaml"
    opts.write_text("model: {hidden: 16}\ntrain: {epochs: 3, batch_size: 4}\n", encoding="utf-8")
    run = tmp_path / "run"
    rc = main(["train", "--cache", str(d / "cache"), "--labels", str(d / "labels.csv"), "--media-root",
               str(SAMPLES), "--model", "ef_lstm", "--modalities", "audio", "--options", str(opts),
               "--out", str(run), "--device", "cpu"])
    assert rc == 0
    record = json.loads((run / "run.json").read_text())
    assert record["model"] == "ef_lstm" and record["data"]["modalities"] == ["audio"]
    assert record["features"]["extraction"]["batch_size"] == SentiFlowConfig().extraction.batch_size
    assert record["dataset"]["splits"] == {"train": 4, "valid": 2}
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs_run"] == 3 and len(metrics["history"]) == 3
    assert "valid:" in capsys.readouterr().out
    assert (run / "plots" / "valid" / "metrics.json").is_file() and (run / "loss_curve.png").is_file()

    (tmp_path / "in").mkdir()
    silent = make_clip(tmp_path / "in" / "silent.mp4", seconds=1.0, audio=False)
    out = tmp_path / "scores.csv"
    rc = main(["score", table.rows[0].path, table.rows[1].path, str(silent), str(tmp_path / "nope.mp4"),
               "--model", str(run), "--cache", str(d / "cache"), "--out", str(out), "--device", "cpu"])
    assert rc == 0
    frame = pd.read_csv(out)
    by_status = frame.groupby("status").size().to_dict()
    assert by_status == {"scored": 2, "refused": 1, "failed": 1}
    scored = frame[frame.status == "scored"]
    assert scored.score.between(-3, 3).all() and set(scored.present_audio) == {1}
    assert set(scored.polarity) <= {"positive", "negative", "neutral"}
    assert scored.model.str.startswith("ef_lstm@").all()
    refused = frame[frame.status == "refused"].iloc[0]
    assert "no audio stream" in refused.reason
    # the score path matches the predictions of the API on the same features
    ev = tmp_path / "eval"
    rc = main(["evaluate", "--model", str(run), "--labels", str(d / "labels.csv"), "--media-root", str(SAMPLES),
               "--cache", str(d / "cache"), "--out", str(ev), "--device", "cpu"])
    assert rc == 0
    m = json.loads((ev / "metrics.json").read_text())
    assert m["n"] == 6 and 0 <= m["acc2_has0"] <= 1
    preds = pd.read_csv(ev / "predictions.csv").set_index("id")
    first = table.rows[0]
    assert preds.loc[first.id, "prediction"] == pytest.approx(
        float(frame.set_index("path").loc[first.path, "score"]), abs=1e-5)
    assert (ev / "pr_curve.png").is_file() and (ev / "tsne.png").is_file()


def test_recipe_and_seeds_from_the_command_line(labelled, tmp_path, capsys):
    """--recipe lays a recipe under --options; --seeds trains one run per seed and keeps the best on validation."""
    d, table = labelled
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("source: a small test recipe\nmodel: {hidden: 8, modality: audio}\n"
                      "train: {epochs: 4, batch_size: 2, optimizer: adam, lr: 0.003, schedule: linear, warmup: 0.5,"
                      " weight_decay: 0.0, monitor: 'loss:task'}\ntask: {loss: mse}\n", encoding="utf-8")
    opts = tmp_path / "opts.yaml"
    opts.write_text("train: {epochs: 2}\n", encoding="utf-8")
    run = tmp_path / "run"
    rc = main(["train", "--cache", str(d / "cache"), "--labels", str(d / "labels.csv"), "--media-root", str(SAMPLES),
               "--model", "unimodal", "--modalities", "audio", "--recipe", str(recipe), "--options", str(opts),
               "--seeds", "3,5", "--out", str(run), "--device", "cpu"])
    assert rc == 0
    seeds = json.loads((run / "seeds.json").read_text())
    assert seeds["seeds"] == [3, 5] and seeds["selected"] in (3, 5) and seeds["monitor"] == "loss:task"
    best = seeds["best_value"]
    assert best[str(seeds["selected"])] == min(best.values())
    mae = seeds["metrics"]["valid"]["mae"]
    assert len(mae["values"]) == 2 and mae["mean"] == pytest.approx(sum(mae["values"]) / 2)
    record = json.loads((run / "run.json").read_text())
    assert record["recipe"] == str(recipe) and record["task"]["loss"] == "mse"
    assert record["train"]["epochs"] == 2 and record["train"]["optimizer"] == "adam"   # --options win
    assert record["train"]["seed"] == seeds["selected"] and record["spec"]["loss"] == "mse"
    for seed in (3, 5):
        history = json.loads((run / "seeds" / f"seed-{seed}" / "metrics.json").read_text())["history"]
        # 2 epochs of 2 steps: warm-up over steps 0-1 (0.0015, 0.003), then linear decay from 0.003 (step 2)
        assert [h["lr"] for h in history] == pytest.approx([0.0015, 0.003])
    assert "over seeds 3,5" in capsys.readouterr().out
    out = tmp_path / "scores.csv"
    assert main(["score", table.rows[0].path, "--model", str(run), "--cache", str(d / "cache"), "--out", str(out),
                 "--device", "cpu"]) == 0
    assert pd.read_csv(out).status.tolist() == ["scored"]


def test_unknown_model_and_missing_run_are_clear_errors(labelled, tmp_path, capsys):
    d, _ = labelled
    rc = main(["train", "--cache", str(d / "cache"), "--labels", str(d / "labels.csv"), "--media-root",
               str(SAMPLES), "--model", "nope", "--modalities", "audio", "--out", str(tmp_path / "r")])
    assert rc == 2 and "unknown model 'nope'" in capsys.readouterr().err
    rc = main(["score", str(d / "labels.csv"), "--model", str(tmp_path), "--cache", str(d / "cache")])
    assert rc == 2 and "not a SentiFlow run directory" in capsys.readouterr().err


def test_transcript_only_csv_trains_and_evaluates_on_text(tmp_path, capsys):
    """`id,text,label` rows: text features keyed by the text's hash, then train and evaluate on another CSV."""
    train_rows = [("a_1", "i loved this movie it was wonderful", 2.6), ("a_2", "what a terrible boring film", -2.4),
                  ("a_3", "the acting was great and fun", 2.0), ("a_4", "awful plot and bad acting", -2.0),
                  ("b_1", "it is two hours long", 0.0), ("b_2", "really good and happy ending", 1.8)]
    other_rows = [("c_1", "a wonderful happy film", 2.2), ("c_2", "boring and awful", -2.2),
                  ("c_3", "the film opens on friday", 0.2)]
    for name, rows in (("train.csv", train_rows), ("other.csv", other_rows)):
        with open(tmp_path / name, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["id", "text", "label"])
            w.writerows(rows)
    cache, run = tmp_path / "cache", tmp_path / "run"
    opts = tmp_path / "o.yaml"
    opts.write_text("model: {hidden: 16}\ntrain: {epochs: 2}\n", encoding="utf-8")
    assert main(["train", "--cache", str(cache), "--labels", str(tmp_path / "train.csv"), "--model", "unimodal",
                 "--modalities", "text", "--options", str(opts), "--extract", "--out", str(run),
                 "--device", "cpu"]) == 0
    record = json.loads((run / "run.json").read_text())
    assert record["spec"]["dims"] == {"text": 384} and record["dataset"]["splits"]["train"] == 5
    assert main(["evaluate", "--model", str(run), "--labels", str(tmp_path / "other.csv"), "--cache", str(cache),
                 "--out", str(tmp_path / "ev"), "--device", "cpu"]) == 0
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["n"] == 3 and m["skipped"] == 0
    assert "3 rows (0 skipped)" in capsys.readouterr().out


def test_default_model_is_the_compact_vae_amdt():
    from models.base import ModelSpec, count_parameters
    from models.registry import DEFAULT_MODEL, build_model

    spec = ModelSpec(dims={"text": 384, "audio": 128, "visual": 135}, seq_lens={"text": 100, "audio": 128, "visual": 64})
    small = build_model(DEFAULT_MODEL, spec, {})
    assert DEFAULT_MODEL == "vae_amdt_small" and count_parameters(small) < 300_000
    assert set(small.loss_terms(*_one_batch(small, spec))) == {"task", "vae", "generator", "discriminator"}


def _one_batch(model, spec):
    batch = {m: torch.randn(2, spec.seq_lens[m], d) for m, d in spec.dims.items()}
    batch.update({f"{m}_mask": torch.ones(2, spec.seq_lens[m]) for m in spec.dims})
    batch.update(present=torch.ones(2, 3), label=torch.tensor([1.0, -1.0]))
    return batch, model(batch)
