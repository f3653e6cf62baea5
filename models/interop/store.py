"""Writing imported entries into the cache under the lookup training uses, the config files an import leaves, and
reading a modality's rows back out of the cache for an export."""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from extractors.config import SentiFlowConfig, load_config
from extractors.imported import IMPORTED, ImportedConfig, ImportedFeatures
from extractors.keys import FeatureLookup, media_item_for_row, segment_hash, segment_item
from models.data import DataConfig, ModalitySource, absent_reason
from pipeline.cache import STATUS_MISSING, STATUS_OK, CacheEntry, CacheError, FeatureCache, hash_file
from pipeline.config import ConfigError
from pipeline.files import atomic_write
from pipeline.interop import InteropError
from pipeline.labels import LabelRow
from pipeline.media import MediaError
from pipeline.modalities import MODALITIES

IMPORTS_DIR = "imports"               # CACHE/imports/: the configs that select the cache's imports
FEATURES_FILE = "sentiflow.yaml"      # feature config (`--config`): extraction.options.imported_<modality>
OPTIONS_FILE = "options.yaml"         # training options (`--options`): data.modalities / sources / aligned_sources
DONE, CACHED, MISSING, FAILED = "done", "cached", "missing", "failed"


@dataclass
class ImportSummary:
    """What one import wrote: per state the number of segments, and each failed segment with its reason."""

    modality: str
    feature_set: str
    extractor: str
    aligned: bool
    counts: dict[str, int] = field(default_factory=lambda: {DONE: 0, CACHED: 0, MISSING: 0})
    failed: dict[str, str] = field(default_factory=dict)   # source entry id -> reason
    files: list[str] = field(default_factory=list)

    def line(self) -> str:
        """One line for the command's output."""
        kind = "word-aligned" if self.aligned else "unaligned"
        return (f"{self.modality} <- {self.feature_set} ({kind}, {self.extractor}): {self.counts[DONE]} imported, "
                f"{self.counts[CACHED]} already there, {self.counts[MISSING]} empty, {len(self.failed)} failed")


@dataclass
class ExportSummary:
    """What an export wrote: rows written, rows left out with their reasons, and the file."""

    path: str
    written: int = 0
    skipped: dict[str, str] = field(default_factory=dict)

    def line(self) -> str:
        """One line for the command's output."""
        return f"{self.path}: {self.written} rows written, {len(self.skipped)} left out (features missing)"


class ImportTarget:
    """One modality's imported feature set in a cache: entries written with the keys training looks up."""

    def __init__(self, cache: FeatureCache, config: SentiFlowConfig, modality: str, options: ImportedConfig,
                 replace: bool = False) -> None:
        if modality not in IMPORTED:
            raise ConfigError(f"--as {modality!r}: import as one of {', '.join(MODALITIES)}")
        if not options.feature_set:
            raise ConfigError("an import needs a feature set name (--name)")
        self.cache = cache
        self.name = IMPORTED[modality]
        self.config = SentiFlowConfig.from_dict(config.to_dict())
        self.config.extraction.options[self.name] = options.to_dict()
        self.lookup = FeatureLookup(self.config, cache, names=[self.name])
        self.extractor: ImportedFeatures = self.lookup.extractor(self.name)   # type: ignore[assignment]
        self.replace = replace
        self.summary = ImportSummary(modality, options.feature_set, self.name, options.aligned)

    def key(self, segment_id: str) -> str:
        """The cache key a label row with this id looks up."""
        item = segment_item(segment_id)
        return self.lookup.key(self.name, item.media_hash, item)

    def put(self, segment_id: str, features: np.ndarray, intervals: np.ndarray, source: dict[str, Any],
            meta: dict[str, Any] | None = None, extra: dict[str, torch.Tensor] | None = None) -> str:
        """Store one segment's rows (non-finite values zeroed, counted) and `extra` tensors (e.g. token ids);
        empty rows are a cached 'missing' fact.

        An entry that exists with other content is kept, and this segment fails, unless `replace`."""
        features = np.asarray(features, dtype=np.float32)
        bad = ~np.isfinite(features)
        if bad.any():
            features = np.where(bad, np.float32(0.0), features)
        digest = hashlib.sha256(features.tobytes() + np.asarray(intervals, np.float64).tobytes()
                                + str(features.shape).encode())
        for name, tensor in sorted((extra or {}).items()):
            digest.update(name.encode() + tensor.contiguous().numpy().tobytes())
        content = digest.hexdigest()
        key = self.key(segment_id)
        entry = self.cache.get(key)
        if entry is not None:
            if entry.meta.get("content_sha256") == content:
                return self._count(CACHED)
            if not self.replace:
                where = entry.meta.get("source", "an earlier import")
                raise InteropError(f"{self.summary.feature_set} already holds other features for {segment_id} "
                                   f"(from {where}): import under another --name, or pass --replace")
            shutil.rmtree(entry.path, ignore_errors=True)
        record = {"extractor": self.name, "version": self.extractor.version, "modality": self.extractor.modality,
                  "config": self.extractor.cache_config(), "media_hash": segment_hash(segment_id),
                  "segment_id": segment_id,
                  "source": f"{source.get('file', '')}#{source.get('entry', segment_id)}", "imported": source,
                  "content_sha256": content, "dim": int(features.shape[1]) if features.ndim == 2 else 0,
                  "n_rows": int(features.shape[0]), "non_finite_zeroed": int(bad.sum()), **(meta or {})}
        if features.shape[0] == 0:
            self.cache.put(key, {}, {**record, "reason": "no rows in the imported entry"}, status=STATUS_MISSING)
            return self._count(MISSING)
        try:
            tensors = {**self.extractor.entry_tensors(features, intervals), **(extra or {})}
        except ValueError as exc:
            raise InteropError(f"{segment_id}: {exc}") from None
        self.cache.put(key, tensors, record, status=STATUS_OK)
        return self._count(DONE)

    def _count(self, state: str) -> str:
        self.summary.counts[state] += 1
        return state

    def fail(self, entry_id: str, reason: str) -> None:
        """Record a segment that could not be imported (the others go on)."""
        self.summary.failed[entry_id] = reason
        self.cache.log_failure({"path": entry_id, "extractor": self.name, "reason": reason})


def file_provenance(path: str | Path, fmt: str) -> dict[str, Any]:
    """Where imported features came from: format, file path and the file's SHA-256."""
    path = Path(path)
    return {"format": fmt, "file": str(path.resolve()), "file_sha256": hash_file(path)}


def base_config(cache_root: Path, config_path: str | Path | None) -> SentiFlowConfig:
    """The feature config an import extends: `--config`, else the one earlier imports left, else the defaults."""
    earlier = cache_root / IMPORTS_DIR / FEATURES_FILE
    if config_path:
        return load_config(str(config_path))
    return load_config(str(earlier)) if earlier.is_file() else SentiFlowConfig()


def record_import(cache_root: Path, config: SentiFlowConfig, summary: ImportSummary, options: ImportedConfig
                  ) -> tuple[Path, Path]:
    """Update CACHE/imports/{sentiflow.yaml, options.yaml} so training selects this import for its modality (the
    option is also set in `config`, so several imports of one command accumulate)."""
    folder = cache_root / IMPORTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    config.extraction.options[summary.extractor] = options.to_dict()
    features = folder / FEATURES_FILE
    _write_yaml(features, config.to_dict(), cache_root)
    opts_path = folder / OPTIONS_FILE
    opts: dict[str, Any] = {}
    if opts_path.is_file():
        opts = yaml.safe_load(opts_path.read_text(encoding="utf-8")) or {}
    data = dict(opts.get("data") or {})
    source = ModalitySource(summary.extractor, "fixed", "mask")
    data["sources"] = {**(data.get("sources") or {}), summary.modality: source.to_dict()}
    aligned = dict(data.get("aligned_sources") or {})
    if summary.aligned:
        aligned[summary.modality] = source.to_dict()
    else:
        aligned.pop(summary.modality, None)   # an unaligned import is no word sequence for word-aligned models
    data["aligned_sources"] = aligned
    mods = set(data.get("modalities") or []) | {summary.modality}
    data["modalities"] = [m for m in MODALITIES if m in mods]
    DataConfig.from_dict(data, where="data").validate()
    _write_yaml(opts_path, {**opts, "data": data}, cache_root)
    return features, opts_path


def _write_yaml(path: Path, obj: dict[str, Any], cache_root: Path) -> None:
    text = yaml.safe_dump(obj, sort_keys=False)
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), tmp_dir=cache_root / "tmp")


def modality_rows(lookup: FeatureLookup, row: LabelRow, data: DataConfig, modality: str
                  ) -> tuple[np.ndarray, np.ndarray, CacheEntry] | str:
    """A label row's `modality` as (feature rows, intervals, entry) for a computational sequence, or why not.

    A sequence extractor's full-rate `sequence` goes out with its `intervals` (imports) or intervals of one frame
    step around its `times`; a word-aligned tensor (the aligned extractor's) goes out row per word, intervals from
    `word_times`."""
    loaded = _load(lookup, row, data, modality)
    if isinstance(loaded, str):
        return loaded
    tensors, entry, src = loaded
    if src.tensor == "fixed" and "sequence" in tensors and ("intervals" in tensors or "times" in tensors):
        seq = tensors["sequence"].float().numpy()
        if "intervals" in tensors:
            return seq, tensors["intervals"].double().numpy(), entry
        return seq, frame_intervals(tensors["times"].double().numpy(), entry.meta.get("rate_hz")), entry
    if "word_times" in tensors and src.tensor in tensors:
        x = tensors[src.tensor].float()
        mask = tensors.get(src.mask, tensors.get("mask"))
        keep = (mask.reshape(-1) > 0) if mask is not None else torch.ones(x.shape[0], dtype=torch.bool)
        return x[keep].numpy(), tensors["word_times"].double()[keep].numpy(), entry
    return (f"'{src.extractor}' tensor {src.tensor!r} has no times for its rows, and a computational sequence needs "
            "intervals: export a sequence extractor's output, or the word-aligned features (--aligned)")


def modality_fixed(lookup: FeatureLookup, row: LabelRow, data: DataConfig, modality: str
                   ) -> tuple[np.ndarray, int, dict[str, torch.Tensor]] | str:
    """A label row's model input for `modality`: the source tensor (T, D), its valid length, and all the entry's
    tensors; or why the row has none."""
    loaded = _load(lookup, row, data, modality)
    if isinstance(loaded, str):
        return loaded
    tensors, _, src = loaded
    if src.tensor not in tensors:
        return f"'{src.extractor}' has no tensor {src.tensor!r}"
    x = tensors[src.tensor].float()
    x = x.unsqueeze(0) if x.dim() == 1 else x
    mask = tensors.get(src.mask)
    length = int((mask.reshape(-1) > 0).sum()) if mask is not None and mask.numel() == x.shape[0] else x.shape[0]
    return x.numpy(), length, tensors


def _load(lookup: FeatureLookup, row: LabelRow, data: DataConfig, modality: str
          ) -> tuple[dict[str, torch.Tensor], CacheEntry, ModalitySource] | str:
    src = data.source(modality)
    try:
        item = media_item_for_row(row)
    except (OSError, MediaError) as exc:
        return f"media unreadable: {exc}"
    entry = lookup.entry(src.extractor, item.media_hash, item)
    why = absent_reason(lookup, src.extractor, entry)
    if why is not None:
        return why
    try:
        return entry.load(), entry, src   # type: ignore[union-attr]
    except CacheError as exc:
        return str(exc)


def frame_intervals(times: np.ndarray, rate_hz: float | None) -> np.ndarray:
    """(start, end) of frames centred on `times`, one frame step long (the rate, else the median spacing)."""
    if rate_hz:
        step = 1.0 / float(rate_hz)
    elif times.size > 1:
        step = float(np.median(np.diff(times)))
    else:
        step = 0.0
    return np.stack([times - step / 2.0, times + step / 2.0], axis=1)
