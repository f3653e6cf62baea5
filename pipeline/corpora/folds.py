"""Train/valid/test folds: folds files (JSON or the CMU-MultimodalSDK's `*_std_folds.py`), the SDK's standard
folds of MOSI and MOSEI, shipped in `folds/`, and seeded splits of whole videos by shares (`video_folds`)."""

from __future__ import annotations

import ast
import json
import os
import random
from pathlib import Path
from typing import Any

from pipeline.corpora.base import DatasetError, read_text
from pipeline.labels import LabelRow

FOLDS_DIR = Path(__file__).with_name("folds")           # packaged CMU-MultimodalSDK standard folds (JSON)
FOLD_ALIASES = {"train": "train", "valid": "valid", "dev": "valid", "val": "valid", "validation": "valid",
                "test": "test"}


def load_folds(path: str | os.PathLike) -> dict[str, str]:
    """Video id -> split from a folds file: JSON {"train": [...], "valid"|"dev": [...], "test": [...]}
    or the CMU-MultimodalSDK `*_std_folds.py` (read as literals, never executed)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"folds file not found: {path}")
    text = read_text(path)
    lists: dict[str, Any] = {}
    if path.suffix == ".py":
        try:
            tree = ast.parse(text, str(path))
            for node in tree.body:
                if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                    name = node.targets[0].id
                    if name.startswith("standard_") and name.endswith("_fold"):
                        lists[name[len("standard_"):-len("_fold")]] = ast.literal_eval(node.value)
        except (SyntaxError, ValueError) as exc:
            raise DatasetError(f"{path}: expected standard_train_fold/standard_valid_fold/standard_test_fold "
                               f"lists of video ids ({exc})") from exc
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); expected "
                               '{"train": [...], "valid": [...], "test": [...]}') from exc
        if not isinstance(data, dict):
            raise DatasetError(f"{path}: expected a JSON object of split -> list of video ids")
        lists = data
    folds: dict[str, str] = {}
    for key, ids in lists.items():
        split = FOLD_ALIASES.get(str(key).lower())
        if split is None:
            if key == "source":
                continue
            raise DatasetError(f"{path}: unknown split {key!r}; expected train, valid (or dev) and test")
        if not isinstance(ids, list) or not all(isinstance(i, (str, int)) for i in ids):
            raise DatasetError(f"{path}: split {key!r} must be a list of video ids")
        for vid in ids:
            vid = str(vid)
            if folds.get(vid, split) != split:
                raise DatasetError(f"{path}: video {vid!r} is in both {folds[vid]} and {split}")
            folds[vid] = split
    if not folds:
        raise DatasetError(f"{path}: holds no fold lists (expected train, valid and test lists of video ids)")
    return folds


def standard_folds(dataset: str) -> dict[str, str]:
    """The CMU-MultimodalSDK standard train/valid/test folds of 'mosi' or 'mosei' (video id -> split)."""
    path = FOLDS_DIR / f"cmu_{dataset}.json"
    if not path.is_file():
        raise DatasetError(f"no standard folds ship for {dataset!r} (looked for {path}); pass a folds file")
    return load_folds(path)


def assign_folds(rows: list[LabelRow], folds: dict[str, str], folds_source: str) -> None:
    """Set each row's split from `folds` by its video id; a DatasetError lists ids in none of them."""
    unknown = sorted({r.video_id for r in rows if r.video_id not in folds})
    if unknown:
        shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise DatasetError(f"video ids {shown} are in none of the folds of {folds_source}; pass a folds file "
                           "(parameter `folds`) listing them under train/valid/test")
    for r in rows:
        r.mode = folds[r.video_id]


def video_folds(rows: list[LabelRow], shares: tuple[float, float, float], seed: int) -> dict[str, str]:
    """Video id -> train/valid/test by shares of the segments: videos in a seeded order fill the splits in turn
    until each holds its share (every split gets at least one video when there are three or more)."""
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.video_id] = counts.get(r.video_id, 0) + 1
    videos = sorted(counts)
    random.Random(seed).shuffle(videos)
    total = sum(counts.values())
    bounds = (shares[0] * total, (shares[0] + shares[1]) * total)
    out: dict[str, str] = {}
    seen = 0
    for vid in videos:
        out[vid] = "train" if seen < bounds[0] else "valid" if seen < bounds[1] else "test"
        seen += counts[vid]
    if len(videos) >= 3:
        for vid, split in ((videos[-1], "test"), (videos[-2], "valid")):
            if split not in out.values():
                out[vid] = split
    return out
