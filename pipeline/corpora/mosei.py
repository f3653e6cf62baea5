"""CMU-MOSEI: the CMU raw (segmented) or MMSA layout, read like MOSI with MOSEI's standard folds."""

from __future__ import annotations

import os

from pipeline.corpora.base import Dataset
from pipeline.corpora.mosi import load_mosi


def load_mosei(root: str | os.PathLike, folds: str | os.PathLike | None = None) -> Dataset:
    """CMU-MOSEI in the CMU raw (segmented) or MMSA layout, standard folds unless `folds`."""
    return load_mosi(root, folds, dataset="mosei")
