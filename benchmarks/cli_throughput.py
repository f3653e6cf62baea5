"""Extraction speed as users get it: `sentiflow extract` in a new process, on a fresh cache, default settings.

    python benchmarks/cli_throughput.py --report benchmarks/reports/cli_cpu.md
    python benchmarks/cli_throughput.py --inputs sample_videos /work/shared/clips --report ...

Inputs: sample_videos/ and ../shared/clips/ when present (or `--inputs`). Every run is the real command
(`python -m flows.cli extract ... --summary-json`, the `sentiflow` console script's code) with a fresh cache, so
each pays for starting Python, importing torch, the isolated child (isolation on, the default) and loading every
model. Variants, in the same run and on the same inputs:

* `default`: the defaults as shipped (pipelined runner, batches of 8, isolation on);
* `no-pipeline`: the same without the pipelined feed (`extraction.pipeline: false`: batches in input order,
  probed in turn);
* `per-item`: one clip per batch, no pipelining (what a per-item loop over the same extractors does).

The wall time is measured around the process (start-up included); x real time = seconds of media / wall seconds.
Before the timed runs one untimed run on the first file reads the models into the page cache (without it the first
variant measured paid 4-7 s more than the same variant run later, 2-core AMD EPYC); `--rounds N` runs every variant
N times, each round in a rotated order, and reports each variant's median wall and in-run seconds (the stage
table shows the run nearest the median).
Each run's per-stage seconds come from its `--summary-json` (`stages`). The machine and its load average at the
start and end of every run are written beside the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import machine_info  # noqa: E402

VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "no-pipeline": {"extraction": {"pipeline": False}},
    "decode-twice": {"extraction": {"decode_once": False}},     # fer decodes the frames again (as before #25)
    "per-item": {"extraction": {"pipeline": False, "batch_size": 1}},
}


def load_average() -> str:
    """The 1/5/15-minute load averages, as text."""
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def run_cli(inputs: list[str], settings: dict[str, Any], work: Path, name: str, device: str,
            extra_args: list[str]) -> dict[str, Any]:
    """One `sentiflow extract` in a new process on a fresh cache: wall seconds, the summary's figures, the load."""
    cache, summary = work / f"cache-{name}", work / f"summary-{name}.json"
    cmd = [sys.executable, "-m", "flows.cli", "extract", *inputs, "--cache", str(cache), "--no-progress",
           "--summary-json", str(summary), *extra_args]
    if device != "auto":
        cmd += ["--device", device]
    if settings:
        config = work / f"config-{name}.yaml"
        config.write_text(json.dumps(settings), encoding="utf-8")    # JSON is YAML
        cmd += ["--config", str(config)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    load_start = load_average()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 1) or not summary.is_file():
        raise SystemExit(f"{name}: sentiflow extract exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    s = json.loads(summary.read_text(encoding="utf-8"))
    states: dict[str, dict[str, int]] = {}
    for item in s["items"]:
        for ex, state in item["extractors"].items():
            key = state.split(":", 1)[0]
            states.setdefault(ex, {}).setdefault(key, 0)
            states[ex][key] += 1
    return {"variant": name, "settings": settings, "command": cmd, "wall_s": wall, "run_s": s["seconds"],
            "media_s": s["media_seconds"], "files": len(s["items"]),
            "done": sum(i["status"] == "done" for i in s["items"]),
            "failed": sum(i["status"] == "failed" for i in s["items"]),
            "stages": s["stages"], "extractor_states": states, "load_start": load_start, "load_end": load_average()}


def default_inputs() -> list[str]:
    """sample_videos/ and ../shared/clips/ when present."""
    found = [ROOT / "sample_videos", ROOT.parent / "shared" / "clips"]
    return [str(p) for p in found if p.is_dir()]


def first_media(inputs: list[str]) -> str:
    """The first media file of the inputs (a file, or the first one found in a folder)."""
    for raw in inputs:
        p = Path(raw)
        if p.is_file():
            return raw
        for f in sorted(p.rglob("*")):
            if f.suffix.lower() in (".mp4", ".mkv", ".mov", ".avi", ".webm", ".wav"):
                return str(f)
    raise SystemExit(f"no media file in {inputs}")


def write_report(path: Path, results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    """Markdown report (and JSON beside it)."""
    info = machine_info()
    by = {r["variant"]: r for r in results}
    lines = [
        "# `sentiflow extract` as users run it (new process, fresh cache, default settings, isolation on)", "",
        f"Command: `python benchmarks/cli_throughput.py {' '.join(sys.argv[1:])}`", "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()), "",
        f"Inputs: {', '.join(args.inputs)}: {results[0]['files']} files, {results[0]['media_s']:.1f} s of media. "
        f"Load average (1/5/15 min) at the start / end of each run below; the machine has {os.cpu_count()} cores, "
        "so a load above that means other jobs shared them.", "",
        f"Rounds: {args.rounds} (each variant's median wall and in-run seconds below, the stage table from its run "
        "nearest the median; every run's wall seconds in the last column), "
        f"after {'no warm-up' if args.no_warm_up else 'an untimed warm-up run on the first file'}.", "",
        "| run | settings | wall s | x real time | in-run s | done | failed | load start | load end | all runs s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(f"| {r['variant']} | `{json.dumps(r['settings']) if r['settings'] else 'defaults'}` | "
                     f"{r['wall_s']:.1f} | {r['media_s'] / r['wall_s']:.2f} | {r['run_s']:.1f} | {r['done']} | "
                     f"{r['failed']} | {r['load_start']} | {r['load_end']} | "
                     f"{', '.join(f'{w:.1f}' for w in r.get('all_wall_s', [r['wall_s']]))} |")
    if "default" in by and "per-item" in by:
        lines += ["", f"**Default over the per-item baseline in this run: "
                      f"{by['per-item']['wall_s'] / by['default']['wall_s']:.2f}x** (wall time ratio)."]
    if "default" in by and "no-pipeline" in by:
        lines += [f"Pipelined feed on vs off (batches of 8 both): "
                  f"{by['no-pipeline']['wall_s'] / by['default']['wall_s']:.2f}x."]
    stage_names = sorted({k for r in results for k in r["stages"]}, key=lambda k: -results[0]["stages"].get(k, 0))
    lines += ["", "## Seconds per stage (from each run's `--summary-json`)", "",
              "Extractor seconds include their own decoding (also listed as decode:video / decode:audio, measured "
              "in the decoding thread, so the stages can sum to more than the wall time).", "",
              "| stage | " + " | ".join(r["variant"] for r in results) + " |",
              "|---|" + "---|" * len(results)]
    for k in stage_names:
        lines.append(f"| {k} | " + " | ".join(f"{r['stages'].get(k, 0.0):.2f}" for r in results) + " |")
    lines += ["", "Extractor states (default run): `" + json.dumps(results[0]["extractor_states"]) + "`", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")
    path.with_suffix(".json").write_text(json.dumps({"machine": info, "inputs": args.inputs, "runs": results},
                                                    indent=1), encoding="utf-8")


def main() -> int:
    """Time each variant of the CLI on the inputs and write the report."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--inputs", nargs="+", default=default_inputs())
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--device", default="auto", help="auto (the default users get) | cpu | cuda")
    ap.add_argument("--only", nargs="+", help="extractors (default: all the default extractors)")
    ap.add_argument("--report", help="write a Markdown report here (and .json beside it)")
    ap.add_argument("--rounds", type=int, default=1, help="runs of every variant (rotated order; median reported)")
    ap.add_argument("--no-warm-up", action="store_true", help="skip the untimed page-cache run on the first file")
    args = ap.parse_args()
    if not args.inputs:
        raise SystemExit("no inputs: give --inputs (sample_videos/ or ../shared/clips/ not found)")
    if args.rounds < 1:
        raise SystemExit("--rounds must be >= 1")
    extra = ["--only", *args.only] if args.only else []
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in args.variants}
    with tempfile.TemporaryDirectory(prefix="sentiflow-cli-bench-") as tmp:
        if not args.no_warm_up:
            first = first_media(args.inputs)
            run_cli([first], {}, Path(tmp), "warm-up", args.device, extra)
            print(f"warm-up on {first} done", flush=True)
        for rnd in range(args.rounds):
            shift = rnd % len(args.variants)
            for name in args.variants[shift:] + args.variants[:shift]:
                r = run_cli(args.inputs, VARIANTS[name], Path(tmp), f"{name}-{rnd}", args.device, extra)
                r["variant"] = name
                print(f"{name} (round {rnd + 1}): {r['wall_s']:.1f} s wall, {r['media_s'] / r['wall_s']:.2f}x real "
                      f"time, {r['done']} done, {r['failed']} failed (load {r['load_start']} -> {r['load_end']})",
                      flush=True)
                runs[name].append(r)
    results = []
    for name in args.variants:
        walls = [r["wall_s"] for r in runs[name]]
        mid = statistics.median(walls)
        nearest = dict(min(runs[name], key=lambda r: abs(r["wall_s"] - mid)))   # its stages and states are shown
        nearest.update(wall_s=mid, run_s=statistics.median(r["run_s"] for r in runs[name]), all_wall_s=walls)
        results.append(nearest)
    if args.report:
        write_report(Path(args.report), results, args)
        print(f"report: {args.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
