"""What every corpus adapter returns: a `Dataset` (labelled rows, media files, rows lacking media), and its errors."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.labels import MODES, LabelError, LabelRow, LabelTable, row_extras

REGRESSION, BINARY = "regression", "binary"
EMOTION_COLUMNS = ("happy", "sad", "anger", "surprise", "disgust", "fear")   # MOSEI/MOSEAS emotion intensities 0..3


class DatasetError(LabelError):
    """A dataset root, label, transcript or folds file is missing or malformed (the message names it)."""


@dataclass
class Dataset:
    """One dataset as SentiFlow sees it: labelled rows (or none), media files, and rows lacking media."""

    name: str
    root: Path
    task: str = REGRESSION                    # "regression" (sentiment in [-3, 3]) or "binary" (0/1 labels)
    table: LabelTable | None = None
    media: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def extras(self) -> dict[str, dict[str, Any]]:
        """Side inputs for extraction by media path: each labelled row's transcript (and translation)."""
        if self.table is None:
            return {}
        return {r.path: row_extras(r) for r in self.table if r.path and row_extras(r)}

    def summary(self) -> dict[str, Any]:
        """Counts per split and of missing media, for logs and artifacts."""
        out: dict[str, Any] = {"dataset": self.name, "root": str(self.root), "task": self.task,
                               "media": len(self.media), "missing_media": len(self.problems)}
        if self.table is not None:
            out["rows"] = {m: len(self.table.split(m)) for m in MODES}
            if self.emotions:
                out["emotions"] = self.emotions
        return out

    @property
    def label_columns(self) -> list[str]:
        """Extra numeric label columns the rows carry (e.g. emotion intensities), in the label file's order."""
        if self.table is None:
            return []
        seen = {k for r in self.table for k in r.targets}
        order = [c for c in self.table.columns if c in seen]
        return order + sorted(seen - set(order))

    @property
    def emotions(self) -> list[str]:
        """The MOSEI/MOSEAS emotion columns (happy, sad, anger, surprise, disgust, fear) the labels have."""
        have = set(self.label_columns)
        return [e for e in EMOTION_COLUMNS if e in have]

    def task_options(self) -> dict[str, Any]:
        """The training options' `task:` section this dataset's labels call for by default."""
        if self.task == BINARY:
            return {"kind": "binary", "threshold": 0.5}
        return {"kind": "regression"}

    def emotion_task(self, pos_weight: str | list[float] = "auto") -> dict[str, Any]:
        """A multi-label `task:` section over the emotion columns the labels have (DatasetError when none)."""
        if not self.emotions:
            raise DatasetError(f"{self.name}: the labels have no emotion columns ({', '.join(EMOTION_COLUMNS)})")
        return {"kind": "multilabel", "label_columns": self.emotions, "pos_weight": pos_weight}


def require_dir(root: str | os.PathLike, what: str) -> Path:
    """`root` as a Path, or a DatasetError naming what it should have been."""
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DatasetError(f"{what} root {path} is not a directory")
    return path


def read_text(path: Path) -> str:
    """A UTF-8 text file (BOM allowed), or a DatasetError naming the file."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc


def finish(name: str, root: Path, task: str, rows: list[LabelRow], source: str,
            expected: dict[str, Path], columns: list[str] | None = None) -> Dataset:
    """Build a Dataset, recording each row whose media file is absent as a problem naming the expected path."""
    problems = [f"{r.id}: media file not found, expected {expected[r.id]}" for r in rows
                if not r.path and r.id in expected]
    media = [Path(r.path) for r in rows if r.path]
    return Dataset(name, root, task, LabelTable(rows, source, list(columns or [])), media, problems)
