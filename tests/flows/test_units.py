"""The flows' helpers without a server: settings resolution, transient-failure detection, artifact text."""

from __future__ import annotations

import base64
import errno
import os
import time
from pathlib import Path

import pytest

pytest.importorskip("prefect")

from flows import environment as settings  # noqa: E402
from flows.extract import TransientBatchError, is_transient  # noqa: E402


def test_transient_failures_are_told_apart_from_permanent_ones():
    assert is_transient(TimeoutError("slot"))
    assert is_transient(OSError(errno.EAGAIN, "Resource temporarily unavailable"))
    assert is_transient("logmel: failed: CUDA out of memory. Tried to allocate 2.00 GiB")
    assert is_transient(TransientBatchError("x"))
    assert not is_transient(FileNotFoundError(errno.ENOENT, "No such file"))
    assert not is_transient("x.mp4: not a media file (Invalid data found when processing input)")
    assert not is_transient(ValueError("bad config"))
    assert not is_transient("timed out after 130 s (per-video limit extraction.timeout_seconds + ...)")


def test_paths_come_from_parameters_then_environment(monkeypatch, tmp_path):
    for var in ("SENTIFLOW_HOME", "SENTIFLOW_CACHE", "SENTIFLOW_MOSI_ROOT", "SENTIFLOW_INBOX", "SENTIFLOW_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SENTIFLOW_HOME", str(tmp_path / "home"))
    assert settings.cache_dir() == tmp_path / "home" / "cache"
    assert settings.cache_dir("/x/c") == Path("/x/c")
    monkeypatch.setenv("SENTIFLOW_CACHE", str(tmp_path / "c2"))
    assert settings.cache_dir() == tmp_path / "c2"
    with pytest.raises(settings.FlowSettingError, match="parameter `root` or set SENTIFLOW_MOSI_ROOT"):
        settings.dataset_root("mosi")
    monkeypatch.setenv("SENTIFLOW_MOSI_ROOT", str(tmp_path / "mosi"))
    assert settings.dataset_root("mosi") == tmp_path / "mosi"
    assert settings.dataset_root("mosi", "/data/m") == Path("/data/m")
    with pytest.raises(settings.FlowSettingError, match="SENTIFLOW_INBOX"):
        settings.inbox_dir()
    assert settings.config_path() is None
    monkeypatch.setenv("SENTIFLOW_CONFIG", "/etc/sf.yaml")
    assert settings.config_path() == "/etc/sf.yaml"
    monkeypatch.delenv("SENTIFLOW_MOSI_FOLDS", raising=False)
    assert settings.folds_path("mosi") is None
    monkeypatch.setenv("SENTIFLOW_MOSI_FOLDS", str(tmp_path / "f.json"))
    assert settings.folds_path("mosi") == tmp_path / "f.json" and settings.folds_path("mosi", "/p.json") == Path("/p.json")


def test_folds_are_read_only_where_splits_are_used(monkeypatch, tmp_path, capsys):
    """Extraction opens a MOSI layout with custom ids as it is; training takes the parameter, then the environment,
    then <root>/folds.json, and lists ids in none of them as unassigned."""
    import json

    from flows.corpus import open_corpus
    from pipeline.corpora.cmu import write_cmu_raw
    from pipeline.corpora.folds import require_split
    from pipeline.labels import read_labels
    from tests.helpers.paths import SAMPLES

    monkeypatch.delenv("SENTIFLOW_MOSI_FOLDS", raising=False)
    root = write_cmu_raw(read_labels(SAMPLES / "labels.csv", SAMPLES), tmp_path / "mosi")
    ds = open_corpus("mosi", str(root))
    assert len(ds.media) == 10 and ds.splits_from == "" and "'rows': 10" in capsys.readouterr().out
    ds = open_corpus("mosi", str(root), labelled_for="training", splits=True)
    assert len(ds.table) == 0 and len(ds.unassigned) == 3
    assert "3 video id(s) (astro_cool, astro_front, astro_mirror) are in none of the folds" in capsys.readouterr().out
    with pytest.raises(Exception, match=r"training needs rows in split 'train'.*SENTIFLOW_MOSI_FOLDS"):
        require_split(ds, "train", "training")
    for name, folds in (("root", {"train": ["astro_cool"]}), ("env", {"train": ["astro_front"]}),
                        ("param", {"train": ["astro_mirror"]})):
        path = root / "folds.json" if name == "root" else tmp_path / f"{name}.json"
        path.write_text(json.dumps(folds), encoding="utf-8")
    monkeypatch.setenv("SENTIFLOW_MOSI_FOLDS", str(tmp_path / "env.json"))
    assert {r.video_id for r in open_corpus("mosi", str(root), splits=True).table} == {"astro_front"}
    picked = open_corpus("mosi", str(root), str(tmp_path / "param.json"), splits=True)
    assert {r.video_id for r in picked.table} == {"astro_mirror"} and picked.unassigned == ["astro_cool", "astro_front"]
    monkeypatch.delenv("SENTIFLOW_MOSI_FOLDS")
    assert {r.video_id for r in open_corpus("mosi", str(root), splits=True).table} == {"astro_cool"}


def test_expected_failures_are_logged_in_one_line_and_bugs_keep_their_traceback():
    import logging

    from flows.outcome import OneLineExpectedFailures, failure_note, one_line
    from pipeline.corpora.base import DatasetError

    def record(exc: BaseException, msg: str) -> logging.LogRecord:
        try:
            raise exc
        except BaseException:
            import sys
            return logging.LogRecord("prefect.flow_runs", logging.ERROR, __file__, 1, msg, None, sys.exc_info())

    expected = record(DatasetError("CMU-MOSI root /x is not a directory"), "Engine execution exited")
    assert OneLineExpectedFailures().filter(expected) and expected.exc_info is None
    assert logging.Formatter().format(expected) == \
        "Engine execution exited: DatasetError: CMU-MOSI root /x is not a directory"
    bug = record(KeyError("k"), "Encountered exception during execution: %r")
    assert OneLineExpectedFailures().filter(bug) and bug.exc_info is not None
    assert "Traceback" in logging.Formatter().format(bug)
    assert one_line("a\n  b\tc") == "a b c" and len(one_line("x" * 900)) == 600
    rows = [{"file": f"/d/{i}.mp4", "reason": f"bad {i}"} for i in range(5)]
    assert failure_note(rows, "the summary") == \
        "5 file(s) failed (0.mp4: bad 0; 1.mp4: bad 1; 2.mp4: bad 2; and 2 more); see the summary"


def test_latest_run_picks_the_newest_trained_run(tmp_path):
    with pytest.raises(settings.FlowSettingError, match="does not exist"):
        settings.latest_run(tmp_path / "runs")
    (tmp_path / "runs" / "not-a-run").mkdir(parents=True)
    with pytest.raises(settings.FlowSettingError, match="no model runs under"):
        settings.latest_run(tmp_path / "runs")
    for i, name in enumerate(("old", "new")):
        d = tmp_path / "runs" / name
        d.mkdir()
        (d / "run.json").write_text("{}")
        os.utime(d, (time.time() - 100 + i * 50,) * 2)
    assert settings.latest_run(tmp_path / "runs").name == "new"


def test_device_limit_is_per_host_and_device():
    name = settings.device_limit_name("sentiflow-extract", "cuda:0")
    assert name.startswith("sentiflow-extract-") and name.endswith("-cuda-0")
    assert name == name.lower() and " " not in name
    assert settings.device_limit_name("p", "cpu") != settings.device_limit_name("p", "cuda:1")


def test_orchestration_options_are_typed():
    cfg = settings.OrchestrationConfig.from_dict({"files_per_task": 4, "retries": 0})
    assert (cfg.files_per_task, cfg.retries, cfg.device_slots_gpu) == (4, 0, 1)
    with pytest.raises(Exception, match="unknown config key"):
        settings.OrchestrationConfig.from_dict({"batch": 3}, where="orchestration")


def test_scores_and_plots_markdown(tmp_path):
    import pandas as pd

    from flows.evaluate import plots_markdown
    from flows.score import scores_markdown

    frame = pd.DataFrame({"id": ["a", "b", "c"], "score": [1.5, -0.5, float("nan")],
                          "status": ["scored", "scored", "failed"], "reason": ["", "", "no audio stream"]})
    md = scores_markdown(frame, tmp_path / "s.csv", tmp_path / "run", max_rows=2)
    assert "3 clip(s), 2 scored, 1 failed" in md and "mean score +0.500" in md
    assert "| a | +1.500 | scored |" in md and "1 more rows" in md
    png = tmp_path / "p.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\nfake")
    md = plots_markdown({"pr_curve": str(png), "gone": str(tmp_path / "missing.png")})
    assert "data:image/png;base64,iVBORw0KGgpmYWtl" in md and f"`{tmp_path / 'missing.png'}`" in md


def test_report_markdown_gets_its_figures_inline(tmp_path):
    from flows.report import inline_images
    from models.plots import plot_loss_curve

    (tmp_path / "figures").mkdir()
    png = plot_loss_curve([{"epoch": 1, "train": {"total": 1.0}}, {"epoch": 2, "train": {"total": 0.5}}],
                          tmp_path / "figures" / "curve.png", title="t")
    md = "# r\n\n![loss](figures/curve.png)\n\n![gone](figures/missing.png)\n"
    out = inline_images(md, tmp_path)
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    assert f"![loss](data:image/png;base64,{data})" in out
    assert "![gone](figures/missing.png)" in out          # a missing file stays a link


@pytest.mark.parametrize("model,aligned,expected", [("seq2seq", True, ["aligned"]),
                                                     ("vae_amdt_small", False, ["fer", "logmel", "text"])])
def test_score_flow_pre_extracts_exactly_the_sources_the_run_reads(monkeypatch, tmp_path, model, aligned, expected):
    """A word-aligned run reads the `aligned` extractor's entries, so that is what the flow extracts first."""
    import flows.score as score_flow
    from extractors.config import SentiFlowConfig
    from models.data import DataConfig
    from models.run_dir import write_run_record
    from tests.helpers.media_factory import make_clip

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    make_clip(inbox / "a.mp4", seconds=0.5)
    run = tmp_path / "run"
    run.mkdir()
    write_run_record(run, {"model": model, "model_config": {}, "spec": {}, "features": SentiFlowConfig().to_dict(),
                           "data": DataConfig(aligned=aligned).to_dict()})
    asked: dict[str, object] = {}
    monkeypatch.setattr(score_flow, "extract_media", lambda media, cache, features, device, only, **kw:
                        asked.setdefault("only", only))
    monkeypatch.setattr(score_flow, "create_markdown_artifact", lambda **kw: None)
    import models.scoring
    monkeypatch.setattr(models.scoring, "score_media", lambda *a, **kw: __import__("pandas").DataFrame(
        {"id": ["a"], "score": [0.5], "status": ["scored"]}))
    score_flow.score.fn(folder=str(inbox), run_dir=str(run), cache=str(tmp_path / "cache"),
                        out=str(tmp_path / "s.csv"))
    assert asked["only"] == expected


def test_stage_rows_sum_the_runner_outcomes_costliest_first(tmp_path: Path) -> None:
    from extractors.config import SentiFlowConfig
    from extractors.runner import ExtractionRunner
    from flows.extract import stage_rows
    from pipeline.cache import FeatureCache
    from tests.helpers.media_factory import make_clip

    clips = [make_clip(tmp_path / f"c{i}.mp4", seconds=1.0 + i) for i in range(2)]
    cfg = SentiFlowConfig()
    cfg.extraction.extractors, cfg.extraction.isolate = ["logmel"], False
    summary = ExtractionRunner(cfg, FeatureCache(tmp_path / "cache")).run(clips, progress=False)
    rows = stage_rows([vars(o) for o in summary.items])
    assert {r["stage"] for r in rows} == {"probe+hash", "decode:audio", "logmel"}
    assert [r["seconds"] for r in rows] == sorted((r["seconds"] for r in rows), reverse=True)
    logmel = next(r["seconds"] for r in rows if r["stage"] == "logmel")
    assert logmel == pytest.approx(sum(o.stages["logmel"] for o in summary.items), abs=1e-3) and logmel > 0
    assert stage_rows([{"path": "x", "status": "failed"}]) == []


def test_host_devices_give_one_slot_per_gpu():
    from pipeline.config import ConfigError
    from pipeline.system import host_devices

    assert host_devices("cuda", gpu_count=4) == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]
    assert host_devices("auto", gpu_count=2) == ["cuda:0", "cuda:1"]
    assert host_devices("auto", gpu_count=0) == ["cpu"]
    assert host_devices("cuda:2", gpu_count=4) == ["cuda:2"]
    assert host_devices("cpu", gpu_count=4) == ["cpu"]
    with pytest.raises(ConfigError, match="has no CUDA device"):
        host_devices("cuda", gpu_count=0)
    with pytest.raises(ConfigError, match="has 2 CUDA device"):
        host_devices("cuda:3", gpu_count=2)
    import torch  # the host's own count when none is given (what the flows use)

    assert host_devices("auto") == ([f"cuda:{i}" for i in range(torch.cuda.device_count())] or ["cpu"])
    with pytest.raises(ConfigError, match="auto, cpu or cuda"):
        host_devices("gpu")
    names = {settings.device_limit_name("sentiflow-extract", d) for d in host_devices("cuda", gpu_count=4)}
    assert len(names) == 4                                  # each GPU has its own limit


def test_task_runner_and_slot_settings_are_checked():
    cfg = settings.OrchestrationConfig.from_dict({"task_runner": {"kind": "dask", "address": "tcp://s:8786"}},
                                                 where="orchestration")
    assert (cfg.task_runner.kind, cfg.task_runner.address, cfg.slot_lease_seconds) == ("dask", "tcp://s:8786", 60.0)
    with pytest.raises(Exception, match="task_runner.kind must be one of threads, dask"):
        settings.OrchestrationConfig.from_dict({"task_runner": {"kind": "ray"}})
    with pytest.raises(Exception, match="unknown config key.*orchestration.task_runner.workers"):
        settings.OrchestrationConfig.from_dict({"task_runner": {"workers": 2}}, where="orchestration")
    with pytest.raises(Exception, match="slot_lease_seconds must be >= 60"):
        settings.OrchestrationConfig.from_dict({"slot_lease_seconds": 5})
    with pytest.raises(Exception, match="device_slots_gpu and device_slots_cpu must be >= 1"):
        settings.OrchestrationConfig.from_dict({"device_slots_cpu": 0})


def test_cpu_slots_share_the_cores():
    from flows.extract import _with_cpu_threads

    config = {"extraction": {"cpu_threads": None, "batch_size": 8}}
    cores = os.cpu_count() or 1
    assert _with_cpu_threads(config, "cpu", 2)["extraction"]["cpu_threads"] == max(1, cores // 2)
    assert _with_cpu_threads(config, "cpu", 1) is config                   # one slot: torch's default
    assert _with_cpu_threads(config, "cuda:0", 2) is config
    assert _with_cpu_threads({"extraction": {"cpu_threads": 3}}, "cpu", 2)["extraction"]["cpu_threads"] == 3


def _isolation_check_in_daemon(queue) -> None:
    from flows.extract import _check_can_isolate

    try:
        _check_can_isolate({"extraction": {"isolate": True}})
        queue.put("")
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        queue.put(str(exc))


def test_a_daemonic_dask_worker_is_told_how_to_start_isolated_extraction():
    import multiprocessing

    from flows.extract import _check_can_isolate

    _check_can_isolate({"extraction": {"isolate": True}})     # this process may start children
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_isolation_check_in_daemon, args=(queue,), daemon=True)
    proc.start()
    message = queue.get(timeout=120)
    proc.join(30)
    assert "DASK_DISTRIBUTED__WORKER__DAEMON=False" in message, message


def test_deployments_survive_their_workers_and_crashed_hosts_are_detected():
    """prefect.yaml keeps flow runs off the worker's output stream and sends heartbeats often enough for the
    automation in automations.yaml to tell a dead host from a slow one."""
    import yaml
    from prefect.events.schemas.automations import AutomationCore

    from tests.helpers.paths import ROOT

    project = yaml.safe_load((ROOT / "prefect.yaml").read_text(encoding="utf-8"))
    for dep in project["deployments"]:
        jobs = dep["work_pool"]["job_variables"]
        assert jobs["stream_output"] is False, dep["name"]
        heartbeat = int(jobs["env"]["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"])
        assert "sentiflow" in dep["tags"], dep["name"]
    (spec,) = yaml.safe_load((ROOT / "automations.yaml").read_text(encoding="utf-8"))["automations"]
    automation = AutomationCore.model_validate(spec)
    assert automation.trigger.within.total_seconds() >= 3 * heartbeat
    assert "prefect.flow-run.heartbeat" in automation.trigger.expect
    assert automation.actions[0].type == "change-flow-run-state" and automation.actions[0].state.value == "CRASHED"
    assert automation.trigger.match_related.root == {"prefect.resource.role": "tag", "prefect.resource.id":
                                                "prefect.tag.sentiflow"}
