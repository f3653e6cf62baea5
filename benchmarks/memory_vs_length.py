"""Peak memory of a full extraction as video length grows: 10-minute vs 60-minute talking-head video.

    python benchmarks/memory_vs_length.py --device cpu --report benchmarks/reports/memory_vs_length_cpu.md
    python benchmarks/memory_vs_length.py --device cuda --report benchmarks/reports/memory_vs_length_h100.md
    python benchmarks/memory_vs_length.py --minutes 10 60 --extractors logmel acoustic tonal face fer
    python benchmarks/memory_vs_length.py --minutes 2 12 --heap-default   # glibc's dynamic mmap threshold (before)

Each length is made by concatenating sample_videos/ clips (make_long_video.py, stream copy) unless it
already exists in `--work`. Each extraction runs in its own child process (this script with `--child`),
in-process in that child (`isolate=False`, so one process holds everything), on a fresh cache. The child
samples its resident memory every `--sample-seconds`, records the peak after each extractor finishes
(which extractor raised it), and reports peak GPU memory on CUDA. Pass: peak RSS at the longest length is
within `--max-ratio` (1.5x) of the peak at the shortest. The children use the default extraction settings, so
glibc's mmap threshold is fixed (`extraction.malloc_mmap_threshold`) and the heap trimmed after each extractor;
`--heap-default` switches both off to measure glibc's own behaviour. Without an ffmpeg binary the long videos are
made with PyAV (make_long_video.py).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

FULL_EXTRACTORS = ["logmel", "acoustic", "tonal", "face", "fer", "transcript", "text", "aligned"]


def rss_mib() -> float:
    """Current resident memory of this process (MiB), from /proc."""
    with open("/proc/self/statm", encoding="ascii") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def max_rss_mib() -> float:
    """Peak resident memory of this process so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class RssSampler(threading.Thread):
    """Samples this process's RSS in the background (timeline for spotting growth)."""

    def __init__(self, every: float) -> None:
        super().__init__(daemon=True)
        self.every = every
        self.samples: list[tuple[float, float]] = []
        self.stop = threading.Event()
        self.t0 = time.perf_counter()

    def run(self) -> None:
        while not self.stop.is_set():
            self.samples.append((round(time.perf_counter() - self.t0, 2), round(rss_mib(), 1)))
            self.stop.wait(self.every)


def parse_options(items: list[str]) -> dict[str, dict[str, Any]]:
    """`EXTRACTOR.KEY=JSON` items (e.g. transcript.asr_window_seconds=60) as extraction.options."""
    options: dict[str, dict[str, Any]] = {}
    for item in items:
        name, sep, value = item.partition("=")
        extractor, dot, key = name.partition(".")
        if not sep or not dot or not extractor or not key:
            raise ValueError(f"--option takes EXTRACTOR.KEY=VALUE, got {item!r}")
        try:
            options.setdefault(extractor, {})[key] = json.loads(value)
        except json.JSONDecodeError:
            options.setdefault(extractor, {})[key] = value
    return options


def child(video: str, extractors: list[str], device: str, out: str, sample_seconds: float,
          heap_default: bool = False, options: list[str] | None = None) -> None:
    """Run the extraction of one video in this process and write the figures as JSON to `out`."""
    import torch

    import extractors as _registered  # noqa: F401  (registers every extractor)
    from extractors.config import ExtractionConfig, SentiFlowConfig
    from extractors.runner import ExtractionRunner
    from pipeline.cache import FeatureCache

    sampler = RssSampler(sample_seconds)
    sampler.start()
    base = rss_mib()
    ex_cfg = ExtractionConfig(extractors=extractors, batch_size=1, isolate=False,
                              options=parse_options(options or []))
    if heap_default:
        ex_cfg.malloc_mmap_threshold, ex_cfg.trim_heap_after_extractor = None, False
    cfg = SentiFlowConfig(extraction=ex_cfg)
    per_ex: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        runner = ExtractionRunner(cfg, FeatureCache(tmp), device=device)
        for ex in runner.extractors:
            orig = ex.extract

            def timed(batch, _orig=orig, _name=ex.name):  # noqa: ANN001, ANN202
                if torch.cuda.is_available() and device.startswith("cuda"):
                    torch.cuda.reset_peak_memory_stats()
                t = time.perf_counter()
                try:
                    return _orig(batch)
                finally:
                    rec = per_ex.setdefault(_name, {"seconds": 0.0})
                    rec["seconds"] += time.perf_counter() - t
                    rec["peak_rss_after_mib"] = max_rss_mib()
                    rec["rss_after_mib"] = rss_mib()
                    if torch.cuda.is_available() and device.startswith("cuda"):
                        rec["gpu_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20

            ex.extract = timed  # type: ignore[method-assign]
        t0 = time.perf_counter()
        summary = runner.run([video], progress=False)
        wall = time.perf_counter() - t0
    sampler.stop.set()
    sampler.join()
    item = summary.items[0]
    result: dict[str, Any] = {
        "video": video, "duration": item.duration, "wall_s": wall, "baseline_rss_mib": base,
        "peak_rss_mib": max_rss_mib(), "extractors": per_ex, "heap_tuned": runner.heap_tuned,
        "states": item.extractors, "status": item.status, "timeline": sampler.samples}
    Path(out).write_text(json.dumps(result), encoding="utf-8")


def run_child(video: Path, extractors: list[str], device: str, sample_seconds: float,
              env: dict[str, str] | None = None, heap_default: bool = False,
              options: list[str] | None = None) -> dict[str, Any]:
    """Run `child` in a fresh Python process (argument list, no shell, `env` added) and read its JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(video), "--child-out", str(out),
               "--device", device, "--sample-seconds", str(sample_seconds), "--extractors", *extractors]
        if heap_default:
            cmd.append("--heap-default")
        if options:
            cmd += ["--option", *options]
        proc = subprocess.run(cmd, check=False, env={**os.environ, **(env or {})})
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"child extraction of {video} failed with exit code {proc.returncode}")
        return json.loads(out.read_text(encoding="utf-8"))


def report(results: list[dict[str, Any]], args: argparse.Namespace, info: dict[str, str],
           load: tuple[float, float, float], ratio: float) -> str:
    """Markdown report of the runs."""
    cmd = "python benchmarks/memory_vs_length.py " + " ".join(sys.argv[1:])
    lines = ["# Peak memory vs video length (full extraction, one process)", "",
             f"Command: `{cmd}`", "",
             "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()) +
             f"; load average at start {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min)", "",
             f"Extractors: {', '.join(args.extractors)}; device {args.device}; input: sample_videos/ clips "
             "concatenated (256x256, 25 fps, AAC 44.1 kHz)"
             + (f"; child environment: {' '.join(args.child_env)}" if args.child_env else "")
             + (f"; options: {' '.join(args.option)}" if args.option else "")
             + "; heap: " + ("glibc defaults (--heap-default)" if args.heap_default else
                             "extraction.malloc_mmap_threshold fixed + trim after each extractor "
                             f"(applied: {all(r.get('heap_tuned') for r in results)})") + ".", "",
             "| video | duration s | wall s | x real time | peak RSS MiB | RSS before extraction MiB | result |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        failed = [f"{k}: {v}" for k, v in r["states"].items() if not v.startswith(("done", "cached"))]
        lines.append(f"| {Path(r['video']).name} | {r['duration']:.0f} | {r['wall_s']:.0f} | "
                     f"{r['duration'] / r['wall_s']:.2f} | {r['peak_rss_mib']:.0f} | {r['baseline_rss_mib']:.0f} | "
                     f"{r['status']}{' (' + '; '.join(failed)[:200] + ')' if failed else ''} |")
    verdict = "PASS" if ratio <= args.max_ratio else "FAIL"
    lines += ["", f"Peak RSS ratio longest/shortest: **{ratio:.2f}** (target <= {args.max_ratio}): **{verdict}**", "",
              "Per extractor (seconds; the process's peak RSS right after the extractor finished, so the extractor "
              "that raised the peak is the first whose figure jumps):", "",
              "| extractor | " + " | ".join(f"{Path(r['video']).stem} s | peak after MiB | RSS after MiB"
                                          for r in results) + " |",
              "|---|" + "---|---|---|" * len(results)]
    names = list(dict.fromkeys(n for r in results for n in r["extractors"]))
    for n in names:
        cells = []
        for r in results:
            e = r["extractors"].get(n)
            cells.append(f"{e['seconds']:.1f} | {e['peak_rss_after_mib']:.0f} | {e['rss_after_mib']:.0f}"
                         if e else "- | - | -")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    if any("gpu_peak_mib" in e for r in results for e in r["extractors"].values()):
        lines += ["", "Peak GPU memory per extractor (MiB): " + "; ".join(
            f"{Path(r['video']).stem}: " + ", ".join(f"{n} {e.get('gpu_peak_mib', 0):.0f}"
                                                      for n, e in r["extractors"].items()) for r in results)]
    return "\n".join(lines) + "\n"


def main() -> int:
    """Make the long videos, run one child per length, print and write the report."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--report", help="write the Markdown report here (and .json beside it)")
    ap.add_argument("--minutes", type=float, nargs="+", default=[10.0, 60.0])
    ap.add_argument("--extractors", nargs="+", default=FULL_EXTRACTORS)
    ap.add_argument("--inputs", nargs="+", default=[str(ROOT / "sample_videos")], help="clips to concatenate")
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "sentiflow_bench"),
                    help="folder for the generated long videos (reused when present)")
    ap.add_argument("--max-ratio", type=float, default=1.5)
    ap.add_argument("--sample-seconds", type=float, default=1.0)
    ap.add_argument("--child-env", nargs="*", default=[], metavar="KEY=VALUE",
                    help="environment for the extraction processes, e.g. MALLOC_MMAP_THRESHOLD_=131072")
    ap.add_argument("--heap-default", action="store_true",
                    help="keep glibc's dynamic mmap threshold and do not trim (the behaviour before the fix)")
    ap.add_argument("--option", nargs="*", default=[], metavar="EXTRACTOR.KEY=VALUE",
                    help="extractor options, e.g. transcript.asr_window_seconds=60 (VALUE read as JSON if it parses)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--child-out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.extractors, args.device, args.child_out, args.sample_seconds, args.heap_default,
              args.option)
        return 0
    from machine import machine_info
    from make_long_video import make_long_video

    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            ap.error(f"--device {args.device}: CUDA is not available on this machine")
    try:
        parse_options(args.option)
    except ValueError as exc:
        ap.error(str(exc))
    bad = [e for e in args.child_env if "=" not in e]
    if bad:
        ap.error(f"--child-env takes KEY=VALUE, got {bad}")
    env = dict(e.split("=", 1) for e in args.child_env)
    info = machine_info()
    load = os.getloadavg()
    print("machine:", json.dumps(info), "load:", load, flush=True)
    results = []
    for minutes in sorted(args.minutes):
        video = Path(args.work) / f"long_{minutes:g}min.mp4"
        if not video.exists():
            make_long_video([Path(p) for p in args.inputs], minutes * 60, video)
        r = run_child(video, args.extractors, args.device, args.sample_seconds, env, args.heap_default, args.option)
        print(f"{video.name}: {r['duration']:.0f} s of video in {r['wall_s']:.0f} s, peak RSS "
              f"{r['peak_rss_mib']:.0f} MiB, states {r['states']}", flush=True)
        results.append(r)
    ratio = results[-1]["peak_rss_mib"] / results[0]["peak_rss_mib"]
    text = report(results, args, info, load, ratio)
    print(text)
    if args.report:
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report).write_text(text, encoding="utf-8")
        Path(args.report).with_suffix(".json").write_text(
            json.dumps({"machine": info, "load": load, "results": results}, indent=1), encoding="utf-8")
    return 0 if ratio <= args.max_ratio else 1


if __name__ == "__main__":
    sys.exit(main())
