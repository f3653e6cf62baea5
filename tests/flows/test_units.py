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
