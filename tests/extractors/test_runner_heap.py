"""glibc heap settings of the extraction process (pipeline/heap.py, extraction.malloc_mmap_threshold)."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

from extractors.config import ExtractionConfig, SentiFlowConfig
from extractors.runner import ExtractionRunner, mmap_threshold_for
from pipeline.cache import FeatureCache
from pipeline.config import ConfigError
from pipeline.system import MAX_MMAP_THRESHOLD, heap_tunable, set_mmap_threshold, trim_heap
from tests.helpers.paths import ROOT, SAMPLES

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
GLIBC_VERSION = tuple(int(x) for x in platform.libc_ver()[1].split(".")[:2] if x.isdigit()) if GLIBC else ()
needs_glibc = pytest.mark.skipif(not GLIBC, reason="mallopt/malloc_trim are glibc calls")

# In a fresh process (a small heap: glibc serves any size from free heap space first, the threshold only decides
# how the heap grows): free a 200 KB mmapped block (glibc then raises its dynamic mmap threshold above 200 KB),
# allocate 200 KB again and print how many new mmapped blocks (mallinfo2().hblks) that made.
PROBE = """
import ctypes, sys
sys.path.insert(0, {root!r})
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                "fsmblks", "uordblks", "fordblks", "keepcost")]
lib = ctypes.CDLL(None)
lib.mallinfo2.restype = Info
lib.malloc.restype, lib.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
lib.free.argtypes = [ctypes.c_void_p]
if {fix!r}:
    from pipeline.system import set_mmap_threshold   # what the runner and the isolated worker call
    assert set_mmap_threshold(131072)
lib.free(lib.malloc(200_000))
before = lib.mallinfo2().hblks
block = lib.malloc(200_000)
print(lib.mallinfo2().hblks - before)
"""


def _new_mmapped_blocks(fix: bool) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE.format(root=str(ROOT), fix=fix)], check=True,
                         capture_output=True, text=True, timeout=120)
    return int(out.stdout.strip().splitlines()[-1])


@needs_glibc
def test_mallopt_is_applied_on_glibc() -> None:
    assert heap_tunable()
    assert set_mmap_threshold(131072) is True
    assert isinstance(trim_heap(), bool)


@pytest.mark.skipif(GLIBC_VERSION < (2, 33), reason="mallinfo2 needs glibc >= 2.33")
def test_fixed_threshold_keeps_per_frame_sized_buffers_off_the_heap() -> None:
    # glibc's default: after one 200 KB block is freed, the next one comes from the (fragmenting) heap
    assert _new_mmapped_blocks(fix=False) == 0
    # with extraction.malloc_mmap_threshold = 128 KiB it is mmapped, and unmapped again when freed
    assert _new_mmapped_blocks(fix=True) == 1


def test_runner_applies_the_setting_and_rejects_bad_values(tmp_path: Path) -> None:
    cfg = SentiFlowConfig(extraction=ExtractionConfig(extractors=["logmel"], isolate=False))
    assert ExtractionRunner(cfg, FeatureCache(tmp_path)).heap_tuned is GLIBC
    cfg.extraction.malloc_mmap_threshold = None
    assert ExtractionRunner(cfg, FeatureCache(tmp_path)).heap_tuned is False
    cfg.extraction.malloc_mmap_threshold = 64 * 2**20
    with pytest.raises(ConfigError, match="extraction.malloc_mmap_threshold must be null or 1..33554432"):
        ExtractionRunner(cfg, FeatureCache(tmp_path))


def test_setting_round_trips_through_yaml(tmp_path: Path) -> None:
    cfg = SentiFlowConfig()
    assert cfg.extraction.malloc_mmap_threshold == 131072 and cfg.extraction.trim_heap_after_extractor
    cfg.extraction.malloc_mmap_threshold = None
    cfg.to_yaml(tmp_path / "c.yaml")
    back = SentiFlowConfig.from_yaml(tmp_path / "c.yaml")
    assert back.extraction.malloc_mmap_threshold is None


def test_threshold_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="mmap threshold must be in 1..33554432 bytes, got 0"):
        set_mmap_threshold(0)


# ---- issue 25: the small threshold only while frame-decoding extractors run (it doubled speech recognition's time)
def test_threshold_per_modality() -> None:
    cfg = ExtractionConfig()
    assert mmap_threshold_for(cfg, "visual") == 131072
    assert mmap_threshold_for(cfg, "audio") == mmap_threshold_for(cfg, "text") == MAX_MMAP_THRESHOLD
    cfg.malloc_mmap_modalities = ["visual", "audio"]
    assert mmap_threshold_for(cfg, "audio") == 131072
    cfg.malloc_mmap_threshold_others = 4 * 2**20
    assert mmap_threshold_for(cfg, "text") == 4 * 2**20
    cfg.malloc_mmap_threshold = None
    assert mmap_threshold_for(cfg, "visual") is None


@needs_glibc
def test_runner_switches_the_threshold_before_each_extractor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import extractors.runner as runner_module

    applied: list[int] = []
    monkeypatch.setattr(runner_module, "set_mmap_threshold", lambda n: applied.append(n) or True)
    cfg = SentiFlowConfig(extraction=ExtractionConfig(extractors=["logmel", "face"], isolate=False))
    runner = ExtractionRunner(cfg, FeatureCache(tmp_path))
    assert applied == [131072]                      # the configured value first (dynamic raising off from the start)
    (out,) = runner.run([SAMPLES / "astro_front" / "01.mp4"], progress=False).items
    assert out.extractors == {"logmel": "done", "face": "done"}
    assert applied == [131072, MAX_MMAP_THRESHOLD, 131072]   # logmel at glibc's ceiling, face at the fixed value
    assert runner.heap_threshold == 131072
    runner.run([SAMPLES / "astro_front" / "01.mp4"], progress=False)  # all cached: nothing computed, nothing switched
    assert applied == [131072, MAX_MMAP_THRESHOLD, 131072]


def test_unknown_modality_is_refused(tmp_path: Path) -> None:
    cfg = SentiFlowConfig(extraction=ExtractionConfig(extractors=["logmel"], isolate=False,
                                                      malloc_mmap_modalities=["video"]))
    with pytest.raises(ConfigError, match="extraction.malloc_mmap_modalities: 'video' not one of audio, text"):
        ExtractionRunner(cfg, FeatureCache(tmp_path))
    cfg.extraction.malloc_mmap_modalities, cfg.extraction.malloc_mmap_threshold_others = ["visual"], 0
    with pytest.raises(ConfigError, match="extraction.malloc_mmap_threshold_others must be 1..33554432 bytes, got 0"):
        ExtractionRunner(cfg, FeatureCache(tmp_path))
