"""Label tables: MMSA-style `video_id,clip_id,text,label,mode` and transcript-only `id,text,label[,mode]` CSVs."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from pipeline.errors import SentiFlowError
from pipeline.files import csv_records
from pipeline.media import MEDIA_EXTENSIONS

log = logging.getLogger(__name__)

MODES = ("train", "valid", "test")
TRANSLATION_COLUMN = "text_translation"   # the transcript translated into another language (translation augmentation)
# the columns with a meaning of their own; the rest are extra numeric targets
KNOWN_COLUMNS = ("id", "video_id", "clip_id", "text", "label", "mode", "language", TRANSLATION_COLUMN)
MAX_ABS_LABEL = 1e6   # sentiment is in [-3, 3], classes and emotion intensities are small: larger is a broken cell


class LabelError(SentiFlowError, ValueError):
    """A label file is missing, malformed, or points outside its dataset root."""


@dataclass
class LabelRow:
    """One labelled segment: its id, transcript, score in [-3, 3] (or class), split, and media path if any."""

    id: str
    text: str
    label: float
    mode: str = "train"
    video_id: str = ""
    clip_id: str = ""
    path: str | None = None          # resolved media file, None for transcript-only rows
    language: str = ""
    targets: dict[str, float] = field(default_factory=dict)   # extra numeric columns (e.g. MOSEI emotions)
    translation: str = ""            # the `text_translation` column: the transcript in another language


@dataclass
class LabelTable:
    """Rows of one label file plus where it came from."""

    rows: list[LabelRow]
    source: str = ""
    columns: list[str] = field(default_factory=list)   # the label file's header (empty when built in code)

    def __iter__(self) -> Iterator[LabelRow]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def split(self, mode: str) -> "LabelTable":
        """Only the rows of one split."""
        return LabelTable([r for r in self.rows if r.mode == mode], self.source, list(self.columns))

    @property
    def has_media(self) -> bool:
        """True when every row points at a media file."""
        return bool(self.rows) and all(r.path for r in self.rows)


def confine(root: Path, relative: str) -> Path:
    """`root/relative`, refusing ids that climb out of the root (`..`, absolute paths)."""
    root_resolved = root.resolve()
    candidate = (root / relative).resolve()
    if candidate != root_resolved and root_resolved not in candidate.parents:
        raise LabelError(f"path {relative!r} escapes the dataset root {root}")
    return candidate


def find_media(folder: Path, stem: str) -> Path | None:
    """`folder/<stem>.<media extension>` if such a file exists (confined to `folder`), else None."""
    for ext in sorted(MEDIA_EXTENSIONS):
        p = confine(folder, f"{stem}{ext}")
        if p.is_file():
            return p
    return None


def find_clip(root: Path, video_id: str, clip_id: str) -> Path | None:
    """Media file of an MMSA clip: root[/Raw]/<video_id>/<clip_id>.<ext> (None if absent)."""
    for base in (root, root / "Raw"):
        folder = confine(base, video_id) if base.exists() else None
        if folder is None or not folder.is_dir():
            continue
        media = find_media(folder, clip_id)
        if media is not None:
            return media
    return None


def read_labels(path: str | Path, media_root: str | Path | None = None, require_media: bool = False,
                default_mode: str = "train") -> LabelTable:
    """Read an MMSA or transcript-only CSV; MMSA rows get their media path resolved under `media_root`."""
    path = Path(path)
    if not path.is_file():
        raise LabelError(f"label file not found: {path}")
    root = Path(media_root) if media_root is not None else path.parent
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LabelError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise LabelError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    header, records = csv_records(text, str(path), LabelError)
    cols = set(header)
    mmsa = {"video_id", "clip_id", "label"} <= cols
    plain = {"id", "label"} <= cols
    if not (mmsa or plain):
        raise LabelError(f"{path}: expected columns video_id,clip_id,text,label[,mode] (MMSA) or "
                         f"id,text,label[,mode]; found {', '.join(sorted(cols)) or 'none'}")
    label_col = "label"
    extra_cols = [c for c in header if c and c not in KNOWN_COLUMNS]
    rows: list[LabelRow] = []
    seen: dict[str, tuple[int, LabelRow]] = {}     # id -> (line, row) of its first row
    for n, rec in records:
        value = label_value(rec.get(label_col), f"{path}:{n}")
        mode = (rec.get("mode") or default_mode).strip() or default_mode
        if mode not in MODES:
            raise LabelError(f"{path}:{n}: mode {mode!r} is not one of {', '.join(MODES)}")
        textval = (rec.get("text") or "").strip()
        targets = extra_targets(rec, extra_cols)
        translation = (rec.get(TRANSLATION_COLUMN) or "").strip()
        if mmsa:
            vid, cid = str(rec["video_id"]).strip(), str(rec["clip_id"]).strip()
            media = find_clip(root, vid, cid)
            if media is None and require_media:
                raise LabelError(f"{path}:{n}: no media file for {vid}/{cid} under {root}")
            row = LabelRow(id=f"{vid}_{cid}", text=textval, label=value, mode=mode, video_id=vid, clip_id=cid,
                           path=str(media) if media else None, language=(rec.get("language") or "").strip(),
                           targets=targets, translation=translation)
        else:
            rid = str(rec["id"]).strip()
            vid = rid.rsplit("_", 1)[0] if "_" in rid else rid
            row = LabelRow(id=rid, text=textval, label=value, mode=mode, video_id=vid, clip_id=rid,
                           language=(rec.get("language") or "").strip(), targets=targets, translation=translation)
        if row.id in seen:
            line, earlier = seen[row.id]
            if (earlier.label, earlier.mode, earlier.text, earlier.targets) != (row.label, row.mode, row.text,
                                                                                row.targets):
                raise LabelError(f"{path}: lines {line} and {n} both label id {row.id!r}, differently "
                                 f"(label {earlier.label:g} / {row.label:g}, mode {earlier.mode} / {row.mode}); "
                                 "keep one row per clip")
            log.warning("%s:%d repeats the row of id %s (line %d): the repeat is ignored", path, n, row.id, line)
            continue
        seen[row.id] = (n, row)
        rows.append(row)
    if not rows:
        raise LabelError(f"{path}: holds no rows")
    return LabelTable(rows, str(path), [c for c in header if c])


def label_value(cell: str | None, where: str) -> float:
    """A label cell as a finite number of sensible size; LabelError naming the file and line otherwise."""
    try:
        value = float(cell)   # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise LabelError(f"{where}: label {cell!r} is not a number") from None
    if math.isnan(value):
        raise LabelError(f"{where}: label is NaN")
    if not math.isfinite(value) or abs(value) > MAX_ABS_LABEL:
        raise LabelError(f"{where}: label {cell.strip() if cell else cell!r} is not a usable number (labels are "
                         f"sentiment scores in [-3, 3], class ids or intensities; at most {MAX_ABS_LABEL:g} in size)")
    return value


def row_extras(row: LabelRow) -> dict[str, str]:
    """A row's side inputs for extraction: its transcript and, when the labels give one, its translation."""
    extras = {"transcript": row.text} if row.text else {}
    if row.translation:
        extras["translation"] = row.translation
    return extras


def extra_targets(record: dict[str, str | None], columns: list[str]) -> dict[str, float]:
    """The finite numeric values of a CSV record's extra columns (empty or non-numeric cells are left out)."""
    out: dict[str, float] = {}
    for col in columns:
        try:
            value = float((record.get(col) or "").strip())
        except ValueError:
            continue
        if math.isfinite(value):
            out[col] = value
    return out
