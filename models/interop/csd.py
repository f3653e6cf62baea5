"""CMU-MultimodalSDK computational sequences <-> the feature cache (`sentiflow import csd`, `sentiflow export csd`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm import tqdm

from extractors.config import load_config
from extractors.imported import ImportedConfig
from extractors.keys import FeatureLookup
from models.data import read_data_config
from models.interop.store import (
    ExportSummary,
    ImportSummary,
    ImportTarget,
    base_config,
    file_provenance,
    modality_rows,
    record_import,
)
from pipeline.cache import FeatureCache
from pipeline.config import ConfigError
from pipeline.interop import InteropError
from pipeline.interop.csd import (
    METADATA_KEYS,
    SDK_KEY,
    ComputationalSequence,
    Segment,
    cut_segment,
    id_to_sdk_key,
    open_csd,
    sdk_key_to_id,
    write_csd,
)
from pipeline.labels import LabelTable, read_labels


def import_csd(paths: Sequence[str | Path], cache_dir: str | Path, modality: str, *, name: str | None = None,
               aligned: bool = False, seq_len: int = 0, fit: str = "pool", index_base: int = 1,
               segments: str | Path | None = None, config_path: str | Path | None = None, replace: bool = False,
               progress: bool = False) -> ImportSummary:
    """Import computational sequences as one feature set of `modality`: one cache entry per segment.

    Entry ids map to SentiFlow's segment ids: `<video>_<n>` as they are, the SDK's aligned `<video>[<i>]` as
    `<video>_<i + index_base>`. Whole-video entries are cut into the intervals of the `segments` sequence's entry
    for the same video (e.g. the SDK's opinion-segment labels), segment i becoming `<video>_<i + index_base>`. A
    malformed entry is recorded as failed with its reason; the others are imported."""
    if not paths:
        raise ConfigError("name at least one .csd file to import")
    cache = FeatureCache(cache_dir)
    cache.check_writable()
    opened: list[ComputationalSequence] = []
    try:
        for p in paths:
            opened.append(open_csd(p))
        roots = sorted({cs.root for cs in opened})
        if name is None and len(roots) > 1:
            raise ConfigError(f"the files hold different sequences ({', '.join(roots)}): import them one at a time, "
                              "or give them one feature-set name with --name")
        options = ImportedConfig(feature_set=name or roots[0], aligned=aligned, seq_len=seq_len, fit=fit)
        config = base_config(cache.root, config_path)
        target = ImportTarget(cache, config, modality, options, replace=replace)
        reference = open_csd(segments) if segments else None
        try:
            total = sum(len(cs.keys) for cs in opened)
            bar = tqdm(total=total, unit="entry", desc=f"import {options.feature_set}", disable=not progress)
            for cs in opened:
                provenance = {**file_provenance(cs.path, "csd"), "root": cs.root,
                              "metadata": _plain(cs.metadata)}
                for key, seg in cs.entries():
                    bar.update(1)
                    try:
                        if isinstance(seg, InteropError):
                            raise seg
                        cuts = _segments(seg, reference, index_base)
                    except InteropError as exc:
                        target.fail(key, str(exc))
                        continue
                    for segment_id, features, intervals, entry_id in cuts:
                        try:
                            target.put(segment_id, features, intervals, {**provenance, "entry": entry_id},
                                       meta=_names(cs.metadata, features.shape[1]))
                        except InteropError as exc:
                            target.fail(entry_id, str(exc))
                target.summary.files.append(str(cs.path))
            bar.close()
        finally:
            if reference is not None:
                reference.close()
    finally:
        for cs in opened:
            cs.close()
    if sum(target.summary.counts.values()):
        record_import(cache.root, config, target.summary, options)
    return target.summary


def _segments(seg: Segment, reference: ComputationalSequence | None, index_base: int
              ) -> list[tuple[str, np.ndarray, np.ndarray, str]]:
    """(segment id, rows, intervals, source entry id) of one entry: itself, or its cuts along `reference`."""
    if reference is None or SDK_KEY.match(seg.key):
        return [(sdk_key_to_id(seg.key, index_base), seg.features, seg.intervals, seg.key)]
    if seg.key not in reference.keys:
        raise InteropError(f"{reference.path} has no segments for video {seg.key!r}")
    out = []
    for i, (start, end) in enumerate(reference.segment(seg.key).intervals):
        rows, iv = cut_segment(seg.features, seg.intervals, float(start), float(end))
        out.append((sdk_key_to_id(f"{seg.key}[{i}]", index_base), rows, iv, f"{seg.key}[{i}]"))
    return out


def _names(metadata: dict[str, Any], dim: int) -> dict[str, Any]:
    """The SDK's dimension names as feature names, when they fit the rows."""
    names = metadata.get("dimension names")
    return {"feature_names": [str(n) for n in names]} if isinstance(names, list) and len(names) == dim else {}


def _plain(metadata: dict[str, Any]) -> dict[str, Any]:
    """Metadata short enough to keep in every entry (citations and long descriptions left out)."""
    return {k: v for k, v in metadata.items() if isinstance(v, (str, int, float, bool)) and len(str(v)) <= 200}


def export_csd(cache_dir: str | Path, labels: str | Path | LabelTable, modality: str, out: str | Path, *,
               config_path: str | Path | None = None, options_path: str | Path | None = None,
               aligned: bool = False, sdk_ids: bool = False, index_base: int = 1, root: str | None = None,
               media_root: str | Path | None = None) -> ExportSummary:
    """Write one modality of the labelled rows' cached features as a computational sequence.

    The modality comes from the data config's source (`--options` data section; `aligned`: its aligned sources).
    Entry ids are the rows' ids, or the SDK's `<video>[<n - index_base>]` with `sdk_ids`."""
    config = load_config(str(config_path) if config_path else None)
    data = read_data_config(options_path)
    data.aligned = aligned
    data.modalities = [modality]
    data.validate()
    cache = FeatureCache(cache_dir, create=False)
    table = labels if isinstance(labels, LabelTable) else read_labels(labels, media_root)
    lookup = FeatureLookup(config, cache)
    summary = ExportSummary(str(out))
    segments: list[Segment] = []
    names: list[str] | None = None
    for row in table:
        got = modality_rows(lookup, row, data, modality)
        if isinstance(got, str):
            summary.skipped[row.id] = got
            continue
        features, intervals, entry = got
        key = id_to_sdk_key(row.id, index_base) if sdk_ids else row.id
        segments.append(Segment(key, features.astype(np.float32), intervals))
        names = names or entry.meta.get("feature_names")
    if not segments:
        detail = "; ".join(f"{k}: {v}" for k, v in list(summary.skipped.items())[:3])
        raise ConfigError(f"no labelled row has cached {modality} features to export; e.g. {detail}")
    source = data.source(modality)
    root = root or f"SentiFlow_{source.extractor}_{modality}"
    metadata = {key: "" for key in METADATA_KEYS}
    metadata.update({"root name": root, "computational sequence description":
                     f"SentiFlow {source.extractor} features ({source.tensor}) for {table.source or 'labelled rows'}",
                     "dimension names": list(names or []), "computational sequence version": "1.0",
                     "alignment compatible": True, "dataset name": Path(str(table.source)).stem,
                     "dataset version": "", "creator": "SentiFlow", "contact": ""})
    write_csd(out, root, segments, metadata)
    summary.written = len(segments)
    return summary
