"""Dataset adapters: CMU-MOSI/MOSEI raw, MMSA, CMU-MOSEAS, UR-FUNNY and plain video folders -> labelled media.

Every adapter returns a `Dataset`: its label table (`pipeline.labels.LabelTable`, None for an unlabelled
folder), the media files to extract, and `problems` (rows whose media file is absent, each naming the path
that was expected), so one missing clip never stops the rest. A missing or malformed label/transcript/folds
file raises `DatasetError` naming the file and what was expected in it.
"""

from __future__ import annotations

import ast
import csv
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pipeline.labels import (KNOWN_COLUMNS, MODES, LabelError, LabelRow, LabelTable, extra_targets, find_media,
                             read_labels)
from pipeline.media import MEDIA_EXTENSIONS

FOLDS_DIR = Path(__file__).with_name("folds")           # packaged CMU-MultimodalSDK standard folds (JSON)
MOSEAS_LANGUAGES = ("es", "fr", "pt", "de")
REGRESSION, BINARY = "regression", "binary"
EMOTION_COLUMNS = ("happy", "sad", "anger", "surprise", "disgust", "fear")   # MOSEI/MOSEAS emotion intensities 0..3

# Where the CMU raw releases keep segmented clips and transcripts (MOSI: Video/Segmented, MOSEI: .../Combined).
CMU_VIDEO_DIRS = ("Raw/Video/Segmented", "Raw/Videos/Segmented/Combined", "Raw/Video/Segmented/Combined")
CMU_TRANSCRIPT_DIRS = ("Raw/Transcript/Segmented", "Raw/Transcript/Segmented/Combined",
                       "Raw/Transcripts/Segmented/Combined")
CMU_LABEL_DIR = "Raw/Labels"
CMU_LABEL_GLOB = "OpinionLevelSentiment*.csv"
FOLD_ALIASES = {"train": "train", "valid": "valid", "dev": "valid", "val": "valid", "validation": "valid",
                "test": "test"}


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
        """Side inputs for extraction by media path: each labelled row's transcript."""
        if self.table is None:
            return {}
        return {r.path: {"transcript": r.text} for r in self.table if r.path and r.text}

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


def _require_dir(root: str | os.PathLike, what: str) -> Path:
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DatasetError(f"{what} root {path} is not a directory")
    return path


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc


def _finish(name: str, root: Path, task: str, rows: list[LabelRow], source: str,
            expected: dict[str, Path], columns: list[str] | None = None) -> Dataset:
    """Build a Dataset, recording each row whose media file is absent as a problem naming the expected path."""
    problems = [f"{r.id}: media file not found, expected {expected[r.id]}" for r in rows
                if not r.path and r.id in expected]
    media = [Path(r.path) for r in rows if r.path]
    return Dataset(name, root, task, LabelTable(rows, source, list(columns or [])), media, problems)


# ---------------------------------------------------------------------------------------------- folds

def load_folds(path: str | os.PathLike) -> dict[str, str]:
    """Video id -> split from a folds file: JSON {"train": [...], "valid"|"dev": [...], "test": [...]}
    or the CMU-MultimodalSDK `*_std_folds.py` (read as literals, never executed)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"folds file not found: {path}")
    text = _read_text(path)
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


def _assign_folds(rows: list[LabelRow], folds: dict[str, str], folds_source: str) -> None:
    unknown = sorted({r.video_id for r in rows if r.video_id not in folds})
    if unknown:
        shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise DatasetError(f"video ids {shown} are in none of the folds of {folds_source}; pass a folds file "
                           "(parameter `folds`) listing them under train/valid/test")
    for r in rows:
        r.mode = folds[r.video_id]


# ------------------------------------------------------------------------------------- CMU raw layout

def _first_dir(root: Path, candidates: tuple[str, ...]) -> Path | None:
    for rel in candidates:
        if (root / rel).is_dir():
            return root / rel
    return None


def read_cmu_transcripts(folder: Path) -> dict[str, str]:
    """Segment id (`<vid>_<n>`) -> text from CMU transcripts: `<vid>.annotprocessed` lines `n_DELIM_text`
    (MOSI) or `<vid>.txt` lines `vid___n___start___end___text` (MOSEI)."""
    texts: dict[str, str] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix not in (".annotprocessed", ".txt") or not path.is_file():
            continue
        vid = path.stem
        for n, line in enumerate(_read_text(path).splitlines(), start=1):
            line = line.strip()
            if not line:
                continue
            if "_DELIM_" in line:
                seg, text = line.split("_DELIM_", 1)
                texts[f"{vid}_{seg.strip()}"] = text.strip()
            elif line.count("___") >= 4:
                parts = line.split("___", 4)
                texts[f"{parts[0]}_{parts[1]}"] = parts[4].strip()
            else:
                raise DatasetError(f"{path}:{n}: expected `<segment>_DELIM_<text>` (MOSI .annotprocessed) or "
                                   f"`<video>___<segment>___<start>___<end>___<text>` (MOSEI), got {line[:60]!r}")
    return texts


def read_opinion_labels(path: Path) -> list[tuple[str, str, float]]:
    """(video id, segment, label) from a CMU `OpinionLevelSentiment.csv` (no header: start,end,video,segment,label)."""
    out: list[tuple[str, str, float]] = []
    for n, rec in enumerate(csv.reader(_read_text(path).splitlines()), start=1):
        if not rec or not "".join(rec).strip():
            continue
        if len(rec) < 5:
            raise DatasetError(f"{path}:{n}: expected 5 columns start,end,video_id,segment,label; got {len(rec)}")
        try:
            value = float(rec[4])
        except ValueError:
            if n == 1:
                continue   # a header line
            raise DatasetError(f"{path}:{n}: label {rec[4]!r} is not a number") from None
        if math.isnan(value):
            raise DatasetError(f"{path}:{n}: label is NaN")
        out.append((rec[2].strip(), rec[3].strip(), value))
    if not out:
        raise DatasetError(f"{path}: holds no label rows")
    return out


def load_cmu_raw(root: str | os.PathLike, dataset: str = "mosi", folds: str | os.PathLike | None = None) -> Dataset:
    """CMU-MOSI/MOSEI raw release: Raw/Video/Segmented/<vid>_<n>.mp4, Raw/Transcript/Segmented/<vid>.*,
    labels from Raw/Labels/OpinionLevelSentiment*.csv (or an MMSA label.csv), standard folds unless `folds`."""
    root = _require_dir(root, f"CMU-{dataset.upper()}")
    video_dir = _first_dir(root, CMU_VIDEO_DIRS)
    if video_dir is None:
        raise DatasetError(f"{root}: no segmented video folder; expected one of "
                           f"{', '.join(str(root / d) for d in CMU_VIDEO_DIRS)}")
    transcript_dir = _first_dir(root, CMU_TRANSCRIPT_DIRS)
    texts = read_cmu_transcripts(transcript_dir) if transcript_dir else {}
    label_files = sorted((root / CMU_LABEL_DIR).rglob(CMU_LABEL_GLOB)) if (root / CMU_LABEL_DIR).is_dir() else []
    mmsa_csv = root / "label.csv"
    entries: list[tuple[str, str, float, str, str | None]] = []   # vid, seg, label, text, mode
    targets: dict[str, dict[str, float]] = {}                      # segment id -> extra columns (emotions)
    columns: list[str] = []
    if label_files:
        for lf in label_files:
            entries.extend((v, s, y, texts.get(f"{v}_{s}", ""), None) for v, s, y in read_opinion_labels(lf))
        source = ", ".join(str(p) for p in label_files)
    elif mmsa_csv.is_file():
        table = read_labels(mmsa_csv, media_root=root)
        entries.extend((r.video_id, r.clip_id, r.label, r.text or texts.get(f"{r.video_id}_{r.clip_id}", ""),
                        r.mode) for r in table)
        targets = {f"{r.video_id}_{r.clip_id}": dict(r.targets) for r in table}
        columns = list(table.columns)
        source = str(mmsa_csv)
    else:
        raise DatasetError(f"{root}: no labels; expected {root / CMU_LABEL_DIR / 'OpinionLevelSentiment.csv'} "
                           f"(columns start,end,video_id,segment,label) or {mmsa_csv} (MMSA columns)")
    rows: list[LabelRow] = []
    expected: dict[str, Path] = {}
    seen: set[str] = set()
    for vid, seg, label, text, mode in entries:
        rid = f"{vid}_{seg}"
        if rid in seen:
            raise DatasetError(f"{source}: segment {rid} is labelled twice")
        seen.add(rid)
        media = find_media(video_dir, rid)
        expected[rid] = video_dir / f"{rid}.mp4"
        rows.append(LabelRow(id=rid, text=text, label=label, mode=mode or "train", video_id=vid, clip_id=seg,
                             path=str(media) if media else None, language="en", targets=targets.get(rid, {})))
    if folds is not None:
        _assign_folds(rows, load_folds(folds), str(folds))
    elif not all(e[4] for e in entries):
        _assign_folds(rows, standard_folds(dataset), f"the CMU-MultimodalSDK standard {dataset} folds")
    return _finish(dataset, root, REGRESSION, rows, source, expected, columns)


# ------------------------------------------------------------------------------------------ MMSA layout

def load_mmsa(root: str | os.PathLike, name: str = "mmsa", label_file: str | os.PathLike | None = None,
              language: str = "") -> Dataset:
    """MMSA layout: <root>/label.csv (video_id,clip_id,text,label,mode) + <root>[/Raw]/<video_id>/<clip_id>.mp4."""
    root = _require_dir(root, name)
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
    return _finish(name, root, REGRESSION, list(table), str(csv_path), expected, table.columns)


def load_mosi(root: str | os.PathLike, folds: str | os.PathLike | None = None, dataset: str = "mosi") -> Dataset:
    """CMU-MOSI (or MOSEI with dataset='mosei'): the CMU raw layout when present, else the MMSA layout."""
    root = _require_dir(root, f"CMU-{dataset.upper()}")
    if _first_dir(root, CMU_VIDEO_DIRS) is not None:
        return load_cmu_raw(root, dataset, folds)
    if (root / "label.csv").is_file():
        ds = load_mmsa(root, dataset)
        if folds is not None:
            _assign_folds(list(ds.table or []), load_folds(folds), str(folds))
        return ds
    raise DatasetError(f"{root}: neither the CMU raw layout ({root / CMU_VIDEO_DIRS[0]}/<video>_<n>.mp4 + "
                       f"{root / CMU_LABEL_DIR}/OpinionLevelSentiment.csv) nor the MMSA layout "
                       f"({root / 'label.csv'} + Raw/<video_id>/<clip_id>.mp4)")


def load_mosei(root: str | os.PathLike, folds: str | os.PathLike | None = None) -> Dataset:
    """CMU-MOSEI in the CMU raw (segmented) or MMSA layout, standard folds unless `folds`."""
    return load_mosi(root, folds, dataset="mosei")


# --------------------------------------------------------------------------------------------- MOSEAS

def load_moseas(root: str | os.PathLike, language: str = "es") -> Dataset:
    """CMU-MOSEAS, one language (es, fr, pt, de): <root>/<lang>/label.csv + <root>/<lang>[/Raw]/<vid>/<clip>.mp4."""
    if language not in MOSEAS_LANGUAGES:
        raise DatasetError(f"CMU-MOSEAS language must be one of {', '.join(MOSEAS_LANGUAGES)}, got {language!r}")
    root = _require_dir(root, "CMU-MOSEAS")
    lang_root = root / language
    if not lang_root.is_dir():
        present = [lang for lang in MOSEAS_LANGUAGES if (root / lang).is_dir()]
        raise DatasetError(f"CMU-MOSEAS: no folder for language {language!r}: expected {lang_root} "
                           f"(present: {', '.join(present) or 'none'})")
    ds = load_mmsa(lang_root, f"moseas-{language}", language=language)
    ds.root = root
    return ds


# -------------------------------------------------------------------------------------------- UR-FUNNY

URFUNNY_VIDEO_DIRS = ("urfunny2_videos", "videos", "Raw")


def load_urfunny(root: str | os.PathLike, folds: str | os.PathLike | None = None) -> Dataset:
    """UR-FUNNY (binary humor): <root>/labels.csv (id,label in {0,1}[,text][,mode]) + <root>/urfunny2_videos/<id>.mp4;
    splits from the mode column or a folds JSON (<root>/folds.json by default, train/dev/test id lists)."""
    root = _require_dir(root, "UR-FUNNY")
    csv_path = root / "labels.csv"
    if not csv_path.is_file():
        raise DatasetError(f"UR-FUNNY: label file not found: {csv_path} (expected columns id,label[,text][,mode] "
                           "with label 0 or 1; convert the release's humor_label_sdk.pkl once, SentiFlow never "
                           "unpickles files)")
    video_dir = _first_dir(root, URFUNNY_VIDEO_DIRS)
    if video_dir is None:
        raise DatasetError(f"UR-FUNNY: no video folder; expected {root / URFUNNY_VIDEO_DIRS[0]}/<id>.mp4")
    reader = csv.DictReader(_read_text(csv_path).splitlines())
    cols = set(reader.fieldnames or [])
    if not {"id", "label"} <= cols:
        raise DatasetError(f"{csv_path}: expected columns id,label[,text][,mode]; found "
                           f"{', '.join(sorted(cols)) or 'none'}")
    rows: list[LabelRow] = []
    expected: dict[str, Path] = {}
    extra_cols = [c for c in (reader.fieldnames or []) if c and c not in KNOWN_COLUMNS]
    for n, rec in enumerate(reader, start=2):
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
        _assign_folds(rows, load_folds(folds_path), str(folds_path))
    return _finish("urfunny", root, BINARY, rows, str(csv_path), expected, list(reader.fieldnames or []))


# --------------------------------------------------------------------------------------------- folder

def load_folder(root: str | os.PathLike) -> Dataset:
    """A plain folder of videos (searched recursively, unlabelled)."""
    root = _require_dir(root, "video folder")
    media = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in MEDIA_EXTENSIONS)
    if not media:
        raise DatasetError(f"{root}: holds no media files (extensions: {', '.join(sorted(MEDIA_EXTENSIONS))})")
    return Dataset("folder", root, REGRESSION, None, media, [])


ADAPTERS: dict[str, Callable[..., Dataset]] = {
    "mosi": load_mosi,
    "mosei": load_mosei,
    "moseas": load_moseas,
    "urfunny": load_urfunny,
    "mmsa": load_mmsa,
    "folder": load_folder,
}


def load_dataset(name: str, root: str | os.PathLike, **options: Any) -> Dataset:
    """Open dataset `name` (mosi, mosei, moseas, urfunny, mmsa, folder) at `root`; options go to its adapter."""
    if name not in ADAPTERS:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(sorted(ADAPTERS))}")
    opts = {k: v for k, v in options.items() if v is not None}
    try:
        return ADAPTERS[name](root, **opts)
    except TypeError as exc:
        raise DatasetError(f"dataset {name!r}: bad option(s) {', '.join(sorted(opts))} ({exc})") from exc
