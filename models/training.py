"""The Python API of the training engine: train a model from the cache, score media, evaluate a run.

Used by the CLI (`sentiflow train|score|evaluate`), the demo job and the Prefect flows.
A run directory holds run.json (model, spec, train/data configs and the feature config the cache
was built with), model.safetensors (best weights), checkpoint/last.* (resumable state),
metrics.json, loss_curve.png and train.log.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from extractors.config import SentiFlowConfig, load_config
from models.base import ModelSpec, count_parameters
from models.data import DataConfig, PackedDataset, build_dataset
from models.evaluation import write_eval_report
from models.prepare import extract_for_rows, label_table
from models.registry import DEFAULT_MODEL, build_model, get_model_class
from models.run_dir import PLOTS_DIR, run_dir_lock, write_run_record
from models.tasks import TaskConfig, resolve_monitor, resolve_pos_weight
from models.trainer import TrainConfig, Trainer
from pipeline.cache import FeatureCache
from pipeline.config import ConfigBase, ConfigError
from pipeline.labels import LabelTable
from pipeline.system import resolve_device

log = logging.getLogger(__name__)



@dataclass
class RunOptions(ConfigBase):
    """Training options: the model's, trainer's, data's and task's configs (YAML sections model/train/data/task)."""

    model: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    task: TaskConfig = field(default_factory=TaskConfig)


def train_model(cache_dir: str | Path, labels: str | Path | LabelTable, model: str = DEFAULT_MODEL,
                out_dir: str | Path | None = None, config_path: str | Path | None = None, device: str = "auto",
                media_root: str | Path | None = None, modalities: Sequence[str] | None = None,
                options: dict[str, Any] | None = None, *, extract_missing: bool = False, resume: bool = False,
                progress: bool = False) -> Path:
    """Train `model` on the labelled rows' cached features into `out_dir`; returns the run directory."""
    if out_dir is None:
        raise ConfigError("train_model needs out_dir (the run directory to create)")
    run_dir = Path(out_dir)
    opts = RunOptions.from_dict(options or {}, where="options")
    if modalities:
        opts.data.modalities = [m.strip() for m in modalities if m.strip()]
    config = load_config(str(config_path) if config_path else None)
    cls = get_model_class(model)
    if cls.uses_token_ids:
        opts.data.token_inputs = True   # the model fine-tunes the text encoder from token ids
    if cls.aligned:
        opts.data.aligned = True    # the model reads word-aligned inputs (batch keys aligned_*)
    dev = resolve_device(device)
    cache = FeatureCache(cache_dir)
    table = label_table(labels, media_root)
    if extract_missing:
        extract_for_rows(table, config, cache, opts.data, dev, progress)
    dataset = build_dataset(config, cache, table, opts.data, progress=progress,
                            require_modalities=bool(modalities), task=opts.task)
    spec = task_spec(opts, dataset)
    net = seeded_model(model, spec, opts)
    run_dir.mkdir(parents=True, exist_ok=True)
    with run_dir_lock(run_dir):
        return _train_in(run_dir, model, net, spec, opts, config, table, dataset, dev, progress, resume)


def seeded_model(model: str, spec: ModelSpec, opts: "RunOptions") -> Any:
    """The model with its initial weights drawn from `train.seed`, so the same command gives the same run."""
    torch.manual_seed(opts.train.seed)
    return build_model(model, spec, opts.model)


def _train_in(run_dir: Path, model: str, net: Any, spec: ModelSpec, opts: "RunOptions", config: SentiFlowConfig,
              table: LabelTable, dataset: Any, dev: torch.device, progress: bool, resume: bool) -> Path:
    """Write the run record, train, and write the validation report (the run directory is locked)."""
    data_used = DataConfig.from_dict({**opts.data.to_dict(), "modalities": dataset.modalities})
    task = opts.task
    monitor, mode = resolve_monitor(task, opts.train.monitor, opts.train.monitor_mode)
    train_cfg = TrainConfig.from_dict({**opts.train.to_dict(), "monitor": monitor, "monitor_mode": mode})
    write_run_record(run_dir, {
        "model": model, "model_config": net.config.to_dict(), "spec": spec.to_dict(),
        "task": task.to_dict(), "pos_weight": list(spec.pos_weight) or None,
        "train": train_cfg.to_dict(), "data": data_used.to_dict(), "features": config.to_dict(),
        "labels": str(table.source), "parameters": count_parameters(net),
        "dataset": {"splits": {k: len(v) for k, v in dataset.splits.items()}, "skipped": dataset.skipped,
                    "masked": dataset.flags},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    trainer = Trainer(net, dataset, train_cfg, run_dir, dev, progress=progress,
                      gpu_memory_fraction=opts.data.gpu_memory_fraction, task=task)
    for s in dataset.skipped:
        trainer.log.warning("row %s skipped: %s", s["id"], s["reason"])
    trainer.fit(resume=resume)
    trainer.write_summary({"skipped_rows": len(dataset.skipped), "task": task.kind})
    if "valid" in dataset.splits and len(dataset.splits["valid"]) >= 2:
        write_eval_report(trainer.model, dataset.splits["valid"], dev, run_dir / PLOTS_DIR / "valid",
                          {"model": model, "split": "valid"}, task=task)
    return run_dir


def train_on_dataset(dataset: PackedDataset, model: str, options: RunOptions | dict[str, Any] | None,
                     run_dir: str | Path, config: SentiFlowConfig, table: LabelTable, device: torch.device,
                     progress: bool = False, resume: bool = False) -> Path:
    """Train `model` on an already packed dataset into an ordinary run directory (experiments pack once)."""
    opts = options if isinstance(options, RunOptions) else RunOptions.from_dict(options or {}, where="options")
    spec = task_spec(opts, dataset)
    net = seeded_model(model, spec, opts)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with run_dir_lock(run_dir):
        return _train_in(run_dir, model, net, spec, opts, config, table, dataset, device, progress, resume)


def task_spec_fields(opts: RunOptions) -> dict[str, Any]:
    """The ModelSpec's task and output size for the options' task (regression when the options have none)."""
    task = getattr(opts, "task", None) or TaskConfig()
    return {"task": task.kind, "n_outputs": task.n_outputs, "loss": task.loss}


def task_spec(opts: RunOptions, dataset: PackedDataset) -> ModelSpec:
    """The ModelSpec of a dataset for the options' task, BCE positive weights resolved on the train split."""
    train = dataset.splits.get("train")
    if train is None or len(train) == 0:
        raise ConfigError("the labels have no usable 'train' rows")
    pos_weight = resolve_pos_weight(opts.task, train.tensors["label"])
    return ModelSpec(dims=dict(dataset.dims), seq_lens=dict(dataset.seq_lens), pos_weight=pos_weight or [],
                     **task_spec_fields(opts))
