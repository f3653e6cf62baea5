"""The transcript-only path: text features for the rows of a label table that has no media at all.

`extract_transcript_table` runs the text encoder over the rows of an `id,text,label[,mode]` (or MMSA) table,
each keyed by `hash_text(row.text)`, with the same keys the training side looks up.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from extractors.base import Features, FeatureUnavailable, MediaItem
from extractors.config import SentiFlowConfig
from extractors.keys import FeatureLookup
from extractors.registry import build_extractor
from pipeline.cache import STATUS_MISSING, FeatureCache, hash_text
from pipeline.labels import LabelTable
from pipeline.media import MediaInfo


@dataclass
class TranscriptTableSummary:
    """What `extract_transcript_table` did: counts, time, and each row's cache key."""

    done: int = 0
    cached: int = 0
    failed: int = 0
    seconds: float = 0.0
    keys: dict[str, str] = field(default_factory=dict)        # row id -> cache key of its "text" entry
    media_hashes: dict[str, str] = field(default_factory=dict)  # row id -> hash_text(row.text)
    failures: dict[str, str] = field(default_factory=dict)    # row id -> reason

    def line(self) -> str:
        """One-line summary."""
        n = self.done + self.cached + self.failed
        return (f"{self.done} done, {self.cached} cached, {self.failed} failed of {n} transcripts "
                f"in {self.seconds:.1f} s")


def extract_transcript_table(table: LabelTable, cache: FeatureCache, config: SentiFlowConfig,
                             device: str | torch.device = "cpu", progress: bool = True,
                             extractor_name: str = "text") -> TranscriptTableSummary:
    """Text features for every row of a label table (no media), cached under media hash `hash_text(row.text)`."""

    start = time.perf_counter()
    cache.check_writable()

    extractor = build_extractor(extractor_name, config.extraction.options.get(extractor_name), config.media,
                                device)
    cfg = extractor.cache_config()
    lookup = FeatureLookup(config, cache, [extractor_name])     # the same keys the training side looks up
    summary = TranscriptTableSummary()
    todo: list[tuple[str, MediaItem, str]] = []
    seen: set[str] = set()
    for row in table:
        mh = hash_text(row.text)
        key = lookup.key(extractor_name, mh)
        summary.keys[row.id] = key
        summary.media_hashes[row.id] = mh
        if cache.get(key) is not None:
            summary.cached += 1
            continue
        if key in seen:          # the same text twice in one table: computed once
            summary.cached += 1
            continue
        seen.add(key)
        info = MediaInfo(path="", size_bytes=len(row.text.encode("utf-8")), duration=0.0, container="text",
                         has_video=False, has_audio=False)
        item = MediaItem(path=f"{table.source}#{row.id}", media_hash=mh, info=info,
                         extras={"transcript": row.text, "language": row.language})
        todo.append((row.id, item, key))
    bs = max(1, getattr(extractor.config, "batch_size", 64))
    bar = tqdm(total=len(todo), unit="text", desc="text", disable=not progress, dynamic_ncols=True)
    for b in range(0, len(todo), bs * 4):
        chunk = todo[b: b + bs * 4]
        results = extractor.extract([it for _, it, _ in chunk])
        for (rid, item, key), res in zip(chunk, results):
            base = {"extractor": extractor.name, "version": extractor.version, "modality": extractor.modality,
                    "config": cfg, "media_hash": item.media_hash, "source": item.path}
            if isinstance(res, Features):
                cache.put(key, res.tensors, {**base, **res.meta})
                summary.done += 1
            elif isinstance(res, FeatureUnavailable):
                cache.put(key, {}, {**base, "reason": str(res)}, status=STATUS_MISSING)
                summary.done += 1
                summary.failures[rid] = f"missing: {res}"
            else:
                summary.failed += 1
                summary.failures[rid] = str(res) or type(res).__name__
                cache.log_failure({"path": item.path, "media_hash": item.media_hash,
                                   "extractor": extractor.name, "reason": summary.failures[rid]})
        bar.update(len(chunk))
    bar.close()
    summary.seconds = time.perf_counter() - start
    return summary
