"""The dataset step every flow shares: a corpus's root from the parameter or the environment, opened by its adapter."""

from __future__ import annotations

from typing import Any

from flows import environment
from pipeline.corpora import load_dataset
from pipeline.corpora.base import Dataset


def open_corpus(dataset: str, root: str | None = None, folds: str | None = None, language: str | None = None,
                labelled_for: str = "", options: dict[str, Any] | None = None) -> Dataset:
    """Open `dataset` at `root` (or its SENTIFLOW_<DATASET>_ROOT); `options` go to its adapter (e.g. moseas
    split / drop_neutral); with `labelled_for` (e.g. "training"), a corpus without labels is a FlowSettingError
    saying what needed them. Prints the corpus summary to the flow log."""
    root_path = environment.dataset_root(dataset, root)
    options = {**(options or {}), **{k: v for k, v in (("folds", folds), ("language", language)) if v}}
    ds = load_dataset(dataset, root_path, **options)
    if labelled_for and ds.table is None:
        raise environment.FlowSettingError(f"dataset {dataset!r} has no labels: {labelled_for} needs a labelled dataset")
    print(f"{dataset} at {root_path}: {ds.summary()}")
    return ds
