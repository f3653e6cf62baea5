"""The prepared GPU suite: on a lent GPU machine, install the carried wheels, then run the extraction, training and
scoring benchmarks within a deadline (8 minutes by default), writing every report into one folder.

    python benchmarks/gpu_suite.py --device cuda --wheels wheels/ --out benchmarks/reports/gpu_suite
    python benchmarks/gpu_suite.py --device cpu --quick --out /tmp/suite      # the dry run CI does

Steps, each a benchmark script of this folder run as its own process with what is left of the deadline:

1. `install`: `pip install --no-index --find-links WHEELS WHEELS/*.whl` (the locked `gpu` extra, e.g. the cuBLAS 12
   runtime faster-whisper needs on CUDA-13 images); skipped without `--wheels`, and never run with `--quick`
   (it prints the command instead: a dry run must not change the environment);
2. `extract`: `cli_throughput.py` (the CLI as users run it, fresh cache, isolation on) and its per-item baseline;
3. `train+score`: `train_score_throughput.py` (VAE-AMDT epochs at MOSI size, the 200-epoch wall time, scoring
   samples/s).

`--quick` shrinks every step to seconds (one sample clip, one extractor, tiny synthetic splits) so the suite's
wiring is checked on any machine; its figures mean nothing. `suite.md` (and `suite.json`) list each step's
command, exit status, seconds and report. A figure for a GPU comes only from a run of this script on that GPU.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
DEADLINE_SECONDS = 480.0


def steps(device: str, out: Path, quick: bool) -> list[tuple[str, list[str]]]:
    """(name, command) of each benchmark step for `device`, reports under `out`."""
    py = sys.executable
    if quick:
        extract = ["--inputs", str(ROOT / "sample_videos" / "astro_cool" / "01.mp4"), "--only", "logmel",
                   "--variants", "default"]
        train = ["--rows", "64", "--valid-rows", "16", "--batch-sizes", "32", "--epochs", "1",
                 "--score-rows", "128", "--score-batch-sizes", "64"]
    else:
        extract = ["--variants", "default", "per-item"]
        train = ["--batch-sizes", "32", "256", "--full-run-epochs", "200", "--score-rows", "200000",
                 "--score-batch-sizes", "2048", "16384"]
    return [
        ("extract", [py, str(HERE / "cli_throughput.py"), "--device", device, *extract,
                     "--report", str(out / f"cli_{device}.md")]),
        ("train+score", [py, str(HERE / "train_score_throughput.py"), "--device", device, *train,
                         "--report", str(out / f"train_score_{device}.md")]),
    ]


def install_command(wheels: Path) -> list[str]:
    """pip's command to install every wheel carried in `wheels`, offline."""
    files = sorted(str(p) for p in wheels.glob("*.whl"))
    if not files:
        raise SystemExit(f"--wheels {wheels}: no .whl files there")
    return [sys.executable, "-m", "pip", "install", "--no-index", "--find-links", str(wheels), *files]


def run_step(name: str, cmd: list[str], left: float) -> dict[str, Any]:
    """Run one step with `left` seconds at most; its status, seconds and output tail."""
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=max(1.0, left))
        rc, tail = proc.returncode, (proc.stdout + proc.stderr)[-2000:]
    except subprocess.TimeoutExpired as exc:
        rc = 124
        tail = f"stopped after {left:.0f} s (the suite's deadline)\n" + str(exc.stdout or "")[-1000:]
    return {"step": name, "command": cmd, "rc": rc, "seconds": time.perf_counter() - t0, "tail": tail}


def main() -> int:
    """Run the suite; exit 1 when a step failed."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda", help="cuda | cuda:N | cpu")
    ap.add_argument("--quick", action="store_true", help="seconds-long dry run of every step (no install)")
    ap.add_argument("--wheels", type=Path, help="folder of carried wheels to install first")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "reports" / "gpu_suite")
    ap.add_argument("--deadline", type=float, default=DEADLINE_SECONDS, help="seconds for the whole suite")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results: list[dict[str, Any]] = []
    if args.wheels is not None:
        cmd = install_command(args.wheels)
        if args.quick:
            results.append({"step": "install", "command": cmd, "rc": 0, "seconds": 0.0, "tail": "dry run: not run"})
        else:
            results.append(run_step("install", cmd, args.deadline))
    for name, cmd in steps(args.device, args.out, args.quick):
        left = args.deadline - (time.perf_counter() - start)
        if left <= 0:
            results.append({"step": name, "command": cmd, "rc": 124, "seconds": 0.0, "tail": "no time left"})
            continue
        r = run_step(name, cmd, left)
        results.append(r)
        print(f"{name}: exit {r['rc']} in {r['seconds']:.1f} s", flush=True)
    total = time.perf_counter() - start
    lines = [f"# GPU suite on {args.device}{' (quick dry run: figures mean nothing)' if args.quick else ''}", "",
             f"Command: `python benchmarks/gpu_suite.py {' '.join(sys.argv[1:])}`; {total:.0f} s in all "
             f"(deadline {args.deadline:.0f} s).", "", "| step | exit | seconds | report |", "|---|---|---|---|"]
    for r in results:
        report = next((c for c in r["command"] if c.endswith(".md")), "")
        lines.append(f"| {r['step']} | {r['rc']} | {r['seconds']:.1f} | {Path(report).name if report else '-'} |")
    for r in results:
        if r["rc"] != 0:
            lines += ["", f"## {r['step']} failed", "", "```", r["tail"], "```"]
    (args.out / "suite.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (args.out / "suite.json").write_text(json.dumps({"device": args.device, "quick": args.quick, "seconds": total,
                                                     "steps": results}, indent=1), encoding="utf-8")
    return 0 if all(r["rc"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
