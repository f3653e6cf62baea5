"""Transcript sources (label files, sidecars, CMU-MOSI segment files) and spelling words for the dictionary."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from extractors.text.words import split_words, spoken_forms
from pipeline.transcripts import (
    TranscriptError,
    decode_text,
    find_transcript,
    parse_subtitles,
    read_mosi_segments,
    read_transcript_file,
)

SRT = """1
00:00:00,500 --> 00:00:02,000
I really <i>liked</i> it.

2
00:00:02,100 --> 00:00:04,250
The ending was great.
"""
VTT = """WEBVTT

00:00.500 --> 00:02.000
I really liked it.

00:01:02.100 --> 00:01:04.250 align:start
<v Speaker>The ending was great.
"""


def test_srt_and_vtt_cues_and_text(tmp_path: Path):
    (tmp_path / "a.srt").write_text(SRT, encoding="utf-8")
    (tmp_path / "b.vtt").write_text(VTT, encoding="utf-8")
    srt = read_transcript_file(tmp_path / "a.srt")
    assert srt.text == "I really liked it. The ending was great."
    assert srt.source == "sidecar:.srt"
    assert srt.cues == [(0.5, 2.0, "I really liked it."), (2.1, 4.25, "The ending was great.")]
    vtt = read_transcript_file(tmp_path / "b.vtt")
    assert vtt.text == srt.text
    assert vtt.cues[1][:2] == (62.1, 64.25)


def test_json_forms(tmp_path: Path):
    for i, obj in enumerate([{"text": "hello there"}, {"transcript": "hello there"},
                             {"segments": [{"text": " hello"}, {"text": "there "}]},
                             [{"word": "hello", "start": 0.1}, {"word": "there", "start": 0.5}]]):
        p = tmp_path / f"t{i}.json"
        p.write_text(json.dumps(obj), encoding="utf-8")
        assert read_transcript_file(p).text == "hello there"
    bad = tmp_path / "bad.json"
    bad.write_text('{"words": 3}', encoding="utf-8")
    with pytest.raises(TranscriptError, match="no 'text'"):
        read_transcript_file(bad)
    broken = tmp_path / "broken.json"
    broken.write_text('{"text": ', encoding="utf-8")
    with pytest.raises(TranscriptError, match="invalid JSON"):
        read_transcript_file(broken)


def test_encodings():
    assert decode_text("caf\u00e9".encode("utf-8"), "x") == ("caf\u00e9", "utf-8")
    assert decode_text("\ufeffcaf\u00e9".encode("utf-8"), "x")[0] == "caf\u00e9"
    assert decode_text("caf\u00e9".encode("utf-16"), "x") == ("caf\u00e9", "utf-16")
    text, enc = decode_text("caf\u00e9 \u2019".encode("cp1252"), "x")
    assert text == "caf\u00e9 \u2019" and enc.startswith("cp1252")
    with pytest.raises(TranscriptError, match=r"not UTF-8 text \(invalid byte 0x81 at offset 2\)"):
        decode_text(b"ab\x81\x8d", "f.txt")


def test_binary_file_is_not_a_transcript(tmp_path: Path):
    p = tmp_path / "clip.txt"
    p.write_bytes(b"\x00\x01\x02binary")
    with pytest.raises(TranscriptError, match="binary data"):
        read_transcript_file(p)


def test_find_transcript_sidecar_labels_and_mosi(tmp_path: Path):
    clip = tmp_path / "vid1" / "03.mp4"
    clip.parent.mkdir()
    clip.write_bytes(b"")
    assert find_transcript(clip) is None
    (tmp_path / "labels.csv").write_text("video_id,clip_id,text,label,mode\nvid1,03,from the labels,1.0,train\n",
                                         encoding="utf-8")
    tr = find_transcript(clip)
    assert (tr.text, tr.source) == ("from the labels", "labels:labels.csv")
    clip.with_suffix(".srt").write_text(SRT, encoding="utf-8")
    assert find_transcript(clip).source == "sidecar:.srt"                 # a sidecar wins over the labels
    clip.with_suffix(".txt").write_text("plain  text\n", encoding="utf-8")
    assert find_transcript(clip).text == "plain text"                    # .txt is tried first

    mosi = tmp_path / "mosi"
    (mosi / "Transcript" / "Segmented").mkdir(parents=True)
    (mosi / "Raw" / "abc").mkdir(parents=True)
    (mosi / "Transcript" / "Segmented" / "abc.annotprocessed").write_text(
        "1_DELIM_first segment\n2_DELIM_ second  one \n", encoding="utf-8")
    seg = mosi / "Raw" / "abc" / "abc_2.mp4"
    seg.write_bytes(b"")
    tr = find_transcript(seg)
    assert (tr.text, tr.source) == ("second one", "mosi:abc.annotprocessed")
    assert read_mosi_segments(mosi / "Transcript" / "Segmented" / "abc.annotprocessed") == {
        "1": "first segment", "2": "second one"}


def test_mosi_file_with_a_bad_line(tmp_path: Path):
    p = tmp_path / "x.annotprocessed"
    p.write_text("1_DELIM_ok\nno delimiter here\n", encoding="utf-8")
    with pytest.raises(TranscriptError, match=r"x.annotprocessed:2: expected"):
        read_mosi_segments(p)


def test_parse_subtitles_skips_empty_cues():
    assert parse_subtitles("1\n00:00:01,000 --> 00:00:02,000\n\n") == []


@pytest.mark.parametrize("word,spoken", [
    ("2011", ["twenty", "eleven"]), ("1980s", ["nineteen", "eighties"]), ("80s", ["eighties"]),
    ("3d", ["three", "d"]), ("22nd", ["twenty", "second"]), ("100", ["one", "hundred"]),
    ("3.5", ["three", "point", "five"]), ("1,000,000", ["one", "million"]), ("2005", ["two", "thousand", "five"]),
    ("&", ["and"]), ("50%", ["fifty", "percent"]), ("didn't", ["didn't"]), ("Hello,", ["hello"]),
])
def test_spoken_forms(word: str, spoken: list[str]):
    assert spoken_forms(word) == spoken


def test_split_words_drops_bare_punctuation():
    assert split_words("Well -- it's 5 % ... ok!") == ["Well", "it's", "5", "%", "ok!"]
    assert split_words("  \n ") == []


# ---- the formats the field uses (issue 19, item 8)
LRS2 = """Text:  WHEN YOU'RE WORKING WITH
Conf:  4

WORD START END ASDSCORE
WHEN 0.10 0.24 4.9
YOU'RE 0.24 0.41 6.2
WORKING 0.41 0.80 7.0
WITH 0.80 0.95 5.5
"""
LRS3 = """Text:  SO WE STARTED
Conf:  3

FRAME 	X 	Y 	W 	H
000001 	0.395 	0.187 	0.229 	0.324
000002 	0.396 	0.188 	0.229 	0.324

WORD START END ASDSCORE
SO 0.05 0.20 3.1
WE 0.20 0.31 2.9
STARTED 0.31 0.77 4.4
"""
TEXTGRID_LONG = '''File type = "ooTextFile"
Object class = "TextGrid"

xmin = 0
xmax = 1.5
tiers? <exists>
size = 2
item []:
    item [1]:
        class = "IntervalTier"
        name = "words"
        xmin = 0
        xmax = 1.5
        intervals: size = 4
        intervals [1]:
            xmin = 0
            xmax = 0.3
            text = ""
        intervals [2]:
            xmin = 0.3
            xmax = 0.7
            text = "really"
        intervals [3]:
            xmin = 0.7
            xmax = 1.2
            text = "good"
        intervals [4]:
            xmin = 1.2
            xmax = 1.5
            text = ""
    item [2]:
        class = "IntervalTier"
        name = "phones"
        xmin = 0
        xmax = 1.5
        intervals: size = 1
        intervals [1]:
            xmin = 0
            xmax = 1.5
            text = "R IY1 L IY0"
'''
TEXTGRID_SHORT = '''File type = "ooTextFile"
Object class = "TextGrid"

0
1.5
<exists>
1
"IntervalTier"
"words"
0
1.5
2
0
0.7
"really"
0.7
1.5
"good"
'''


def test_lrs2_and_lrs3_sidecars_give_their_text_and_word_timings(tmp_path: Path):
    (tmp_path / "a.txt").write_text(LRS2, encoding="utf-8")
    (tmp_path / "b.txt").write_text(LRS3, encoding="utf-8")
    a = read_transcript_file(tmp_path / "a.txt")
    assert a.format == "lrs" and a.text == "WHEN YOU'RE WORKING WITH"      # not "Conf: 4 WORD START END ..."
    assert a.words == [("WHEN", 0.10, 0.24), ("YOU'RE", 0.24, 0.41), ("WORKING", 0.41, 0.80), ("WITH", 0.80, 0.95)]
    b = read_transcript_file(tmp_path / "b.txt")
    assert b.text == "SO WE STARTED" and [w for w, _, _ in b.words] == ["SO", "WE", "STARTED"]
    assert b.words[-1] == ("STARTED", 0.31, 0.77)


def test_textgrid_long_and_short_formats_and_whisper_json_words(tmp_path: Path):
    for name, text in (("long.TextGrid", TEXTGRID_LONG), ("short.TextGrid", TEXTGRID_SHORT)):
        (tmp_path / name).write_text(text, encoding="utf-8")
        tr = read_transcript_file(tmp_path / name)
        assert tr.format == "textgrid" and tr.text == "really good"
        assert [w for w, _, _ in tr.words] == ["really", "good"] and tr.words[1][1] == 0.7
    whisper = {"text": " I liked it.", "language": "en", "segments": [
        {"id": 0, "start": 0.0, "end": 1.2, "text": " I liked it.",
         "words": [{"word": " I", "start": 0.1, "end": 0.2, "probability": 0.9},
                   {"word": " liked", "start": 0.2, "end": 0.6, "probability": 0.8},
                   {"word": " it.", "start": 0.6, "end": 1.0, "probability": 0.95}]}]}
    (tmp_path / "w.json").write_text(json.dumps(whisper), encoding="utf-8")
    tr = read_transcript_file(tmp_path / "w.json")
    assert tr.format == "whisper-json" and tr.words == [("I", 0.1, 0.2), ("liked", 0.2, 0.6), ("it.", 0.6, 1.0)]
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"x")
    (tmp_path / "clip.TextGrid").write_text(TEXTGRID_SHORT, encoding="utf-8")
    assert find_transcript(clip).words[0] == ("really", 0.0, 0.7)


def test_subtitles_in_a_txt_file_are_read_as_subtitles(tmp_path: Path):
    (tmp_path / "s.txt").write_text(SRT, encoding="utf-8")
    tr = read_transcript_file(tmp_path / "s.txt")
    assert tr.format == "srt" and tr.text == "I really liked it. The ending was great."


@pytest.mark.parametrize("content, why", [
    ("0.10 0.24 4.9\n0.24 0.41 6.2\n" * 40, "only 0 % of its characters are letters"),
    ("aGVsbG8gd29ybGQgdGhpcyBpcyBiYXNlNjQgZGF0YQ==aGVsbG8gd29ybGQgdGhpcyBpcyBiYXNlNjQ " * 20,
     "characters long (median)"),
])
def test_a_sidecar_that_is_not_a_transcript_is_refused_with_the_reason(tmp_path: Path, content: str, why: str):
    (tmp_path / "x.txt").write_text(content, encoding="utf-8")
    with pytest.raises(TranscriptError, match=re.escape(why)):
        read_transcript_file(tmp_path / "x.txt")


def test_size_is_checked_before_reading_and_deep_json_is_refused(tmp_path: Path):
    sparse = tmp_path / "huge.txt"
    with open(sparse, "wb") as fh:
        fh.truncate(1536 * 2**20)                     # 1.5 GB, sparse: reading it whole would take 1.5 GB
    with pytest.raises(TranscriptError, match=r"1536.0 MiB is too large for a transcript.*max_sidecar_mib"):
        read_transcript_file(sparse)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    with pytest.raises(TranscriptError, match="nested too deeply"):
        read_transcript_file(deep)


def test_sidecar_names_too_long_to_exist_are_no_sidecar(tmp_path: Path):
    clip = tmp_path / ("n" * 251 + ".mp4")              # 255 bytes: adding ".txt" makes a name the OS refuses
    clip.write_bytes(b"x")
    assert find_transcript(clip) is None


def test_a_labels_csv_with_an_oversized_field_names_its_line(tmp_path: Path):
    clip = tmp_path / "v1" / "01.mp4"
    clip.parent.mkdir()
    clip.write_bytes(b"x")
    (tmp_path / "labels.csv").write_text("video_id,clip_id,text,label\nv0,01,fine,1\nv1,01,"
                                         + "y" * (140 * 1024) + ",1\n", encoding="utf-8")
    with pytest.raises(TranscriptError, match=r"labels.csv line 3: field larger than field limit"):
        find_transcript(clip)
