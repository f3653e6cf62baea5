"""The CMU raw releases of MOSI and MOSEI: segmented clips, segmented transcripts and opinion-level labels."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from pipeline.corpora.base import REGRESSION, Dataset, DatasetError, finish, read_text, require_dir
from pipeline.corpora.folds import assign_folds, load_folds, standard_folds
from pipeline.labels import LabelError, LabelRow, find_media, label_value, read_labels
from pipeline.transcripts import TranscriptError, parse_cmu_transcript

# Where the CMU raw releases keep segmented clips and transcripts (MOSI: Video/Segmented, MOSEI: .../Combined).
CMU_VIDEO_DIRS = ("Raw/Video/Segmented", "Raw/Videos/Segmented/Combined", "Raw/Video/Segmented/Combined")
CMU_TRANSCRIPT_DIRS = ("Raw/Transcript/Segmented", "Raw/Transcript/Segmented/Combined",
                       "Raw/Transcripts/Segmented/Combined")
CMU_LABEL_DIR = "Raw/Labels"
CMU_LABEL_GLOB = "OpinionLevelSentiment*.csv"


def first_dir(root: Path, candidates: tuple[str, ...]) -> Path | None:
    """The first of `candidates` (relative to root) that is a directory."""
    for rel in candidates:
        if (root / rel).is_dir():
            return root / rel
    return None


def read_cmu_transcripts(folder: Path) -> dict[str, str]:
    """Segment id (`<vid>_<n>`) -> text of every CMU transcript in `folder` (`pipeline.transcripts.parse_cmu_transcript`)."""
    texts: dict[str, str] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix not in (".annotprocessed", ".txt") or not path.is_file():
            continue
        try:
            texts.update(parse_cmu_transcript(read_text(path), str(path), path.stem))
        except TranscriptError as exc:
            raise DatasetError(str(exc)) from None
    return texts


def read_opinion_labels(path: Path) -> list[tuple[str, str, float]]:
    """(video id, segment, label) from a CMU `OpinionLevelSentiment.csv` (no header: start,end,video,segment,label)."""
    out: list[tuple[str, str, float]] = []
    for n, rec in enumerate(csv.reader(io.StringIO(read_text(path), newline="")), start=1):
        if not rec or not "".join(rec).strip():
            continue
        if len(rec) < 5:
            raise DatasetError(f"{path}:{n}: expected 5 columns start,end,video_id,segment,label; got {len(rec)}")
        try:
            value = label_value(rec[4], f"{path}:{n}")
        except LabelError as exc:
            if n == 1 and "is not a number" in str(exc):
                continue   # a header line
            raise DatasetError(str(exc)) from None
        out.append((rec[2].strip(), rec[3].strip(), value))
    if not out:
        raise DatasetError(f"{path}: holds no label rows")
    return out


def load_cmu_raw(root: str | os.PathLike, dataset: str = "mosi", folds: str | os.PathLike | None = None) -> Dataset:
    """CMU-MOSI/MOSEI raw release: Raw/Video/Segmented/<vid>_<n>.mp4, Raw/Transcript/Segmented/<vid>.*,
    labels from Raw/Labels/OpinionLevelSentiment*.csv (or an MMSA label.csv), standard folds unless `folds`."""
    root = require_dir(root, f"CMU-{dataset.upper()}")
    video_dir = first_dir(root, CMU_VIDEO_DIRS)
    if video_dir is None:
        raise DatasetError(f"{root}: no segmented video folder; expected one of "
                           f"{', '.join(str(root / d) for d in CMU_VIDEO_DIRS)}")
    transcript_dir = first_dir(root, CMU_TRANSCRIPT_DIRS)
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
        assign_folds(rows, load_folds(folds), str(folds))
    elif not all(e[4] for e in entries):
        assign_folds(rows, standard_folds(dataset), f"the CMU-MultimodalSDK standard {dataset} folds")
    return finish(dataset, root, REGRESSION, rows, source, expected, columns)
