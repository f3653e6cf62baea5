"""Cache keys of extractors' outputs, and the lookup that finds cached features by the keys extraction used."""

from __future__ import annotations

import hashlib
from typing import Any, Sequence

import torch

from extractors.base import Extractor, MediaItem
from extractors.config import SentiFlowConfig
from extractors.registry import build_extractor
from pipeline.cache import CacheEntry, FeatureCache, feature_key, hash_file, hash_text
from pipeline.config import ConfigError
from pipeline.labels import LabelRow, row_extras
from pipeline.media import MediaInfo, probe


def segment_hash(segment_id: str) -> str:
    """What stands for the media hash in the keys of features imported for a label row id (e.g. `video_3`)."""
    return "segment-" + hashlib.sha256(segment_id.encode("utf-8")).hexdigest()


def item_key(extractor: Extractor, media_hash: str, item: MediaItem | None = None,
             upstream: dict[str, str] | None = None) -> str:
    """Cache key: media hash, extractor name/version/config, per-item inputs such as a given transcript, and
    the keys of the extractors it reads (so a changed upstream setting also renews this entry).

    An extractor keyed by segment (imported features) uses the label row's id in place of the media hash, so a
    row finds its imported features whether or not its video is at hand."""
    if extractor.keyed_by == "segment":
        if item is None or not item.segment_id:
            where = item.path if item is not None else "this item"
            raise ConfigError(f"'{extractor.name}' holds features imported with `sentiflow import`, found by a label "
                              f"row's id; {where} is not a label row, and they cannot be extracted from media")
        media_hash = segment_hash(item.segment_id)
    config = extractor.cache_config()
    inputs = extractor.key_inputs(item) if item is not None else {}
    if inputs:
        config = {**config, "item_inputs": inputs}
    if extractor.depends_on:
        config = {**config, "upstream": {d: (upstream or {}).get(d, "") for d in extractor.depends_on}}
    return feature_key(media_hash, extractor.name, extractor.version, config)


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
        ex = self.extractor(name)
        upstream = {d: self.key(d, media_hash, item) for d in ex.depends_on}
        return item_key(ex, media_hash, item, upstream)

    def entry(self, name: str, media_hash: str, item: MediaItem | None = None) -> CacheEntry | None:
        """The cache entry (ok or missing) or None when never extracted."""
        return self.cache.get(self.key(name, media_hash, item))

    def entries(self, media_hash: str, item: MediaItem | None = None) -> dict[str, CacheEntry | None]:
        """Entries of every configured extractor for one media item."""
        return {n: self.entry(n, media_hash, item) for n in self.names}


def media_item_for_row(row: LabelRow) -> MediaItem:
    """The MediaItem the runner builds for a label row (probe, hash, transcript as extras, the row id): pass it
    to `FeatureLookup.entry(name, media_hash, item)` so a lookup finds entries keyed by the row's transcript, and
    imported entries keyed by its id. A row with neither media nor text can only have imported features."""
    extras: dict[str, Any] = dict(row_extras(row))     # as models.prepare passes them to the runner
    if row.path:
        return MediaItem(path=row.path, media_hash=hash_file(row.path), info=probe(row.path, scan_packets=False),
                         extras=extras,
                         segment_id=row.id)
    if row.text:
        info = MediaInfo(path="", size_bytes=len(row.text.encode("utf-8")), duration=0.0, container="text",
                         has_video=False, has_audio=False)
        return MediaItem(path=f"#{row.id}", media_hash=hash_text(row.text), info=info, extras=extras,
                         segment_id=row.id)
    return segment_item(row.id)


def segment_item(segment_id: str) -> MediaItem:
    """The item of a label row id alone (no media, no text): what imported entries are keyed by."""
    info = MediaInfo(path="", size_bytes=0, duration=0.0, container="none", has_video=False, has_audio=False)
    return MediaItem(path=f"#{segment_id}", media_hash=segment_hash(segment_id), info=info, segment_id=segment_id)
