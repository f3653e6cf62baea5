"""Audio path throughput: video-seconds extracted per wall-second, batched vs one clip at a time.

Usage: python benchmarks/audio_throughput.py [--device cpu|cuda] [--report FILE] [--repeat N]
Inputs: sample_videos/ and ../shared/clips/ when present.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from machine import machine_info, peak_rss_mib  # noqa: E402

from extractors.base import MediaItem  # noqa: E402
from extractors.config import ExtractionConfig, SentiFlowConfig  # noqa: E402
from extractors.registry import build_extractor
from extractors.runner import ExtractionRunner  # noqa: E402
from pipeline.cache import FeatureCache  # noqa: E402
from pipeline.media import MediaConfig, discover_media, probe  # noqa: E402

EXTRACTORS = ["logmel", "acoustic", "tonal"]


def inputs() -> list[Path]:
    """Media with an audio stream from the bundled and shared clips."""
    roots = [ROOT / "sample_videos", ROOT.parent / "shared" / "clips"]
    files, _ = discover_media([r for r in roots if r.is_dir()])
    return [f for f in files if probe(f).has_audio]


def time_extractor(name: str, items: list[MediaItem], device: str, batch: int) -> float:
    """Wall seconds to run one extractor over all items in batches of `batch`."""
    ex = build_extractor(name, None, MediaConfig(), device)
    ex.extract(items[:1])  # warm-up (kernels, filter banks)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(0, len(items), batch):
        ex.extract(items[i: i + batch])
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main() -> None:
    """Run the benchmark and print/write a markdown report."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--report", help="write the markdown report here")
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    files = inputs()
    items = [MediaItem(path=str(f), media_hash="bench", info=probe(f)) for f in files]
    seconds = sum(i.info.duration for i in items)
    rows = []
    for name in EXTRACTORS:
        t_batched = time_extractor(name, items, args.device, args.batch)
        t_single = time_extractor(name, items, "cpu", 1)
        rows.append((name, t_batched, t_single))
    with tempfile.TemporaryDirectory() as tmp:
        cfg = SentiFlowConfig(extraction=ExtractionConfig(extractors=EXTRACTORS, batch_size=args.batch))
        runner = ExtractionRunner(cfg, FeatureCache(tmp), device=args.device)
        t0 = time.perf_counter()
        runner.run(files, progress=False)
        t_e2e = time.perf_counter() - t0
    info = machine_info()
    lines = ["# Audio path throughput", "",
             f"Command: `python benchmarks/audio_throughput.py --device {args.device} --batch {args.batch}`", "",
             "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()), "",
             f"Input: {len(items)} clips with audio, {seconds:.1f} s of media in all.", "",
             f"| extractor | batched ({args.device}, {args.batch}/call) s | x real time | one clip at a time (cpu) s "
             "| x real time | speed-up |",
             "|---|---|---|---|---|---|"]
    for name, tb, ts in rows:
        lines.append(f"| {name} | {tb:.2f} | {seconds / tb:.1f} | {ts:.2f} | {seconds / ts:.1f} | {ts / tb:.2f} |")
    lines += ["", f"End to end (`sentiflow extract` path: probe, hash, decode, all three extractors, cache writes): "
              f"{t_e2e:.2f} s = {seconds / t_e2e:.1f}x real time, "
              f"{t_e2e / seconds * 1000:.1f} ms per video-second.", "",
              f"Peak RSS: {peak_rss_mib():.0f} MiB."]
    text = "\n".join(lines)
    print(text)
    if args.report:
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report).write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
