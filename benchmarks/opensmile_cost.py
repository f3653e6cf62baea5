"""What the openSMILE extractor costs beside the default audio extractors: wall seconds per clip set, x real time.

Usage: python benchmarks/opensmile_cost.py [--report FILE] [--threads 1,2] [--clips DIR ...]
Inputs: sample_videos/ and ../shared/clips/ when present (or the --clips folders); clips without audio are left out.
Each extractor runs over all clips in batches of 8 after one warm-up clip, on the CPU.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import machine_info  # noqa: E402

from extractors.base import MediaItem  # noqa: E402
from extractors.registry import build_extractor  # noqa: E402
from pipeline.media import MediaConfig, discover_media, probe  # noqa: E402

DEFAULT_AUDIO = ["logmel", "acoustic", "tonal"]
BATCH = 8


def inputs(folders: list[Path]) -> list[MediaItem]:
    """Media items with an audio stream under `folders`."""
    files, _ = discover_media([f for f in folders if f.is_dir()])
    items = [MediaItem(path=str(f), media_hash="bench", info=probe(f)) for f in files]
    return [i for i in items if i.info.has_audio]


def seconds_for(name: str, options: dict, items: list[MediaItem]) -> float:
    """Wall seconds for extractor `name` over all items in batches of BATCH (after a one-clip warm-up)."""
    ex = build_extractor(name, options, MediaConfig())
    ex.extract(items[:1])
    t0 = time.perf_counter()
    for i in range(0, len(items), BATCH):
        out = ex.extract(items[i: i + BATCH])
        bad = [o for o in out if isinstance(o, Exception)]
        if bad:
            raise SystemExit(f"{name} failed on a clip: {bad[0]}")
    return time.perf_counter() - t0


def main() -> None:
    """Time the default audio extractors and openSMILE (both feature sets, each thread count); print a report."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--report", help="write the markdown report here")
    ap.add_argument("--threads", default="1,2", help="openSMILE thread counts to time")
    ap.add_argument("--clips", nargs="*", type=Path, help="folders of clips (default: sample_videos, ../shared/clips)")
    args = ap.parse_args()
    folders = args.clips or [ROOT / "sample_videos", ROOT.parent / "shared" / "clips"]
    items = inputs(folders)
    media = sum(i.info.duration for i in items)
    load_before = os.getloadavg()[0]
    rows: list[tuple[str, float]] = [(name, seconds_for(name, {}, items)) for name in DEFAULT_AUDIO]
    default_total = sum(s for _, s in rows)
    for feature_set in ("eGeMAPSv02", "ComParE_2016"):
        for threads in (int(t) for t in args.threads.split(",")):
            rows.append((f"opensmile {feature_set}, threads {threads}",
                         seconds_for("opensmile", {"feature_set": feature_set, "threads": threads}, items)))
    load_after = os.getloadavg()[0]
    info = machine_info()
    cmd = " ".join(["python benchmarks/opensmile_cost.py", *sys.argv[1:]])
    lines = ["# openSMILE extractor cost", "", f"Command: `{cmd}`", "",
             "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()),
             f"(1-minute load average {load_before:.1f} before, {load_after:.1f} after: other jobs shared the "
             "cores)" if max(load_before, load_after) > 1.5 else "", "",
             f"Input: {len(items)} clips with audio from {', '.join(str(f) for f in folders if f.is_dir())}, "
             f"{media:.1f} s of media; batches of {BATCH}, CPU.", "",
             "| extractor | wall s | x real time | share of the three default audio extractors |",
             "|---|---:|---:|---:|"]
    for name, s in rows:
        lines.append(f"| {name} | {s:.2f} | {media / s:.1f} | {100 * s / default_total:.0f} % |")
    lines += ["", f"The three default audio extractors together: {default_total:.2f} s "
              f"({media / default_total:.1f}x real time)."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.report:
        Path(args.report).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
