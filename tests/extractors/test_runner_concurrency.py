"""Two extractions of overlapping folders into one cache at once: no corruption, no duplicated work."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pipeline.cache import FeatureCache
from tests.helpers.media_factory import make_clip
from tests.helpers.paths import ROOT


@pytest.mark.parametrize("hosts", [(None, None), ("host-a", "host-b")], ids=["one-host", "two-simulated-hosts"])
def test_overlapping_concurrent_extractions(tmp_path: Path, hosts: tuple[str | None, str | None]) -> None:
    """Two processes, on one host or as two hosts (SENTIFLOW_HOST_ID: claims judged by lease, not process id)."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    shared = [make_clip(a / f"shared{i}.mp4", seconds=1.5, tone_hz=120.0 + 30 * i) for i in range(5)]
    for p in shared:
        os.link(p, b / p.name)            # the same bytes reached through both folders
    make_clip(a / "only_a.mp4", seconds=1.0, tone_hz=400.0)
    make_clip(b / "only_b.mp4", seconds=1.0, tone_hz=500.0)
    cache = tmp_path / "cache"
    procs = []
    for name, folder, host in (("a", a, hosts[0]), ("b", b, hosts[1])):
        env = {k: v for k, v in os.environ.items() if k != "SENTIFLOW_HOST_ID"}
        env.update({"PYTHONPATH": str(ROOT), **({"SENTIFLOW_HOST_ID": host} if host else {})})
        cmd = [sys.executable, "-m", "flows.cli", "extract", str(folder), "--cache", str(cache), "--no-progress",
               "--only", "logmel", "acoustic", "--device", "cpu", "--summary-json", str(tmp_path / f"{name}.json")]
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err.decode()
    summaries = [json.loads((tmp_path / f"{n}.json").read_text()) for n in ("a", "b")]
    for s in summaries:
        assert len(s["items"]) == 6 and all(i["status"] in ("done", "cached") for i in s["items"])
    # every (clip, extractor) entry was computed by exactly one of the two processes
    computed: dict[str, int] = {}
    for s in summaries:
        for item in s["items"]:
            for ex, state in item["extractors"].items():
                if state == "done":
                    computed[item["keys"][ex]] = computed.get(item["keys"][ex], 0) + 1
    fc = FeatureCache(cache, create=False)
    entries = list(fc.entries())
    assert len(entries) == 7 * 2
    assert set(computed) == {e.key for e in entries} and max(computed.values()) == 1
    report = fc.verify()
    assert report.corrupt == [] and report.temp_dirs == []
    assert not any((cache / "claims").iterdir())
    for e in entries:
        assert torch.isfinite(e.load()["fixed"]).all()


class CommitsBeforeClaim(FeatureCache):
    """A cache where another process commits each entry just after our lookup and before our claim."""

    def __init__(self, root: Path, donor: FeatureCache) -> None:
        super().__init__(root)
        self.donor = donor

    def claim(self, key: str) -> bool:
        entry = self.donor.get(key)
        self.put(key, entry.load(), dict(entry.meta))   # the other process wins the race ...
        return super().claim(key)                       # ... and has already released its claim


def test_entry_committed_between_lookup_and_claim_is_not_recomputed(tmp_path: Path) -> None:
    from extractors.config import ExtractionConfig, SentiFlowConfig
    from extractors.runner import ExtractionRunner

    config = SentiFlowConfig(extraction=ExtractionConfig(extractors=["logmel"], isolate=False))
    clip = make_clip(tmp_path / "clip.mp4", seconds=1.0)
    donor = FeatureCache(tmp_path / "donor")
    ExtractionRunner(config, donor).run([clip], progress=False)
    cache = CommitsBeforeClaim(tmp_path / "cache", donor)
    runner = ExtractionRunner(config, cache)
    calls = []
    real = runner.extractors[0].extract
    runner.extractors[0].extract = lambda batch: calls.append(batch) or real(batch)
    (item,) = runner.run([clip], progress=False).items
    assert calls == []                                  # nothing computed twice
    assert item.extractors == {"logmel": "cached"} and item.status == "cached"
    assert not any((cache.root / "claims").iterdir())   # and our claim was dropped


@pytest.mark.parametrize("lease", [0.0, -5.0])
def test_the_lease_setting_is_checked(tmp_path: Path, lease: float) -> None:
    from extractors.config import ExtractionConfig, SentiFlowConfig
    from extractors.runner import ExtractionRunner
    from pipeline.config import ConfigError

    config = SentiFlowConfig(extraction=ExtractionConfig(extractors=["logmel"], claim_lease_seconds=lease))
    with pytest.raises(ConfigError, match="claim_lease_seconds must be > 0"):
        ExtractionRunner(config, FeatureCache(tmp_path / "c"))
