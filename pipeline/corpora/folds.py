"""Train/valid/test folds: folds files (JSON or the CMU-MultimodalSDK's `*_std_folds.py`), the SDK's standard
folds of MOSI and MOSEI (shipped in `folds/`), seeded splits of whole videos by shares (`video_folds`), and the
policy that gives a dataset's rows their splits.

Splits are assigned only where they are used (training, evaluation, experiments; extraction needs none), from
the first of: a folds file passed in, the label file's `mode` column, `<root>/folds.json`, the shipped standard
folds, the adapter's fallback split. Video ids in none of the folds are left out and listed, not an error.
"""

from __future__ import annotations

import ast
import json
import os
import random
from pathlib import Path
from typing import Any

from pipeline.corpora.base import Dataset, DatasetError, read_text
from pipeline.labels import LabelRow, LabelTable

FOLDS_DIR = Path(__file__).with_name("folds")           # packaged CMU-MultimodalSDK standard folds (JSON)
ROOT_FOLDS_FILE = "folds.json"                         # a dataset root's own folds, picked up when present
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


def split_rows(rows: list[LabelRow], folds: dict[str, str]) -> tuple[list[LabelRow], list[str]]:
    """The rows whose video id is in `folds`, each given its split, and the sorted video ids in none of them."""
    kept = [r for r in rows if r.video_id in folds]
    for r in kept:
        r.mode = folds[r.video_id]
    return kept, sorted({r.video_id for r in rows if r.video_id not in folds})


def assign_splits(ds: Dataset, folds: str | os.PathLike | None = None) -> Dataset:
    """Give every labelled row of `ds` its split (the module's order of sources); rows of video ids in none of the
    folds are left out of `ds.table` and listed in `ds.unassigned`. A DatasetError when no source applies."""
    if ds.table is None or ds.splits_from:
        return ds
    root_folds = ds.root / ROOT_FOLDS_FILE
    if folds is not None:
        mapping, source = load_folds(folds), str(folds)
    elif "mode" in ds.table.columns:
        ds.splits_from = f"the mode column of {ds.table.source}"
        return ds
    elif root_folds.is_file():
        mapping, source = load_folds(root_folds), str(root_folds)
    elif ds.standard_folds:
        mapping, source = standard_folds(ds.standard_folds), f"the CMU-MultimodalSDK standard {ds.standard_folds} folds"
    elif ds.fallback_split:
        for r in ds.table:
            r.mode = ds.fallback_split
        ds.splits_from = f"none given: every row is {ds.fallback_split}"
        return ds
    else:
        raise DatasetError(f"{ds.name}: no splits: {ds.table.source} has no mode column and there is no folds file; "
                           f"{pass_folds_hint(ds)}")
    rows, ds.unassigned = split_rows(list(ds.table), mapping)
    ds.table = LabelTable(rows, ds.table.source, list(ds.table.columns))
    ds.splits_from = source
    return ds


def require_split(ds: Dataset, split: str, purpose: str) -> LabelTable:
    """The rows of one split of `ds` (assigning splits first), or a DatasetError saying why it is empty."""
    assign_splits(ds)
    rows = ds.table.split(split) if ds.table is not None else LabelTable([])
    if len(rows):
        return rows
    if ds.unassigned:
        why = f"{ds.unassigned_note()} of {ds.splits_from}; {pass_folds_hint(ds)}"
    else:
        why = f"its splits come from {ds.splits_from}"
    raise DatasetError(f"{ds.name} at {ds.root}: {purpose} needs rows in split {split!r}, and there are none: {why}")


def pass_folds_hint(ds: Dataset) -> str:
    """What to do when a dataset's rows have no split: where a folds file may come from."""
    return (f"pass a folds file listing its video ids under train/valid/test (flows: parameter `folds` or "
            f"SENTIFLOW_{ds.name.split('-')[0].upper()}_FOLDS), or put one at {ds.root / ROOT_FOLDS_FILE}")


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
