"""Ablation, grouped cross-validation and language transfer on the real sample cache, via the CLI and the API.

Every run is tiny (1 epoch, batch 4, one CPU thread); the checks are on the experiment directories: tables
filled, member runs ordinary run directories, folds never sharing a source video, clear errors.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pandas as pd
import pytest

from flows.cli import main
from pipeline.config import ConfigError
from pipeline.labels import read_labels

TINY = {"train": {"epochs": 1, "batch_size": 4, "cpu_threads": 1, "patience": 0}}
METRIC_TITLES = ["MAE", "Corr", "Acc-2", "F1", "Acc-7"]


@pytest.fixture()
def tiny_options(tmp_path: Path) -> Path:
    import yaml

    path = tmp_path / "options.yaml"
    path.write_text(yaml.safe_dump(TINY), encoding="utf-8")
    return path


def _videos(ids: list[str]) -> set[str]:
    return {i.rsplit("_", 1)[0] for i in ids}     # MMSA ids are <video_id>_<clip_id>


def _member_splits(run_dir: Path) -> dict[str, list[str]]:
    return json.loads((run_dir / "eval" / "member.json").read_text(encoding="utf-8"))["signature"]["splits"]


def _check_run_dir(run_dir: Path) -> None:
    for name in ("run.json", "metrics.json", "loss_curve.png", "model.safetensors"):
        assert (run_dir / name).is_file(), run_dir / name


def _mean(cell: str) -> float:
    return float(cell.split(" ± ")[0])


def test_ablate_cli_fills_every_cell(sample_cache, tiny_options, tmp_path, capsys) -> None:
    cache, media_root, labels = sample_cache
    out = tmp_path / "ablation"
    rc = main(["ablate", "--cache", str(cache), "--labels", str(labels), "--media-root", str(media_root),
               "--model", "vae_amdt_small", "--out", str(out), "--options", str(tiny_options), "--device", "cpu",
               "--modality-sets", "T,A,TA", "--components", "use_vae", "--seeds", "1,2"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| TA | w/o use_vae |" in printed and f"experiment directory: {out}" in printed
    table = pd.read_csv(out / "table.csv", dtype=str)
    assert list(table.columns) == ["modalities", "components", *METRIC_TITLES, "n"]
    # one row per cell; components ablated on the full set (TA) only; A runs too (VAE-AMDT Table 8's Audio row:
    # without text there is no adversarial game, the rest of the model is the same)
    assert list(zip(table["modalities"], table["components"])) == [("T", "full"), ("A", "full"), ("TA", "full"),
                                                                   ("TA", "w/o use_vae")]
    assert not table.isna().any().any()
    for title in METRIC_TITLES:
        assert table[title].str.fullmatch(r"-?\d+\.\d+ ± \d+\.\d+").all(), table[title].tolist()
    assert (table["n"] == "2").all()
    record = json.loads((out / "experiment.json").read_text(encoding="utf-8"))
    assert record["format"] == 1 and record["kind"] == "ablation" and record["model"] == "vae_amdt_small"
    assert record["table_columns"] == ["modalities", "components"] and record["task"]["kind"] == "regression"
    assert not record["settings"].get("modality_sets_skipped")
    assert record["settings"]["components_on"] == "full set (TA)"
    assert len(record["runs"]) == 8 and {r["seed"] for r in record["runs"]} == {1, 2}
    results = pd.read_csv(out / "results.csv")
    assert len(results) == 8 and results[["mae", "corr", "acc7"]].notna().all().all()
    for run in record["runs"]:
        run_dir = out / run["run_dir"]
        _check_run_dir(run_dir)
        evaluated = json.loads((run_dir / "eval" / "test" / "metrics.json").read_text(encoding="utf-8"))
        assert run["metrics"]["mae"] == pytest.approx(evaluated["mae"])
        assert evaluated["n"] == 2          # the sample labels' two test clips
        spec = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))["spec"]
        assert sorted(spec["dims"]) == sorted({"T": ["text"], "A": ["audio"],
                                               "TA": ["text", "audio"]}[run["cell"]["modalities"]])
        if run["cell"]["components"] == "w/o use_vae":
            assert json.loads((run_dir / "run.json").read_text())["model_config"]["use_vae"] is False
    # the table's cells are the mean of the member runs
    ta = results[(results.modalities == "TA") & (results.components == "full")]
    row = table[(table.modalities == "TA") & (table.components == "full")].iloc[0]
    assert _mean(row["MAE"]) == pytest.approx(ta["mae"].mean(), abs=5e-4)
    assert float(row["MAE"].split(" ± ")[1]) == pytest.approx(ta["mae"].std(ddof=1), abs=5e-4)


def test_ablation_skips_components_without_effect_and_reuses_runs(sample_cache, tmp_path) -> None:
    from models.experiments.ablation import run_ablation

    cache, media_root, labels = sample_cache
    kw = dict(modality_sets=["T"], components=["use_adversarial", "use_triple_attention"], seeds=(1,),
              options=TINY, device="cpu", media_root=media_root)
    result = run_ablation(cache, labels, "vae_amdt_small", tmp_path / "abl", **kw)
    assert result.table["components"].tolist() == ["full", "w/o use_triple_attention"]
    skipped = json.loads((tmp_path / "abl" / "experiment.json").read_text())["settings"]["components_skipped"]
    assert [s["component"] for s in skipped] == ["use_adversarial"]
    assert "no effect on T" in skipped[0]["reason"]
    weights = tmp_path / "abl" / "runs" / "T_full" / "seed1" / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    again = run_ablation(cache, labels, "vae_amdt_small", tmp_path / "abl", **kw)   # finished runs are reused
    assert weights.stat().st_mtime_ns == stamp
    assert again.table.equals(result.table)


def test_ablation_errors_are_clear(sample_cache, tmp_path) -> None:
    from models.experiments.ablation import run_ablation
    from pipeline.labels import LabelTable

    cache, media_root, labels = sample_cache
    with pytest.raises(ConfigError, match=r"no ablatable component\(s\) use_magic.*use_vae, use_adversarial"):
        run_ablation(cache, labels, "vae_amdt_small", tmp_path / "x", components=["use_magic"], media_root=media_root)
    with pytest.raises(ConfigError, match="modality set 'TQ'"):
        run_ablation(cache, labels, "vae_amdt_small", tmp_path / "x", modality_sets=["TQ"], media_root=media_root)
    table = read_labels(labels, media_root)
    no_test = LabelTable([r for r in table if r.mode != "test"], table.source)
    with pytest.raises(ConfigError, match=r"no usable rows in the 'test' split .*train 6, valid 2"):
        run_ablation(cache, no_test, "vae_amdt_small", tmp_path / "x", options=TINY, device="cpu")


def test_crossval_cli_folds_never_share_a_video(sample_cache, tiny_options, tmp_path, capsys) -> None:
    cache, media_root, labels = sample_cache
    out = tmp_path / "cv"
    rc = main(["crossval", "--cache", str(cache), "--labels", str(labels), "--media-root", str(media_root),
               "--model", "vae_amdt_small", "--out", str(out), "--options", str(tiny_options), "--device", "cpu",
               "--folds", "3"])
    assert rc == 0
    assert "3-fold CV (grouped by video)" in capsys.readouterr().out
    record = json.loads((out / "experiment.json").read_text(encoding="utf-8"))
    assert record["kind"] == "cross_validation"
    fold_runs = [r for r in record["runs"] if r["cell"]["protocol"].startswith("3-fold")]
    assert [r["cell"]["fold"] for r in fold_runs] == [1, 2, 3]
    test_sets = []
    for run in fold_runs:
        run_dir = out / run["run_dir"]
        _check_run_dir(run_dir)
        splits = _member_splits(run_dir)
        train_videos = _videos(splits["train"] + splits.get("valid", []))
        assert not train_videos & _videos(splits["test"]), run["run_dir"]
        assert not _videos(splits["train"]) & _videos(splits.get("valid", []))
        assert len(_videos(splits["test"])) == 1          # 3 videos, 3 folds: one video per fold
        test_sets.append(set(splits["test"]))
    all_ids = {r.id for r in read_labels(labels, media_root)}
    assert set().union(*test_sets) == all_ids and sum(map(len, test_sets)) == 10    # a partition of the rows
    for a in range(3):
        for b in range(a + 1, 3):
            assert not _videos(list(test_sets[a])) & _videos(list(test_sets[b]))
    table = pd.read_csv(out / "table.csv", dtype=str)
    assert table["protocol"].tolist() == ["3-fold CV (grouped by video)",
                                          "3-fold CV (grouped by video), pooled predictions", "standard split"]
    assert not table.isna().any().any() and table["n"].tolist() == ["3", "1", "1"]
    assert table["MAE"].iloc[0].count("±") == 1       # mean ± std over the three folds
    pooled = pd.read_csv(out / "pooled" / "seed1" / "predictions.csv")
    assert sorted(pooled["id"]) == sorted(all_ids)
    std = [r for r in record["runs"] if r["cell"]["protocol"] == "standard split"][0]
    assert record["settings"]["standard_rows"] == {"train": 6, "test": 2, "valid": 2}
    assert std["metrics"]["n"] == 2


def test_crossval_errors_are_clear(sample_cache, tmp_path) -> None:
    from models.experiments.cross_validation import run_cross_validation

    cache, media_root, labels = sample_cache
    with pytest.raises(ConfigError, match=r"4 folds need at least 4 source videos, but the rows come from 3"):
        run_cross_validation(cache, labels, "vae_amdt_small", tmp_path / "cv", folds=4, options=TINY,
                             device="cpu", media_root=media_root)
    rc = main(["crossval", "--cache", str(cache), "--labels", str(labels), "--media-root", str(media_root),
               "--out", str(tmp_path / "cv"), "--folds", "3", "--seeds", "one"])
    assert rc == 2


def _two_language_mmsa(labels: Path, target: Path) -> Path:
    """The sample labels with a language column: astro_front/astro_mirror 'en', astro_cool 'es'."""
    frame = pd.read_csv(labels, dtype={"clip_id": str})
    frame["language"] = frame["video_id"].map(lambda v: "es" if v == "astro_cool" else "en")
    frame.loc[(frame.video_id == "astro_front") & (frame.clip_id == "04"), "mode"] = "test"
    frame.to_csv(target, index=False)
    return target


def test_transfer_cli_zero_and_few_shot(sample_cache, tiny_options, tmp_path, capsys) -> None:
    cache, media_root, labels = sample_cache
    csv_path = _two_language_mmsa(labels, tmp_path / "two_languages.csv")
    out = tmp_path / "transfer"
    rc = main(["transfer", "--cache", str(cache), "--labels", str(csv_path), "--media-root", str(media_root),
               "--model", "vae_amdt_small", "--out", str(out), "--options", str(tiny_options), "--device", "cpu",
               "--source", "en", "--targets", "es", "--fractions", "0,1"])
    assert rc == 0
    assert "| en + 100% es | es |" in capsys.readouterr().out
    table = pd.read_csv(out / "table.csv", dtype=str)
    assert list(table.columns) == ["training data", "evaluation data", "Pearson r", "MAE", "n"]
    assert list(zip(table["training data"], table["evaluation data"])) == [
        ("en", "en"), ("en", "es"), ("en + 100% es", "es"), ("en + 100% es", "en")]
    assert not table.isna().any().any()
    record = json.loads((out / "experiment.json").read_text(encoding="utf-8"))
    assert record["kind"] == "language_transfer"
    assert record["settings"]["rehearsal"][0]["ids"] == ["astro_cool_01"]     # es has one training clip
    zero = out / "runs" / "train_en" / "seed1"
    _check_run_dir(zero)
    splits = _member_splits(zero)
    assert all(not i.startswith("astro_cool") for i in splits["train"] + splits.get("valid", []))
    assert sorted(splits["test_es"]) == ["astro_cool_02", "astro_cool_03"]
    assert splits["test_en"] == ["astro_front_04"]
    few = _member_splits(out / "runs" / "train_en+100pct_es" / "seed1")
    assert "astro_cool_01" in few["train"]
    es_metrics = json.loads((zero / "eval" / "test_es" / "metrics.json").read_text())
    entry = [r for r in record["runs"] if r["cell"] == {"training data": "en", "evaluation data": "es"}][0]
    assert entry["metrics"]["mae"] == pytest.approx(es_metrics["mae"]) and es_metrics["n"] == 2


def test_transfer_on_transcript_only_rows_and_errors(tmp_path) -> None:
    from models.experiments.language_transfer import run_language_transfer

    rows = [("en", "train", "I absolutely loved this movie, it was wonderful.", 3.0),
            ("en", "train", "This film was terrible and I hated every minute.", -3.0),
            ("en", "train", "The music was nice and the ending was pleasant.", 1.0),
            ("en", "valid", "The middle part was slow and disappointing.", -1.0),
            ("en", "test", "What a great film, the cast was brilliant.", 2.6),
            ("en", "test", "It was not very good and a little annoying.", -1.6),
            ("de", "train", "Ich habe diesen Film geliebt, er war wunderbar.", 3.0),
            ("de", "test", "Was für ein großartiger Film, die Besetzung war brillant.", 2.4),
            ("de", "test", "Der Film war schrecklich und langweilig.", -2.2)]
    path = tmp_path / "two_languages.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "text", "label", "mode", "language"])
        for i, (lang, mode, text, label) in enumerate(rows):
            w.writerow([f"{lang}talk{i % 3}_{i}", text, label, mode, lang])
    result = run_language_transfer(tmp_path / "cache", path, "vae_amdt_small", tmp_path / "lt", source="en",
                                   targets=["de"], fractions=(0.0,), seeds=(1,), options=TINY, device="cpu",
                                   extract_missing=True)
    assert result.table[["training data", "evaluation data"]].values.tolist() == [["en", "en"], ["en", "de"]]
    assert result.table["n"].tolist() == [1, 1]
    assert all(not math.isnan(r["metrics"]["mae"]) for r in result.runs)
    record = json.loads((tmp_path / "lt" / "experiment.json").read_text())
    assert record["settings"]["modalities"] == ["text"]
    assert "no cached" in record["settings"]["unavailable_modalities"]["audio"]
    with pytest.raises(ConfigError, match=r"language 'fr' has no rows .* languages de, en"):
        run_language_transfer(tmp_path / "cache", path, "vae_amdt_small", tmp_path / "lt2", source="en",
                              targets=["fr"], options=TINY, device="cpu")
    with pytest.raises(ConfigError, match="must differ from the source"):
        run_language_transfer(tmp_path / "cache", path, "vae_amdt_small", tmp_path / "lt2", source="en",
                              targets=["en"], options=TINY, device="cpu")
