"""The real sample cache's rows as one training set, for "overfits the real cached clips" tests of the zoo."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from extractors.config import SentiFlowConfig
from models.data import DataConfig, PackedDataset, build_dataset
from pipeline.cache import FeatureCache
from pipeline.labels import read_labels


def sample_training_set(sample_cache: tuple[Path, Path, Path], aligned: bool) -> PackedDataset:
    """Every labelled sample clip (all splits) as training rows, word-aligned or not, without a valid split."""
    cache, media_root, labels = sample_cache
    table = read_labels(labels, media_root)
    rows = [dataclasses.replace(r, mode="train") for r in table]
    return build_dataset(SentiFlowConfig(), FeatureCache(cache), rows,
                         DataConfig(aligned=aligned, valid_fraction=0.0), require_modalities=True)
