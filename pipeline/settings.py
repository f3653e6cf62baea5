"""The top-level SentiFlow configuration (one YAML file): media decoding and which extractors run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline.config import ConfigBase
from pipeline.media import MediaConfig

DEFAULT_EXTRACTORS = ["logmel", "acoustic", "tonal"]


@dataclass
class ExtractionConfig(ConfigBase):
    """Which extractors run, their options (by extractor name) and how many clips form a batch."""

    extractors: list[str] = field(default_factory=lambda: list(DEFAULT_EXTRACTORS))
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    batch_size: int = 8


@dataclass
class SentiFlowConfig(ConfigBase):
    """Everything a run needs to know, with the papers' defaults."""

    media: MediaConfig = field(default_factory=MediaConfig)
    extraction: ExtractionConfig = field(default_factory=ExtractionConfig)


def load_config(path: str | None) -> SentiFlowConfig:
    """The config in `path` (YAML), or the defaults when `path` is None."""
    return SentiFlowConfig.from_yaml(path) if path else SentiFlowConfig()
