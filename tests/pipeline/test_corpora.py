"""Dataset adapters on small real layouts built in tmp dirs (tiny real video files from the media factory)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.corpora import load_dataset
from pipeline.corpora.base import DatasetError
from pipeline.corpora.cmu import read_cmu_transcripts
from pipeline.corpora.folder import load_folder
from pipeline.corpora.folds import load_folds, standard_folds
from pipeline.corpora.mmsa import load_mmsa
from pipeline.corpora.moseas import load_moseas
from pipeline.corpora.mosi import load_mosi
from pipeline.corpora.urfunny import load_urfunny
from pipeline.labels import LabelError

MOSI_TRAIN, MOSI_VALID, MOSI_TEST = "2iD-tVS8NPw", "WKA5OygbEKI", "tmZoasNr4rU"   # ids of the SDK's folds


def _touch_media(path: Path) -> Path:
    """A media file by name (adapters never decode: they check presence and layout)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42")
    return path


def _mosi_raw(root: Path, videos: dict[str, list[tuple[int, float, str]]], skip: set[str] = frozenset()) -> None:
    labels, seg_dir, tr_dir = [], root / "Raw/Video/Segmented", root / "Raw/Transcript/Segmented"
    tr_dir.mkdir(parents=True, exist_ok=True)
    for vid, segs in videos.items():
        lines = []
        for n, y, text in segs:
            if f"{vid}_{n}" not in skip:
                _touch_media(seg_dir / f"{vid}_{n}.mp4")
            lines.append(f"{n}_DELIM_{text}")
            labels.append(f"0.5,3.25,{vid},{n},{y}")
        (tr_dir / f"{vid}.annotprocessed").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "Raw/Labels").mkdir(parents=True, exist_ok=True)
    (root / "Raw/Labels/OpinionLevelSentiment.csv").write_text("\n".join(labels) + "\n", encoding="utf-8")


def test_packaged_standard_folds_match_the_sdk_sizes():
    mosi, mosei = standard_folds("mosi"), standard_folds("mosei")
    assert [sum(v == s for v in mosi.values()) for s in ("train", "valid", "test")] == [52, 10, 31]
    assert [sum(v == s for v in mosei.values()) for s in ("train", "valid", "test")] == [2250, 300, 678]
    assert mosi[MOSI_TRAIN] == "train" and mosi[MOSI_VALID] == "valid" and mosi[MOSI_TEST] == "test"


def test_mosi_raw_layout_with_standard_folds_transcripts_and_a_missing_clip(tmp_path):
    _mosi_raw(tmp_path, {MOSI_TRAIN: [(1, 2.4, "i loved it"), (2, -1.2, "not great")],
                         MOSI_VALID: [(1, 0.0, "it is a movie")], MOSI_TEST: [(3, -3.0, "awful")]},
              skip={f"{MOSI_TEST}_3"})
    ds = load_dataset("mosi", tmp_path)
    rows = {r.id: r for r in ds.table}
    assert set(rows) == {f"{MOSI_TRAIN}_1", f"{MOSI_TRAIN}_2", f"{MOSI_VALID}_1", f"{MOSI_TEST}_3"}
    assert rows[f"{MOSI_TRAIN}_2"].label == pytest.approx(-1.2) and rows[f"{MOSI_TRAIN}_2"].text == "not great"
    assert [rows[f"{v}"].mode for v in (f"{MOSI_TRAIN}_1", f"{MOSI_VALID}_1", f"{MOSI_TEST}_3")] == \
        ["train", "valid", "test"]
    assert rows[f"{MOSI_TEST}_3"].path is None and len(ds.media) == 3
    assert ds.problems == [f"{MOSI_TEST}_3: media file not found, expected "
                           f"{tmp_path / 'Raw/Video/Segmented' / (MOSI_TEST + '_3.mp4')}"]
    assert ds.extras()[rows[f"{MOSI_TRAIN}_1"].path] == {"transcript": "i loved it"}
    assert ds.summary()["rows"] == {"train": 2, "valid": 1, "test": 1}


def test_mosi_unknown_video_ids_need_a_folds_file(tmp_path):
    _mosi_raw(tmp_path / "d", {"myvid": [(1, 1.0, "fine")], "other": [(1, -1.0, "bad")]})
    with pytest.raises(DatasetError, match=r"myvid, other are in none of the folds.*`folds`"):
        load_mosi(tmp_path / "d")
    folds = tmp_path / "folds.json"
    folds.write_text(json.dumps({"train": ["myvid"], "dev": ["other"], "test": []}), encoding="utf-8")
    ds = load_mosi(tmp_path / "d", folds=folds)
    assert {r.video_id: r.mode for r in ds.table} == {"myvid": "train", "other": "valid"}


def test_folds_from_the_sdk_python_file_are_read_without_executing_it(tmp_path):
    f = tmp_path / "cmu_mosi_std_folds.py"
    f.write_text("import os\nos.remove('x')\nstandard_train_fold=['a','b']\nstandard_valid_fold=['c']\n"
                 "standard_test_fold=['d']\n", encoding="utf-8")
    assert load_folds(f) == {"a": "train", "b": "train", "c": "valid", "d": "test"}
    bad = tmp_path / "bad.json"
    bad.write_text('{"train": ["a"], "test": ["a"]}', encoding="utf-8")
    with pytest.raises(DatasetError, match="'a' is in both train and test"):
        load_folds(bad)
    bad.write_text('{"train": ["a"], "holdout": ["b"]}', encoding="utf-8")
    with pytest.raises(DatasetError, match="unknown split 'holdout'"):
        load_folds(bad)


def test_malformed_cmu_files_name_the_file_and_line(tmp_path):
    _mosi_raw(tmp_path, {MOSI_TRAIN: [(1, 1.0, "ok")]})
    (tmp_path / "Raw/Transcript/Segmented" / f"{MOSI_TRAIN}.annotprocessed").write_text("1_DELIM_ok\njunk line\n")
    with pytest.raises(DatasetError, match=rf"{MOSI_TRAIN}.annotprocessed:2: expected `<segment>_DELIM_<text>`"):
        load_mosi(tmp_path)
    (tmp_path / "Raw/Transcript/Segmented" / f"{MOSI_TRAIN}.annotprocessed").write_text("1_DELIM_ok\n")
    (tmp_path / "Raw/Labels/OpinionLevelSentiment.csv").write_text(f"0,1,{MOSI_TRAIN},1\n")
    with pytest.raises(DatasetError, match=r"OpinionLevelSentiment.csv:1: expected 5 columns"):
        load_mosi(tmp_path)
    (tmp_path / "Raw/Labels/OpinionLevelSentiment.csv").unlink()
    with pytest.raises(DatasetError, match=r"no labels; expected .*Raw/Labels/OpinionLevelSentiment.csv"):
        load_mosi(tmp_path)


def test_mosei_transcript_format_is_read(tmp_path):
    (tmp_path / "v1.txt").write_text("v1___0___0.0___3.5___hello there\nv1___1___3.5___6.0___bye now\n")
    assert read_cmu_transcripts(tmp_path) == {"v1_0": "hello there", "v1_1": "bye now"}


def test_mmsa_layout_and_missing_root_or_labels(tmp_path):
    _touch_media(tmp_path / "Raw/vidA/0001.mp4")
    (tmp_path / "label.csv").write_text("video_id,clip_id,text,label,mode\nvidA,0001,good,1.5,train\n"
                                        "vidA,0002,bad,-2,test\n", encoding="utf-8")
    ds = load_dataset("mosi", tmp_path)
    assert [(r.id, r.mode, bool(r.path)) for r in ds.table] == [("vidA_0001", "train", True),
                                                                ("vidA_0002", "test", False)]
    assert ds.problems == [f"vidA_0002: media file not found, expected {tmp_path / 'Raw/vidA/0002.mp4'}"]
    with pytest.raises(DatasetError, match=r"root .*nope is not a directory"):
        load_mmsa(tmp_path / "nope")
    (tmp_path / "label.csv").unlink()
    with pytest.raises(DatasetError, match=r"neither the CMU raw layout .* nor the MMSA layout"):
        load_mosi(tmp_path)


def test_moseas_per_language(tmp_path):
    for lang, text in (("es", "me encantó"), ("fr", "j'ai adoré")):
        _touch_media(tmp_path / lang / "Raw/v1/1.mp4")
        (tmp_path / lang / "label.csv").write_text(f"video_id,clip_id,text,label,mode\nv1,1,{text},2.0,train\n",
                                                   encoding="utf-8")
    ds = load_moseas(tmp_path, "fr")
    assert [(r.text, r.language) for r in ds.table] == [("j'ai adoré", "fr")] and ds.name == "moseas-fr"
    with pytest.raises(DatasetError, match=r"no folder for language 'pt'.*present: es, fr"):
        load_moseas(tmp_path, "pt")
    with pytest.raises(DatasetError, match="must be one of es, fr, pt, de"):
        load_moseas(tmp_path, "it")


def _moseas_fr(root: Path, videos: int = 20, segments: int = 5) -> list[float]:
    """A MOSEAS-layout French folder: `videos` videos of `segments` clips, labels cycling through neutral and not
    (the clip of video 3, segment 2 lacks its media file); returns the labels in file order."""
    labels = [-2.0, -0.5, 0.0, 0.4, 0.6, 1.5, -0.51, 0.5, 3.0]
    lines, values = ["video_id,clip_id,text,label,mode"], []
    for v in range(videos):
        for c in range(segments):
            y = labels[(v * segments + c) % len(labels)]
            values.append(y)
            lines.append(f"vid{v:02d},{c},phrase {v} {c},{y},train")
            if (v, c) != (3, 2):
                _touch_media(root / "fr" / "Raw" / f"vid{v:02d}" / f"{c}.mp4")
    (root / "fr" / "label.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return values


def test_moseas_as_the_multilingual_paper_uses_it(tmp_path):
    labels = _moseas_fr(tmp_path)
    plain = load_moseas(tmp_path, "fr")
    assert len(plain.table) == 100 and {r.mode for r in plain.table} == {"train"}       # the file's own modes
    paper = load_moseas(tmp_path, "fr", split="paper")
    by_split = {m: [r for r in paper.table if r.mode == m] for m in ("train", "valid", "test")}
    assert [len(v) for v in by_split.values()] == [80, 10, 10]                            # 80/10/10 of the segments
    videos = {m: {r.video_id for r in rows} for m, rows in by_split.items()}
    assert not (videos["train"] & videos["valid"]) and not (videos["train"] & videos["test"]) \
        and not (videos["valid"] & videos["test"])                                          # whole videos
    again = load_moseas(tmp_path, "fr", split="paper")
    assert [r.mode for r in again.table] == [r.mode for r in paper.table]                  # seeded
    other = load_moseas(tmp_path, "fr", split="paper", split_seed=1)
    assert [r.mode for r in other.table] != [r.mode for r in paper.table]
    kept = load_moseas(tmp_path, "fr", split="paper", drop_neutral=True)
    assert [r.label for r in kept.table] == [y for y in labels if abs(y) > 0.5]            # [-0.5, 0.5] removed
    assert sorted({r.label for r in kept.table}) == [-2.0, -0.51, 0.6, 1.5, 3.0]
    modes = {r.id: r.mode for r in paper.table}
    assert all(r.mode == modes[r.id] for r in kept.table)                                  # the same splits
    assert len(kept.media) == sum(1 for r in kept.table if r.path)
    assert all(p.split(":")[0] in {r.id for r in kept.table} for p in kept.problems)
    via_table = load_dataset("moseas", tmp_path, language="fr", split="paper", drop_neutral=True)
    assert [r.id for r in via_table.table] == [r.id for r in kept.table]
    with pytest.raises(DatasetError, match="split must be 'file'.*or 'paper'"):
        load_moseas(tmp_path, "fr", split="random")


def test_urfunny_binary_labels_and_folds(tmp_path):
    for i in ("10", "11", "12"):
        _touch_media(tmp_path / "urfunny2_videos" / f"{i}.mp4")
    (tmp_path / "labels.csv").write_text("id,label,text\n10,1,a punchline\n11,0,no joke\n12,1,another\n")
    with pytest.raises(DatasetError, match=r"no mode column and the folds file .*folds.json is missing"):
        load_urfunny(tmp_path)
    (tmp_path / "folds.json").write_text(json.dumps({"train": ["10", "11"], "dev": [], "test": ["12"]}))
    ds = load_urfunny(tmp_path)
    assert ds.task == "binary"
    assert [(r.id, r.label, r.mode) for r in ds.table] == [("10", 1.0, "train"), ("11", 0.0, "train"),
                                                           ("12", 1.0, "test")]
    (tmp_path / "labels.csv").write_text("id,label\n10,2\n")
    with pytest.raises(DatasetError, match=r"labels.csv:2: humor label must be 0 or 1, got '2'"):
        load_urfunny(tmp_path)


def test_folder_of_videos_is_unlabelled(tmp_path):
    _touch_media(tmp_path / "a/one.mp4")
    _touch_media(tmp_path / "two.MOV")
    (tmp_path / "notes.txt").write_text("x")
    ds = load_folder(tmp_path)
    assert ds.table is None and ds.extras() == {}
    assert [p.name for p in ds.media] == ["one.mp4", "two.MOV"]
    with pytest.raises(DatasetError, match="holds no media files"):
        load_folder(_empty(tmp_path))
    with pytest.raises(DatasetError, match="unknown dataset 'imdb'"):
        load_dataset("imdb", tmp_path)


def _empty(tmp_path: Path) -> Path:
    d = tmp_path / "empty"
    d.mkdir()
    return d


def test_manifest_ids_cannot_escape_the_root(tmp_path):
    _touch_media(tmp_path / "outside.mp4")
    root = tmp_path / "ds"
    (root / "urfunny2_videos").mkdir(parents=True)
    (root / "labels.csv").write_text("id,label,mode\n../../outside,1,train\n")
    with pytest.raises(LabelError, match="escapes the dataset root"):
        load_urfunny(root)
