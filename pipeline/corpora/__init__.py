"""Corpus adapters: CMU-MOSI/MOSEI raw, MMSA, CMU-MOSEAS, UR-FUNNY and plain video folders -> labelled media.

Every adapter returns a `Dataset` (`pipeline.corpora.base`): its label table (None for an unlabelled folder),
the media files to extract, and `problems` (rows whose media file is absent, each as the path that was
expected and the reason), so one missing clip never stops the rest. Splits are assigned only where they are used
(`pipeline.corpora.folds.assign_splits`): extraction reads no folds. A missing or malformed
label/transcript/folds file raises `DatasetError` naming the file and what was expected in it. One module per
corpus; this table names them without importing any.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from pipeline.corpora.base import Dataset, DatasetError

ADAPTERS: dict[str, str] = {
    "mosi": "pipeline.corpora.mosi:load_mosi",
    "mosei": "pipeline.corpora.mosei:load_mosei",
    "moseas": "pipeline.corpora.moseas:load_moseas",
    "urfunny": "pipeline.corpora.urfunny:load_urfunny",
    "mmsa": "pipeline.corpora.mmsa:load_mmsa",
    "folder": "pipeline.corpora.folder:load_folder",
}


def load_dataset(name: str, root: str | os.PathLike, **options: Any) -> Dataset:
    """Open dataset `name` (mosi, mosei, moseas, urfunny, mmsa, folder) at `root`; options go to its adapter.
    Its rows have no train/valid/test splits yet: `pipeline.corpora.folds.assign_splits` gives them theirs."""
    if name not in ADAPTERS:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(sorted(ADAPTERS))}")
    module, attr = ADAPTERS[name].split(":")
    adapter = getattr(importlib.import_module(module), attr)
    opts = {k: v for k, v in options.items() if v is not None}
    try:
        return adapter(root, **opts)
    except TypeError as exc:
        raise DatasetError(f"dataset {name!r}: bad option(s) {', '.join(sorted(opts))} ({exc})") from exc
