"""Kill `sentiflow extract` with SIGKILL at random points, re-run, and get exactly the uninterrupted cache."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from pipeline.cache import FeatureCache
from tests.helpers.media_factory import make_clip
from tests.helpers.paths import ROOT


def extract_cmd(videos: Path, cache: Path) -> list[str]:
    return [sys.executable, "-m", "flows.cli", "extract", str(videos), "--cache", str(cache),
            "--no-progress", "--only", "logmel", "acoustic", "tonal", "--device", "cpu"]


def snapshot(cache_dir: Path) -> dict[str, dict[str, torch.Tensor]]:
    cache = FeatureCache(cache_dir, create=False)
    return {e.key: e.load() for e in cache.entries()}


def test_sigkill_then_resume_gives_the_same_cache(tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    for i in range(6):
        make_clip(videos / f"clip{i}.mp4", seconds=1.0 + 0.5 * i, tone_hz=150.0 + 40 * i)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    reference = tmp_path / "reference"
    subprocess.run(extract_cmd(videos, reference), check=True, cwd=ROOT, env=env, capture_output=True)

    crashed = tmp_path / "crashed"
    rng = random.Random(1234)
    kills = 0
    for _ in range(4):
        proc = subprocess.Popen(extract_cmd(videos, crashed), cwd=ROOT, env=env, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(1.0, 8.0))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)   # the CLI and its extraction worker, mid-write
            kills += 1
        proc.wait()
    final = subprocess.run(extract_cmd(videos, crashed), cwd=ROOT, env=env, capture_output=True, text=True)
    assert final.returncode == 0, final.stderr
    assert kills >= 1

    ref, got = snapshot(reference), snapshot(crashed)
    assert set(got) == set(ref) and len(ref) == 18
    for key in ref:
        assert set(got[key]) == set(ref[key])
        for name in ref[key]:
            assert torch.equal(got[key][name], ref[key][name]), (key, name)
    assert list((crashed / "tmp").iterdir()) == []
    report = FeatureCache(crashed, create=False).verify()
    assert report.corrupt == [] and report.ok == 18
