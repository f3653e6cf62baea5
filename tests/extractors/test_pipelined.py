"""The pipelined runner (files probed ahead, batches bucketed by length, one isolated child) against the
one-at-a-time runner: the same cache, tensor for tensor, and the same failures."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest
import torch

from extractors import stages
from extractors.config import SentiFlowConfig
from extractors.pipelined import Probed, feed, length_batches, read_ahead
from extractors.runner import ExtractionRunner
from pipeline.cache import FeatureCache
from pipeline.media import MediaInfo
from tests.helpers.media_factory import make_clip

REAL_CLIPS = ("Pose_Source_620900105.mp4", "fer_test.mp4", "videoretalking_face_5.mp4")   # 224, 596x336 no audio, 524 px
EXTRACTORS = ["logmel", "acoustic", "face", "fer"]
# metadata a run writes about itself rather than about the features
RUN_META = {"created", "meta_sha256"}     # when the entry was written, and the checksum that covers it


def _config(pipeline: bool, batch_size: int, isolate: bool) -> SentiFlowConfig:
    cfg = SentiFlowConfig()
    cfg.extraction.extractors = list(EXTRACTORS)
    cfg.extraction.pipeline, cfg.extraction.batch_size, cfg.extraction.isolate = pipeline, batch_size, isolate
    return cfg


def _entries(root: Path) -> dict[str, tuple[dict, dict[str, torch.Tensor]]]:
    out = {}
    for e in FeatureCache(root, create=False).entries():
        meta = {k: v for k, v in e.meta.items() if k not in RUN_META}
        out[e.key] = (meta, e.load())
    return out


@pytest.mark.shared
@pytest.mark.slow      # 35-70 s on the loaded 2-core machine (the isolated child loads torch and MTCNN)
def test_pipelined_cache_equals_one_at_a_time(shared_clips: Path, tmp_path: Path) -> None:
    clips = tmp_path / "clips"
    clips.mkdir()
    for name in REAL_CLIPS:
        shutil.copy(shared_clips / name, clips / name)
    seq = ExtractionRunner(_config(pipeline=False, batch_size=1, isolate=False), FeatureCache(tmp_path / "seq"))
    s1 = seq.run([clips], progress=False)
    piped = ExtractionRunner(_config(pipeline=True, batch_size=8, isolate=True), FeatureCache(tmp_path / "pipe"))
    s2 = piped.run([clips], progress=False)
    assert [o.path for o in s1.items] == [o.path for o in s2.items] == sorted(str(p) for p in clips.iterdir())
    assert [(o.status, o.extractors, o.keys) for o in s1.items] == [(o.status, o.extractors, o.keys) for o in s2.items]
    a, b = _entries(tmp_path / "seq"), _entries(tmp_path / "pipe")
    assert set(a) == set(b) and len(a) == len(REAL_CLIPS) * len(EXTRACTORS)
    for key in a:
        (meta_a, ta), (meta_b, tb) = a[key], b[key]
        assert meta_a == meta_b, key
        assert set(ta) == set(tb), key
        for name in ta:
            assert ta[name].dtype == tb[name].dtype and torch.equal(ta[name], tb[name]), (key, meta_a["extractor"], name)
    # the no-audio clip is a cached 'missing' in both, the others have every modality
    states = {Path(o.path).name: o.extractors for o in s2.items}
    assert states["fer_test.mp4"]["logmel"] == "missing: no audio stream"
    assert all(s == "done" for n, st in states.items() if n != "fer_test.mp4" for s in st.values())
    # both runs account their time per stage: probing, decoding and every extractor
    for s in (s1, s2):
        assert {"probe+hash", "decode:video", "decode:audio", *EXTRACTORS} <= set(s.stages)
        assert all(v >= 0 for v in s.stages.values()) and s.stages["face"] > 0


def test_pipelined_records_bad_files_as_the_one_at_a_time_path(tmp_path: Path) -> None:
    d = tmp_path / "in"
    d.mkdir()
    make_clip(d / "good.mp4", seconds=1.0)
    (d / "not_media.mp4").write_bytes(b"this is text, not a video\n" * 20)
    (d / "empty.wav").write_bytes(b"")
    runs = []
    for pipeline in (False, True):
        cfg = SentiFlowConfig()
        cfg.extraction.extractors = ["logmel"]
        cfg.extraction.pipeline, cfg.extraction.isolate = pipeline, False
        runs.append(ExtractionRunner(cfg, FeatureCache(tmp_path / f"cache{pipeline}")).run([d], progress=False))
    seq, piped = ([(Path(o.path).name, o.status, o.reason) for o in s.items] for s in runs)
    assert seq == piped
    assert dict((n, st) for n, st, _ in piped) == {"good.mp4": "done", "not_media.mp4": "failed",
                                                  "empty.wav": "failed"}


def _probed(i: int, seconds: float) -> Probed:
    info = MediaInfo(path=f"{i}.mp4", size_bytes=1, duration=seconds, container="mp4", has_video=True,
                     has_audio=True)
    return Probed(i, Path(f"{i}.mp4"), info, f"h{i}")


def test_length_batches_sort_within_each_window() -> None:
    lengths = [9.0, 1.0, 5.0, 3.0, 8.0, 2.0, 7.0]
    batches = list(length_batches([_probed(i, s) for i, s in enumerate(lengths)], batch_size=2, window=4))
    assert [[p.index for p in b] for b in batches] == [[1, 3], [2, 0], [5, 6], [4]]
    unknown = Probed(7, Path("x.mp4"))      # its probe failed: length 0, first in its window
    assert [p.index for p in next(length_batches([_probed(0, 2.0), unknown], 4, 4))] == [7, 0]


def test_feed_carries_probe_and_hash_and_keeps_extras(tmp_path: Path) -> None:
    a = make_clip(tmp_path / "a.mp4", seconds=1.5)
    b = make_clip(tmp_path / "b.mp4", seconds=0.5)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"nope")
    batches = list(feed([a, b, bad], {str(a): {"transcript": "hi"}}, batch_size=8, prefetch_files=1,
                        bucket_batches=1))
    assert len(batches) == 1
    paths, extras = batches[0]
    assert paths == [bad, b, a]                       # by length; the unreadable one carries no probe
    assert "_prepared" not in extras[str(bad)]
    assert extras[str(a)]["transcript"] == "hi"
    assert extras[str(a)]["_prepared"]["info"].duration == pytest.approx(1.5, abs=0.1)
    assert len(extras[str(b)]["_prepared"]["media_hash"]) == 64


def test_read_ahead_stays_bounded_raises_in_order_and_stops_when_closed() -> None:
    produced: list[int] = []

    def numbers():
        for i in range(100):
            produced.append(i)
            yield i

    it = read_ahead(numbers(), depth=2)
    assert next(it) == 0
    time.sleep(0.3)
    assert len(produced) <= 4          # one handed out, two queued, one waiting to be queued
    it.close()
    time.sleep(0.3)
    assert len(produced) <= 4 and not any(t.name == "sentiflow-read-ahead" for t in threading.enumerate())

    def failing():
        yield 1
        raise ValueError("decoder broke")

    got = []
    with pytest.raises(ValueError, match="decoder broke"):
        for x in read_ahead(failing(), depth=4):
            got.append(x)
    assert got == [1]


def test_stage_table_lists_stages_by_cost_with_real_time() -> None:
    stages.take()
    stages.add("face", 2.0)
    stages.add("face", 1.0)
    stages.add("logmel", 0.5)
    seen = stages.take()
    assert seen == {"face": 3.0, "logmel": 0.5} and stages.take() == {}
    lines = stages.table(seen, wall_seconds=4.0, media_seconds=12.0).splitlines()
    assert lines[1].split() == ["face", "3.00", "75", "4.0"]
    assert lines[2].split() == ["logmel", "0.50", "12", "24.0"]
    assert lines[-1].split() == ["total", "(wall)", "4.00", "100", "3.0"]
