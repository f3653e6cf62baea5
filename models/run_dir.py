"""A training run's directory: every file name in it, defined once, and reading and writing its record.

    run.json            the run record: model, configs, the feature config scoring must reuse, versions
    model.safetensors   the best weights        checkpoint/last.{safetensors,json}  resumable state
    metrics.json        metrics per split       train.log, loss_curve.png           the log and the curve
    plots/<split>/      validation plots        eval/<name>/                        `sentiflow evaluate`
    seeds/seed-<s>/     one run per seed        seeds.json                          mean and std over seeds
An experiment directory holds experiment.json, results.csv, table.csv / table.md and runs/<member>/.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterator

import torch

from models.base import ModelSpec
from models.checkpoint import CheckpointError, json_default, load_weights
from models.registry import build_model
from pipeline.files import atomic_write_json
from pipeline.system import library_versions, pid_alive

RUN_FORMAT = 1                       # run.json "format" this version writes and reads
RUN_FILE = "run.json"
WEIGHTS_FILE = "model.safetensors"
CHECKPOINT_DIR = "checkpoint"
LAST_CHECKPOINT = "checkpoint/last"
METRICS_FILE = "metrics.json"
LOG_FILE = "train.log"
CURVE_FILE = "loss_curve.png"
LOCK_FILE = ".training.lock"
PLOTS_DIR = "plots"                  # plots/<split>/ of the validation report written after training
EVAL_DIR = "eval"                    # eval/<name>/ of each `sentiflow evaluate` (and experiments' member runs)
PREDICTIONS_FILE = "predictions.csv"
INSIGHTS_FILE = "insights.json"
EXPERIMENT_FILE = "experiment.json"
RESULTS_FILE = "results.csv"
TABLE_FILE = "table.csv"
TABLE_MARKDOWN = "table.md"
SEEDS_DIR = "seeds"                  # seeds/seed-<s>/: one run per seed when train.seeds names several
SEEDS_FILE = "seeds.json"            # every seed's metrics, their mean and std, the seed kept at the top


@contextlib.contextmanager
def run_dir_lock(run_dir: Path) -> Iterator[None]:
    """Hold `run_dir` for one training process; a second training into it is refused while the first runs."""
    lock = Path(run_dir) / LOCK_FILE
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = int(lock.read_text() or "0")
            except (OSError, ValueError):
                holder = 0
            if holder and pid_alive(holder):
                raise CheckpointError(f"run directory {run_dir} is being written by training process {holder}; "
                                      "choose another --out") from None
            lock.unlink(missing_ok=True)   # left by a training that died
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(str(os.getpid()))
        break
    else:
        raise CheckpointError(f"cannot lock run directory {run_dir}")
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def weights_id(path: str | Path) -> str:
    """Short content hash of a weights file (identifies a trained model in score tables)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()[:12]


def write_run_record(run_dir: str | Path, record: dict[str, Any]) -> None:
    """Write run.json: model name and config, data spec, train/data/feature configs, versions."""
    atomic_write_json(Path(run_dir) / RUN_FILE, {"format": RUN_FORMAT, **record, "versions": library_versions()},
                      default=json_default)


def read_run_record(run_dir: str | Path) -> dict[str, Any]:
    """The run.json of a run directory (a clear error when the directory is not a trained run)."""
    run_dir = Path(run_dir)
    path = run_dir / RUN_FILE
    if not path.is_file():
        raise CheckpointError(f"{run_dir} is not a SentiFlow run directory (no {RUN_FILE}); "
                              "train one with `sentiflow train`")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: cannot read the run record ({exc}); the run directory is damaged, "
                              "train again") from None
    if not isinstance(record, dict) or record.get("format") != RUN_FORMAT:
        found = record.get("format") if isinstance(record, dict) else type(record).__name__
        raise CheckpointError(f"{path}: run record format {found!r}, this SentiFlow reads format {RUN_FORMAT}")
    missing = [k for k in ("model", "model_config", "spec") if k not in record]
    if missing:
        raise CheckpointError(f"{path}: the run record lacks {', '.join(missing)}")
    return record


def load_run(run_dir: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild a trained model from its run directory (best weights) in eval mode, with its run record."""
    run_dir = Path(run_dir)
    record = read_run_record(run_dir)
    weights = run_dir / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{run_dir} has no trained weights ({WEIGHTS_FILE}); training did not finish an epoch")
    spec = ModelSpec.from_dict(record["spec"])
    model = build_model(record["model"], spec, record["model_config"])
    load_weights(model, weights, device)
    model.to(device).eval()
    record["model_id"] = f"{record['model']}@{weights_id(weights)}"
    return model, record
