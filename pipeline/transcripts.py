"""Transcripts from every source a user has: label files, CMU-MOSI segmented transcripts, sidecar files."""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from pipeline.errors import SentiFlowError

SIDECAR_SUFFIXES = (".txt", ".srt", ".vtt", ".json")
LABEL_FILE_NAMES = ("labels.csv", "label.csv")
MOSI_SEGMENT_DELIM = "_DELIM_"
_TIMESTAMP_LINE = re.compile(r"^\s*(\d+:)?\d+:\d+[.,]\d+\s*-->\s*(\d+:)?\d+:\d+[.,]\d+")
_TAG = re.compile(r"<[^>]+>")


class TranscriptError(SentiFlowError, ValueError):
    """A transcript file cannot be read or holds no text."""


@dataclass
class Transcript:
    """Text of what is said in a clip and where it came from."""

    text: str
    source: str                      # "labels" | "labels:<file>" | "sidecar:.srt" | "mosi:<file>" | "asr"
    encoding: str = "utf-8"
    cues: list[tuple[float, float, str]] = field(default_factory=list)   # subtitle cues (start, end, text)


def decode_text(data: bytes, where: str) -> tuple[str, str]:
    """Bytes as text: UTF-8 (BOM allowed), UTF-16 with a BOM, else Windows-1252; returns (text, encoding)."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16"), "utf-16"
        except UnicodeDecodeError as exc:
            raise TranscriptError(f"{where}: broken UTF-16 text ({exc.reason})") from None
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError as exc:
        first_bad = exc.start
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError:
        raise TranscriptError(f"{where}: not UTF-8 text (invalid byte 0x{data[first_bad]:02x} at offset "
                              f"{first_bad}) and not Windows-1252 either; save it as UTF-8") from None
    return text, "cp1252 (not UTF-8; decoded as Windows-1252)"


def _read(path: Path) -> tuple[str, str]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TranscriptError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if b"\x00" in data and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise TranscriptError(f"{path}: binary data, not a transcript")
    return decode_text(data, str(path))


def _clock(s: str) -> float:
    parts = s.strip().replace(",", ".").split(":")
    value = 0.0
    for p in parts:
        value = value * 60 + float(p)
    return value


def parse_subtitles(text: str) -> list[tuple[float, float, str]]:
    """Cues of an SRT or WebVTT file as (start, end, text), tags removed."""
    cues: list[tuple[float, float, str]] = []
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    i = 0
    while i < len(lines):
        m = _TIMESTAMP_LINE.match(lines[i])
        if not m:
            i += 1
            continue
        a, b = lines[i].split("-->")
        start, end = _clock(a), _clock(b.split()[0])
        i += 1
        body = []
        while i < len(lines) and lines[i].strip():
            body.append(_TAG.sub("", lines[i]).strip())
            i += 1
        cue = " ".join(x for x in body if x)
        if cue:
            cues.append((start, end, cue))
    return cues


def _json_text(obj: Any, where: str) -> str:
    if isinstance(obj, dict):
        for k in ("text", "transcript"):
            if isinstance(obj.get(k), str):
                return obj[k]
        for k in ("segments", "words"):
            if isinstance(obj.get(k), list):
                return _json_text(obj[k], where)
    if isinstance(obj, list):
        parts = []
        for x in obj:
            if isinstance(x, str):
                parts.append(x)
            elif isinstance(x, dict):
                t = x.get("text", x.get("word"))
                if isinstance(t, str):
                    parts.append(t)
        if parts:
            return " ".join(p.strip() for p in parts)
    raise TranscriptError(f"{where}: JSON has no 'text' / 'transcript' string nor a list of segments or words")


def read_transcript_file(path: str | Path) -> Transcript:
    """A transcript from a .txt, .srt, .vtt or .json file."""
    path = Path(path)
    raw, enc = _read(path)
    suffix = path.suffix.lower()
    cues: list[tuple[float, float, str]] = []
    if suffix in (".srt", ".vtt"):
        cues = parse_subtitles(raw)
        text = " ".join(c[2] for c in cues)
    elif suffix == ".json":
        try:
            text = _json_text(json.loads(raw), str(path))
        except json.JSONDecodeError as exc:
            raise TranscriptError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno})") from None
    else:
        text = raw
    return Transcript(text=" ".join(text.split()), source=f"sidecar:{suffix}", encoding=enc, cues=cues)


def parse_cmu_transcript(text: str, where: str, video: str) -> dict[str, str]:
    """Segment id (`<video>_<n>`) -> text of a CMU segmented transcript: MOSI `<video>.annotprocessed` lines
    `n_DELIM_text`, or MOSEI `<video>.txt` lines `video___n___start___end___text`; whitespace collapsed."""
    out: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        if MOSI_SEGMENT_DELIM in line:
            seg, words = line.split(MOSI_SEGMENT_DELIM, 1)
            out[f"{video}_{seg.strip()}"] = " ".join(words.split())
        elif line.count("___") >= 4:
            parts = line.split("___", 4)
            out[f"{parts[0].strip()}_{parts[1].strip()}"] = " ".join(parts[4].split())
        else:
            raise TranscriptError(f"{where}:{n}: expected `<segment>{MOSI_SEGMENT_DELIM}<text>` (MOSI .annotprocessed) "
                                  f"or `<video>___<segment>___<start>___<end>___<text>` (MOSEI), got {line[:60]!r}")
    return out


def read_mosi_segments(path: str | Path) -> dict[str, str]:
    """CMU-MOSI `Transcript/Segmented/<video>.annotprocessed`: clip number -> text (lines `N_DELIM_text`)."""
    path = Path(path)
    raw, _ = _read(path)
    prefix = f"{path.stem}_"
    return {seg[len(prefix):]: text for seg, text in parse_cmu_transcript(raw, str(path), path.stem).items()
            if seg.startswith(prefix)}


@lru_cache(maxsize=64)
def _label_texts(path: str, mtime: float) -> dict[tuple[str, str], str]:
    texts: dict[tuple[str, str], str] = {}
    raw, _ = _read(Path(path))
    reader = csv.DictReader(raw.splitlines())
    if not {"video_id", "clip_id", "text"} <= set(reader.fieldnames or []):
        return texts
    for rec in reader:
        texts[(str(rec["video_id"]).strip(), str(rec["clip_id"]).strip())] = (rec.get("text") or "").strip()
    return texts


def _mosi_transcript(media: Path) -> Transcript | None:
    """CMU-MOSI layout: <root>/.../<video>_<n>.mp4 with <root>/Transcript/Segmented/<video>.annotprocessed."""
    m = re.fullmatch(r"(.+)_(\d+)", media.stem)
    if not m:
        return None
    video, num = m.groups()
    for parent in list(media.parents)[:4]:
        f = parent / "Transcript" / "Segmented" / f"{video}.annotprocessed"
        if f.is_file():
            text = read_mosi_segments(f).get(num)
            if text is not None:
                return Transcript(text=text, source=f"mosi:{f.name}")
    return None


def find_transcript(media_path: str | Path) -> Transcript | None:
    """The transcript stored beside a media file: sidecar, MMSA labels file, or CMU-MOSI segment file."""
    media = Path(media_path)
    for suffix in SIDECAR_SUFFIXES:
        for cand in (media.with_suffix(suffix), media.with_name(media.name + suffix)):
            if cand.is_file():
                return read_transcript_file(cand)
    for root in (media.parent.parent, media.parent.parent.parent):
        for name in LABEL_FILE_NAMES:
            f = root / name
            if f.is_file():
                texts = _label_texts(str(f), f.stat().st_mtime)
                key = (media.parent.name, media.stem)
                if key in texts:
                    return Transcript(text=texts[key], source=f"labels:{f.name}")
    return _mosi_transcript(media)
