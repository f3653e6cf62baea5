"""Per-video limits: a file that takes too long or too much memory is cut off and recorded; the rest finish."""

from pathlib import Path

import pytest

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


ORPHAN_PARENT = r'''
import sys
from extractors.config import SentiFlowConfig
from extractors.runner import ExtractionRunner
from pipeline.cache import FeatureCache

config = SentiFlowConfig.from_dict({"extraction": {"extractors": ["logmel", "acoustic", "tonal"], "batch_size": 8}})
ExtractionRunner(config, FeatureCache(sys.argv[1])).run(sys.argv[2:], progress=False)
'''


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(c) for c in text.split()]


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_worker_stops_when_its_parent_is_killed(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.helpers.paths import ROOT

    if not Path("/proc/self/task").is_dir():
        pytest.skip("needs Linux /proc")
    clips = [str(make_clip(tmp_path / f"c{i}.mp4", seconds=4.0, tone_hz=150.0 + 30 * i)) for i in range(8)]
    cache = tmp_path / "cache"
    parent = subprocess.Popen([sys.executable, "-c", ORPHAN_PARENT, str(cache), *clips], cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not any((cache / "objects").rglob("meta.json")):
        time.sleep(0.1)                                 # the worker is computing the batch
    children = _children(parent.pid)
    assert children, "the extraction worker did not start"
    parent.send_signal(signal.SIGKILL)                  # the parent only: its worker becomes an orphan
    parent.wait()
    gone = time.monotonic() + 10
    while time.monotonic() < gone and any(_alive(c) for c in children):
        time.sleep(0.1)
    assert not any(_alive(c) for c in children), "the orphaned worker went on computing its batch"
    done = len(list((cache / "objects").rglob("meta.json")))
    assert done < 24                                    # 8 clips x 3 extractors: the batch was not finished
    report = FeatureCache(cache).verify()               # what it committed before stopping is sound
    assert report.corrupt == [] and report.ok == done
