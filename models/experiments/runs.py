"""What every experiment shares: the packed feature pool, member runs, mean ± std tables, the experiment directory.

An experiment packs every labelled row's features ONCE (all modalities it needs) into one pool; each member
run gets its splits by row id and its modality subset by dropping the other modalities' tensors, then trains
through `models.training.train_on_dataset` into an ordinary run directory (run.json, metrics.json,
loss_curve.png, model.safetensors, eval/<split>/...), so `sentiflow evaluate|score|report` work on it.

Experiment directory layout (read by `sentiflow report` and the Prefect flows):
  experiment.json   {"format": 1, "kind", "model", "task", "settings", "created", "table_columns", "runs": [...]}
  results.csv       one row per (member run, evaluation split): cell columns, seed, every scalar metric
  table.csv/.md     the papers' layout: one row per cell, "mean ± std" over seeds/folds, and n
  runs/<cell>/seed<k>/   member run directories
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch

from extractors.config import SentiFlowConfig, load_config
from models.data import TOKEN_TENSORS, PackedDataset, PackedSplit, build_dataset
from models.evaluation import write_eval_report
from models.prepare import extract_for_rows
from models.registry import get_model_class
from models.run_dir import (
    EVAL_DIR,
    EXPERIMENT_FILE,
    METRICS_FILE,
    RESULTS_FILE,
    TABLE_FILE,
    TABLE_MARKDOWN,
    WEIGHTS_FILE,
)
from models.tasks import TaskConfig, headline_metrics
from models.training import RunOptions, set_model_data_needs, train_on_dataset
from pipeline.cache import FeatureCache
from pipeline.config import ConfigError
from pipeline.files import markdown_table
from pipeline.labels import LabelRow, LabelTable, read_labels
from pipeline.modalities import MODALITIES, modality_code
from pipeline.system import resolve_device

log = logging.getLogger(__name__)

FORMAT = 1
PERCENT_PREFIXES = ("acc", "f1", "wacc")   # metrics the papers print as percentages


@dataclass
class ExperimentResult:
    """An experiment directory, its table (papers' layout) and one entry per (member run, evaluation split)."""

    out_dir: Path
    table: pd.DataFrame
    runs: list[dict[str, Any]]


def slug(text: str) -> str:
    """A file-name-safe form of a cell label."""
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", text).strip("_") or "cell"


def run_options(options: dict[str, Any] | RunOptions | None) -> RunOptions:
    """Training options from a dict (YAML sections model/train/data/task) or as given."""
    if isinstance(options, RunOptions):
        return RunOptions.from_dict(options.to_dict(), where="options")
    return RunOptions.from_dict(options or {}, where="options")


def task_of(opts: RunOptions) -> TaskConfig:
    """The options' TaskConfig (regression when the options carry none)."""
    return opts.task if opts.task is not None else TaskConfig()


def headline_columns(opts: RunOptions) -> list[tuple[str, str]]:
    """(metric key, column title) of the task's headline metrics, in the papers' order."""
    return list(headline_metrics(task_of(opts)))   # the TaskConfig names the classes (f1_<class>)


# ---------------------------------------------------------------- the packed pool


@dataclass
class ExperimentData:
    """Every usable labelled row packed once into one split, plus what member runs need to train."""

    pool: PackedSplit
    rows: dict[str, LabelRow]              # pool row id -> its label row
    modalities: list[str]                  # modalities with cached features in the pool
    dims: dict[str, int]
    seq_lens: dict[str, int]
    prefix: str                            # '' or 'aligned_'
    skipped: list[dict[str, str]]
    flags: dict[str, list[str]]
    table: LabelTable
    config: SentiFlowConfig
    options: RunOptions
    model: str
    device: torch.device
    unavailable: dict[str, str] = field(default_factory=dict)   # modality -> why the pool lacks it

    def index_of(self) -> dict[str, int]:
        """Row id -> position in the pool."""
        return {rid: i for i, rid in enumerate(self.pool.ids)}


def load_experiment_data(cache_dir: str | Path, labels: str | Path | LabelTable, model: str,
                         options: dict[str, Any] | RunOptions | None = None,
                         config_path: str | Path | None = None, device: str = "auto",
                         media_root: str | Path | None = None, modalities: Sequence[str] | None = None,
                         extract_missing: bool = False, progress: bool = False) -> ExperimentData:
    """Read the labels and pack every row's cached features once (all modalities the model can use)."""
    cls = get_model_class(model)
    opts = run_options(options)
    wanted = list(modalities) if modalities else list(opts.data.modalities)
    unavailable = {m: f"model {model} does not use {m} (it uses {', '.join(cls.modalities)})"
                   for m in wanted if m not in cls.modalities}
    opts.data.modalities = [m for m in wanted if m in cls.modalities]
    if not opts.data.modalities:
        raise ConfigError(f"none of the modalities {', '.join(wanted)} is one model {model} can use "
                          f"({', '.join(cls.modalities)})")
    translations_for = set_model_data_needs(model, opts)
    config = load_config(str(config_path) if config_path else None)
    dev = resolve_device(device)
    cache = FeatureCache(cache_dir)
    table = labels if isinstance(labels, LabelTable) else read_labels(labels, media_root)
    if extract_missing:
        extract_for_rows(table, config, cache, opts.data, dev, progress)
    data = type(opts.data).from_dict({**opts.data.to_dict(), "valid_fraction": 0.0})   # experiments split
    dataset = build_dataset(config, cache, table, data, progress=progress, task=task_of(opts),
                            translations_for=translations_for)
    for m in opts.data.modalities:
        if m not in dataset.modalities:
            unavailable[m] = f"no cached '{opts.data.source(m).extractor}' features for any row"
    pool = concat_splits([dataset.splits[k] for k in sorted(dataset.splits)])
    by_id = {r.id: r for r in table}
    return ExperimentData(pool, {rid: by_id[rid] for rid in pool.ids}, list(dataset.modalities),
                          dict(dataset.dims), dict(dataset.seq_lens), opts.data.prefix, list(dataset.skipped),
                          dict(dataset.flags), table, config, opts, model, dev, unavailable)


def concat_splits(splits: Sequence[PackedSplit]) -> PackedSplit:
    """One split holding the rows of all `splits` (token tensors padded to a common length)."""
    splits = [s for s in splits if len(s)]
    if not splits:
        raise ConfigError("no labelled row has usable features")
    keys = list(splits[0].tensors)
    out: dict[str, torch.Tensor] = {}
    for k in keys:
        parts = [s.tensors[k] for s in splits]
        if k in TOKEN_TENSORS and len({p.shape[1] for p in parts}) > 1:
            width = max(p.shape[1] for p in parts)
            fill = TOKEN_TENSORS[k][1]
            parts = [torch.nn.functional.pad(p, (0, width - p.shape[1]), value=fill) for p in parts]
        out[k] = torch.cat(parts)
    out["index"] = torch.arange(sum(len(s) for s in splits), dtype=torch.int64)
    return PackedSplit(out, [i for s in splits for i in s.ids])


def select_rows(split: PackedSplit, positions: Sequence[int]) -> PackedSplit:
    """The rows at `positions` (in that order) as a new split with a fresh row index."""
    idx = torch.as_tensor(list(positions), dtype=torch.int64)
    tensors = {k: v.index_select(0, idx) for k, v in split.tensors.items()}
    tensors["index"] = torch.arange(len(idx), dtype=torch.int64)
    return PackedSplit(tensors, [split.ids[i] for i in idx.tolist()])


def slice_modalities(split: PackedSplit, keep: Sequence[str], prefix: str) -> PackedSplit:
    """Drop the other modalities' tensors (and token inputs without text) and zero their `present` column."""
    tensors = dict(split.tensors)
    for m in MODALITIES:
        if m not in keep:
            tensors.pop(f"{prefix}{m}", None)
            tensors.pop(f"{prefix}{m}_mask", None)
    if "text" not in keep:
        for k in TOKEN_TENSORS:
            tensors.pop(k, None)
    present = tensors["present"].clone()
    for i, m in enumerate(MODALITIES):
        if m not in keep:
            present[:, i] = 0.0
    tensors["present"] = present
    if prefix == "aligned_":
        tensors["aligned_mask"] = torch.stack([tensors[f"aligned_{m}_mask"] for m in keep]).amax(0)
    return PackedSplit(tensors, list(split.ids))


def make_dataset(data: ExperimentData, parts: dict[str, Sequence[str]], modalities: Sequence[str]
                 ) -> PackedDataset:
    """A PackedDataset of the given row ids per split, restricted to `modalities` (rows with none dropped)."""
    keep = [m for m in MODALITIES if m in modalities]
    missing = [m for m in keep if m not in data.modalities]
    if missing:
        raise ConfigError(f"modalities {', '.join(missing)} are not in the packed features")
    cols = [MODALITIES.index(m) for m in keep]
    where = data.index_of()
    splits: dict[str, PackedSplit] = {}
    skipped: list[dict[str, str]] = []
    has_any = (data.pool.tensors["present"][:, cols].sum(1) > 0).tolist()
    for name, ids in parts.items():
        pos = [where[i] for i in ids if i in where]
        usable = [p for p in pos if has_any[p]]
        skipped += [{"id": data.pool.ids[p], "reason": f"no {modality_code(keep)} features"}
                    for p in pos if not has_any[p]]
        if usable:
            splits[name] = slice_modalities(select_rows(data.pool, usable), keep, data.prefix)
    kept = {i for s in splits.values() for i in s.ids}
    flags = {rid: [m for m in ms if m in keep] for rid, ms in data.flags.items()
             if rid in kept and any(m in keep for m in ms)}
    return PackedDataset(splits, keep, {m: data.dims[m] for m in keep}, {m: data.seq_lens[m] for m in keep},
                         list(data.skipped) + skipped, flags)


# ---------------------------------------------------------------- member runs


def member_options(data: ExperimentData, seed: int, model_overrides: dict[str, Any] | None = None) -> RunOptions:
    """The experiment's options with this member's seed and model-config overrides."""
    opts = run_options(data.options)
    opts.train.seed = int(seed)
    opts.model = {**opts.model, **(model_overrides or {})}
    return opts


def train_member(data: ExperimentData, dataset: PackedDataset, run_dir: Path, seed: int,
                 eval_splits: Sequence[str], model_overrides: dict[str, Any] | None = None,
                 progress: bool = False) -> dict[str, dict[str, Any]]:
    """Train one member run (or reuse a finished identical one) and evaluate it on `eval_splits`."""
    from models.run_dir import load_run

    opts = member_options(data, seed, model_overrides)
    missing = [s for s in eval_splits if s not in dataset.splits]
    if missing:
        raise ConfigError(f"evaluation split(s) {', '.join(missing)} have no rows; splits: "
                          f"{', '.join(f'{k} ({len(v)})' for k, v in dataset.splits.items())}")
    done = _finished(run_dir, data, dataset, opts, eval_splits)
    if done is not None:
        log.info("reusing finished member run %s", run_dir)
        return done
    train_on_dataset(dataset, data.model, opts, run_dir, data.config, data.table, data.device, progress=progress)
    net, record = load_run(run_dir, data.device)
    out: dict[str, dict[str, Any]] = {}
    for split in eval_splits:
        extra = {"model": record["model_id"], "split": split, "labels": str(data.table.source)}
        metrics = write_eval_report(net, dataset.splits[split], data.device, run_dir / EVAL_DIR / split, extra,
                                    task=task_of(opts))
        out[split] = metrics
    (run_dir / EVAL_DIR / "member.json").write_text(json.dumps(
        {"signature": _signature(data, dataset, opts), "eval_splits": list(eval_splits)}, indent=1),
        encoding="utf-8")
    return out


def _signature(data: ExperimentData, dataset: PackedDataset, opts: RunOptions) -> dict[str, Any]:
    """What makes a member run: model, options (a default regression task left out), rows, modalities."""
    options = json.loads(json.dumps(opts.to_dict(), default=str))
    task = options.pop("task", None)
    if task is not None and task != TaskConfig().to_dict():
        options["task"] = task
    return {"model": data.model, "options": options,
            "splits": {k: v.ids for k, v in sorted(dataset.splits.items())}, "modalities": dataset.modalities}


def _finished(run_dir: Path, data: ExperimentData, dataset: PackedDataset, opts: RunOptions,
              eval_splits: Sequence[str]) -> dict[str, dict[str, Any]] | None:
    marker = run_dir / EVAL_DIR / "member.json"
    if not marker.is_file() or not (run_dir / WEIGHTS_FILE).is_file():
        return None
    try:
        info = json.loads(marker.read_text(encoding="utf-8"))
        if info["signature"] != _signature(data, dataset, opts):
            return None
        return {s: json.loads((run_dir / EVAL_DIR / s / METRICS_FILE).read_text(encoding="utf-8"))
                for s in eval_splits}
    except (OSError, KeyError, ValueError):
        return None


# ---------------------------------------------------------------- tables and the experiment directory


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The numeric entries of a metrics dict (plots, notes and nested values left out)."""
    return {k: float(v) for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def format_value(key: str, values: Sequence[float]) -> str:
    """'mean ± std' over seeds/folds (sample std; the mean alone for one value); percentages for accuracies."""
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not vals:
        return "n/a"
    scale, digits = (100.0, 1) if key.startswith(PERCENT_PREFIXES) else (1.0, 3)
    mean = sum(vals) / len(vals)
    if len(vals) < 2:
        return f"{scale * mean:.{digits}f}"
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))
    return f"{scale * mean:.{digits}f} ± {scale * std:.{digits}f}"


def summarise(entries: Sequence[dict[str, Any]], cell_columns: Sequence[str],
              metrics: Sequence[tuple[str, str]]) -> pd.DataFrame:
    """One row per cell (in first-seen order): 'mean ± std' of each headline metric over its entries, and n."""
    order: list[tuple] = []
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for e in entries:
        key = tuple(e["cell"][c] for c in cell_columns)
        if key not in groups:
            order.append(key)
            groups[key] = []
        groups[key].append(e)
    rows = []
    for key in order:
        row: dict[str, Any] = dict(zip(cell_columns, key))
        for mkey, title in metrics:
            row[title] = format_value(mkey, [g["metrics"].get(mkey, float("nan")) for g in groups[key]])
        row["n"] = len(groups[key])
        rows.append(row)
    return pd.DataFrame(rows, columns=[*cell_columns, *(t for _, t in metrics), "n"])


def write_experiment(out_dir: Path, kind: str, data: ExperimentData, settings: dict[str, Any],
                     entries: list[dict[str, Any]], table: pd.DataFrame, cell_columns: Sequence[str],
                     title: str = "") -> ExperimentResult:
    """Write experiment.json (table_columns: the cell columns that key the table's rows), results.csv,
    table.csv and table.md; return the result."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cell_cols = list(cell_columns)
    runs = [{"run_dir": e["run_dir"], "cell": e["cell"], "seed": e["seed"], "eval_split": e["eval_split"],
             "metrics": e["metrics"]} for e in entries]
    record = {"format": FORMAT, "kind": kind, "model": data.model, "task": task_of(data.options).to_dict(),
              "settings": settings, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "table_columns": cell_cols, "runs": runs}
    (out_dir / EXPERIMENT_FILE).write_text(json.dumps(record, indent=1, default=_json_default,
                                                        ensure_ascii=False), encoding="utf-8")
    flat = []
    for e in entries:
        flat.append({**e["cell"], "seed": e["seed"], "eval_split": e["eval_split"], "run_dir": e["run_dir"],
                     **scalar_metrics(e["metrics"])})
    pd.DataFrame(flat).to_csv(out_dir / RESULTS_FILE, index=False)
    table.to_csv(out_dir / TABLE_FILE, index=False)
    head = f"# {title}\n\n" if title else ""
    (out_dir / TABLE_MARKDOWN).write_text(head + markdown_table(list(table.columns), table.values.tolist()),
                                           encoding="utf-8")
    return ExperimentResult(out_dir, table, runs)


def _json_default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, float) and math.isnan(o):
        return None
    return float(o) if isinstance(o, (int, float)) else str(o)


def check_seeds(seeds: Sequence[int]) -> list[int]:
    """Seeds as a non-empty list of distinct ints."""
    out = [int(s) for s in seeds]
    if not out:
        raise ConfigError("seeds is empty: give at least one seed")
    if len(set(out)) != len(out):
        raise ConfigError(f"seeds repeat: {out}")
    return out


def entry(run_dir: Path, out_dir: Path, cell: dict[str, Any], seed: int, split: str,
          metrics: dict[str, Any]) -> dict[str, Any]:
    """One experiment entry (a member run evaluated on one split); run_dir relative to the experiment dir."""
    return {"run_dir": str(run_dir.relative_to(out_dir)), "cell": cell, "seed": int(seed), "eval_split": split,
            "metrics": metrics}
