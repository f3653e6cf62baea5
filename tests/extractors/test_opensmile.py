"""The openSMILE extractor on the bundled sample videos: documented dimensions, equal to the `opensmile` package."""

from __future__ import annotations

import numpy as np
import opensmile
import pytest
import torch

from extractors.base import MediaItem
from extractors.config import SentiFlowConfig
from extractors.registry import build_extractor
from extractors.runner import ExtractionRunner
from pipeline.cache import FeatureCache
from pipeline.config import ConfigError
from pipeline.media import MediaConfig, iter_audio, probe
from tests.helpers.media_factory import make_clip
from tests.helpers.paths import SAMPLES

CLIPS = [SAMPLES / "astro_front" / "01.mp4", SAMPLES / "astro_cool" / "02.mp4"]


def _items() -> list[MediaItem]:
    if not all(p.is_file() for p in CLIPS):
        pytest.skip("sample_videos/ is not there")
    return [MediaItem(path=str(p), media_hash="-", info=probe(p)) for p in CLIPS]


def _package(path: str, feature_set: str, level: str) -> np.ndarray:
    """The opensmile package called directly on the same 16 kHz audio."""
    signal = np.concatenate(list(iter_audio(path, 16000)))
    smile = opensmile.Smile(feature_set=feature_set, feature_level=level)
    return smile.process_signal(signal, 16000).to_numpy()


@pytest.mark.parametrize("feature_set, n_lld, n_func", [("eGeMAPSv02", 25, 88), ("ComParE_2016", 65, 6373)])
def test_opensmile_gives_documented_dims_and_equals_the_package(feature_set, n_lld, n_func):
    items = _items()
    ex = build_extractor("opensmile", {"feature_set": feature_set, "threads": 2}, MediaConfig())
    out = ex.extract(items)
    for item, feats in zip(items, out):
        t = feats.tensors
        n = t["sequence"].shape[0]
        assert t["sequence"].shape == (n, n_lld) and t["functionals"].shape == (n_func,)
        assert t["fixed"].shape == (128, n_lld) and t["mask"].sum() == min(n, 128) and int(t["length"]) == n
        # 100 LLD frames per second of audio, times at the centre of each frame
        assert abs(n / 100.0 - item.info.duration) < 0.1
        assert torch.all(torch.diff(t["times"]) > 0) and abs(float(torch.diff(t["times"]).mean()) - 0.01) < 1e-6
        lld = _package(item.path, feature_set, "LowLevelDescriptors")
        func = _package(item.path, feature_set, "Functionals")
        np.testing.assert_allclose(t["sequence"].numpy(), lld, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(t["functionals"].numpy(), func[0], rtol=1e-6, atol=1e-6)
        assert feats.meta["feature_names"] == list(opensmile.Smile(feature_set=feature_set,
                                                                    feature_level="LowLevelDescriptors").feature_names)
        assert len(feats.meta["functional_names"]) == n_func and feats.meta["non_finite_values_zeroed"] == 0
    assert not torch.equal(out[0].tensors["functionals"], out[1].tensors["functionals"])


def test_opensmile_in_the_runner_caches_entries_and_records_a_clip_without_audio(tmp_path):
    items = _items()
    silent = make_clip(tmp_path / "silent.mp4", seconds=1.0, audio=False)
    config = SentiFlowConfig.from_dict({"extraction": {"isolate": False, "options": {"opensmile": {"threads": 1}}}})
    cache = FeatureCache(tmp_path / "cache")
    summary = ExtractionRunner(config, cache, only=["opensmile"]).run([items[0].path, str(silent)], progress=False)
    states = {o.path: o.extractors["opensmile"] for o in summary.items}
    assert states[str(silent)] == "missing: no audio stream" and states[items[0].path] == "done"
    entry = next(e for e in cache.entries() if e.status == "ok")
    assert entry.meta["feature_set"] == "eGeMAPSv02" and entry.meta["dim"] == 25
    assert entry.load()["functionals"].shape == (88,)


def test_opensmile_refuses_unknown_options():
    with pytest.raises(ConfigError, match="feature_set: 'GeMAPS' is not one of eGeMAPSv02, ComParE_2016"):
        build_extractor("opensmile", {"feature_set": "GeMAPS"}, MediaConfig())
    with pytest.raises(ConfigError, match="threads must be at least 1"):
        build_extractor("opensmile", {"threads": 0}, MediaConfig())
