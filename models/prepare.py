"""Before training, evaluating or scoring: the label table, and extraction of the features its rows lack."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from extractors.config import SentiFlowConfig
from extractors.registry import EXTRACTORS
from extractors.runner import ExtractionRunner
from extractors.text_only import extract_transcript_table, text_item_extractors
from models.data import DataConfig, usable_modalities
from pipeline.cache import FeatureCache
from pipeline.labels import LabelTable, read_labels, row_extras


def label_table(labels: str | Path | LabelTable, media_root: str | Path | None) -> LabelTable:
    """The label table itself, or read from a label file (paths resolved under `media_root`)."""
    return labels if isinstance(labels, LabelTable) else read_labels(labels, media_root)


def extract_for_rows(table: LabelTable, config: SentiFlowConfig, cache: FeatureCache, data: DataConfig,
                     device: torch.device, progress: bool = False) -> dict[str, Any]:
    """Extract the features `data` needs for every row that lacks them (media rows and transcript-only rows),
    translations too when `data.translations`."""
    wanted = {data.source(m).extractor for m in usable_modalities(data)}
    if data.translations:
        wanted.add(data.translation().extractor)
    names = sorted(n for n in wanted if EXTRACTORS.get(n).keyed_by != "segment")   # imports are not extracted
    report: dict[str, Any] = {}
    media_rows = [r for r in table if r.path]
    if media_rows and names:
        runner = ExtractionRunner(config, cache, device=device, only=names)
        summary = runner.run([r.path for r in media_rows], progress=progress,
                             extras={r.path: row_extras(r) for r in media_rows})
        report["media"] = {"done": summary.count("done"), "cached": summary.count("cached"),
                           "failed": summary.count("failed")}
    text_rows = [r for r in table if not r.path and r.text]
    text_names = text_item_extractors(names)
    if text_rows and text_names:
        s = extract_transcript_table(LabelTable(text_rows, table.source), cache, config, device=device,
                                     progress=progress, extractor_name=text_names[0], also=text_names[1:])
        report["transcripts"] = s.line()
    return report
