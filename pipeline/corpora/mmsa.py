"""The MMSA layout: <root>/label.csv (video_id,clip_id,text,label,mode) + <root>[/Raw]/<video_id>/<clip_id>.mp4."""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.corpora.base import REGRESSION, Dataset, DatasetError, finish, require_dir
from pipeline.labels import read_labels


def load_mmsa(root: str | os.PathLike, name: str = "mmsa", label_file: str | os.PathLike | None = None,
              language: str = "") -> Dataset:
    """MMSA layout: <root>/label.csv (video_id,clip_id,text,label,mode) + <root>[/Raw]/<video_id>/<clip_id>.mp4."""
    root = require_dir(root, name)
    csv_path = Path(label_file) if label_file else root / "label.csv"
    if not csv_path.is_file():
        raise DatasetError(f"{name}: label file not found: {csv_path} (expected MMSA columns "
                           "video_id,clip_id,text,label,mode)")
    table = read_labels(csv_path, media_root=root)
    expected: dict[str, Path] = {}
    media_base = root / "Raw" if (root / "Raw").is_dir() else root
    for r in table:
        if language and not r.language:
            r.language = language
        expected[r.id] = media_base / r.video_id / f"{r.clip_id}.mp4"
    return finish(name, root, REGRESSION, list(table), str(csv_path), expected, table.columns, fallback_split="train")
