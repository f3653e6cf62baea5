"""Writing files that others read: atomic writes (JSON and any other format) and tables (CSV, Parquet, Markdown)."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

if TYPE_CHECKING:
    import pandas as pd


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None], tmp_dir: str | os.PathLike | None = None,
                 fsync: bool = True, owner: str | None = None) -> Path:
    """Write `path` through `write(temporary path)` and rename it into place: readers see the old file or the
    whole new one, never a half-written one. The temporary file lives in `tmp_dir` (same file system) or
    beside `path`, is named with `owner` (default: the process id) and is removed if `write` fails."""
    path = Path(path)
    folder = Path(tmp_dir) if tmp_dir is not None else path.parent
    tmp = folder / f".{path.name}.{owner or os.getpid()}.{uuid.uuid4().hex[:8]}"
    try:
        write(tmp)
        if fsync:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: str | os.PathLike, obj: Any, tmp_dir: str | os.PathLike | None = None,
                      default: Callable[[Any], Any] = str, fsync: bool = True, owner: str | None = None) -> Path:
    """Write `obj` as indented UTF-8 JSON atomically (see `atomic_write`); `default` serialises other types."""
    text = json.dumps(obj, ensure_ascii=False, indent=1, default=default)
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), tmp_dir, fsync, owner)


def write_table(frame: "pd.DataFrame", path: str | os.PathLike) -> Path:
    """Write a table as CSV, Parquet or JSON lines by the file suffix (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))
    if suffix in (".json", ".jsonl"):
        return atomic_write(path, lambda tmp: frame.to_json(tmp, orient="records", lines=True, force_ascii=False))
    return atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))


def markdown_cell(value: Any) -> str:
    """A value as text safe inside a Markdown pipe-table cell (pipes escaped, one line)."""
    return str(value).replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def markdown_table(columns: Sequence[Any], rows: Iterable[Sequence[Any]], numeric: Sequence[bool] | None = None,
                   cell: Callable[[Any], str] = markdown_cell) -> str:
    """A GitHub-flavoured pipe table; columns flagged in `numeric` are right-aligned; `cell` renders each value."""
    align = ["---:" if numeric and i < len(numeric) and numeric[i] else "---" for i in range(len(columns))]
    lines = ["| " + " | ".join(cell(c) for c in columns) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
