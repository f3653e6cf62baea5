"""Features imported from other tools' files (CMU-MultimodalSDK `.csd`, MMSA `.pkl`): one extractor per modality.

`imported_text`, `imported_audio` and `imported_visual` are ordinary registered extractors, so the lookup that
training uses (`extractors.keys.FeatureLookup`, `models.data.DataConfig.sources`) finds imported entries the
way it finds extracted ones. They differ in two things: they are keyed by the label row's id (`keyed_by =
"segment"`: a MOSI row `<video>_<n>` finds its entry with or without the raw video at hand), and they are filled
by `sentiflow import`, never computed from media. Their config says which imported feature set a row reads
(`feature_set`, e.g. CMU_MOSI_COVAREP) and the fixed-length view it was imported with; like every extractor
config it is part of the cache key, so `extraction.options.imported_<modality>` selects one of several imports.

Each entry holds the sequence-extractor tensors (`sequence`, `times`, `fixed`, `mask`, `length`) plus the source's
`intervals` (start, end per row). A word-aligned import (one row per word) is the `aligned` kind: its `fixed` is
(T_w, D) with the word mask and `word_times`, the per-modality layout of `extractors.aligned` (first T_w words
kept), so word-aligned models read it through `data.aligned_sources`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from extractors.base import Extractor, Features, FeatureUnavailable, MediaItem, sequence_features
from pipeline.config import ConfigBase, ConfigError
from pipeline.modalities import MODALITIES

IMPORTED = {m: f"imported_{m}" for m in MODALITIES}     # modality -> the extractor name its imports live under
DEFAULT_SEQ_LENS = {"text": 100, "audio": 128, "visual": 64}   # VAE-AMDT's T_l, T_a, T_v
ALIGNED_SEQ_LEN = 50                                            # T_w, as extractors.aligned


@dataclass
class ImportedConfig(ConfigBase):
    """Which imported feature set a label row reads, and the fixed-length view it was imported with."""

    feature_set: str = ""     # the import's name (the SDK's root name, or the MMSA file's stem)
    aligned: bool = False     # word-aligned rows (one per word): the `aligned` kind
    seq_len: int = 0          # fixed length; 0: the modality's default (text 100, audio 128, visual 64; aligned 50)
    fit: str = "pool"         # unaligned sequences longer than seq_len: "pool" or "truncate" (aligned: truncate)


class ImportedFeatures(Extractor):
    """Base of the three imported-feature extractors: entry tensors from (rows, intervals), no extraction."""

    version = "1"
    Config = ImportedConfig
    keyed_by = "segment"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        c: ImportedConfig = self.config
        where = f"extraction.options.{self.name}"
        if c.seq_len < 0:
            raise ConfigError(f"{where}.seq_len must be 0 (the modality's default) or a positive length")
        if c.fit not in ("pool", "truncate"):
            raise ConfigError(f"{where}.fit must be 'pool' or 'truncate', got {c.fit!r}")

    def media_settings(self) -> dict:
        return {}

    @property
    def seq_len(self) -> int:
        """The fixed length of this import's `fixed` view."""
        c: ImportedConfig = self.config
        return c.seq_len or (ALIGNED_SEQ_LEN if c.aligned else DEFAULT_SEQ_LENS[self.modality])

    def entry_tensors(self, features: np.ndarray, intervals: np.ndarray) -> dict[str, torch.Tensor]:
        """The cache entry's tensors for one segment's rows (n, D) and their (start, end) intervals (n, 2)."""
        c: ImportedConfig = self.config
        x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
        iv = torch.from_numpy(np.ascontiguousarray(intervals, dtype=np.float64))
        if x.dim() != 2 or iv.shape != (x.shape[0], 2):
            raise ValueError(f"expected features (n, D) and intervals (n, 2), got {tuple(x.shape)} and "
                             f"{tuple(iv.shape)}")
        tensors = sequence_features(x, iv.mean(1), self.seq_len, "truncate" if c.aligned else c.fit)
        tensors["intervals"] = iv
        if c.aligned:
            word_times = torch.zeros(self.seq_len, 2, dtype=torch.float64)
            n = min(iv.shape[0], self.seq_len)
            word_times[:n] = iv[:n]
            tensors["word_times"] = word_times
        return tensors

    def extract(self, batch: Sequence[MediaItem]) -> list[Features | Exception]:
        return [FeatureUnavailable(f"'{self.name}' holds imported features: fill it with `sentiflow import`")
                for _ in batch]


class ImportedText(ImportedFeatures):
    """Imported text features (e.g. the SDK's GloVe word vectors, MMSA's `text`)."""

    name = IMPORTED["text"]
    modality = "text"


class ImportedAudio(ImportedFeatures):
    """Imported acoustic features (e.g. COVAREP, openSMILE CSDs, MMSA's `audio`)."""

    name = IMPORTED["audio"]
    modality = "audio"


class ImportedVisual(ImportedFeatures):
    """Imported visual features (e.g. Facet, OpenFace CSDs, MMSA's `vision`)."""

    name = IMPORTED["visual"]
    modality = "visual"

