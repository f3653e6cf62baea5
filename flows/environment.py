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
import socket
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import ConfigBase, ConfigError


class FlowSettingError(ConfigError):
    """A flow needs a path that is neither a parameter nor set in the worker's environment."""


def _env_path(name: str, default: Path | None) -> Path | None:
    value = os.environ.get(name, "").strip()
    return Path(value).expanduser() if value else default


@dataclass
class OrchestrationConfig(ConfigBase):
    """Knobs of the Prefect flows: batching, retries and the per-host extraction slot."""

    files_per_task: int = 32             # files per extraction task (the runner batches them by
                                         # extraction.batch_size inside one isolated child process)
    retries: int = 2                     # task retries on transient failures (CUDA OOM, I/O hiccups)
    retry_delay_seconds: float = 10.0
    device_slots_gpu: int = 1            # extraction tasks one host runs at once on a GPU (serialised)
    device_slots_cpu: int = 1            # ... on CPU (torch already uses every core inside one task)
    slot_timeout_seconds: float = 3600.0  # give up waiting for the device slot after this long
    limit_prefix: str = "sentiflow-extract"


def device_limit_name(prefix: str, device: str) -> str:
    """Global concurrency limit guarding one host's device, e.g. `sentiflow-extract-gpu1-cuda-0`."""
    host = re.sub(r"[^a-z0-9-]+", "-", socket.gethostname().lower()).strip("-") or "host"
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
