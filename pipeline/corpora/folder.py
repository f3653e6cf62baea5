"""A plain folder of videos: every media file below it, unlabelled."""

from __future__ import annotations

import os

from pipeline.corpora.base import REGRESSION, Dataset, DatasetError, require_dir
from pipeline.media import MEDIA_EXTENSIONS


def load_folder(root: str | os.PathLike) -> Dataset:
    """A plain folder of videos (searched recursively, unlabelled)."""
    root = require_dir(root, "video folder")
    media = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in MEDIA_EXTENSIONS)
    if not media:
        raise DatasetError(f"{root}: holds no media files (extensions: {', '.join(sorted(MEDIA_EXTENSIONS))})")
    return Dataset("folder", root, REGRESSION, None, media, [])
