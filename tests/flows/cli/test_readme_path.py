"""The README's documented path: `sentiflow extract sample_videos --cache C`, then `sentiflow train --cache C
--labels sample_videos/labels.csv`: training finds every entry extraction wrote (the transcript found in the
labels.csv beside the clips and the label row's text are one cache entry), and `--extract` computes nothing again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.cli import main
from pipeline.cache import FeatureCache
from tests.helpers.paths import SAMPLES

pytestmark = pytest.mark.usefixtures("one_thread")


def _entries(cache: Path) -> dict[str, str]:
    return {e.key: e.meta.get("extractor", "") for e in FeatureCache(cache, create=False).entries()}


def test_train_finds_the_text_that_extract_cached(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    if not (SAMPLES / "labels.csv").is_file():
        pytest.skip("sample_videos/ is not present")
    cfg = tmp_path / "text.yaml"                       # the text path alone keeps this fast; the keys are the same
    cfg.write_text("extraction:\n  extractors: [transcript, text]\n", encoding="utf-8")
    opts = tmp_path / "opts.yaml"
    opts.write_text("train: {epochs: 2}\n", encoding="utf-8")
    cache = tmp_path / "cache"
    assert main(["extract", str(SAMPLES), "--cache", str(cache), "--config", str(cfg), "--no-progress",
                 "--device", "cpu"]) == 0
    extracted = _entries(cache)
    run = tmp_path / "run"
    assert main(["train", "--cache", str(cache), "--labels", str(SAMPLES / "labels.csv"), "--config", str(cfg),
                 "--options", str(opts), "--out", str(run), "--device", "cpu"]) == 0, capsys.readouterr().err
    record = json.loads((run / "run.json").read_text(encoding="utf-8"))
    assert record["data"]["modalities"] == ["text"] and record["dataset"]["skipped"] == []
    assert sum(record["dataset"]["splits"].values()) == 10
    assert main(["train", "--cache", str(cache), "--labels", str(SAMPLES / "labels.csv"), "--config", str(cfg),
                 "--options", str(opts), "--out", str(tmp_path / "run2"), "--device", "cpu", "--modalities", "text",
                 "--extract"]) == 0
    assert len(extracted) == 20 and _entries(cache) == extracted   # --extract found all of it: nothing twice



@pytest.mark.slow
def test_the_readme_commands_exactly(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    if not (SAMPLES / "labels.csv").is_file():
        pytest.skip("sample_videos/ is not present")
    cache, run = tmp_path / "C", tmp_path / "runs" / "x"
    assert main(["extract", str(SAMPLES), "--cache", str(cache), "--no-progress"]) == 0
    assert main(["train", "--cache", str(cache), "--labels", str(SAMPLES / "labels.csv"), "--out", str(run)]) == 0
    record = json.loads((run / "run.json").read_text(encoding="utf-8"))
    assert record["data"]["modalities"] == ["text", "audio", "visual"] and record["dataset"]["skipped"] == []
    assert record["dataset"]["masked"] == {}
