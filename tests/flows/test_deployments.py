"""End to end through a real Prefect server and process worker: extract/mosi, train/default, score/folder and
evaluate/default via the CLI; the experiment deployments (ablate, crossval, transfer, a classification task,
report); and the nightly schedule creating scheduled runs. Everything started here is stopped at the end.

Set SENTIFLOW_TEST_PREFECT_DB_URL (postgresql+asyncpg://...) to run the same against PostgreSQL
(scripts/prefect_postgres.sh does that with a throwaway cluster).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path

import pytest

from tests.helpers.paths import ROOT

pytest.importorskip("prefect")

from flows.stack import PrefectStack  # noqa: E402

SAMPLES = ROOT / "sample_videos"
RUN_TIMEOUT_S = 400
# One whole source video per split (speaker-independent), as `folds.json` at the laid-out dataset's root.
SAMPLE_FOLDS = {"train": ["astro_front"], "valid": ["astro_mirror"], "test": ["astro_cool"]}

pytestmark = pytest.mark.skipif(not (SAMPLES / "labels.csv").is_file(), reason="sample_videos/ not generated")


def build_mosi_raw(dst: Path, folds: dict[str, list[str]] | None = SAMPLE_FOLDS) -> Path:
    """The sample clips laid out as a tiny CMU-MOSI raw dataset (their video ids are in no standard fold)."""
    from pipeline.corpora.cmu import write_cmu_raw
    from pipeline.labels import read_labels

    return write_cmu_raw(read_labels(SAMPLES / "labels.csv", SAMPLES), dst, folds)


def run_ok(stack: PrefectStack, deployment: str, params: dict) -> str:
    """Run a deployment through `prefect deployment run --watch`; assert it completed; returns the CLI output."""
    run = stack.run_deployment(deployment, params, timeout=RUN_TIMEOUT_S)
    worker_log = (stack.home / "worker-1.log").read_text(errors="replace")[-4000:]
    assert run.ok, f"{deployment} ended {run.state}: {run.message}\n{run.output[-3000:]}\nworker log:\n{worker_log}"
    assert "Completed" in run.output, run.output[-3000:]
    return run.output


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("prefect-e2e")
    (tmp / "sentiflow.yaml").write_text("extraction:\n  extractors: [logmel, transcript, text]\n  batch_size: 4\n",
                                        encoding="utf-8")
    env = {"SENTIFLOW_HOME": str(tmp / "sentiflow"), "SENTIFLOW_CACHE": str(tmp / "cache"),
           "SENTIFLOW_RUNS": str(tmp / "runs"), "SENTIFLOW_SCORES": str(tmp / "scores"),
           "SENTIFLOW_CONFIG": str(tmp / "sentiflow.yaml")}
    if os.environ.get("SENTIFLOW_TEST_PREFECT_DB_URL"):
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = os.environ["SENTIFLOW_TEST_PREFECT_DB_URL"]
    s = PrefectStack(tmp / "prefect-home", ROOT, env=env)
    try:
        s.start()
        yield s
    finally:
        s.stop()
    for p in s.procs:
        assert p.poll() is not None, f"process {p.args[:3]} still running"


def _flow_runs(stack: PrefectStack, deployment: str) -> list:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName, FlowRunFilter  # noqa: F401

    flow_name, dep_name = deployment.split("/")
    with SyncPrefectClient(stack.api_url) as client:
        dep = client.read_deployment_by_name(deployment)
        return client.read_flow_runs(flow_run_filter=FlowRunFilter(deployment_id={"any_": [dep.id]}))


def _artifacts(stack: PrefectStack, key: str) -> list:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with SyncPrefectClient(stack.api_url) as client:
        return client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))


def test_extract_train_score_through_prefect_cli(stack: PrefectStack):
    from extractors.config import load_config
    from extractors.keys import FeatureLookup
    from pipeline.cache import FeatureCache, hash_file

    tmp = stack.home.parent
    mosi = build_mosi_raw(tmp / "mosi", folds=None)      # custom video ids and no folds: extraction needs none
    (tmp / "folds.json").write_text(json.dumps(SAMPLE_FOLDS), encoding="utf-8")
    clips = sorted((mosi / "Raw" / "Video" / "Segmented").glob("*.mp4"))
    assert len(clips) >= 4

    run_ok(stack, "extract/mosi", {"root": str(mosi), "device": "cpu"})
    config = load_config(str(tmp / "sentiflow.yaml"))
    lookup = FeatureLookup(config, FeatureCache(tmp / "cache", create=False))
    for clip in clips:
        entry = lookup.entry("logmel", hash_file(clip))
        assert entry is not None and entry.status == "ok", clip
        tensors = entry.load()
        assert tensors["fixed"].dim() == 2 and tensors["fixed"].shape[1] > 0
        assert bool(tensors["mask"].sum() > 0)
    table = json.loads(_artifacts(stack, "extract-summary")[0].data)
    assert sorted(Path(r["file"]).name for r in table) == sorted(c.name for c in clips)
    assert {r["status"] for r in table} == {"done"}, table
    assert _artifacts(stack, "extract-progress")[0].data == 100.0

    (mosi / "folds.json").write_text(json.dumps(SAMPLE_FOLDS), encoding="utf-8")   # training reads the root's
    run_ok(stack, "train/default", {"root": str(mosi), "device": "cpu",
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
    run_ok(stack, "score/folder", {"folder": str(inbox), "run_dir": str(run_dir), "out": str(out_file),
                               "device": "cpu"})
    import pandas as pd

    frame = pd.read_csv(out_file)
    assert len(frame) == 3
    assert (frame["status"] != "failed").all(), frame.to_string()
    assert all(math.isfinite(v) and -3.5 <= v <= 3.5 for v in frame["score"])
    assert "3 scored" in _artifacts(stack, "scores")[0].data
    # the score flow's extraction step found the clips already cached (its plan keys agree with the runner's)
    planned = json.loads(_artifacts(stack, "score-extract-summary")[0].data)
    assert [r["status"] for r in planned] == ["cached"] * 3, planned

    run_ok(stack, "evaluate/default", {"run_dir": str(run_dir), "root": str(mosi), "folds": str(tmp / "folds.json"),
                                   "split": "all", "device": "cpu", "out_dir": str(tmp / "eval")})
    metrics = json.loads((tmp / "eval" / "metrics.json").read_text())
    assert math.isfinite(metrics["mae"]) and metrics["mae"] >= 0
    report = _artifacts(stack, "evaluate-report")[0].data
    assert "| mae |" in report and "data:image/png;base64," in report
    assert all(Path(p).is_file() and Path(p).suffix == ".png" for p in metrics["plots"].values())
    # the evaluate flow attaches the results report of the run and this evaluation
    assert (tmp / "eval" / "report" / "report.html").is_file()
    assert "data:image/png;base64," in _artifacts(stack, "results-report")[0].data

    for deployment in ("extract/mosi", "train/default", "score/folder", "evaluate/default"):
        states = [r.state.type.value for r in _flow_runs(stack, deployment)]
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


def test_experiments_and_report_through_prefect_cli(stack: PrefectStack):
    """ablate, crossval, transfer, a classification task and report, each from its deployment."""
    import pandas as pd

    tmp = stack.home.parent
    mosi = tmp / "mosi"
    assert (mosi / "Raw").is_dir(), "runs after test_extract_train_score_through_prefect_cli"
    folds = str(tmp / "folds.json")
    tiny = {"train": {"epochs": 2, "batch_size": 4, "patience": 0, "cpu_threads": 1}}

    run_ok(stack, "ablate/default", {"root": str(mosi), "folds": folds, "device": "cpu", "model": "ef_lstm",
                                 "name": "ablation", "seeds": [1, 2], "modality_sets": ["T", "A", "TA"],
                                 "options": tiny, "eval_split": "test"})
    ablation = tmp / "runs" / "ablation"
    table = pd.read_csv(ablation / "table.csv")
    assert len(table) == 3 and not table.isna().any().any(), table.to_string()
    assert "ablation-table" in [a.key for a in _artifacts(stack, "ablation-table")]

    run_ok(stack, "crossval/default", {"root": str(mosi), "folds": folds, "device": "cpu", "model": "ef_lstm",
                                   "name": "cv", "k": 3, "options": tiny})
    cv = tmp / "runs" / "cv"
    results = pd.read_csv(cv / "results.csv")
    assert len(results) >= 3, results.to_string()
    assert (cv / "table.md").is_file()

    urfunny = tmp / "urfunny"
    build_urfunny(SAMPLES, urfunny)
    run_ok(stack, "train/urfunny-humor", {"root": str(urfunny), "device": "cpu", "model": "ef_lstm", "run_name": "humor",
                                      "extract_missing": True, "options": tiny})
    humor = json.loads((tmp / "runs" / "humor" / "run.json").read_text())
    assert humor["task"]["kind"] == "binary", humor["task"]
    humor_metrics = json.loads((tmp / "runs" / "humor" / "metrics.json").read_text())["metrics"]
    assert 0.0 <= humor_metrics["train"]["acc2"] <= 1.0

    moseas = tmp / "moseas"
    build_moseas(SAMPLES, moseas, "es")
    run_ok(stack, "extract/moseas", {"root": str(moseas), "language": "es", "device": "cpu"})
    run_ok(stack, "transfer/moseas", {"source_root": str(mosi), "source_folds": folds, "target_root": str(moseas),
                                  "target_languages": ["es"], "model": "ef_lstm", "name": "transfer",
                                  "fractions": [0.0, 0.5], "device": "cpu", "options": tiny})
    transfer = pd.read_csv(tmp / "runs" / "transfer" / "table.csv")
    assert len(transfer) >= 2 and not transfer.isna().any().any(), transfer.to_string()

    run_ok(stack, "report/default", {"run_dirs": [str(ablation), str(tmp / "runs" / "humor")],
                                 "out_dir": str(tmp / "report"), "title": "e2e"})
    html = (tmp / "report" / "report.html").read_text(encoding="utf-8")
    assert "<img" in html and "data:image/png;base64," in html
    assert "data:image/png;base64," in _artifacts(stack, "results-report")[0].data

    for deployment in ("ablate/default", "crossval/default", "train/urfunny-humor", "transfer/moseas",
                       "report/default"):
        states = [r.state.type.value for r in _flow_runs(stack, deployment)]
        assert states == ["COMPLETED"], (deployment, states)


def test_nightly_schedule_creates_scheduled_runs(stack: PrefectStack):
    deadline = time.monotonic() + 60
    runs: list = []
    while time.monotonic() < deadline:
        runs = [r for r in _flow_runs(stack, "score/nightly") if r.state.type.value == "SCHEDULED"]
        if runs:
            break
        time.sleep(1)
    assert runs, "the scheduler created no runs for score/nightly"
    for r in runs:
        t = r.expected_start_time.astimezone(__import__("datetime").timezone.utc)
        assert (t.hour, t.minute, t.second) == (2, 0, 0), t
    starts = sorted(r.expected_start_time for r in runs)
    assert all((b - a).total_seconds() == 86400 for a, b in zip(starts, starts[1:]))


def test_failures_explain_themselves_in_the_state_message_and_watch_output(stack: PrefectStack):
    """Absent labelled clips: failed rows with their expected paths, failures.jsonl, a Completed state whose message
    and warning give the count and reasons; a failed run: its reason on one line in the state and in --watch."""
    from pipeline.cache import FeatureCache

    tmp = stack.home.parent
    gaps = build_mosi_raw(tmp / "mosi-gaps", folds=None)
    segmented = gaps / "Raw" / "Video" / "Segmented"
    absent = sorted(segmented.glob("*.mp4"))[1:]
    for clip in absent:
        clip.unlink()
    run = stack.run_deployment("extract/mosi", {"root": str(gaps), "device": "cpu"}, timeout=RUN_TIMEOUT_S)
    assert run.ok, run.output[-3000:]
    first = f"{absent[0].name}: labelled clip {absent[0].stem}: media file not found"
    assert run.message.startswith("0 done, 1 cached, 9 failed") or run.message.startswith("1 done, 0 cached, 9 failed")
    assert f"9 file(s) failed ({first};" in run.message and "\n" not in run.message, run.message
    assert f"completed with failures: 9 file(s) failed ({first};" in run.output, run.output[-3000:]
    summary = max(_artifacts(stack, "extract-summary"), key=lambda a: a.created)
    failed = [r for r in json.loads(summary.data) if r["status"] == "failed"]
    assert sorted(r["file"] for r in failed) == [str(p) for p in absent]
    logged = {f["path"]: f["reason"] for f in FeatureCache(tmp / "cache", create=False).failures()}
    assert all(logged.get(str(p)) == f"labelled clip {p.stem}: media file not found" for p in absent), logged

    nowhere = tmp / "nowhere"
    run = stack.run_deployment("train/default", {"root": str(nowhere), "device": "cpu"}, timeout=RUN_TIMEOUT_S)
    reason = f"DatasetError: CMU-MOSI root {nowhere} is not a directory"
    assert (run.state, run.returncode) == ("FAILED", 1), run.output[-3000:]
    assert run.message == f"Flow run encountered an exception: {reason}"
    assert reason in run.output and "Traceback" not in run.output, run.output[-3000:]
