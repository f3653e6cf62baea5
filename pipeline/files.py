"""Files that others read: atomic writes (JSON and any other format), tables (CSV, Parquet, Markdown), reading CSV
records, and text that is safe to store or print whatever bytes a file name holds.

Paths are bytes on Linux: a name that is not valid UTF-8 reaches Python as a str with surrogate escapes
(os.fsdecode), which strict UTF-8 writers refuse. `json_dumps` writes them as JSON \\uXXXX escapes (read back to
the same str, so the path still opens), `printable` shows the original bytes as \\xNN for terminals and tables.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

if TYPE_CHECKING:
    import pandas as pd

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")   # characters that break a line or a terminal


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


def json_dumps(obj: Any, indent: int | None = None, default: Callable[[Any], Any] = str) -> str:
    """JSON text of `obj` that any UTF-8 writer can store: non-ASCII kept as is, the surrogate escapes of a file
    name's undecodable bytes written as \\uXXXX escapes (json.loads gives back the same str)."""
    text = json.dumps(obj, ensure_ascii=False, indent=indent, default=default)
    if not _encodable(text):
        # only lone surrogates fail, and json.dumps leaves them inside strings: \\uXXXX is their JSON escape
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def printable(text: Any) -> str:
    """`text` as one printable line: a file name's undecodable bytes as \\xNN, control characters escaped."""
    s = str(text)
    if not _encodable(s):
        # os.fsdecode's escapes (U+DC80..U+DCFF) go back to their bytes, shown as \\xNN; other lone surrogates as \\uXXXX
        errors = "surrogateescape" if all(0xDC80 <= ord(c) <= 0xDCFF for c in s if 0xD800 <= ord(c) <= 0xDFFF) \
            else "backslashreplace"
        s = s.encode("utf-8", errors).decode("utf-8", "backslashreplace")
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), s)


def _encodable(value: Any) -> bool:
    """False for a str that strict UTF-8 refuses (it holds lone surrogates)."""
    if not isinstance(value, str):
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def atomic_write_json(path: str | os.PathLike, obj: Any, tmp_dir: str | os.PathLike | None = None,
                      default: Callable[[Any], Any] = str, fsync: bool = True, owner: str | None = None) -> Path:
    """Write `obj` as indented UTF-8 JSON atomically (see `atomic_write`); `default` serialises other types."""
    text = json_dumps(obj, indent=1, default=default)
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), tmp_dir, fsync, owner)


def csv_records(text: str, where: str, error: type[Exception]) -> tuple[list[str], Iterator[tuple[int, dict[str, str]]]]:
    """The header and the (first line, record) pairs of CSV text. Quoted fields may hold newlines and any other
    character (U+2028 is text, not a line break); a malformed record raises `error` naming `where` and its line."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = [c for c in (reader.fieldnames or [])]
    except csv.Error as exc:
        raise error(f"{where} line 1: {exc}") from None

    def records() -> Iterator[tuple[int, dict[str, str]]]:
        line = reader.line_num
        while True:
            try:
                rec = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise error(f"{where} line {line + 1}: {exc}") from None
            yield line + 1, rec
            line = reader.line_num

    return header, records()


def write_table(frame: "pd.DataFrame", path: str | os.PathLike) -> Path:
    """Write a table as CSV, Parquet or JSON lines by the file suffix (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    frame = _storable(frame)
    if suffix == ".parquet":
        return atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))
    if suffix in (".json", ".jsonl"):
        return atomic_write(path, lambda tmp: frame.to_json(tmp, orient="records", lines=True, force_ascii=False))
    return atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))


def _storable(frame: "pd.DataFrame") -> "pd.DataFrame":
    """The frame with every text cell that strict UTF-8 refuses (a file name's undecodable bytes) made printable."""
    bad = [c for c in frame.columns if frame[c].dtype == object and not frame[c].map(_encodable).all()]
    if not bad:
        return frame
    frame = frame.copy()
    for c in bad:
        frame[c] = frame[c].map(lambda v: v if _encodable(v) else printable(v))
    return frame


def markdown_cell(value: Any) -> str:
    """A value as text safe inside a Markdown pipe-table cell (pipes escaped, one line)."""
    return printable(str(value).replace("\r", " ").replace("\n", " ")).replace("|", "\\|")


def markdown_table(columns: Sequence[Any], rows: Iterable[Sequence[Any]], numeric: Sequence[bool] | None = None,
                   cell: Callable[[Any], str] = markdown_cell) -> str:
    """A GitHub-flavoured pipe table; columns flagged in `numeric` are right-aligned; `cell` renders each value."""
    align = ["---:" if numeric and i < len(numeric) and numeric[i] else "---" for i in range(len(columns))]
    lines = ["| " + " | ".join(cell(c) for c in columns) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
