"""CMU-MOSEI: the CMU raw (segmented) or MMSA layout, read like MOSI with MOSEI's standard folds."""

from __future__ import annotations

import os

from pipeline.corpora.base import Dataset
from pipeline.corpora.mosi import load_mosi


def load_mosei(root: str | os.PathLike) -> Dataset:
    """CMU-MOSEI in the CMU raw (segmented) or MMSA layout (splits as for MOSI, with MOSEI's standard folds)."""
    return load_mosi(root, dataset="mosei")
