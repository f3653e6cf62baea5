"""UR-FUNNY (binary humor): <root>/labels.csv (id,label in {0,1}[,text][,mode]) + <root>/urfunny2_videos/<id>.mp4."""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.corpora.base import BINARY, Dataset, DatasetError, finish, read_text, require_dir
from pipeline.corpora.cmu import first_dir
from pipeline.corpora.folds import FOLD_ALIASES, assign_folds, load_folds
from pipeline.files import csv_records
from pipeline.labels import KNOWN_COLUMNS, LabelRow, extra_targets, find_media

URFUNNY_VIDEO_DIRS = ("urfunny2_videos", "videos", "Raw")


def load_urfunny(root: str | os.PathLike, folds: str | os.PathLike | None = None) -> Dataset:
    """UR-FUNNY (binary humor): <root>/labels.csv (id,label in {0,1}[,text][,mode]) + <root>/urfunny2_videos/<id>.mp4;
    splits from the mode column or a folds JSON (<root>/folds.json by default, train/dev/test id lists)."""
    root = require_dir(root, "UR-FUNNY")
    csv_path = root / "labels.csv"
    if not csv_path.is_file():
        raise DatasetError(f"UR-FUNNY: label file not found: {csv_path} (expected columns id,label[,text][,mode] "
                           "with label 0 or 1; convert the release's humor_label_sdk.pkl once, SentiFlow never "
                           "unpickles files)")
    video_dir = first_dir(root, URFUNNY_VIDEO_DIRS)
    if video_dir is None:
        raise DatasetError(f"UR-FUNNY: no video folder; expected {root / URFUNNY_VIDEO_DIRS[0]}/<id>.mp4")
    header, records = csv_records(read_text(csv_path), str(csv_path), DatasetError)
    cols = set(header)
    if not {"id", "label"} <= cols:
        raise DatasetError(f"{csv_path}: expected columns id,label[,text][,mode]; found "
                           f"{', '.join(sorted(cols)) or 'none'}")
    rows: list[LabelRow] = []
    expected: dict[str, Path] = {}
    extra_cols = [c for c in header if c and c not in KNOWN_COLUMNS]
    for n, rec in records:
        rid = (rec["id"] or "").strip()
        raw = (rec["label"] or "").strip()
        if raw not in ("0", "1", "0.0", "1.0"):
            raise DatasetError(f"{csv_path}:{n}: humor label must be 0 or 1, got {raw!r}")
        mode = FOLD_ALIASES.get((rec.get("mode") or "").strip().lower(), "") if "mode" in cols else ""
        if "mode" in cols and not mode:
            raise DatasetError(f"{csv_path}:{n}: mode {rec.get('mode')!r} is not train, valid (dev) or test")
        media = find_media(video_dir, rid)
        expected[rid] = video_dir / f"{rid}.mp4"
        rows.append(LabelRow(id=rid, text=(rec.get("text") or "").strip(), label=float(raw), mode=mode or "train",
                             video_id=rid, clip_id=rid, path=str(media) if media else None, language="en",
                             targets=extra_targets(rec, extra_cols)))
    if not rows:
        raise DatasetError(f"{csv_path}: holds no rows")
    folds_path = Path(folds) if folds else root / "folds.json"
    if folds is not None or "mode" not in cols:
        if not folds_path.is_file():
            raise DatasetError(f"UR-FUNNY: {csv_path} has no mode column and the folds file {folds_path} is "
                               'missing (expected JSON {"train": [ids], "dev": [ids], "test": [ids]})')
        assign_folds(rows, load_folds(folds_path), str(folds_path))
    return finish("urfunny", root, BINARY, rows, str(csv_path), expected, list(header))
