"""Language transfer (multilingual paper): train on one language, test zero-shot and few-shot on others.

Rows carry `language`. The source-only model (fraction 0) is trained once per seed and evaluated on the
source's own test rows (the in-language reference) and on every target's test rows (zero-shot). For each
target and positive fraction, a model trains on the source plus that share of the target's training rows
(rehearsal: `models.experiments.rehearsal.rehearsal_table`, a fixed seeded sample) and is evaluated on the
target's and the source's test rows. Model selection uses the source's validation rows only (carved by
video from its training rows when it has none), so no zero-shot number has seen target labels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from models.experiments.cross_validation import grouped_holdout, video_map
from models.experiments.rehearsal import RehearsalConfig, rehearsal_table
from models.experiments.runs import (
    ExperimentResult,
    check_seeds,
    entry,
    headline_columns,
    load_experiment_data,
    make_dataset,
    slug,
    summarise,
    task_of,
    train_member,
    write_experiment,
)
from models.training import RunOptions
from pipeline.config import ConfigError
from pipeline.labels import LabelTable

DEFAULT_FRACTIONS = (0.0, 0.01, 0.13)   # zero-shot and the multilingual paper's few-shot rehearsal (7.3: 1 %, 13 %)
REGRESSION_COLUMNS = [("corr", "Pearson r"), ("mae", "MAE")]   # the multilingual paper's transfer table


def training_label(source: str, target: str, fraction: float) -> str:
    """'en' or 'en + 10% es': the table's training-data column."""
    return source if fraction == 0 else f"{source} + {100 * fraction:g}% {target}"


def run_language_transfer(cache_dir: str | Path, labels: str | Path | LabelTable, model: str, out_dir: str | Path,
                          *, source: str, targets: Sequence[str], fractions: Sequence[float] = DEFAULT_FRACTIONS,
                          seeds: Sequence[int] = (1,), options: dict[str, Any] | RunOptions | None = None,
                          config_path: str | Path | None = None, device: str = "auto",
                          media_root: str | Path | None = None, progress: bool = False,
                          modalities: Sequence[str] | None = None, extract_missing: bool = False
                          ) -> ExperimentResult:
    """Zero-shot and few-shot transfer from `source` to each target language; (training, evaluation) table."""
    seeds = check_seeds(seeds)
    targets = list(dict.fromkeys(t.strip() for t in targets if t.strip()))
    if not targets:
        raise ConfigError("language transfer needs at least one target language")
    if source in targets:
        raise ConfigError(f"target languages must differ from the source {source!r}")
    fractions = sorted({float(f) for f in fractions} | {0.0})
    bad = [f for f in fractions if not 0.0 <= f <= 1.0]
    if bad:
        raise ConfigError(f"fractions must lie in [0, 1], got {bad}")
    out = Path(out_dir)
    data = load_experiment_data(cache_dir, labels, model, options, config_path, device, media_root, modalities,
                                extract_missing, progress)
    langs = {r.language for r in data.rows.values()}
    all_langs = {r.language for r in data.table}
    for lang in [source, *targets]:
        if lang not in all_langs:
            raise ConfigError(f"language {lang!r} has no rows in {data.table.source}; the labels have languages "
                              f"{', '.join(sorted(l or '(unset)' for l in all_langs))} (add a language column)")
        if lang not in langs:
            raise ConfigError(f"language {lang!r} has no rows with cached features (extract them first)")
    ids_by = {}
    for lang in [source, *targets]:
        for mode in ("train", "valid", "test"):
            ids_by[lang, mode] = [rid for rid in data.pool.ids
                                  if data.rows[rid].language == lang and data.rows[rid].mode == mode]
        if not ids_by[lang, "test"]:
            raise ConfigError(f"language {lang!r} has no test rows to evaluate on (mode=test)")
    if not ids_by[source, "train"]:
        raise ConfigError(f"source language {source!r} has no training rows (mode=train)")
    src_train, src_valid = ids_by[source, "train"], ids_by[source, "valid"]
    if not src_valid:
        src_train, src_valid = grouped_holdout(src_train, video_map(data), data.options.data.valid_fraction,
                                               data.options.data.split_seed)
    valid_part = {"valid": src_valid} if src_valid else {}
    test_split = {lang: f"test_{slug(lang)}" for lang in [source, *targets]}
    # jobs: (training label, train ids, {evaluation language: split name})
    jobs: list[tuple[str, list[str], list[str]]] = [(source, src_train, [source, *targets])]
    rehearsal: list[dict[str, Any]] = []
    in_pool = set(data.pool.ids)
    for target in targets:
        for frac in fractions:
            if frac == 0:
                continue
            if not ids_by[target, "train"]:
                raise ConfigError(f"few-shot fraction {frac} needs training rows of {target!r} (mode=train); "
                                  "it has none")
            mixed = rehearsal_table(LabelTable([data.rows[i] for i in data.pool.ids], str(data.table.source)),
                                    RehearsalConfig(source, target, frac, data.options.data.split_seed))
            picked = [r.id for r in mixed if r.mode == "train" and r.language == target and r.id in in_pool]
            jobs.append((training_label(source, target, frac), src_train + picked, [target, source]))
            rehearsal.append({"target": target, "fraction": frac, "rows": len(picked), "ids": picked})
    metrics = REGRESSION_COLUMNS if task_of(data.options).kind == "regression" else headline_columns(data.options)
    entries: list[dict[str, Any]] = []
    from tqdm import tqdm

    bar = tqdm(total=len(jobs) * len(seeds), desc="transfer", unit="run", disable=not progress, dynamic_ncols=True)
    for label, train_ids, eval_langs in jobs:
        parts = {"train": train_ids, **valid_part, **{test_split[l]: ids_by[l, "test"] for l in eval_langs}}
        dataset = make_dataset(data, parts, data.modalities)
        for seed in seeds:
            run_dir = out / "runs" / slug("train_" + label.replace(" + ", "+").replace("%", "pct")) / f"seed{seed}"
            res = train_member(data, dataset, run_dir, seed, [test_split[l] for l in eval_langs])
            for lang in eval_langs:
                cell = {"training data": label, "evaluation data": lang}
                entries.append(entry(run_dir, out, cell, seed, test_split[lang], res[test_split[lang]]))
            bar.update(1)
    bar.close()
    table = summarise(entries, ["training data", "evaluation data"], metrics)
    settings = {"source": source, "targets": targets, "fractions": fractions, "seeds": seeds,
                "model_selection": f"validation rows of {source} only ({len(src_valid)} rows)",
                "rows": {f"{l}/{m}": len(v) for (l, m), v in ids_by.items()}, "rehearsal": rehearsal,
                "modalities": data.modalities, "unavailable_modalities": data.unavailable,
                "skipped_rows": data.skipped, "labels": str(data.table.source), "cache": str(cache_dir),
                "options": data.options.to_dict()}
    return write_experiment(out, "language_transfer", data, settings, entries, table,
                            ["training data", "evaluation data"],
                            f"{model}: transfer from {source} to {', '.join(targets)}")
