"""Shared fixtures: tiny generated clips, the shared real clips (skipped when ../shared is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.helpers.media_factory import make_clip
from tests.helpers.paths import SAMPLES, SHARED, shared_clips_or_skip


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip GPU tests without CUDA and shared-data tests without ../shared."""
    no_gpu = pytest.mark.skip(reason="needs a CUDA device")
    no_shared = pytest.mark.skip(reason=f"needs {SHARED} (not part of a user's clone)")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(no_gpu)
        if "shared" in item.keywords and not SHARED.is_dir():
            item.add_marker(no_shared)


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of small generated clips with known properties."""
    d = tmp_path_factory.mktemp("clips")
    make_clip(d / "tone_2s.mp4", seconds=2.0)
    make_clip(d / "short 0.3s ü.mp4", seconds=0.3)
    make_clip(d / "no_audio.mp4", seconds=1.0, audio=False)
    make_clip(d / "audio_only.wav", seconds=1.5, video=False)
    return d


@pytest.fixture(scope="session")
def shared_clips() -> Path:
    """The real talking-face clips in ../shared/clips."""
    return shared_clips_or_skip()


@pytest.fixture
def one_thread():
    """One torch intra-op thread for tests of many tiny ops: several times faster on a busy 2-core machine, same maths."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def sample_cache(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """All ten bundled sample clips extracted once with every default extractor: (cache, media_root, labels.csv).

    The clips come from three source videos (astro_front, astro_mirror, astro_cool), so grouped folds,
    modality ablations and classification tasks run on real cached features of real files.
    """
    from extractors.config import SentiFlowConfig
    from extractors.runner import ExtractionRunner
    from pipeline.cache import FeatureCache
    from pipeline.labels import read_labels

    samples = SAMPLES
    d = tmp_path_factory.mktemp("sample_cache")
    labels = read_labels(samples / "labels.csv", samples)
    config = SentiFlowConfig()
    config.extraction.isolate = False
    summary = ExtractionRunner(config, FeatureCache(d / "cache")).run(
        [r.path for r in labels], progress=False, extras={r.path: {"transcript": r.text} for r in labels})
    assert summary.count("failed") == 0, summary.table()
    return d / "cache", samples, samples / "labels.csv"
