"""The extractor interface (name, version, config, extract) and the sequence helpers extractors share."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

import torch

from pipeline.config import ConfigBase, ConfigError
from pipeline.media import MediaConfig, MediaInfo


@dataclass
class MediaItem:
    """One input file handed to extractors: its path, content hash, probe result and side inputs."""

    path: str
    media_hash: str
    info: MediaInfo
    extras: dict[str, Any] = field(default_factory=dict)   # e.g. a transcript from a label file
    segment_id: str = ""     # the label row's id, when the item stands for one (imported features are keyed by it)


@dataclass
class Features:
    """One item's output: named tensors plus JSON-serialisable metadata (shapes, rates, names...)."""

    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any] = field(default_factory=dict)


class FeatureUnavailable(Exception):
    """The source lacks what this extractor needs (no audio stream, no face, no speech): a cached fact."""


class ExtractionFailed(Exception):
    """The extractor could not process this item (corrupt data, decoder error): retried on re-run."""


class Extractor(ABC):
    """Base class: subclasses set name/version/modality/Config and implement `extract`."""

    name: ClassVar[str]
    version: ClassVar[str]
    modality: ClassVar[str]                      # "audio" | "visual" | "text"
    Config: ClassVar[type[ConfigBase]]
    requires: ClassVar[frozenset[str]] = frozenset()   # "audio" and/or "video" streams
    depends_on: ClassVar[tuple[str, ...]] = ()   # other extractors whose cached output this one reads
    keyed_by: ClassVar[str] = "media"   # "segment": entries are found by a label row's id, not the media's bytes
    text_items: ClassVar[bool] = False  # True: also runs on transcript-only rows (no media, the label's text alone)
    # an extractor whose decoding pass can also compute this one's inputs (one decode for both; `attach_rider`)
    rides_on: ClassVar[str] = ""

    def __init__(self, config: ConfigBase | None = None, media: MediaConfig | None = None,
                 device: str | torch.device = "cpu") -> None:
        self.config = config if config is not None else self.Config()
        self.media = media if media is not None else MediaConfig()
        self.device = torch.device(device)

    def cache_config(self) -> dict[str, Any]:
        """Everything that changes this extractor's output, for the cache key."""
        return {"extractor": self.config.to_dict(), "media": self.media_settings()}

    def key_inputs(self, item: MediaItem) -> dict[str, Any]:
        """Per-item inputs besides the media bytes that change the output (e.g. a transcript's hash)."""
        return {}

    def media_settings(self) -> dict[str, Any]:
        """The media settings this extractor's output depends on (override to narrow)."""
        return self.media.to_dict()

    def missing_reason(self, item: MediaItem) -> str | None:
        """Why this item cannot have these features at all (checked before decoding), or None."""
        if "audio" in self.requires and not item.info.has_audio:
            return "no audio stream"
        if "video" in self.requires and not item.info.has_video:
            return "no video stream"
        return None

    def attach_rider(self, rider: "Extractor") -> None:
        """Compute `rider`'s per-item inputs during this extractor's own pass (hosts override; others refuse)."""
        raise TypeError(f"the {self.name} extractor cannot carry {rider.name}'s work in its pass")

    @abstractmethod
    def extract(self, batch: Sequence[MediaItem]) -> list[Features | Exception]:
        """Compute features for a batch; element i is item i's Features or the exception it raised."""


def fit_sequence(x: torch.Tensor, length: int, mode: str = "pool") -> tuple[torch.Tensor, torch.Tensor, int]:
    """Fit a (T, D) sequence to `length` steps: pad (mask 0) or shorten by 'truncate' or 'pool'.

    Returns (fixed [length, D], mask [length] in {0,1}, true length T before fitting).
    """
    if x.dim() != 2:
        raise ValueError(f"fit_sequence expects (T, D), got shape {tuple(x.shape)}")
    t, d = x.shape
    mask = torch.zeros(length, dtype=torch.float32)
    if t == 0:
        return torch.zeros(length, d, dtype=x.dtype), mask, 0
    if t > length:
        if mode == "truncate":
            fixed = x[:length]
        elif mode == "pool":
            fixed = torch.nn.functional.adaptive_avg_pool1d(x.T.unsqueeze(0).float(), length)[0].T.to(x.dtype)
        else:
            raise ConfigError(f"sequence fit mode must be 'truncate' or 'pool', got {mode!r}")
        mask[:] = 1.0
        return fixed.contiguous(), mask, t
    fixed = torch.zeros(length, d, dtype=x.dtype)
    fixed[:t] = x
    mask[:t] = 1.0
    return fixed, mask, t


def sequence_features(x: torch.Tensor, times: torch.Tensor, length: int, mode: str) -> dict[str, torch.Tensor]:
    """The standard tensor set of a sequence extractor: full-rate, fixed-length, mask and length."""
    fixed, mask, true_len = fit_sequence(x, length, mode)
    return {
        "sequence": x.contiguous(),
        "times": times.to(torch.float64).contiguous(),
        "fixed": fixed,
        "mask": mask,
        "length": torch.tensor([true_len], dtype=torch.int64),
    }
