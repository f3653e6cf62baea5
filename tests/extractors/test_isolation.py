"""Per-video limits: a file that takes too long or too much memory is cut off and recorded; the rest finish."""

from pathlib import Path

from extractors.config import ExtractionConfig, SentiFlowConfig
from extractors.runner import ExtractionRunner
from pipeline.cache import FeatureCache
from tests.helpers.media_factory import make_clip


def config(**limits: float) -> SentiFlowConfig:
    return SentiFlowConfig(extraction=ExtractionConfig(extractors=["logmel"], isolate=True, batch_size=4, **limits))


def test_isolated_run_matches_in_process_run(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "a.mp4", seconds=1.0)
    iso = ExtractionRunner(config(), FeatureCache(tmp_path / "c1")).run([clip], progress=False)
    cfg = config()
    cfg.extraction.isolate = False
    inproc = ExtractionRunner(cfg, FeatureCache(tmp_path / "c2")).run([clip], progress=False)
    a, b = iso.items[0], inproc.items[0]
    assert a.status == b.status == "done" and a.keys == b.keys
    ta = FeatureCache(tmp_path / "c1").get(a.keys["logmel"]).load()
    tb = FeatureCache(tmp_path / "c2").get(b.keys["logmel"]).load()
    assert all((ta[k] == tb[k]).all() for k in ta)


def test_slow_file_is_cut_off_and_others_finish(tmp_path: Path) -> None:
    long_clip = make_clip(tmp_path / "long.wav", seconds=1800.0, video=False)
    short = make_clip(tmp_path / "short.mp4", seconds=0.5)
    # a budget no real extraction of 30 minutes of audio can meet (decoding alone takes longer), while the
    # short clip needs a few tens of milliseconds
    cfg = config(timeout_seconds=1.0, timeout_per_media_second=0.0)
    summary = ExtractionRunner(cfg, FeatureCache(tmp_path / "c")).run([long_clip, short], progress=False)
    out = {Path(i.path).name: i for i in summary.items}
    assert out["long.wav"].status == "failed" and "timed out after 1 s" in out["long.wav"].reason  # retried alone: 1 s
    assert out["short.mp4"].status == "done"
    assert any("timed out" in f["reason"] for f in FeatureCache(tmp_path / "c").failures())


def test_memory_guard_stops_the_child(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "a.mp4", seconds=0.5)
    cfg = config(max_memory_gib=0.02)   # below what the child needs just to import torch
    summary = ExtractionRunner(cfg, FeatureCache(tmp_path / "c")).run([clip], progress=False)
    item = summary.items[0]
    assert item.status == "failed"
    assert "exceeded the memory limit" in item.reason and "extraction.max_memory_gib" in item.reason
