"""Prefect flows `ablate`, `crossval` and `transfer`: the papers' experiment tables from cached features.

Each flow loads a labelled dataset through its adapter, runs the experiment of `models.experiments` (every
member run is an ordinary run directory), and attaches the table as a Prefect table artifact plus the
results report (`models.report.build`) as a markdown artifact. Paths come from parameters or the worker's
environment (flows/settings.py), never from the deployment.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import create_table_artifact

from flows import environment as settings
from flows.corpus import open_corpus
from flows.train import with_dataset_task
from models.recipes import apply_recipe


def _out_dir(kind: str, dataset: str, model: str, runs: str | None, name: str | None) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return settings.runs_dir(runs) / (name or f"{kind}-{dataset}-{model}-{stamp}")


def publish_experiment(result: Any, key: str, title: str) -> str:
    """Attach an experiment's table (table artifact) and its results report (markdown artifact)."""
    from flows.report import attach_report

    rows = result.table.astype(str).to_dict("records")
    create_table_artifact(key=f"{key}-table", table=rows, description=f"{title}: {result.out_dir}")
    print(result.table.to_string(index=False))
    return attach_report([Path(result.out_dir)], Path(result.out_dir) / "report", title, key=f"{key}-report")


@flow(name="ablate", log_prints=True)
def ablate(dataset: str = "mosi", root: str | None = None, model: str = "vae_amdt", cache: str | None = None,
           runs: str | None = None, name: str | None = None, config: str | None = None, device: str = "auto",
           modality_sets: list[str] | None = None, components: list[str] | None = None,
           seeds: list[int] | None = None, options: dict[str, Any] | None = None, eval_split: str = "test",
           folds: str | None = None, language: str | None = None, recipe: str | None = None) -> str:
    """Train `model` over modality subsets x switched-off components x seeds; returns the experiment dir."""
    from models.experiments.ablation import run_ablation

    ds = open_corpus(dataset, root, folds, language, labelled_for="experiments")
    out = _out_dir("ablation", dataset, model, runs, name)
    result = run_ablation(settings.cache_dir(cache), ds.table, model, out, modality_sets=modality_sets,
                          components=components, seeds=tuple(seeds or (1, 2, 3)),
                          options=with_dataset_task(apply_recipe(model, recipe, options), ds.task),
                          config_path=settings.config_path(config),
                          device=device, eval_split=eval_split)
    publish_experiment(result, "ablation", f"ablation of {model} on {dataset}")
    return str(result.out_dir)


@flow(name="crossval", log_prints=True)
def crossval(dataset: str = "mosi", root: str | None = None, model: str = "vae_amdt", cache: str | None = None,
             runs: str | None = None, name: str | None = None, config: str | None = None, device: str = "auto",
             k: int = 10, seeds: list[int] | None = None, standard_split: bool = True,
             options: dict[str, Any] | None = None, folds: str | None = None, language: str | None = None,
             recipe: str | None = None) -> str:
    """k-fold cross-validation grouped by source video, beside the standard split; returns the experiment dir."""
    from models.experiments.cross_validation import run_cross_validation

    ds = open_corpus(dataset, root, folds, language, labelled_for="experiments")
    out = _out_dir("crossval", dataset, model, runs, name)
    result = run_cross_validation(settings.cache_dir(cache), ds.table, model, out, folds=k,
                                  seeds=tuple(seeds or (1,)), standard_split=standard_split,
                                  options=with_dataset_task(apply_recipe(model, recipe, options), ds.task),
                                  config_path=settings.config_path(config), device=device)
    publish_experiment(result, "crossval", f"{k}-fold cross-validation of {model} on {dataset}")
    return str(result.out_dir)


@flow(name="transfer", log_prints=True)
def transfer(source_dataset: str = "mosi", source_root: str | None = None, target_dataset: str = "moseas",
             target_root: str | None = None, target_languages: list[str] | None = None, model: str = "crosslingual_nce",
             cache: str | None = None, runs: str | None = None, name: str | None = None, config: str | None = None,
             device: str = "auto", fractions: list[float] | None = None, seeds: list[int] | None = None,
             options: dict[str, Any] | None = None, source_folds: str | None = None, recipe: str | None = None,
             source_language: str | None = None, source_options: dict[str, Any] | None = None,
             target_options: dict[str, Any] | None = None) -> str:
    """Train on the source dataset's language; zero-/few-shot evaluation on each target language. The multilingual
    paper's setting: source and target moseas, source_language fr, targets es, both with options
    {split: paper, drop_neutral: true} (its AdaMML rows; its Multilogue/NCE rows keep the neutral segments)."""
    from models.experiments.language_transfer import DEFAULT_FRACTIONS, run_language_transfer
    from pipeline.labels import LabelTable

    source = open_corpus(source_dataset, source_root, source_folds, source_language, labelled_for="experiments",
                         options=source_options)
    languages = sorted({r.language for r in source.table})
    if len(languages) != 1 or not languages[0]:
        raise settings.FlowSettingError(f"source dataset {source_dataset!r} must hold one language, found "
                                        f"{', '.join(repr(x) for x in languages)}")
    targets = list(target_languages or ["es"])
    rows = list(source.table)
    for lang in targets:
        rows.extend(open_corpus(target_dataset, target_root, language=lang, labelled_for="experiments",
                                options=target_options).table)
    table = LabelTable(rows, f"{source_dataset}+{target_dataset}")
    out = _out_dir("transfer", f"{source_dataset}-{target_dataset}", model, runs, name)
    result = run_language_transfer(settings.cache_dir(cache), table, model, out, source=languages[0],
                                   targets=targets, fractions=tuple(fractions or DEFAULT_FRACTIONS),
                                   seeds=tuple(seeds or (1,)), options=apply_recipe(model, recipe, options),
                                   config_path=settings.config_path(config), device=device)
    publish_experiment(result, "transfer", f"{model}: {languages[0]} -> {', '.join(targets)}")
    return str(result.out_dir)
