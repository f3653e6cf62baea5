"""The top-level SentiFlow configuration (one YAML file): media decoding and which extractors run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline.config import ConfigBase
from pipeline.media import MediaConfig

DEFAULT_EXTRACTORS = ["logmel", "acoustic", "tonal", "face", "fer", "transcript", "text", "aligned"]


@dataclass
class ExtractionConfig(ConfigBase):
    """Which extractors run, their options (by extractor name) and how many clips form a batch."""

    extractors: list[str] = field(default_factory=lambda: list(DEFAULT_EXTRACTORS))
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    batch_size: int = 8
    isolate: bool = True                  # run batches in a child process with the limits below
    timeout_seconds: float = 120.0        # per video: fixed allowance ...
    timeout_per_media_second: float = 4.0  # ... plus this many seconds per second of media
    max_memory_gib: float = 12.0          # the child is stopped above this resident memory
    # glibc only (a no-op elsewhere, see pipeline/system.py): while an extractor of `malloc_mmap_modalities` runs,
    # allocations of at least this many bytes use mmap, so per-frame buffers cannot fragment the heap and memory
    # stays flat in video length (face stage: +184 MiB peak for 2x length by default, +18 MiB with 131072). The
    # other extractors run with the threshold fixed at `malloc_mmap_threshold_others` (default glibc's ceiling,
    # 32 MiB, where its dynamic threshold ends): a 128 KiB threshold maps and unmaps every tensor above it, which
    # took speech recognition from 52 to 110 s over sample_videos/ + ../shared/clips/ (2-core AMD EPYC); the cost
    # is a larger heap (benchmarks/reports/memory_vs_length_cpu.md: peak 1,176 -> 1,583 MiB at 12 minutes, still
    # flat in length). None keeps glibc's dynamic threshold for every extractor.
    malloc_mmap_threshold: int | None = 131072
    malloc_mmap_modalities: list[str] = field(default_factory=lambda: ["visual"])
    malloc_mmap_threshold_others: int = 33554432
    trim_heap_after_extractor: bool = True   # malloc_trim(0) after each extractor's batch (glibc only)
    # extractors/pipelined.py: probe and hash files in a background thread ahead of compute, and cut batches from
    # runs of `bucket_batches` x batch_size files sorted by length; False = batches in input order, probed in turn
    pipeline: bool = True
    prefetch_files: int = 16              # files probed and hashed ahead of the batch being computed (at least)
    bucket_batches: int = 4
    # an extractor that reads another's frames computes its inputs in that one's decoding pass (fer during face:
    # each video decoded once); False = each decodes the video itself (the same features, decoded twice)
    decode_once: bool = True
    # a claim on an entry being computed lasts this long unless renewed (every quarter of it, while the owner works);
    # another host takes a dead host's claims over once they expire (pipeline/claims.py)
    claim_lease_seconds: float = 60.0
    # torch threads of an extraction on the CPU (None: torch's default, every core); the Prefect flows divide the
    # host's cores among its CPU slots (orchestration.device_slots_cpu) when this is None
    cpu_threads: int | None = None


@dataclass
class SentiFlowConfig(ConfigBase):
    """Everything a run needs to know, with the papers' defaults."""

    media: MediaConfig = field(default_factory=MediaConfig)
    extraction: ExtractionConfig = field(default_factory=ExtractionConfig)


def load_config(path: str | None) -> SentiFlowConfig:
    """The config in `path` (YAML), or the defaults when `path` is None."""
    return SentiFlowConfig.from_yaml(path) if path else SentiFlowConfig()
