"""The whole extraction over the generated bad-input corpus: each file's outcome is as expected, and every
good file in the same batch is processed."""

from pathlib import Path

import pytest

from extractors.config import SentiFlowConfig
from extractors.runner import ExtractionRunner
from pipeline.cache import FeatureCache
from pipeline.labels import LabelError, read_labels
from tests.helpers.bad_corpus import build_corpus, write_hostile_manifest
from tests.helpers.paths import ROOT


def test_every_corpus_file_has_the_expected_outcome(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    face = ROOT / "sample_videos" / "astro_front" / "01.mp4"
    expected = build_corpus(corpus, face if face.is_file() else None)
    config = SentiFlowConfig()            # every default extractor, isolated with the default limits
    config.extraction.batch_size = 6
    cache = FeatureCache(tmp_path / "cache")
    summary = ExtractionRunner(config, cache, device="cpu").run([corpus], progress=False)
    seen = {str(Path(i.path).relative_to(corpus)): i for i in summary.items}
    assert set(expected) <= set(seen), set(expected) - set(seen)
    # the symlink loop was not followed into duplicates
    assert not any(name.startswith("loop/") for name in seen)
    counts = {"ok": 0, "failed": 0}
    for name, exp in expected.items():
        item = seen[name]
        if exp.status == "failed":
            assert item.status == "failed", (name, item)
            assert exp.reason in item.reason, (name, item.reason)
        elif exp.status == "ok":
            assert item.status in ("done", "cached"), (name, item.reason, item.extractors)
        else:
            assert item.status in ("done", "cached") or item.reason, (name, item)
        for ex, why in exp.missing.items():
            if ex in item.extractors:
                assert item.extractors[ex].startswith("missing") and why in item.extractors[ex], (name, item.extractors)
        counts["failed" if item.status == "failed" else "ok"] += 1
        if item.status != "failed":
            for ex, state in item.extractors.items():
                # an extractor either made features, or says why the source lacks them, or why it failed
                assert state in ("done", "cached") or ":" in state, (name, ex, state)
    assert counts["ok"] >= sum(1 for e in expected.values() if e.status == "ok")
    report = cache.verify()
    assert report.corrupt == [] and report.temp_dirs == []


def test_manifest_ids_cannot_escape_the_dataset_root(tmp_path: Path) -> None:
    manifest = write_hostile_manifest(tmp_path / "ds")
    with pytest.raises(LabelError, match="escapes the dataset root"):
        read_labels(manifest, media_root=tmp_path / "ds")
