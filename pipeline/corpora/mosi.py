"""CMU-MOSI: the CMU raw layout when present, else the MMSA layout."""

from __future__ import annotations

import os

from pipeline.corpora.base import Dataset, DatasetError, require_dir
from pipeline.corpora.cmu import CMU_LABEL_DIR, CMU_VIDEO_DIRS, first_dir, load_cmu_raw
from pipeline.corpora.mmsa import load_mmsa


def load_mosi(root: str | os.PathLike, dataset: str = "mosi") -> Dataset:
    """CMU-MOSI (or MOSEI with dataset='mosei'): the CMU raw layout when present, else the MMSA layout."""
    root = require_dir(root, f"CMU-{dataset.upper()}")
    if first_dir(root, CMU_VIDEO_DIRS) is not None:
        return load_cmu_raw(root, dataset)
    if (root / "label.csv").is_file():
        return load_mmsa(root, dataset)
    raise DatasetError(f"{root}: neither the CMU raw layout ({root / CMU_VIDEO_DIRS[0]}/<video>_<n>.mp4 + "
                       f"{root / CMU_LABEL_DIR}/OpinionLevelSentiment.csv) nor the MMSA layout "
                       f"({root / 'label.csv'} + Raw/<video_id>/<clip_id>.mp4)")
