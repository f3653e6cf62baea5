"""The Python API of the training engine: train a model from the cache, score media, evaluate a run.

Used by the CLI (`sentiflow train|score|evaluate`), the demo job and the Prefect flows.
A run directory holds run.json (model, spec, train/data configs and the feature config the cache
was built with), model.safetensors (best weights), checkpoint/last.* (resumable state),
metrics.json, loss_curve.png and train.log.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from extractors.config import SentiFlowConfig, load_config
from models.base import ModelSpec, count_parameters
from models.data import DataConfig, PackedDataset, build_dataset
from models.evaluation import write_eval_report
from models.optimization import TrainConfig
from models.prepare import extract_for_rows, label_table
from models.recipes import apply_recipe
from models.registry import DEFAULT_MODEL, build_model, get_model_class
from models.run_dir import (
    CURVE_FILE,
    METRICS_FILE,
    PLOTS_DIR,
    RUN_FILE,
    SEEDS_DIR,
    SEEDS_FILE,
    WEIGHTS_FILE,
    read_run_record,
    run_dir_lock,
    write_run_record,
)
from models.tasks import TaskConfig, resolve_monitor, resolve_pos_weight
from models.trainer import Trainer
from pipeline.cache import FeatureCache
from pipeline.config import ConfigBase, ConfigError
from pipeline.files import atomic_write_json
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
                options: dict[str, Any] | None = None, *, recipe: str | None = None, extract_missing: bool = False,
                resume: bool = False, progress: bool = False) -> Path:
    """Train `model` on the labelled rows' cached features into `out_dir`; returns the run directory.

    `recipe` names a training recipe of the model (`models/recipes/<model>.yaml`, e.g. "paper:mosi") that
    `options` override key by key. With several `train.seeds`, each seed trains into `out_dir/seeds/seed-<s>`;
    `out_dir` then holds the seed that did best on validation and `seeds.json` (every seed, mean and std).
    """
    if out_dir is None:
        raise ConfigError("train_model needs out_dir (the run directory to create)")
    run_dir = Path(out_dir)
    opts = RunOptions.from_dict(apply_recipe(model, recipe, options), where="options")
    if modalities:
        opts.data.modalities = [m.strip() for m in modalities if m.strip()]
    config = load_config(str(config_path) if config_path else None)
    translations_for = set_model_data_needs(model, opts)
    dev = resolve_device(device)
    cache = FeatureCache(cache_dir)
    table = label_table(labels, media_root)
    if extract_missing:
        extract_for_rows(table, config, cache, opts.data, dev, progress)
    dataset = build_dataset(config, cache, table, opts.data, progress=progress,
                            require_modalities=bool(modalities), task=opts.task, translations_for=translations_for)
    spec = task_spec(opts, dataset)
    run_dir.mkdir(parents=True, exist_ok=True)
    with run_dir_lock(run_dir):
        if len(opts.train.seeds) <= 1:
            if opts.train.seeds:
                opts.train.seed = opts.train.seeds[0]
            net = seeded_model(model, spec, opts)
            return _train_in(run_dir, model, net, spec, opts, config, table, dataset, dev, progress, resume, recipe)
        runs: dict[int, Path] = {}
        for seed in opts.train.seeds:
            one = RunOptions.from_dict(opts.to_dict(), where="options")
            one.train.seed, one.train.seeds = seed, []
            runs[seed] = _train_in(run_dir / SEEDS_DIR / f"seed-{seed}", model, seeded_model(model, spec, one), spec,
                                   one, config, table, dataset, dev, progress, resume, recipe)
        return keep_best_seed(run_dir, runs)


def set_model_data_needs(model: str, opts: "RunOptions") -> str:
    """Set the data options the model's class and config call for (token ids, word-aligned inputs, translations);
    returns the settings that need translations ("" when none does), for the error when there are none."""
    cls = get_model_class(model)
    if cls.uses_token_ids:
        opts.data.token_inputs = True   # the model fine-tunes the text encoder from token ids
    if cls.aligned:
        opts.data.aligned = True    # the model reads word-aligned inputs (batch keys aligned_*)
    needed_by = cls.needs_translations(cls.Config.from_dict(opts.model, where=f"model.{model}"))
    opts.data.translations = bool(needed_by)
    return needed_by


def keep_best_seed(run_dir: Path, runs: dict[int, Path]) -> Path:
    """Make `run_dir` the seed run that did best on its monitored validation value, beside `seeds.json`
    (every seed's metrics per split, and the mean and standard deviation over seeds)."""
    summaries = {seed: json.loads((path / METRICS_FILE).read_text(encoding="utf-8")) for seed, path in runs.items()}
    record = read_run_record(next(iter(runs.values())))
    mode = record["train"]["monitor_mode"]
    best = {seed: s.get("best_value", float("nan")) for seed, s in summaries.items()}
    finite = {k: v for k, v in best.items() if v == v}
    chosen = (min if mode == "min" else max)(finite, key=finite.get) if finite else next(iter(runs))
    for name in (RUN_FILE, WEIGHTS_FILE, METRICS_FILE, CURVE_FILE):
        if (runs[chosen] / name).is_file():
            shutil.copy2(runs[chosen] / name, run_dir / name)
    if (runs[chosen] / PLOTS_DIR).is_dir():
        shutil.copytree(runs[chosen] / PLOTS_DIR, run_dir / PLOTS_DIR, dirs_exist_ok=True)
    per_split: dict[str, dict[str, dict[str, Any]]] = {}
    for split in summaries[chosen]["metrics"]:
        keys = sorted({k for s in summaries.values() for k, v in s["metrics"].get(split, {}).items()
                       if isinstance(v, (int, float))})
        per_split[split] = {}
        for k in keys:
            values = [float(s["metrics"][split][k]) for s in summaries.values() if k in s["metrics"].get(split, {})]
            per_split[split][k] = {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1))
                                   if len(values) > 1 else 0.0, "values": values}
    atomic_write_json(run_dir / SEEDS_FILE, {
        "seeds": list(runs), "selected": chosen, "monitor": record["train"]["monitor"], "monitor_mode": mode,
        "best_value": best, "runs": {str(k): str(v.relative_to(run_dir)) for k, v in runs.items()},
        "metrics": per_split}, default=float)
    return run_dir


def seeded_model(model: str, spec: ModelSpec, opts: "RunOptions") -> Any:
    """The model with its initial weights drawn from `train.seed`, so the same command gives the same run."""
    torch.manual_seed(opts.train.seed)
    return build_model(model, spec, opts.model)


def _train_in(run_dir: Path, model: str, net: Any, spec: ModelSpec, opts: "RunOptions", config: SentiFlowConfig,
              table: LabelTable, dataset: Any, dev: torch.device, progress: bool, resume: bool,
              recipe: str | None = None) -> Path:
    """Write the run record, train, and write the validation report (the run directory is locked)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    data_used = DataConfig.from_dict({**opts.data.to_dict(), "modalities": dataset.modalities})
    task = opts.task
    monitor, mode = resolve_monitor(task, opts.train.monitor, opts.train.monitor_mode)
    train_cfg = TrainConfig.from_dict({**opts.train.to_dict(), "monitor": monitor, "monitor_mode": mode})
    write_run_record(run_dir, {
        "model": model, "model_config": net.config.to_dict(), "spec": spec.to_dict(),
        "task": task.to_dict(), "pos_weight": list(spec.pos_weight) or None,
        "train": train_cfg.to_dict(), "data": data_used.to_dict(), "features": config.to_dict(),
        "labels": str(table.source), "parameters": count_parameters(net), "recipe": recipe,
        "dataset": {"splits": {k: len(v) for k, v in dataset.splits.items()}, "skipped": dataset.skipped,
                    "masked": dataset.flags},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    trainer = Trainer(net, dataset, train_cfg, run_dir, dev, progress=progress,
                      gpu_memory_fraction=opts.data.gpu_memory_fraction, task=task)
    for s in dataset.skipped:
        trainer.log.warning("row %s skipped: %s", s["id"], s["reason"])
    state = trainer.fit(resume=resume)
    trainer.write_summary({"skipped_rows": len(dataset.skipped), "task": task.kind, "best_value": state["best"]})
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
