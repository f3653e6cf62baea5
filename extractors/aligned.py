"""Aligned mode: audio and visual features averaged over each word's interval, text averaged over its tokens.

Gives word-level sequences of equal length (T_w) for the three modalities, as in the Seq2Seq, hybrid-modal and
multilingual papers (they use P2FA / Montreal Forced Aligner word intervals; here: the transcript extractor's
forced alignment). The unaligned mode is each extractor's own `fixed` sequence (VAE-AMDT, MulT); both live in the
cache and the training side chooses. A transcript-only row (a label's text, no media) gets its words' text features
alone, with no word times: a text-only model reads the same word-level sequence it would from a clip.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from extractors.base import ExtractionFailed, Extractor, Features, FeatureUnavailable, MediaItem
from extractors.registry import get_extractor_class
from extractors.text.encoder import token_word_means
from extractors.text.words import split_words
from pipeline.cache import STATUS_MISSING, CacheEntry
from pipeline.config import ConfigBase, ConfigError

PRESENCE_KEYS = ("face_present", "present")   # per-frame validity a source may carry (frames without a face)


@dataclass
class WordAlignedConfig(ConfigBase):
    """Length of the word sequence and which extractors' frame sequences are averaged per word."""

    seq_len: int = 50                                                    # T_w words kept
    text_source: str = "text"
    audio_sources: list[str] = field(default_factory=lambda: ["acoustic"])
    visual_sources: list[str] = field(default_factory=lambda: ["fer"])
    empty_word: str = "nearest"     # a word with no frame inside its interval: "nearest" frame or "mask"


def word_means(frames: torch.Tensor, times: torch.Tensor, intervals: torch.Tensor, weights: torch.Tensor | None,
               empty_word: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per interval (start, end): mean of the frames whose time lies inside, and a mask of intervals that got one.

    frames (T, D), times (T,), intervals (N, 2), weights (T,) in {0,1} or None. A word shorter than the frame
    step holds no frame; with empty_word="nearest" it takes the valid frame nearest its middle.
    """
    n, d = intervals.shape[0], frames.shape[1]
    out = torch.zeros(n, d, dtype=torch.float32)
    mask = torch.zeros(n, dtype=torch.float32)
    if frames.shape[0] == 0 or n == 0:
        return out, mask
    w = torch.ones(frames.shape[0]) if weights is None else weights.float()
    t = times.double()
    inside = (t[None, :] >= intervals[:, :1].double()) & (t[None, :] < intervals[:, 1:].double())   # (N, T)
    wm = inside.float() * w[None, :]
    count = wm.sum(1)
    out = (wm @ frames.float()) / count.clamp_min(1.0)[:, None]
    mask = (count > 0).float()
    if empty_word == "nearest":
        valid = w > 0
        if valid.any():
            vt = t[valid]
            vf = frames.float()[valid]
            for i in torch.nonzero(mask == 0).flatten().tolist():
                mid = float(intervals[i].double().mean())
                j = int(torch.argmin((vt - mid).abs()))
                out[i] = vf[j]
                mask[i] = 1.0
    return out, mask


class WordAlignedExtractor(Extractor):
    """Word-aligned sequences: `text`, `audio_<src>`, `visual_<src>` (T_w, D) with masks and word times."""

    name = "aligned"
    version = "1"
    modality = "multimodal"
    Config = WordAlignedConfig
    requires = frozenset()
    depends_on = ("transcript", "text")     # the instance adds the configured audio/visual sources
    text_items = True                       # a transcript-only row gets its words' text features

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        c: WordAlignedConfig = self.config
        if c.seq_len < 1:
            raise ConfigError("extraction.options.aligned.seq_len must be at least 1")
        if c.empty_word not in ("nearest", "mask"):
            raise ConfigError("extraction.options.aligned.empty_word must be 'nearest' or 'mask'")
        for key, names in (("audio_sources", c.audio_sources), ("visual_sources", c.visual_sources),
                           ("text_source", [c.text_source])):
            for n in names:
                try:
                    get_extractor_class(n)
                except ConfigError as exc:
                    raise ConfigError(f"extraction.options.aligned.{key}: {exc}") from None
        self.depends_on = tuple(dict.fromkeys(("transcript", c.text_source, *c.audio_sources,
                                               *c.visual_sources)))

    def media_settings(self) -> dict:
        return {}

    def extract(self, batch: Sequence[MediaItem]) -> list[Features | Exception]:
        out: list[Features | Exception] = []
        for item in batch:
            try:
                out.append(self._one(item))
            except (FeatureUnavailable, ExtractionFailed) as exc:
                out.append(exc)
        return out

    def _words(self, item: MediaItem, up: dict[str, CacheEntry | None]
               ) -> tuple[list[str], torch.Tensor | None, torch.Tensor, str | None]:
        """(words, their (start, end) times or None, confidences, alignment) of an item: a transcript-only row's
        words have no times (its text alone is aligned, to its own tokens), a media item's come from the
        transcript extractor and must have been aligned."""
        if item.info.container == "text":
            words = split_words(str(item.extras.get("transcript", "")))
            if not words:
                raise FeatureUnavailable("empty transcript")
            return words, None, torch.zeros(len(words)), "none (transcript only: text words, no times)"
        tr = up.get("transcript")
        if tr is None:
            raise ExtractionFailed("the transcript extractor produced nothing for this item")
        if tr.status == STATUS_MISSING:
            raise FeatureUnavailable(f"no transcript: {tr.meta.get('reason', '')}")
        if not tr.meta.get("aligned", False):
            raise FeatureUnavailable(f"no word timings: alignment {tr.meta.get('alignment', 'missing')}")
        tt = tr.load()
        return list(tr.meta.get("words", [])), tt["word_times"].double(), tt["word_confidence"].float(), \
            tr.meta.get("alignment")

    def _one(self, item: MediaItem) -> Features:
        c: WordAlignedConfig = self.config
        up: dict[str, CacheEntry | None] = item.extras.get("upstream", {})
        words, times, confidence, alignment = self._words(item, up)
        n_all = len(words)
        n = min(n_all, c.seq_len)
        tensors: dict[str, torch.Tensor] = {}
        sources: dict[str, str] = {}
        mask = torch.zeros(c.seq_len)
        mask[:n] = 1.0
        intervals = times[:n] if times is not None else None
        wt = torch.full((c.seq_len, 2), float("nan") if intervals is None else 0.0, dtype=torch.float64)
        if intervals is not None:
            wt[:n] = intervals
        conf = torch.zeros(c.seq_len)
        conf[:n] = confidence[:n]
        tensors.update(mask=mask, word_times=wt, word_confidence=conf,
                       length=torch.tensor([n], dtype=torch.int64))
        dims: dict[str, int] = {}

        def place(name: str, values: torch.Tensor, present: torch.Tensor) -> None:
            full = torch.zeros(c.seq_len, values.shape[1])
            full[:n] = values
            pm = torch.zeros(c.seq_len)
            pm[:n] = present
            tensors[name] = full
            tensors[f"mask_{name}"] = pm
            dims[name] = int(values.shape[1])

        text_entry = up.get(c.text_source)
        if text_entry is None or text_entry.status == STATUS_MISSING:
            sources["text"] = "missing: " + (text_entry.meta.get("reason", "") if text_entry else "not extracted")
        else:
            te = text_entry.load()
            place("text", *token_word_means(te["fixed"], te["word_index"], n))
            sources["text"] = "ok"
        for kind, names in (("audio", c.audio_sources), ("visual", c.visual_sources)):
            for src in names:
                entry = up.get(src)
                key = f"{kind}_{src}"
                if intervals is None:
                    sources[key] = "missing: a transcript-only row has no media"
                    continue
                if entry is None:
                    sources[key] = "missing: not extracted"
                    continue
                if entry.status == STATUS_MISSING:
                    sources[key] = f"missing: {entry.meta.get('reason', '')}"
                    continue
                st = entry.load()
                if "sequence" not in st or "times" not in st:
                    raise ExtractionFailed(f"extractor {src!r} has no per-frame 'sequence' and 'times' to align")
                weights = next((st[k] for k in PRESENCE_KEYS if k in st), None)
                vals, present = word_means(st["sequence"], st["times"], intervals, weights, c.empty_word)
                place(key, vals, present)
                sources[key] = "ok"
        return Features(tensors=tensors, meta={
            "words": words[:n], "n_words": n_all, "truncated": n_all > c.seq_len, "sources": sources,
            "dims": dims, "alignment": alignment, "seq_len": c.seq_len})
