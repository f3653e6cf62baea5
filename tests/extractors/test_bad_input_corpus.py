"""The whole extraction over the generated bad-input corpus, every kind mixed with good real clips in one batch:
each bad file gets its specific reason, every good file finishes, nothing is left in the cache's temp folder and
`cache verify` is clean afterwards. The corrupt-cache kinds are prepared in the cache before the batch runs."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from extractors.config import SentiFlowConfig
from extractors.outcomes import ItemOutcome
from extractors.runner import ExtractionRunner
from pipeline.cache import FeatureCache
from pipeline.labels import LabelError, read_labels
from tests.helpers.bad_corpus import (
    CACHE_KINDS,
    FAST_KINDS,
    TOO_LONG_PATH,
    Expect,
    build_corpus,
    write_hostile_manifest,
)
from tests.helpers.paths import ROOT, SHARED_CLIPS

FACE = ROOT / "sample_videos" / "astro_front" / "01.mp4"
REAL_CLIPS = ["Audio_Source_00086.mp4", "Pose_Source_620900105.mp4"]   # short real talking-face clips


def _good_real_clips(folder: Path) -> list[str]:
    """Real clips copied into the corpus: ../shared ones when present, else the bundled sample videos."""
    folder.mkdir()
    sources = [SHARED_CLIPS / n for n in REAL_CLIPS if (SHARED_CLIPS / n).is_file()] or \
        [p for p in (FACE, ROOT / "sample_videos" / "astro_mirror" / "01.mp4") if p.is_file()]
    for src in sources:
        shutil.copyfile(src, folder / f"{src.parent.name}_{src.name}")
    return [f"real/{src.parent.name}_{src.name}" for src in sources]


def _spoil_cache(cache: FeatureCache, clip: Path) -> dict[str, str]:
    """Extract `clip` in process, then flip bytes in its log-mel tensors and break its acoustic meta.json (the
    CACHE_KINDS); the batch must recompute both. Returns {extractor: key}."""
    cfg = SentiFlowConfig()
    cfg.extraction.isolate = False
    out = ExtractionRunner(cfg, cache, only=["logmel", "acoustic"]).run([clip], progress=False).items[0]
    tensors = cache.get(out.keys["logmel"]).path / "tensors.safetensors"
    data = bytearray(tensors.read_bytes())
    for i in range(-40, -8):
        data[i] ^= 0xFF
    tensors.write_bytes(bytes(data))
    (cache.get(out.keys["acoustic"]).path / "meta.json").write_text('{"key": "truncated', encoding="utf-8")
    return {"logmel": out.keys["logmel"], "acoustic": out.keys["acoustic"]}


def _check(name: str, exp: Expect, item: ItemOutcome, cache: FeatureCache) -> None:
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
    for ex, fragment in exp.states.items():
        assert fragment in item.extractors.get(ex, ""), (name, ex, item.extractors.get(ex))
    assert exp.warning in item.notes(), (name, item.notes())
    if exp.max_frames is not None and "face" in item.keys:
        face = cache.get(item.keys["face"]).meta     # frames sampled: in the track, or in the no-face reason
        found = re.search(r"in (\d+) sampled frames", str(face.get("reason", "")))
        n_frames = face["n_frames"] if "n_frames" in face else int(found.group(1)) if found else None
        assert n_frames is not None and n_frames <= exp.max_frames, (name, face.get("reason"))
    for ex, fields in exp.meta.items():
        meta = cache.get(item.keys[ex]).meta
        for key, fragment in fields.items():
            assert fragment in str(meta.get(key)), (name, ex, key, meta.get(key))
    if item.status != "failed":
        for ex, state in item.extractors.items():
            # an extractor either made features, or says why the source lacks them, or why it failed
            assert state in ("done", "cached") or ":" in state, (name, ex, state)


def _run(tmp_path: Path, only_names: tuple[str, ...] | None) -> None:
    corpus = tmp_path / "corpus"
    expected = build_corpus(corpus, FACE if FACE.is_file() else None)
    real = _good_real_clips(corpus / "real")
    expected.update({name: Expect("ok") for name in real})
    if only_names is not None:
        expected = {n: e for n, e in expected.items() if n in only_names or n in real}
    cache = FeatureCache(tmp_path / "cache")
    spoiled = _spoil_cache(cache, corpus / "good.mp4")
    config = SentiFlowConfig()            # every default extractor, isolated with the default limits
    config.extraction.batch_size = 6
    too_long = corpus / TOO_LONG_PATH
    inputs = [corpus] if only_names is None else [corpus / n for n in expected]
    summary = ExtractionRunner(config, cache, device="cpu").run([*inputs, too_long], progress=False)
    seen = {str(Path(i.path).relative_to(corpus)): i for i in summary.items}
    assert set(expected) <= set(seen), set(expected) - set(seen)
    assert not any(name.startswith("loop/") for name in seen)       # the symlink loop was not followed
    assert seen[TOO_LONG_PATH].status == "failed" and "name too long" in seen[TOO_LONG_PATH].reason
    for name, exp in expected.items():
        _check(name, exp, seen[name], cache)
    # the corrupt entries prepared in the cache were recomputed, not served
    same = [i for i in summary.items if i.media_hash == seen["good.mp4"].media_hash]   # copies share entries
    assert any(i.extractors.get("logmel") == "done" for i in same)
    assert any(i.extractors.get("acoustic") == "done" for i in same)
    assert all(cache.get(k).problem(full_hash=True) is None for k in spoiled.values())
    assert list((cache.root / "tmp").iterdir()) == []
    report = cache.verify()
    assert report.corrupt == [] and report.temp_dirs == []
    kinds = len(expected) - len(real) + 1 + len(CACHE_KINDS)
    print(json.dumps({"kinds": kinds, "handled": kinds, "good_real_clips": len(real)}))


def test_fast_subset_of_the_corpus_has_the_expected_outcomes(tmp_path: Path) -> None:
    _run(tmp_path, FAST_KINDS)


@pytest.mark.slow
def test_every_corpus_file_has_the_expected_outcome(tmp_path: Path) -> None:
    _run(tmp_path, None)


def test_manifest_ids_cannot_escape_the_dataset_root(tmp_path: Path) -> None:
    manifest = write_hostile_manifest(tmp_path / "ds")
    with pytest.raises(LabelError, match="escapes the dataset root"):
        read_labels(manifest, media_root=tmp_path / "ds")
