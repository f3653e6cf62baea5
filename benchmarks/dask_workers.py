"""The extract flow on a Dask LocalCluster of 1 vs 2 (or more) worker processes, and a MOSEI sizing estimate.

    python benchmarks/dask_workers.py --report benchmarks/reports/dask_workers_cpu.md

For each worker count N, on a fresh cache: the `extract` Prefect flow (flows/extract.py, against a temporary
Prefect server) over the inputs with `orchestration.task_runner: {kind: dask, n_workers: N}` and
`device_slots_cpu: N` (each CPU slot gets cores / N torch threads), the default isolated extraction process per
batch, wall time from the flow call to its return (cluster start and worker imports included: what a user
waits for). The report gives x real time (media seconds per wall second) per N and the ratio to N = 1.

Sizing: hours to extract CMU-MOSEI (about 65 hours of video, Zadeh et al. 2018) on N GPUs, from the measured
per-GPU throughput in benchmarks/reports/pipeline_h100_partial.md (the only GPU measurement so far; the script
refuses to run if that report no longer holds the figures it uses). Assumes GPUs scale linearly, as they can
in SentiFlow: one device slot per GPU, no shared state but the cache, whose claims keep two GPUs off one entry.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import machine_info  # noqa: E402

DEFAULT_EXTRACTORS = ["logmel", "acoustic", "tonal", "face", "fer", "transcript", "text", "aligned"]
MOSEI_HOURS = 65.0               # CMU-MOSEI: "more than 65 hours of annotated video" (Zadeh et al., ACL 2018)
H100_REPORT = ROOT / "benchmarks" / "reports" / "pipeline_h100_partial.md"
# From H100_REPORT, table "Extraction (30 files, 184.1 s of media ...)": the row "SentiFlow with `isolate=True`"
# is what the flows run (an isolated extraction process per batch).
H100_MEDIA_SECONDS = 184.1
H100_ISOLATED_WALL_SECONDS = 60.9
H100_IN_PROCESS_WALL_SECONDS = 47.9


def h100_throughput() -> dict[str, float]:
    """The per-GPU figures used for sizing, checked against the report they come from."""
    text = H100_REPORT.read_text(encoding="utf-8")
    for needle in (f"{H100_MEDIA_SECONDS} s of media", f"| SentiFlow with `isolate=True` | {H100_ISOLATED_WALL_SECONDS} s",
                   f"| SentiFlow batched, in-process | {H100_IN_PROCESS_WALL_SECONDS} s"):
        if needle not in text:
            raise SystemExit(f"{H100_REPORT} no longer says {needle!r}: update the constants in {__file__}")
    return {"isolated": H100_MEDIA_SECONDS / H100_ISOLATED_WALL_SECONDS,
            "in_process": H100_MEDIA_SECONDS / H100_IN_PROCESS_WALL_SECONDS}


def media_seconds(files: list[Path]) -> float:
    from pipeline.media import probe

    return sum(probe(f).duration for f in files)


def run_flow(videos: Path, cache: Path, workers: int, extractors: list[str], files_per_task: int) -> dict:
    from flows.extract import extract

    t0 = time.perf_counter()
    load0 = os.getloadavg()[0]
    counts = extract(dataset="folder", root=str(videos), cache=str(cache), device="cpu", only=extractors,
                     orchestration={"files_per_task": files_per_task, "device_slots_cpu": workers,
                                    "task_runner": {"kind": "dask", "n_workers": workers}})
    return {"workers": workers, "seconds": time.perf_counter() - t0, "counts": counts,
            "load_before": load0, "load_after": os.getloadavg()[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--inputs", nargs="+", default=[str(ROOT.parent / "shared" / "clips")])
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--extractors", nargs="+", default=DEFAULT_EXTRACTORS)
    ap.add_argument("--files-per-task", type=int, default=2)
    ap.add_argument("--gpus", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--report", type=Path)
    args = ap.parse_args()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

    from prefect.testing.utilities import prefect_test_harness

    from pipeline.media import discover_media

    gpu = h100_throughput()
    files, _ = discover_media([Path(p) for p in args.inputs])
    files = files[: args.limit]
    if not files:
        raise SystemExit(f"no media files under {' '.join(args.inputs)}")
    work = Path(tempfile.mkdtemp(prefix="sentiflow-dask-bench-"))
    videos = work / "videos"
    videos.mkdir()
    for i, f in enumerate(files):
        shutil.copyfile(f, videos / f"{i:02d}-{f.name}")
    media = media_seconds(sorted(videos.iterdir()))
    info = machine_info()
    print(f"machine: {info}; {len(files)} files, {media:.1f} s of media; load {os.getloadavg()}", flush=True)
    runs = []
    try:
        with prefect_test_harness(server_startup_timeout=300):
            for n in args.workers:
                r = run_flow(videos, work / f"cache-{n}", n, args.extractors, args.files_per_task)
                r["x_real_time"] = media / r["seconds"]
                runs.append(r)
                print(json.dumps(r), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = runs[0]["seconds"]
    sizing = [{"gpus": g, "hours": MOSEI_HOURS / (gpu["isolated"] * g),
               "hours_in_process": MOSEI_HOURS / (gpu["in_process"] * g)} for g in args.gpus]
    result = {"machine": info, "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
              "files": len(files), "media_seconds": media, "extractors": args.extractors,
              "files_per_task": args.files_per_task, "runs": runs,
              "ratio": {r["workers"]: base / r["seconds"] for r in runs},
              "per_gpu_x_real_time": gpu, "mosei_hours": MOSEI_HOURS, "sizing": sizing}
    print(json.dumps(result["ratio"]))
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.with_suffix(".json").write_text(json.dumps(result, indent=1), encoding="utf-8")
        args.report.write_text(markdown(result), encoding="utf-8")


def markdown(r: dict) -> str:
    m = r["machine"]
    lines = [f"# The extract flow on a Dask LocalCluster: {' vs '.join(str(x['workers']) for x in r['runs'])} "
             "worker processes", "",
             f"`{r['command']}` ({time.strftime('%Y-%m-%d', time.gmtime())})", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory']}, GPU {m['gpu']}, Python {m['python']}, "
             f"torch {m['torch']}. Other jobs shared the machine: the load average (1 min) before and after each "
             "run is in the table; above the core count, other processes took part of the CPU.", "",
             f"{r['files']} files, {r['media_seconds']:.1f} s of media, extractors {', '.join(r['extractors'])}, "
             f"{r['files_per_task']} files per task, isolated extraction process per batch, fresh cache per run; "
             "wall time from the flow call to its return (Dask cluster start and worker imports included).", "",
             "| Dask workers (= CPU slots) | wall s | x real time | speed-up vs 1 | done / cached / failed | load before / after |",
             "|---:|---:|---:|---:|---|---|"]
    for x in r["runs"]:
        c = x["counts"]
        lines.append(f"| {x['workers']} | {x['seconds']:.1f} | {x['x_real_time']:.2f} | "
                     f"{r['ratio'][x['workers']]:.2f} | {c['done']} / {c['cached']} / {c['failed']} | "
                     f"{x['load_before']:.1f} / {x['load_after']:.1f} |")
    g = r["per_gpu_x_real_time"]
    lines += ["", "## Sizing: CMU-MOSEI on N GPUs (an estimate, not a measurement)", "",
              f"CMU-MOSEI: about {r['mosei_hours']:.0f} hours of video. Per-GPU throughput measured on one H100 "
              f"(`benchmarks/reports/pipeline_h100_partial.md`, 30 files, {H100_MEDIA_SECONDS} s of media): "
              f"{g['isolated']:.2f}x real time with the isolated extraction process the flows use "
              f"({H100_ISOLATED_WALL_SECONDS} s), {g['in_process']:.2f}x in-process ({H100_IN_PROCESS_WALL_SECONDS} s). "
              "GPUs assumed to scale linearly (one device slot each, no shared state but the cache).", "",
              "| GPUs | hours (isolated, as the flows run) | hours (in-process) |", "|---:|---:|---:|"]
    for s in r["sizing"]:
        lines.append(f"| {s['gpus']} | {s['hours']:.1f} | {s['hours_in_process']:.1f} |")
    lines += ["", "Caveats, from that report: `tonal`, `text` and forced alignment failed on the H100 image (so "
              "their time is missing: the real figure is higher), face detection was v1 (every frame; v2 is 3.1x "
              "faster on the CPU), speech recognition ran on the CPU, and the host had 16 cores; a GPU host "
              "with fewer cores per GPU will be slower, since decoding and speech recognition use the CPU.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
