"""Transcript sources (label files, sidecars, CMU-MOSI segment files) and spelling words for the dictionary."""

from __future__ import annotations

import json
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
