"""Look up cached features of a media item by the same keys extraction used."""

from __future__ import annotations

from typing import Sequence

import torch

from extractors.base import Extractor, MediaItem, build_extractor
from pipeline.cache import CacheEntry, FeatureCache
from pipeline.settings import SentiFlowConfig


class FeatureLookup:
    """Builds each configured extractor once (on CPU, no weights needed for keys) and resolves cache keys."""

    def __init__(self, config: SentiFlowConfig, cache: FeatureCache, names: Sequence[str] | None = None) -> None:
        self.config = config
        self.cache = cache
        self.names = list(names) if names else list(config.extraction.extractors)
        self._extractors: dict[str, Extractor] = {}

    def extractor(self, name: str) -> Extractor:
        """The configured extractor `name` (built lazily)."""
        if name not in self._extractors:
            self._extractors[name] = build_extractor(name, self.config.extraction.options.get(name),
                                                     self.config.media, torch.device("cpu"))
        return self._extractors[name]

    def key(self, name: str, media_hash: str, item: MediaItem | None = None) -> str:
        """Cache key of extractor `name`'s output for `media_hash` (and the item's inputs) under the config."""
        from pipeline.extraction import item_key

        ex = self.extractor(name)
        upstream = {d: self.key(d, media_hash, item) for d in ex.depends_on}
        return item_key(ex, media_hash, item, upstream)

    def entry(self, name: str, media_hash: str, item: MediaItem | None = None) -> CacheEntry | None:
        """The cache entry (ok or missing) or None when never extracted."""
        return self.cache.get(self.key(name, media_hash, item))

    def entries(self, media_hash: str, item: MediaItem | None = None) -> dict[str, CacheEntry | None]:
        """Entries of every configured extractor for one media item."""
        return {n: self.entry(n, media_hash, item) for n in self.names}
