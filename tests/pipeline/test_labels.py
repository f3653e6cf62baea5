"""Label files as users have them: numbers that are not, repeated ids, text fields that hold line breaks."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.labels import LabelError, read_labels


def _write(tmp_path: Path, text: str, name: str = "labels.csv") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8", newline="")
    return p


@pytest.mark.parametrize("cell", ["inf", "-Infinity", "1e300", "nan"])
def test_labels_that_are_not_usable_numbers_are_refused_with_their_line(tmp_path: Path, cell: str) -> None:
    p = _write(tmp_path, f"id,text,label\na_1,fine,1.0\na_2,broken,{cell}\n")
    with pytest.raises(LabelError, match=r"labels.csv:3: label"):
        read_labels(p)


def test_duplicate_ids_with_different_labels_are_refused(tmp_path: Path) -> None:
    p = _write(tmp_path, "id,text,label\na_1,good film,2.0\na_2,bad film,-2.0\na_1,good film,-1.0\n")
    with pytest.raises(LabelError, match=r"lines 2 and 4 both label id 'a_1', differently \(label 2 / -1"):
        read_labels(p)
    same = _write(tmp_path, "id,text,label\na_1,good film,2.0\na_1,good film,2.0\na_2,bad,-1\n", "same.csv")
    assert [r.id for r in read_labels(same)] == ["a_1", "a_2"]     # an exact repeat is one row


def test_text_fields_keep_quoted_newlines_and_unicode_line_separators(tmp_path: Path) -> None:
    p = _write(tmp_path, 'id,text,label\na_1,"I loved\nthis",2.0\na_2,"so\u2028good\u2029really",1.5\na_3,plain,0\n')
    rows = read_labels(p).rows
    assert [r.id for r in rows] == ["a_1", "a_2", "a_3"]
    assert rows[0].text.split() == ["I", "loved", "this"]          # not "lovedthis", not two rows
    assert rows[1].text == "so\u2028good\u2029really" and rows[1].label == 1.5
    assert rows[2].label == 0.0


def test_a_field_over_the_csv_limit_names_the_file_and_line(tmp_path: Path) -> None:
    p = _write(tmp_path, "id,text,label\na_1,short,1\na_2," + "x" * (140 * 1024) + ",2\n")
    with pytest.raises(LabelError, match=r"labels.csv line 3: field larger than field limit \(131072\)"):
        read_labels(p)
