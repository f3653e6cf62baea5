"""k-fold cross-validation grouped by source video (no speaker leaks between folds), beside the standard split.

VAE-AMDT reports 10-fold CV beside the standard split. Folds are groups of whole source videos
(`LabelRow.video_id`), balanced in rows; each fold's model trains on the other folds with a validation set
carved from their videos (also whole videos) and is tested on the held-out fold. The table gives the mean ±
std over folds (and seeds), the metrics of the pooled out-of-fold predictions, and the standard split.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch

from models.experiments.runs import (
    ExperimentData,
    ExperimentResult,
    check_seeds,
    entry,
    headline_columns,
    load_experiment_data,
    make_dataset,
    summarise,
    task_of,
    train_member,
    write_experiment,
)
from models.run_dir import EVAL_DIR, METRICS_FILE, PREDICTIONS_FILE
from models.tasks import task_metrics
from models.training import RunOptions
from pipeline.config import ConfigError
from pipeline.files import atomic_write_json
from pipeline.labels import LabelTable

STANDARD = "standard split"


def group_kfold(video_ids: Sequence[str], k: int, seed: int = 0) -> list[list[int]]:
    """Row indices of each of `k` folds; a video's rows share one fold; folds balanced in rows; deterministic.

    Videos are taken largest first (ties in a seeded random order) and each goes to the fold with the
    fewest rows so far (ties: the lowest fold number), as scikit-learn's GroupKFold does.
    """
    if k < 2:
        raise ConfigError(f"cross-validation needs at least 2 folds, got {k}")
    sizes: dict[str, int] = {}
    for v in video_ids:
        sizes[str(v)] = sizes.get(str(v), 0) + 1
    if k > len(sizes):
        raise ConfigError(f"{k} folds need at least {k} source videos, but the rows come from {len(sizes)} "
                          f"({', '.join(sorted(sizes)[:10])}{', ...' if len(sizes) > 10 else ''}); "
                          f"use --folds {len(sizes)} or fewer")
    order = sorted(sizes)
    random.Random(seed).shuffle(order)
    order.sort(key=lambda v: -sizes[v])          # stable: equal sizes keep the seeded order
    load = [0] * k
    fold_of: dict[str, int] = {}
    for v in order:
        f = min(range(k), key=lambda i: (load[i], i))
        fold_of[v] = f
        load[f] += sizes[v]
    folds: list[list[int]] = [[] for _ in range(k)]
    for i, v in enumerate(video_ids):
        folds[fold_of[str(v)]].append(i)
    return folds


def grouped_holdout(ids: Sequence[str], video_of: dict[str, str], fraction: float, seed: int
                    ) -> tuple[list[str], list[str]]:
    """(train ids, validation ids): whole videos (seeded order) moved to validation until `fraction` of the rows.

    At least one video stays in training; with a single video (or fraction 0) there is no validation set.
    """
    videos = sorted({video_of[i] for i in ids})
    if fraction <= 0 or len(videos) < 2:
        return list(ids), []
    random.Random(seed).shuffle(videos)
    target = fraction * len(ids)
    chosen: set[str] = set()
    count = 0
    for v in videos[:-1]:
        if count >= target:
            break
        chosen.add(v)
        count += sum(1 for i in ids if video_of[i] == v)
    return [i for i in ids if video_of[i] not in chosen], [i for i in ids if video_of[i] in chosen]


def video_map(data: ExperimentData) -> dict[str, str]:
    """Pool row id -> its source video (the row id when the labels name none)."""
    return {rid: (row.video_id or rid) for rid, row in data.rows.items()}


def standard_parts(data: ExperimentData, eval_split: str = "test") -> dict[str, list[str]]:
    """train/valid/<eval_split> row ids from the labels' own modes; validation carved by video when absent."""
    by_mode: dict[str, list[str]] = {}
    for rid in data.pool.ids:
        by_mode.setdefault(data.rows[rid].mode, []).append(rid)
    counts = ", ".join(f"{m} {len(v)}" for m, v in sorted(by_mode.items())) or "none"
    if not by_mode.get(eval_split):
        raise ConfigError(f"the labels have no usable rows in the {eval_split!r} split (rows with features per "
                          f"split: {counts}); choose another evaluation split or add {eval_split} rows")
    if not by_mode.get("train"):
        raise ConfigError(f"the labels have no usable 'train' rows (rows with features per split: {counts})")
    train = by_mode["train"]
    valid = by_mode.get("valid", []) if eval_split != "valid" else []
    if not valid:
        train, valid = grouped_holdout(train, video_map(data), data.options.data.valid_fraction,
                                       data.options.data.split_seed)
    parts = {"train": train, eval_split: by_mode[eval_split]}
    if valid:
        parts["valid"] = valid
    return parts


def run_cross_validation(cache_dir: str | Path, labels: str | Path | LabelTable, model: str, out_dir: str | Path,
                         *, folds: int = 10, seeds: Sequence[int] = (1,), standard_split: bool = True,
                         options: dict[str, Any] | RunOptions | None = None, config_path: str | Path | None = None,
                         device: str = "auto", media_root: str | Path | None = None, progress: bool = False,
                         modalities: Sequence[str] | None = None, extract_missing: bool = False
                         ) -> ExperimentResult:
    """Grouped k-fold CV of `model` (train on k-1 folds, test on the held-out one), beside the standard split."""
    seeds = check_seeds(seeds)
    out = Path(out_dir)
    data = load_experiment_data(cache_dir, labels, model, options, config_path, device, media_root, modalities,
                                extract_missing, progress)
    videos = video_map(data)
    ids = list(data.pool.ids)
    split_seed = data.options.data.split_seed
    fold_rows = group_kfold([videos[i] for i in ids], folds, split_seed)
    std_parts = standard_parts(data, "test") if standard_split else None
    metrics = headline_columns(data.options)
    fold_info = []
    entries: list[dict[str, Any]] = []
    protocol = f"{folds}-fold CV (grouped by video)"
    jobs: list[tuple[str, int | str, dict[str, list[str]], Path]] = []
    for f, rows_idx in enumerate(fold_rows):
        test = [ids[i] for i in rows_idx]
        held = set(test)
        rest = [i for i in ids if i not in held]
        train, valid = grouped_holdout(rest, videos, data.options.data.valid_fraction, split_seed + f + 1)
        parts = {"train": train, "test": test, **({"valid": valid} if valid else {})}
        fold_info.append({"fold": f + 1, "test_videos": sorted({videos[i] for i in test}),
                          "valid_videos": sorted({videos[i] for i in valid}),
                          "rows": {k: len(v) for k, v in parts.items()}})
        jobs.append((protocol, f + 1, parts, out / "runs" / f"fold{f + 1:02d}"))
    if std_parts is not None:
        jobs.append((STANDARD, "", std_parts, out / "runs" / "standard"))
    bar = _bar(len(jobs) * len(seeds), progress)
    for name, fold, parts, cell_dir in jobs:
        dataset = make_dataset(data, parts, data.modalities)
        for seed in seeds:
            run_dir = cell_dir / f"seed{seed}"
            res = train_member(data, dataset, run_dir, seed, ["test"], progress=False)
            entries.append(entry(run_dir, out, {"protocol": name, "fold": fold}, seed, "test", res["test"]))
            bar.update(1)
    bar.close()
    cv_entries = [e for e in entries if e["cell"]["protocol"] == protocol]
    pooled = _pooled(out, data, cv_entries, seeds, protocol)
    table = summarise(cv_entries, ["protocol"], metrics)
    if pooled:
        table = pd.concat([table, summarise(pooled, ["protocol"], metrics)], ignore_index=True)
    if std_parts is not None:
        table = pd.concat([table, summarise([e for e in entries if e["cell"]["protocol"] == STANDARD],
                                            ["protocol"], metrics)], ignore_index=True)
    settings = {"folds": folds, "seeds": seeds, "standard_split": standard_split, "group_by": "video_id",
                "split_seed": split_seed, "valid_fraction": data.options.data.valid_fraction,
                "modalities": data.modalities, "unavailable_modalities": data.unavailable,
                "fold_contents": fold_info, "videos": len(set(videos.values())), "rows": len(ids),
                "skipped_rows": data.skipped, "labels": str(data.table.source), "cache": str(cache_dir),
                "options": data.options.to_dict(),
                "pooled": [{"seed": e["seed"], "metrics": e["metrics"], "predictions": e["predictions"]}
                           for e in pooled],
                "standard_rows": {k: len(v) for k, v in std_parts.items()} if std_parts else None}
    return write_experiment(out, "cross_validation", data, settings, entries, table, ["protocol"],
                            f"{data.model}: {protocol}" + (" and the standard split" if standard_split else ""))


def _pooled(out: Path, data: ExperimentData, cv_entries: list[dict[str, Any]], seeds: list[int],
            protocol: str) -> list[dict[str, Any]]:
    """Per seed, the task metrics of all folds' test predictions together (one prediction per row)."""
    task = task_of(data.options)
    pooled = []
    for seed in seeds:
        frames = []
        for e in cv_entries:
            if e["seed"] != seed:
                continue
            pred_file = out / e["run_dir"] / EVAL_DIR / "test" / PREDICTIONS_FILE
            frame = pd.read_csv(pred_file)
            if not {"label", "prediction"} <= set(frame.columns):
                return []           # multi-column predictions (multi-label): no pooled row
            frames.append(frame.assign(fold=e["cell"]["fold"]))
        joined = pd.concat(frames, ignore_index=True)
        metrics = task_metrics(task, torch.tensor(joined["prediction"].to_numpy()),
                                     torch.tensor(joined["label"].to_numpy()))
        target = out / "pooled" / f"seed{seed}"
        target.mkdir(parents=True, exist_ok=True)
        joined.to_csv(target / PREDICTIONS_FILE, index=False)
        atomic_write_json(target / METRICS_FILE, metrics, default=float)
        pooled.append({"cell": {"protocol": f"{protocol}, pooled predictions", "fold": "all"}, "seed": seed,
                       "metrics": metrics, "predictions": str((target / PREDICTIONS_FILE).relative_to(out))})
    return pooled


def _bar(total: int, progress: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc="runs", unit="run", disable=not progress, dynamic_ncols=True)
