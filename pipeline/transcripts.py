"""Transcripts from every source a user has: label files, CMU-MOSI segmented transcripts, sidecar files.

Sidecars are read in the formats the field uses, with their word timings where the format has them: LRS2/LRS3
`.txt` ("Text: ...", "Conf: ...", then a WORD START END [ASDSCORE] table), SRT and WebVTT (cue times), Whisper's
JSON (segments with words), and Praat TextGrid as the Montreal Forced Aligner writes it (a "words" tier). Any
other `.txt` is plain text. A sidecar larger than `max_bytes` is refused before it is read, and one that does not
look like speech written down (mostly digits and symbols, encoded data) is refused with the reason, never used
verbatim as a transcript.
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from pipeline.errors import SentiFlowError, os_reason
from pipeline.files import csv_records

SIDECAR_SUFFIXES = (".txt", ".srt", ".vtt", ".json", ".TextGrid")
LABEL_FILE_NAMES = ("labels.csv", "label.csv")
MOSI_SEGMENT_DELIM = "_DELIM_"
MAX_SIDECAR_BYTES = 8 << 20      # a transcript of hours of speech is a few hundred KB
MIN_LETTER_SHARE = 0.5           # below this share of letters among the visible characters: not a transcript
MAX_MEDIAN_WORD_CHARS = 25       # "words" longer than this (median) are encoded data, not speech
_TIMESTAMP_LINE = re.compile(r"^\s*(\d+:)?\d+:\d+[.,]\d+\s*-->\s*(\d+:)?\d+:\d+[.,]\d+")
_TAG = re.compile(r"<[^>]+>")
_LRS_HEADER = re.compile(r"^(Text|Conf|Ref|ASD|Speaker|Start|End|Duration)\s*:", re.IGNORECASE)
_LRS_TABLE = re.compile(r"^\s*WORD\s+START\s+END\b", re.IGNORECASE)
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


class TranscriptError(SentiFlowError, ValueError):
    """A transcript file cannot be read or holds no text."""


@dataclass
class Transcript:
    """Text of what is said in a clip and where it came from."""

    text: str
    source: str                      # "labels" | "labels:<file>" | "sidecar:.srt" | "mosi:<file>" | "asr"
    encoding: str = "utf-8"
    cues: list[tuple[float, float, str]] = field(default_factory=list)   # subtitle cues (start, end, text)
    words: list[tuple[str, float, float]] = field(default_factory=list)  # (word, start, end) when the file has them
    format: str = "text"             # text | lrs | srt | vtt | whisper-json | json | textgrid | labels | mosi
    notes: list[str] = field(default_factory=list)   # sources tried before this one that were empty


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


def _read(path: Path, max_bytes: int = MAX_SIDECAR_BYTES) -> tuple[str, str]:
    try:
        size = path.stat().st_size          # before reading: a sparse 1.5 GB file is refused, not read
        if size > max_bytes:
            raise TranscriptError(f"{path}: {size / 2**20:.1f} MiB is too large for a transcript (at most "
                                  f"{max_bytes / 2**20:.1f} MiB; extraction.options.transcript.max_sidecar_mib)")
        with open(path, "rb") as fh:
            data = fh.read(min(size, max_bytes) + 1)
    except OSError as exc:
        raise TranscriptError(f"{path}: cannot read ({os_reason(exc)})") from None
    if len(data) > max_bytes:
        raise TranscriptError(f"{path}: grew past {max_bytes / 2**20:.1f} MiB while being read")
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


def _json_words(obj: Any) -> list[tuple[str, float, float]]:
    """Word timings of a Whisper JSON ({"segments": [{"words": [{"word", "start", "end"}]}]} or a word list)."""
    items: list[Any] = []
    if isinstance(obj, dict) and isinstance(obj.get("segments"), list):
        for seg in obj["segments"]:
            if isinstance(seg, dict) and isinstance(seg.get("words"), list):
                items.extend(seg["words"])
    elif isinstance(obj, dict) and isinstance(obj.get("words"), list):
        items = obj["words"]
    elif isinstance(obj, list):
        items = obj
    out: list[tuple[str, float, float]] = []
    for w in items:
        if not isinstance(w, dict):
            return []
        text, a, b = w.get("word", w.get("text")), w.get("start"), w.get("end")
        if not isinstance(text, str) or not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
            return []
        if text.strip():
            out.append((text.strip(), float(a), float(b)))
    return out if _monotonic(out) else []


def _monotonic(words: list[tuple[str, float, float]]) -> bool:
    """True when every word's interval is finite, non-negative, and none starts before the previous one."""
    prev = 0.0
    for _, a, b in words:
        if not (0.0 <= a <= b < 1e7) or a + 1e-6 < prev:
            return False
        prev = a
    return True


def parse_lrs(text: str, where: str) -> tuple[str, list[tuple[str, float, float]]]:
    """Text and word timings of an LRS2/LRS3 transcript ("Text: ...", "Conf: ...", WORD START END [ASDSCORE])."""
    spoken = ""
    words: list[tuple[str, float, float]] = []
    in_table = False
    for n, line in enumerate(text.splitlines(), start=1):
        if _LRS_TABLE.match(line):
            in_table = True
            continue
        if in_table:
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 3 or not re.fullmatch(_NUMBER, parts[1]) or not re.fullmatch(_NUMBER, parts[2]):
                raise TranscriptError(f"{where}:{n}: expected `WORD START END [ASDSCORE]` in the LRS word table, "
                                      f"got {line.strip()[:60]!r}")
            words.append((parts[0], float(parts[1]), float(parts[2])))
        elif line.lower().startswith("text:"):
            spoken = line.split(":", 1)[1].strip()
    if not spoken and words:
        spoken = " ".join(w for w, _, _ in words)
    if words and not _monotonic(words):
        raise TranscriptError(f"{where}: the LRS word table's times go backwards or are negative")
    return spoken, words


def parse_textgrid(text: str, where: str) -> tuple[str, list[tuple[str, float, float]]]:
    """Text and word intervals of a Praat TextGrid (long or short text format), from its word tier: the tier
    named "words" (as the Montreal Forced Aligner writes it), else the first interval tier that is not phones."""
    tiers = _textgrid_tiers(text, where)
    if not tiers:
        raise TranscriptError(f"{where}: TextGrid has no interval tier")
    chosen = next((t for t in tiers if t[0].lower() == "words"), None) or next(
        (t for t in tiers if t[0].lower() not in ("phones", "phonemes", "phone")), None)
    if chosen is None:
        raise TranscriptError(f"{where}: TextGrid has only phone tiers ({', '.join(t[0] for t in tiers)}); "
                              "expected a 'words' tier")
    words = [(w.strip(), a, b) for a, b, w in chosen[1] if w.strip() and w.strip() not in ("<eps>", "sil", "sp")]
    return " ".join(w for w, _, _ in words), words


def _textgrid_tiers(text: str, where: str) -> list[tuple[str, list[tuple[float, float, str]]]]:
    """(name, [(xmin, xmax, text)]) of each interval tier of a TextGrid."""
    if 'Object class = "TextGrid"' not in text and '"TextGrid"' not in text:
        raise TranscriptError(f"{where}: not a Praat TextGrid (no 'Object class = \"TextGrid\"' line)")
    # both text formats are a sequence of numbers and quoted strings; the long one adds `name =` labels and
    # `item [n]:` / `intervals [n]:` headings, which carry no values
    body = re.sub(r"^\s*(item|intervals|points)\s*\[\d*\]\s*:?\s*$", "", text, flags=re.MULTILINE)
    body = re.sub(r"\b(intervals|points)\s*:\s*size", "size", body)
    tokens = re.findall(r'"(?:[^"]|"")*"|' + _NUMBER + r"|<exists>|<absent>", body)
    vals = [t[1:-1].replace('""', '"') if t.startswith('"') else t for t in tokens]
    try:
        i = vals.index("TextGrid") + 1
        i += 2                                      # xmin, xmax
        if i < len(vals) and vals[i] in ("<exists>", "<absent>"):
            i += 1
        n_tiers = int(float(vals[i]))
        i += 1
        tiers = []
        for _ in range(n_tiers):
            kind, name = vals[i], vals[i + 1]
            i += 4                                  # class, name, xmin, xmax
            n = int(float(vals[i]))
            i += 1
            if kind == "IntervalTier":
                tiers.append((name, [(float(vals[i + 3 * k]), float(vals[i + 3 * k + 1]), vals[i + 3 * k + 2])
                                     for k in range(n)]))
                i += 3 * n
            else:                                   # a point tier: (time, mark) pairs
                i += 2 * n
    except (ValueError, IndexError):
        raise TranscriptError(f"{where}: TextGrid is malformed (its tier and interval counts do not match "
                              "the values)") from None
    return tiers


def not_a_transcript(text: str) -> str | None:
    """Why `text` does not look like speech written down (mostly digits and symbols, encoded data), or None."""
    visible = [c for c in text if not c.isspace()]
    if not visible:
        return None
    letters = sum(c.isalpha() for c in visible)
    if letters < MIN_LETTER_SHARE * len(visible):
        return f"does not look like a transcript: only {100 * letters / len(visible):.0f} % of its characters are letters"
    words = sorted(len(w) for w in text.split())
    if words and words[len(words) // 2] > MAX_MEDIAN_WORD_CHARS:
        return f"does not look like a transcript: its words are {words[len(words) // 2]} characters long (median)"
    return None


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


def read_transcript_file(path: str | Path, max_bytes: int = MAX_SIDECAR_BYTES) -> Transcript:
    """A transcript from a .txt (plain, LRS2/LRS3, or subtitles), .srt, .vtt, .json (Whisper or plain) or
    .TextGrid file; TranscriptError when it is too large, unreadable or does not look like a transcript."""
    path = Path(path)
    raw, enc = _read(path, max_bytes)
    suffix = path.suffix.lower()
    cues: list[tuple[float, float, str]] = []
    words: list[tuple[str, float, float]] = []
    lines = raw.lstrip("\ufeff").splitlines()
    first = next((ln for ln in lines if ln.strip()), "")
    if suffix in (".srt", ".vtt") or (suffix == ".txt" and any(_TIMESTAMP_LINE.match(ln) for ln in lines[:20])):
        cues = parse_subtitles(raw)
        text, fmt = " ".join(c[2] for c in cues), ("vtt" if suffix == ".vtt" or first.startswith("WEBVTT") else "srt")
    elif suffix == ".json":
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise TranscriptError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno})") from None
        except RecursionError:
            raise TranscriptError(f"{path}: JSON is nested too deeply to be a transcript") from None
        text, words = _json_text(obj, str(path)), _json_words(obj)
        fmt = "whisper-json" if words else "json"
    elif suffix == ".textgrid":
        text, words = parse_textgrid(raw, str(path))
        fmt = "textgrid"
    elif suffix == ".txt" and _LRS_HEADER.match(first) and (first.lower().startswith("text:")
                                                            or any(_LRS_TABLE.match(ln) for ln in lines)):
        text, words = parse_lrs(raw, str(path))
        fmt = "lrs"
    else:
        text, fmt = raw, "text"
    text = " ".join(text.split())
    why = not_a_transcript(text)
    if why:
        raise TranscriptError(f"{path}: {why}")
    return Transcript(text=text, source=f"sidecar:{suffix}", encoding=enc, cues=cues, words=words, format=fmt)


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
    raw, _ = _read(Path(path), max_bytes=1 << 40)   # a label file holds every clip's text: no sidecar limit
    header, records = csv_records(raw, path, TranscriptError)
    if not {"video_id", "clip_id", "text"} <= set(header):
        return texts
    for _, rec in records:
        texts[(str(rec["video_id"]).strip(), str(rec["clip_id"]).strip())] = (rec.get("text") or "").strip()
    return texts


def _is_file(path: Path) -> bool:
    """True for an existing regular file; False for anything else, also a name too long to exist or a path that
    cannot be looked at (permission denied, symlink loop)."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def _mosi_transcript(media: Path) -> Transcript | None:
    """CMU-MOSI layout: <root>/.../<video>_<n>.mp4 with <root>/Transcript/Segmented/<video>.annotprocessed."""
    m = re.fullmatch(r"(.+)_(\d+)", media.stem)
    if not m:
        return None
    video, num = m.groups()
    for parent in list(media.parents)[:4]:
        f = parent / "Transcript" / "Segmented" / f"{video}.annotprocessed"
        if _is_file(f):
            text = read_mosi_segments(f).get(num)
            if text is not None:
                return Transcript(text=text, source=f"mosi:{f.name}", format="mosi")
    return None


def find_transcript(media_path: str | Path, max_bytes: int = MAX_SIDECAR_BYTES) -> Transcript | None:
    """The transcript stored beside a media file: sidecar, MMSA labels file, or CMU-MOSI segment file."""
    media = Path(media_path)
    for suffix in SIDECAR_SUFFIXES:
        for cand in (media.with_suffix(suffix), media.with_name(media.name + suffix)):
            if _is_file(cand):
                return read_transcript_file(cand, max_bytes)
    for root in (media.parent.parent, media.parent.parent.parent):
        for name in LABEL_FILE_NAMES:
            f = root / name
            if _is_file(f):
                texts = _label_texts(str(f), f.stat().st_mtime)
                key = (media.parent.name, media.stem)
                if key in texts:
                    return Transcript(text=texts[key], source=f"labels:{f.name}", format="labels")
    return _mosi_transcript(media)
