"""The transcript-only path: text features for the rows of a label table that has no media at all.

`extract_transcript_table` runs the text encoder (and the other extractors that read a transcript alone: word
alignment of the text, translation) over the rows of an `id,text,label[,mode]` (or MMSA) table, each keyed by
`hash_text(row.text)`, with the same keys the training side looks up.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import torch
from tqdm import tqdm

from extractors.base import Extractor, Features, FeatureUnavailable, MediaItem
from extractors.config import SentiFlowConfig
from extractors.keys import FeatureLookup
from extractors.registry import EXTRACTORS, build_extractor
from extractors.runner import dependency_order
from pipeline.cache import STATUS_MISSING, FeatureCache, hash_text
from pipeline.labels import LabelTable, row_extras
from pipeline.media import MediaInfo


@dataclass
class TranscriptTableSummary:
    """What `extract_transcript_table` did: counts and each row's cache key (of the main extractor), time, and the
    counts of the other extractors it ran."""

    done: int = 0
    cached: int = 0
    failed: int = 0
    seconds: float = 0.0
    keys: dict[str, str] = field(default_factory=dict)        # row id -> cache key of its "text" entry
    media_hashes: dict[str, str] = field(default_factory=dict)  # row id -> hash_text(row.text)
    failures: dict[str, str] = field(default_factory=dict)    # row id -> reason
    others: dict[str, dict[str, int]] = field(default_factory=dict)   # extractor -> {"done", "cached", "failed"}

    def line(self) -> str:
        """One-line summary."""
        n = self.done + self.cached + self.failed
        more = "; ".join(f"{name}: {c['done']} done, {c['cached']} cached, {c['failed']} failed"
                         for name, c in self.others.items())
        return (f"{self.done} done, {self.cached} cached, {self.failed} failed of {n} transcripts"
                + (f" ({more})" if more else ""))


def text_item_extractors(names: Sequence[str]) -> list[str]:
    """The extractors among `names` that also run on transcript-only rows (text encoders, word alignment of the
    text, translation)."""
    return [n for n in names if EXTRACTORS.get(n).text_items]


def extract_transcript_table(table: LabelTable, cache: FeatureCache, config: SentiFlowConfig,
                             device: str | torch.device = "cpu", progress: bool = True,
                             extractor_name: str = "text", also: Sequence[str] = ()) -> TranscriptTableSummary:
    """Text features for every row of a label table (no media), cached under media hash `hash_text(row.text)`.

    `also` names further extractors that run on transcript-only rows (e.g. aligned, translation, translated_text);
    they run after what they read, each handed the cached entries of its dependencies."""
    start = time.perf_counter()
    cache.check_writable()
    lookup = FeatureLookup(config, cache, [extractor_name, *also])   # the same keys the training side looks up
    order = [n for n in dependency_order([extractor_name, *also], lambda n: lookup.extractor(n).depends_on)
             if lookup.extractor(n).text_items]
    summary = TranscriptTableSummary()
    items: list[tuple[str, MediaItem]] = []
    for row in table:
        mh = hash_text(row.text)
        summary.media_hashes[row.id] = mh
        info = MediaInfo(path="", size_bytes=len(row.text.encode("utf-8")), duration=0.0, container="text",
                         has_video=False, has_audio=False)
        items.append((row.id, MediaItem(path=f"{table.source}#{row.id}", media_hash=mh, info=info,
                                        extras={**row_extras(row), "language": row.language})))
    for name in order:
        main = name == extractor_name
        counts = {"done": 0, "cached": 0, "failed": 0}
        extractor = build_extractor(name, config.extraction.options.get(name), config.media, device)
        todo: list[tuple[str, MediaItem, str]] = []
        seen: set[str] = set()
        for rid, item in items:
            key = lookup.key(name, item.media_hash, item)
            if main:
                summary.keys[rid] = key
            if cache.get(key) is not None or key in seen:   # the same text twice in one table: computed once
                counts["cached"] += 1
                continue
            seen.add(key)
            item.extras["upstream"] = {d: cache.get(lookup.key(d, item.media_hash, item))
                                       for d in extractor.depends_on}
            todo.append((rid, item, key))
        failures = summary.failures if main else {}
        _extract_items(extractor, todo, cache, counts, failures, table.source, progress)
        if main:
            summary.done, summary.cached, summary.failed = counts["done"], counts["cached"], counts["failed"]
        else:
            summary.others[name] = counts
    summary.seconds = time.perf_counter() - start
    return summary


def _extract_items(extractor: Extractor, todo: list[tuple[str, MediaItem, str]], cache: FeatureCache,
                   counts: dict[str, int], failures: dict[str, str], source: str, progress: bool) -> None:
    """Run one extractor over transcript-only items in batches and store each result (missing ones with why)."""
    cfg = extractor.cache_config()
    bs = max(1, getattr(extractor.config, "batch_size", 64))
    bar = tqdm(total=len(todo), unit="text", desc=extractor.name, disable=not progress, dynamic_ncols=True)
    for b in range(0, len(todo), bs * 4):
        chunk = todo[b: b + bs * 4]
        results = extractor.extract([it for _, it, _ in chunk])
        for (rid, item, key), res in zip(chunk, results):
            base = {"extractor": extractor.name, "version": extractor.version, "modality": extractor.modality,
                    "config": cfg, "media_hash": item.media_hash, "source": item.path}
            if isinstance(res, Features):
                cache.put(key, res.tensors, {**base, **res.meta})
                counts["done"] += 1
            elif isinstance(res, FeatureUnavailable):
                cache.put(key, {}, {**base, "reason": str(res)}, status=STATUS_MISSING)
                counts["done"] += 1
                failures[rid] = f"missing: {res}"
            else:
                counts["failed"] += 1
                failures[rid] = reason = str(res) or type(res).__name__
                cache.log_failure({"path": item.path, "media_hash": item.media_hash,
                                   "extractor": extractor.name, "reason": reason})
        bar.update(len(chunk))
    bar.close()
