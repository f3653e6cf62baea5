"""The extract flow on a Dask LocalCluster of two worker processes (the `distributed` extra), over real clips.

The cache it fills equals a sequential in-process run's, entry for entry and tensor for tensor, and both Dask
workers extracted files (the summary artifact names the worker of every file). The extraction's isolated child
processes start inside the Dask workers (they are not daemonic).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

pytest.importorskip("prefect_dask")

ONLY = ["logmel", "acoustic"]


def audio_clips(shared: Path, n: int) -> list[Path]:
    return sorted(shared.glob("Audio_Source_*.mp4"))[:n]


@pytest.mark.shared
def test_dask_cluster_of_two_workers_fills_the_cache_like_a_sequential_run(tmp_path: Path, shared_clips: Path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.testing.utilities import prefect_test_harness

    from extractors.config import ExtractionConfig, SentiFlowConfig
    from extractors.runner import ExtractionRunner
    from flows.extract import extract
    from pipeline.cache import FeatureCache

    videos = tmp_path / "videos"
    videos.mkdir()
    clips = [Path(shutil.copyfile(c, videos / c.name)) for c in audio_clips(shared_clips, 4)]
    assert len(clips) == 4
    with prefect_test_harness(server_startup_timeout=180):
        counts = extract(dataset="folder", root=str(videos), cache=str(tmp_path / "dask"), device="cpu", only=ONLY,
                         orchestration={"files_per_task": 2, "device_slots_cpu": 2,
                                        "task_runner": {"kind": "dask", "n_workers": 2}})
        with get_client(sync_client=True) as client:
            (artifact,) = client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["extract-summary"])))
    assert counts == {"done": 4, "cached": 0, "failed": 0}
    rows = json.loads(artifact.data)
    workers = {r["worker"].split()[1] for r in rows}
    assert workers == {"dask-0", "dask-1"}, rows              # both Dask workers extracted
    assert all(r["worker"].endswith(" cpu") for r in rows)

    sequential = FeatureCache(tmp_path / "sequential")
    config = SentiFlowConfig(extraction=ExtractionConfig(extractors=ONLY, isolate=False))
    ExtractionRunner(config, sequential).run(clips, progress=False)
    got = {e.key: e for e in FeatureCache(tmp_path / "dask", create=False).entries()}
    want = {e.key: e for e in sequential.entries()}
    assert set(got) == set(want) and len(want) == 4 * len(ONLY)
    for key, entry in want.items():
        a, b = entry.load(), got[key].load()
        assert set(a) == set(b)
        for name in a:
            assert torch.equal(a[name], b[name]), (entry.meta["extractor"], name)
