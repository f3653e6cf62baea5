"""MMSA feature files <-> the feature cache (`sentiflow import mmsa`, `sentiflow export mmsa`)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
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
    modality_fixed,
    record_import,
)
from pipeline.cache import FeatureCache
from pipeline.config import ConfigError
from pipeline.files import atomic_write
from pipeline.interop import InteropError
from pipeline.interop.mmsa import (
    FEATURE_KEYS,
    LENGTH_KEYS,
    SPLITS,
    is_aligned,
    iter_samples,
    load_mmsa,
    mmsa_id,
    write_mmsa,
)
from pipeline.labels import LabelRow, LabelTable, read_labels
from pipeline.modalities import MODALITIES


def import_mmsa(path: str | Path, cache_dir: str | Path, *, name: str | None = None, aligned: bool | None = None,
                modalities: Sequence[str] | None = None, config_path: str | Path | None = None,
                labels_out: str | Path | None = None, replace: bool = False, progress: bool = False
                ) -> list[ImportSummary]:
    """Import an MMSA feature file (read with the restricted unpickler): one feature set per modality it holds.

    Ids `<video>$_$<clip>` become `<video>_<clip>`; each modality keeps the file's padded length as its fixed
    length, so `fixed` equals the file's arrays. MMSA files carry no times: rows get step intervals [i, i+1).
    `labels_out` writes the file's ids, transcripts, labels and splits as an MMSA label CSV."""
    path = Path(path)
    splits = load_mmsa(path)
    present = [m for m in MODALITIES if any(FEATURE_KEYS[m] in part for part in splits.values())]
    wanted = list(modalities) if modalities else present
    lacking = [m for m in wanted if m not in present]
    if lacking or not wanted:
        raise ConfigError(f"{path} holds {', '.join(FEATURE_KEYS[m] for m in present) or 'no features'}; it has no "
                          f"{', '.join(FEATURE_KEYS.get(m, m) for m in lacking) or 'modality to import'}")
    file_aligned = all(is_aligned(part) for part in splits.values()) if aligned is None else aligned
    cache = FeatureCache(cache_dir)
    cache.check_writable()
    config = base_config(cache.root, config_path)
    feature_set = name or path.stem
    targets: dict[str, ImportTarget] = {}
    for m in wanted:
        steps = max(part[FEATURE_KEYS[m]].shape[1] for part in splits.values() if FEATURE_KEYS[m] in part)
        options = ImportedConfig(feature_set=feature_set, aligned=file_aligned, seq_len=steps)
        targets[m] = ImportTarget(cache, config, m, options, replace=replace)
    provenance = file_provenance(path, "mmsa")
    samples = []
    total = sum(len(part["id"]) for part in splits.values())
    for sample in tqdm(iter_samples(splits, file_aligned), total=total, unit="clip", desc=f"import {feature_set}",
                       disable=not progress):
        samples.append((sample.id, sample.video_id, sample.clip_id, sample.text, sample.label, sample.split))
        for m, target in targets.items():
            if m in sample.problems:
                target.fail(sample.id, sample.problems[m])
                continue
            if m not in sample.features:
                continue
            rows = np.asarray(sample.features[m])
            steps = np.arange(rows.shape[0], dtype=np.float64)
            try:
                target.put(sample.id, rows, np.stack([steps, steps + 1.0], axis=1),
                           {**provenance, "entry": mmsa_id(sample.video_id, sample.clip_id), "split": sample.split,
                            "column": FEATURE_KEYS[m]}, meta={"time_unit": "step"},
                           extra=_token_tensors(sample.tokens) if m == "text" else None)
            except InteropError as exc:
                target.fail(sample.id, str(exc))
    for target in targets.values():
        target.summary.files.append(str(path))
        if sum(target.summary.counts.values()):
            record_import(cache.root, config, target.summary, target.extractor.config)  # type: ignore[arg-type]
    if labels_out:
        write_label_csv(labels_out, samples)
    return [targets[m].summary for m in wanted]


def _token_tensors(tokens: np.ndarray | None) -> dict[str, torch.Tensor] | None:
    """The text entry's `token_ids` and `attention_mask` from MMSA's `text_bert` rows (3, T), as the text extractor
    names them."""
    if tokens is None:
        return None
    return {"token_ids": torch.from_numpy(np.asarray(tokens[0], dtype=np.int64)),
            "attention_mask": torch.from_numpy(np.asarray(tokens[1], dtype=np.int64))}


def write_label_csv(path: str | Path, samples: list[tuple[str, str, str, str, float | None, str]]) -> Path:
    """An MMSA label CSV (`video_id,clip_id,text,label,mode`) of the samples that have a label; `id,text,label,mode`
    when some id has no clip part."""
    rows = [s for s in samples if s[4] is not None]
    if not rows:
        raise ConfigError(f"cannot write {path}: the file has no regression_labels")
    mmsa = all(clip for _, _, clip, *_ in rows)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["video_id", "clip_id", "text", "label", "mode"] if mmsa else ["id", "text", "label", "mode"])
    for sid, video, clip, text, label, split in rows:
        writer.writerow([video, clip, text, label, split] if mmsa else [sid, text, label, split])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: tmp.write_text(buf.getvalue(), encoding="utf-8"))


def _mmsa_ids(row: LabelRow) -> tuple[str, str]:
    """(video_id, clip_id) of a label row as MMSA writes them."""
    if row.video_id and row.clip_id and row.id == f"{row.video_id}_{row.clip_id}":
        return row.video_id, row.clip_id
    video, _, clip = row.id.rpartition("_")
    return (video, clip) if video else (row.id, "")


def export_mmsa(cache_dir: str | Path, labels: str | Path | LabelTable, out: str | Path, *,
                config_path: str | Path | None = None, options_path: str | Path | None = None,
                aligned: bool = False, media_root: str | Path | None = None) -> ExportSummary:
    """Write the labelled rows' cached model inputs in MMSA's layout, one split per label `mode`.

    `text`, `audio`, `vision` are the data config's sources (`fixed` tensors, zero-padded, with their lengths);
    `text_bert` is added when the text source holds token ids. Rows lacking a configured modality are left out."""
    config = load_config(str(config_path) if config_path else None)
    data = read_data_config(options_path)
    data.aligned = aligned
    data.validate()
    cache = FeatureCache(cache_dir, create=False)
    table = labels if isinstance(labels, LabelTable) else read_labels(labels, media_root)
    lookup = FeatureLookup(config, cache)
    summary = ExportSummary(str(out))
    columns: dict[str, dict[str, list[Any]]] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    for row in table:
        got = {m: modality_fixed(lookup, row, data, m) for m in data.modalities}
        bad = {m: v for m, v in got.items() if isinstance(v, str)}
        if bad:
            summary.skipped[row.id] = "; ".join(f"{m}: {why}" for m, why in bad.items())
            continue
        odd = [m for m, (x, _, _) in got.items() if shapes.setdefault(m, x.shape) != x.shape]
        if odd:
            summary.skipped[row.id] = "; ".join(f"{m} shape {got[m][0].shape} differs from {shapes[m]}" for m in odd)
            continue
        col = columns.setdefault(row.mode, {})
        video, clip = _mmsa_ids(row)
        col.setdefault("id", []).append(mmsa_id(video, clip))
        col.setdefault("raw_text", []).append(row.text)
        col.setdefault("regression_labels", []).append(float(row.label))
        for m, (x, length, tensors) in got.items():
            col.setdefault(FEATURE_KEYS[m], []).append(x)
            if not aligned and m in LENGTH_KEYS:
                col.setdefault(LENGTH_KEYS[m], []).append(length)
            if m == "text":
                col.setdefault("_tokens", []).append(_token_rows(tensors, x.shape[0]))
    if not columns:
        detail = "; ".join(f"{k}: {v}" for k, v in list(summary.skipped.items())[:3])
        raise ConfigError(f"no labelled row has every configured modality cached; e.g. {detail}")
    splits: dict[str, dict[str, Any]] = {}
    for split in SPLITS:
        if split not in columns:
            continue
        col = columns[split]
        labels_arr = np.asarray(col["regression_labels"], dtype=np.float32)
        part: dict[str, Any] = {"id": np.asarray(col["id"], dtype=object),
                                "raw_text": np.asarray(col["raw_text"], dtype=object),
                                "regression_labels": labels_arr,
                                "classification_labels": np.where(labels_arr < 0, 0, np.where(labels_arr == 0, 1, 2)
                                                                  ).astype(np.float32),
                                "annotations": ["Negative" if v < 0 else "Neutral" if v == 0 else "Positive"
                                                for v in labels_arr]}
        for m in data.modalities:
            part[FEATURE_KEYS[m]] = np.stack(col[FEATURE_KEYS[m]]).astype(np.float32)
            if m in LENGTH_KEYS and LENGTH_KEYS[m] in col:
                part[LENGTH_KEYS[m]] = [int(n) for n in col[LENGTH_KEYS[m]]]
        tokens = col.get("_tokens")
        if tokens and all(t is not None for t in tokens):
            part["text_bert"] = np.stack(tokens).astype(np.float32)
        splits[split] = part
        summary.written += len(col["id"])
    write_mmsa(out, splits)
    return summary


def _token_rows(tensors: dict[str, Any], steps: int) -> np.ndarray | None:
    """MMSA's `text_bert` rows (token ids, attention mask, segment ids) of a text entry, if it has tokens."""
    ids, mask = tensors.get("token_ids"), tensors.get("attention_mask")
    if ids is None or mask is None or ids.numel() != steps or mask.numel() != steps:
        return None
    ids_np = ids.reshape(-1).numpy()
    return np.stack([ids_np, mask.reshape(-1).numpy(), np.zeros_like(ids_np)]).astype(np.float32)
