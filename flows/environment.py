"""Where the flows read and write when a parameter is left empty: environment settings of the worker.

A deployment never carries an absolute path: dataset roots, the cache, model runs and score outputs come
from flow parameters, or else from these environment variables on the machine that runs the flow:

    SENTIFLOW_HOME            base folder (default ~/.sentiflow): cache/, runs/, scores/ below it
    SENTIFLOW_CACHE           feature cache          (default $SENTIFLOW_HOME/cache)
    SENTIFLOW_RUNS            model run directories  (default $SENTIFLOW_HOME/runs)
    SENTIFLOW_SCORES          score files            (default $SENTIFLOW_HOME/scores)
    SENTIFLOW_CONFIG          SentiFlow YAML config  (default: the built-in defaults)
    SENTIFLOW_INBOX           folder of new videos scored by `score/folder` and `score/nightly`
    SENTIFLOW_<NAME>_ROOT     dataset roots, e.g. SENTIFLOW_MOSI_ROOT, SENTIFLOW_URFUNNY_ROOT
    SENTIFLOW_<NAME>_FOLDS    folds files, read where splits are used (train, evaluate, experiments)
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.config import ConfigBase, ConfigError
from pipeline.system import host_name


class FlowSettingError(ConfigError):
    """A flow needs a path that is neither a parameter nor set in the worker's environment."""


def _env_path(name: str, default: Path | None) -> Path | None:
    value = os.environ.get(name, "").strip()
    return Path(value).expanduser() if value else default


TASK_RUNNERS = ("threads", "dask")


@dataclass
class TaskRunnerConfig(ConfigBase):
    """Where a flow's tasks run: the flow process's own threads, or a Dask cluster (the `distributed` extra)."""

    kind: str = "threads"                # threads | dask
    address: str | None = None           # dask: a running scheduler (tcp://host:8786); None: a local cluster
    n_workers: int = 2                   # dask local cluster: worker processes on this host
    threads_per_worker: int = 1          # dask local cluster: tasks one worker process runs at once

    def __post_init__(self) -> None:
        if self.kind not in TASK_RUNNERS:
            raise ConfigError(f"orchestration.task_runner.kind must be one of {', '.join(TASK_RUNNERS)}, "
                              f"got {self.kind!r}")
        if self.n_workers < 1 or self.threads_per_worker < 1:
            raise ConfigError("orchestration.task_runner.n_workers and threads_per_worker must be >= 1")


@dataclass
class OrchestrationConfig(ConfigBase):
    """Knobs of the Prefect flows: batching, retries, the task runner and the per-host device slots."""

    files_per_task: int = 32             # files per extraction task (the runner batches them by
                                         # extraction.batch_size inside one isolated child process)
    retries: int = 2                     # task retries on transient failures (CUDA OOM, I/O hiccups)
    retry_delay_seconds: float = 10.0
    task_runner: TaskRunnerConfig = field(default_factory=TaskRunnerConfig)
    device_slots_gpu: int = 1            # extraction tasks one GPU runs at once; each GPU of a host has its own
                                         # slots, and a task is bound to the GPU whose slot it holds (cuda:i)
    device_slots_cpu: int = 1            # extraction tasks one host runs at once on its CPU; they share the cores
                                         # (each gets cores / slots torch threads unless extraction.cpu_threads)
    slot_timeout_seconds: float = 3600.0  # give up waiting for a device slot after this long
    slot_lease_seconds: float = 60.0     # a held slot's lease (>= 60, the server's minimum), renewed while its
                                         # task runs: a dead host's slot is free again this long after its last
                                         # renewal
    limit_prefix: str = "sentiflow-extract"

    def __post_init__(self) -> None:
        if self.device_slots_gpu < 1 or self.device_slots_cpu < 1:
            raise ConfigError("orchestration.device_slots_gpu and device_slots_cpu must be >= 1")
        if self.slot_lease_seconds < 60:   # the Prefect 3.8 server refuses shorter leases (422)
            raise ConfigError(f"orchestration.slot_lease_seconds must be >= 60, got {self.slot_lease_seconds}")


def device_limit_name(prefix: str, device: str) -> str:
    """Global concurrency limit guarding one device of this host, e.g. `sentiflow-extract-gpu1-cuda-0`."""
    host = re.sub(r"[^a-z0-9-]+", "-", host_name().lower()).strip("-") or "host"
    dev = re.sub(r"[^a-z0-9-]+", "-", device.lower()).strip("-")
    return f"{prefix}-{host}-{dev}"


def home() -> Path:
    """SENTIFLOW_HOME or ~/.sentiflow."""
    return _env_path("SENTIFLOW_HOME", Path.home() / ".sentiflow")  # type: ignore[return-value]


def cache_dir(value: str | None = None) -> Path:
    """The feature cache: the parameter, SENTIFLOW_CACHE, or $SENTIFLOW_HOME/cache."""
    return Path(value).expanduser() if value else _env_path("SENTIFLOW_CACHE", home() / "cache")  # type: ignore


def runs_dir(value: str | None = None) -> Path:
    """Where model runs go: the parameter, SENTIFLOW_RUNS, or $SENTIFLOW_HOME/runs."""
    return Path(value).expanduser() if value else _env_path("SENTIFLOW_RUNS", home() / "runs")  # type: ignore


def scores_dir(value: str | None = None) -> Path:
    """Where score files go: the parameter, SENTIFLOW_SCORES, or $SENTIFLOW_HOME/scores."""
    return Path(value).expanduser() if value else _env_path("SENTIFLOW_SCORES", home() / "scores")  # type: ignore


def config_path(value: str | None = None) -> str | None:
    """The SentiFlow YAML config: the parameter, SENTIFLOW_CONFIG, or None (built-in defaults)."""
    if value:
        return value
    env = os.environ.get("SENTIFLOW_CONFIG", "").strip()
    return env or None


def dataset_variable(dataset: str, what: str) -> str:
    """The environment variable of one dataset setting, e.g. SENTIFLOW_MOSI_ROOT or SENTIFLOW_MOSI_FOLDS."""
    return f"SENTIFLOW_{re.sub(r'[^A-Z0-9]+', '_', dataset.upper())}_{what}"


def folds_path(dataset: str, value: str | None = None) -> Path | None:
    """A dataset's folds file: the parameter, else SENTIFLOW_<DATASET>_FOLDS, else None (the dataset's own)."""
    if value:
        return Path(value).expanduser()
    return _env_path(dataset_variable(dataset, "FOLDS"), None)


def dataset_root(dataset: str, value: str | None = None) -> Path:
    """A dataset's root: the parameter, else SENTIFLOW_<DATASET>_ROOT; an error names both when neither is set."""
    if value:
        return Path(value).expanduser()
    var = dataset_variable(dataset, "ROOT")
    env = _env_path(var, None)
    if env is None:
        raise FlowSettingError(f"no root for dataset {dataset!r}: pass the flow parameter `root` or set {var} "
                               "in the worker's environment")
    return env


def inbox_dir(value: str | None = None) -> Path:
    """The folder of new videos to score: the parameter or SENTIFLOW_INBOX."""
    if value:
        return Path(value).expanduser()
    env = _env_path("SENTIFLOW_INBOX", None)
    if env is None:
        raise FlowSettingError("no folder of videos to score: pass the flow parameter `folder` or set "
                               "SENTIFLOW_INBOX in the worker's environment")
    return env


def latest_run(runs: Path) -> Path:
    """The most recently modified model run directory under `runs` (one holding a run.json)."""
    from models.run_dir import RUN_FILE  # here, not at import: flows that never read runs start without torch

    if not runs.is_dir():
        raise FlowSettingError(f"no model runs: {runs} does not exist (train one with `train/default`, or pass "
                               "the flow parameter `run_dir`)")
    candidates = [p for p in runs.iterdir() if (p / RUN_FILE).is_file()]
    if not candidates:
        raise FlowSettingError(f"no model runs under {runs} (train one with `train/default`, or pass `run_dir`)")
    return max(candidates, key=lambda p: p.stat().st_mtime)
