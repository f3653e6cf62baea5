"""End to end through a real Prefect server and process worker (tests/helpers/prefect_stack.py): extract/mosi,
train/default, score/folder and evaluate/default via the CLI; the experiment deployments (ablate, crossval,
transfer, a classification task, report); and the nightly schedule creating scheduled runs. Everything started
here is stopped at the end.

Set SENTIFLOW_TEST_PREFECT_DB_URL (postgresql+asyncpg://...) to run the same against PostgreSQL
(scripts/prefect_postgres.sh does that with a throwaway cluster).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import pytest

from tests.helpers.paths import SAMPLES
from tests.helpers.prefect_stack import Stack

pytest.importorskip("prefect")

pytestmark = pytest.mark.skipif(not (SAMPLES / "labels.csv").is_file(), reason="sample_videos/ not generated")


def build_mosi_raw(src: Path, dst: Path) -> dict[str, str]:
    """A tiny dataset in the CMU-MOSI raw layout from the MMSA-style sample clips; returns id -> split."""
    import csv

    video_dir = dst / "Raw" / "Video" / "Segmented"
    trans_dir = dst / "Raw" / "Transcript" / "Segmented"
    label_dir = dst / "Raw" / "Labels"
    for d in (video_dir, trans_dir, label_dir):
        d.mkdir(parents=True, exist_ok=True)
    rows = list(csv.DictReader((src / "labels.csv").read_text(encoding="utf-8").splitlines()))
    folds: dict[str, str] = {}
    transcripts: dict[str, list[str]] = {}
    labels: list[str] = []
    for n, r in enumerate(rows):
        vid, seg = r["video_id"], str(int(r["clip_id"]))
        shutil.copyfile(src / r["video_id"] / f"{r['clip_id']}.mp4", video_dir / f"{vid}_{seg}.mp4")
        transcripts.setdefault(vid, []).append(f"{seg}_DELIM_{r['text']}")
        labels.append(f"{n}.0,{n + 1}.0,{vid},{seg},{float(r['label'])}")
    for i, vid in enumerate(sorted(transcripts)):      # one whole source video per split (speaker-independent)
        folds[vid] = ("train", "valid", "test")[i % 3]
    for vid, lines in transcripts.items():
        (trans_dir / f"{vid}.annotprocessed").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (label_dir / "OpinionLevelSentiment.csv").write_text("\n".join(labels) + "\n", encoding="utf-8")
    return folds


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("prefect-e2e")
    (tmp / "sentiflow.yaml").write_text("extraction:\n  extractors: [logmel, transcript, text]\n  batch_size: 4\n",
                                        encoding="utf-8")
    s = Stack(tmp)
    try:
        s.start()
        yield s
    finally:
        s.stop()
    for p in s.procs:
        assert p.poll() is not None, f"process {p.args[:3]} still running"


def test_extract_train_score_through_prefect_cli(stack: Stack):
    from extractors.config import load_config
    from extractors.keys import FeatureLookup
    from pipeline.cache import FeatureCache, hash_file

    tmp = stack.tmp
    mosi = tmp / "mosi"
    folds = build_mosi_raw(SAMPLES, mosi)
    splits = {"train": [], "valid": [], "test": []}
    for vid, split in folds.items():
        splits[split].append(vid)
    (tmp / "folds.json").write_text(json.dumps(splits), encoding="utf-8")
    clips = sorted((mosi / "Raw" / "Video" / "Segmented").glob("*.mp4"))
    assert len(clips) >= 4

    stack.run("extract/mosi", {"root": str(mosi), "folds": str(tmp / "folds.json"), "device": "cpu"})
    config = load_config(str(tmp / "sentiflow.yaml"))
    lookup = FeatureLookup(config, FeatureCache(tmp / "cache", create=False))
    for clip in clips:
        entry = lookup.entry("logmel", hash_file(clip))
        assert entry is not None and entry.status == "ok", clip
        tensors = entry.load()
        assert tensors["fixed"].dim() == 2 and tensors["fixed"].shape[1] > 0
        assert bool(tensors["mask"].sum() > 0)
    table = json.loads(stack.artifacts("extract-summary")[0].data)
    assert sorted(Path(r["file"]).name for r in table) == sorted(c.name for c in clips)
    assert {r["status"] for r in table} == {"done"}, table
    assert stack.artifacts("extract-progress")[0].data == 100.0

    stack.run("train/default", {"root": str(mosi), "folds": str(tmp / "folds.json"), "device": "cpu",
                                "model": "unimodal", "modalities": ["audio"], "run_name": "e2e",
                                "options": {"model": {"modality": "audio"},
                                            "train": {"epochs": 2, "batch_size": 4, "patience": 0}}})
    run_dir = tmp / "runs" / "e2e"
    assert (run_dir / "model.safetensors").is_file(), sorted(p.name for p in run_dir.iterdir())
    assert (run_dir / "run.json").is_file()

    inbox = tmp / "inbox"
    inbox.mkdir()
    for clip in clips[:3]:
        shutil.copyfile(clip, inbox / clip.name)
    out_file = tmp / "scores" / "inbox.csv"
    stack.run("score/folder", {"folder": str(inbox), "run_dir": str(run_dir), "out": str(out_file),
                               "device": "cpu"})
    import pandas as pd

    frame = pd.read_csv(out_file)
    assert len(frame) == 3
    assert (frame["status"] != "failed").all(), frame.to_string()
    assert all(math.isfinite(v) and -3.5 <= v <= 3.5 for v in frame["score"])
    assert "3 scored" in stack.artifacts("scores")[0].data
    # the score flow's extraction step found the clips already cached (its plan keys agree with the runner's)
    planned = json.loads(stack.artifacts("score-extract-summary")[0].data)
    assert [r["status"] for r in planned] == ["cached"] * 3, planned

    stack.run("evaluate/default", {"run_dir": str(run_dir), "root": str(mosi), "folds": str(tmp / "folds.json"),
                                   "split": "all", "device": "cpu", "out_dir": str(tmp / "eval")})
    metrics = json.loads((tmp / "eval" / "metrics.json").read_text())
    assert math.isfinite(metrics["mae"]) and metrics["mae"] >= 0
    report = stack.artifacts("evaluate-report")[0].data
    assert "| mae |" in report and "data:image/png;base64," in report
    assert all(Path(p).is_file() and Path(p).suffix == ".png" for p in metrics["plots"].values())
    # the evaluate flow attaches the results report of the run and this evaluation
    assert (tmp / "eval" / "report" / "report.html").is_file()
    assert "data:image/png;base64," in stack.artifacts("results-report")[0].data

    for deployment in ("extract/mosi", "train/default", "score/folder", "evaluate/default"):
        states = [r.state.type.value for r in stack.flow_runs(deployment)]
        assert states == ["COMPLETED"], (deployment, states)


def build_urfunny(src: Path, dst: Path) -> None:
    """A tiny UR-FUNNY layout (labels.csv id,label,text,mode + urfunny2_videos/<id>.mp4) from the sample clips."""
    import csv

    (dst / "urfunny2_videos").mkdir(parents=True)
    lines = ["id,label,text,mode"]
    for r in csv.DictReader((src / "labels.csv").read_text(encoding="utf-8").splitlines()):
        rid = f"{r['video_id']}-{r['clip_id']}"
        shutil.copyfile(src / r["video_id"] / f"{r['clip_id']}.mp4", dst / "urfunny2_videos" / f"{rid}.mp4")
        text = r["text"].replace('"', "'")
        lines.append(f'{rid},{int(float(r["label"]) > 0)},"{text}",{r["mode"]}')
    (dst / "labels.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def build_moseas(src: Path, dst: Path, language: str) -> None:
    """A tiny CMU-MOSEAS language folder (MMSA layout) from the sample clips."""
    lang = dst / language
    shutil.copytree(src, lang / "Raw", ignore=shutil.ignore_patterns("*.csv", "*.md"))
    shutil.copyfile(src / "labels.csv", lang / "label.csv")


def test_experiments_and_report_through_prefect_cli(stack: Stack):
    """ablate, crossval, transfer, a classification task and report, each from its deployment."""
    import pandas as pd

    tmp = stack.tmp
    mosi = tmp / "mosi"
    assert (mosi / "Raw").is_dir(), "runs after test_extract_train_score_through_prefect_cli"
    folds = str(tmp / "folds.json")
    tiny = {"train": {"epochs": 2, "batch_size": 4, "patience": 0, "cpu_threads": 1}}

    stack.run("ablate/default", {"root": str(mosi), "folds": folds, "device": "cpu", "model": "ef_lstm",
                                 "name": "ablation", "seeds": [1, 2], "modality_sets": ["T", "A", "TA"],
                                 "options": tiny, "eval_split": "test"})
    ablation = tmp / "runs" / "ablation"
    table = pd.read_csv(ablation / "table.csv")
    assert len(table) == 3 and not table.isna().any().any(), table.to_string()
    assert "ablation-table" in [a.key for a in stack.artifacts("ablation-table")]

    stack.run("crossval/default", {"root": str(mosi), "folds": folds, "device": "cpu", "model": "ef_lstm",
                                   "name": "cv", "k": 3, "options": tiny})
    cv = tmp / "runs" / "cv"
    results = pd.read_csv(cv / "results.csv")
    assert len(results) >= 3, results.to_string()
    assert (cv / "table.md").is_file()

    urfunny = tmp / "urfunny"
    build_urfunny(SAMPLES, urfunny)
    stack.run("train/urfunny-humor", {"root": str(urfunny), "device": "cpu", "model": "ef_lstm", "run_name": "humor",
                                      "extract_missing": True, "options": tiny})
    humor = json.loads((tmp / "runs" / "humor" / "run.json").read_text())
    assert humor["task"]["kind"] == "binary", humor["task"]
    humor_metrics = json.loads((tmp / "runs" / "humor" / "metrics.json").read_text())["metrics"]
    assert 0.0 <= humor_metrics["train"]["acc2"] <= 1.0

    moseas = tmp / "moseas"
    build_moseas(SAMPLES, moseas, "es")
    stack.run("extract/moseas", {"root": str(moseas), "language": "es", "device": "cpu"})
    stack.run("transfer/moseas", {"source_root": str(mosi), "source_folds": folds, "target_root": str(moseas),
                                  "target_languages": ["es"], "model": "ef_lstm", "name": "transfer",
                                  "fractions": [0.0, 0.5], "device": "cpu", "options": tiny})
    transfer = pd.read_csv(tmp / "runs" / "transfer" / "table.csv")
    assert len(transfer) >= 2 and not transfer.isna().any().any(), transfer.to_string()

    stack.run("report/default", {"run_dirs": [str(ablation), str(tmp / "runs" / "humor")],
                                 "out_dir": str(tmp / "report"), "title": "e2e"})
    html = (tmp / "report" / "report.html").read_text(encoding="utf-8")
    assert "<img" in html and "data:image/png;base64," in html
    assert "data:image/png;base64," in stack.artifacts("results-report")[0].data

    for deployment in ("ablate/default", "crossval/default", "train/urfunny-humor", "transfer/moseas",
                       "report/default"):
        states = [r.state.type.value for r in stack.flow_runs(deployment)]
        assert states == ["COMPLETED"], (deployment, states)


def test_nightly_schedule_creates_scheduled_runs(stack: Stack):
    deadline = time.monotonic() + 60
    runs: list = []
    while time.monotonic() < deadline:
        runs = [r for r in stack.flow_runs("score/nightly") if r.state.type.value == "SCHEDULED"]
        if runs:
            break
        time.sleep(1)
    assert runs, "the scheduler created no runs for score/nightly"
    for r in runs:
        t = r.expected_start_time.astimezone(__import__("datetime").timezone.utc)
        assert (t.hour, t.minute, t.second) == (2, 0, 0), t
    starts = sorted(r.expected_start_time for r in runs)
    assert all((b - a).total_seconds() == 86400 for a, b in zip(starts, starts[1:]))
