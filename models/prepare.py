"""Before training, evaluating or scoring: the label table, and extraction of the features its rows lack."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from extractors.config import SentiFlowConfig
from extractors.registry import EXTRACTORS
from extractors.runner import ExtractionRunner
from extractors.text_only import extract_transcript_table
from models.data import DataConfig, usable_modalities
from pipeline.cache import FeatureCache
from pipeline.labels import LabelTable, read_labels


def label_table(labels: str | Path | LabelTable, media_root: str | Path | None) -> LabelTable:
    """The label table itself, or read from a label file (paths resolved under `media_root`)."""
    return labels if isinstance(labels, LabelTable) else read_labels(labels, media_root)


def extract_for_rows(table: LabelTable, config: SentiFlowConfig, cache: FeatureCache, data: DataConfig,
                     device: torch.device, progress: bool = False) -> dict[str, Any]:
    """Extract the features `data` needs for every row that lacks them (media rows and transcript-only rows)."""
    names = sorted({data.source(m).extractor for m in usable_modalities(data)
                    if EXTRACTORS.get(data.source(m).extractor).keyed_by != "segment"})   # imports are not extracted
    report: dict[str, Any] = {}
    media_rows = [r for r in table if r.path]
    if media_rows and names:
        runner = ExtractionRunner(config, cache, device=device, only=names)
        summary = runner.run([r.path for r in media_rows], progress=progress,
                             extras={r.path: {"transcript": r.text} for r in media_rows if r.text})
        report["media"] = {"done": summary.count("done"), "cached": summary.count("cached"),
                           "failed": summary.count("failed")}
    text_rows = [r for r in table if not r.path and r.text]
    text_ex = data.source("text").extractor
    if text_rows and not data.aligned and "text" in usable_modalities(data) and text_ex in names:
        s = extract_transcript_table(LabelTable(text_rows, table.source), cache, config, device=device,
                                     progress=progress, extractor_name=text_ex)
        report["transcripts"] = s.line()
    return report
