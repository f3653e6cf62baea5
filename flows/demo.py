"""`make demo`: the main job on the bundled clips, through SentiFlow's Prefect deployments.

It starts a local Prefect server (SQLite under `<out>/prefect`, telemetry off, a free loopback port), creates the
process work pool, deploys prefect.yaml and starts one process worker; lays sample_videos/ out as a small
CMU-MOSI raw dataset (`<out>/mosi`, its splits in `<out>/mosi/folds.json`); runs `extract/mosi`, `train/default`
and `score/folder` with `prefect deployment run --watch`; prints the scores table, the run directory and the UI
address. It stops everything it started unless `--keep` (then it says how to stop). A second run finds every
feature in the cache. `sentiflow demo` is the same job without Prefect.

    .venv/bin/python -m flows.demo [--out runs/demo] [--keep] [--stop] [--device auto] [--model vae_amdt_small]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

from flows.stack import DeploymentRun, PrefectStack

ROOT = Path(__file__).resolve().parents[1]           # the project: prefect.yaml and the deployments' code
# Video-level splits of the laid-out clips (CMU folds list whole source videos): 7 clips train, 3 valid.
DEMO_FOLDS = {"train": ["astro_front", "astro_mirror"], "valid": ["astro_cool"], "test": []}
RUN_NAME = "demo"
# The demo's training options (train/default's `options`): the small model's tiny ops on 10 clips need no second
# thread, and on a busy 2-core machine torch's threads contending with other processes slow every epoch down.
DEMO_TRAIN_OPTIONS = {"train": {"cpu_threads": 1}}
DEPLOY_STAMP = "deployed-prefect-yaml.sha256"        # prefect.yaml as last deployed to this demo's server


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The demo's command line."""
    p = argparse.ArgumentParser(prog="make demo [ARGS=...]", description=__doc__.split("\n\n")[0])
    p.add_argument("--videos", default=str(ROOT / "sample_videos"), help="labelled clips (MMSA layout, labels.csv)")
    p.add_argument("--out", default=str(ROOT / "runs" / "demo"), help="everything the demo writes")
    p.add_argument("--keep", action="store_true", help="leave the server and worker running to browse the UI")
    p.add_argument("--stop", action="store_true", help="stop what an earlier --keep left running, and exit")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--model", default="vae_amdt_small", help="the model train/default trains")
    p.add_argument("--config", help="SentiFlow YAML config for extraction (default: the built-in one)")
    return p.parse_args(argv)


def demo_environment(out: Path, config: str | None) -> dict[str, str]:
    """The worker's SentiFlow settings: every path under `out`."""
    env = {"SENTIFLOW_HOME": str(out), "SENTIFLOW_CACHE": str(out / "cache"), "SENTIFLOW_RUNS": str(out / "runs"),
           "SENTIFLOW_SCORES": str(out / "scores"), "SENTIFLOW_MOSI_ROOT": str(out / "mosi")}
    if config:
        env["SENTIFLOW_CONFIG"] = str(Path(config).resolve())
    return env


def lay_out_dataset(videos: Path, out: Path) -> Any:
    """The labelled clips as a CMU-MOSI raw dataset under `out/mosi` (with its folds.json); returns its Dataset."""
    from pipeline.corpora import load_dataset
    from pipeline.corpora.cmu import write_cmu_raw
    from pipeline.corpora.folds import assign_splits
    from pipeline.labels import read_labels

    write_cmu_raw(read_labels(videos / "labels.csv", videos, require_media=True), out / "mosi", DEMO_FOLDS)
    return assign_splits(load_dataset("mosi", out / "mosi"))


def deploy_if_changed(stack: PrefectStack) -> bool:
    """Deploy prefect.yaml unless this server already has exactly this prefect.yaml deployed; True if it deployed."""
    digest = hashlib.sha256((ROOT / "prefect.yaml").read_bytes()).hexdigest()
    stamp = stack.home / DEPLOY_STAMP
    if stamp.is_file() and stamp.read_text().strip() == digest and stack.has_deployment("score/folder"):
        return False
    stack.deploy()
    stamp.write_text(digest, encoding="utf-8")
    return True


def start_stack(home: Path, env: dict[str, str], say: Callable[[str], None]) -> tuple[PrefectStack, bool]:
    """This demo's stack: the one an earlier --keep left running, or a new one; True when this call started it."""
    kept = PrefectStack.attach(home, env)
    if kept is not None:
        say(f"using the Prefect server an earlier --keep left running on {kept.api_url}")
        return kept, False
    stack = PrefectStack(home, ROOT, env=env, ui=True, log_level="INFO")
    try:
        t0 = time.monotonic()
        stack.start_server()
        say(f"server up on {stack.api_url} ({time.monotonic() - t0:.0f} s; SQLite in {home}, telemetry off)")
        t0 = time.monotonic()
        if deploy_if_changed(stack):
            say(f"work pool `local` (process) and prefect.yaml's deployments created ({time.monotonic() - t0:.0f} s)")
        else:
            say("prefect.yaml's deployments are already on this server")
        stack.start_worker()
    except BaseException:
        stack.stop()
        raise
    stack.save()
    say(f"process worker started (logs in {home})")
    return stack, True


def run_step(stack: PrefectStack, n: int, deployment: str, params: dict[str, Any],
             say: Callable[[str], None]) -> DeploymentRun:
    """One `prefect deployment run --watch`, its output indented, then one line on how it ended."""
    say(f"\n[{n}/3] prefect deployment run {deployment} --watch --params '{json.dumps(params)}'")
    run = stack.run_deployment(deployment, params, echo=lambda line: say(f"      {line}"))
    end = f"{run.state.lower()} in {run.seconds:.0f} s"
    say(f"      -> {deployment}: {end}" + (f": {run.message}" if run.message else ""))
    if not run.ok and run.flow_run_id:
        say(f"      all its logs: PREFECT_API_URL={stack.api_url} prefect flow-run logs {run.flow_run_id}")
    return run


def run_demo(args: argparse.Namespace, say: Callable[[str], None] = print) -> int:
    """The demo's steps; 0 when every deployment run completed."""
    out = Path(args.out).resolve()
    home = out / "prefect"
    if args.stop:
        kept = PrefectStack.attach(home)
        if kept is None:
            say(f"nothing to stop: no demo stack is running under {home}")
            return 0
        kept.stop()
        say(f"stopped the demo's Prefect server and worker ({home})")
        return 0
    t_start = time.monotonic()
    ds = lay_out_dataset(Path(args.videos), out)
    say(f"dataset: {len(ds.media)} clips of sample_videos/ in the CMU-MOSI raw layout at {ds.root} "
        f"(splits from {ds.root / 'folds.json'}: {ds.summary()['rows']})")
    stack, started = start_stack(home, demo_environment(out, args.config), say)
    run_dir = out / "runs" / RUN_NAME
    scores = out / "scores.csv"
    steps = [("extract/mosi", {"device": args.device}),
             ("train/default", {"model": args.model, "run_name": RUN_NAME, "device": args.device,
                                "options": DEMO_TRAIN_OPTIONS}),
             ("score/folder", {"folder": str(ds.root / "Raw" / "Video" / "Segmented"), "run_dir": str(run_dir),
                               "out": str(scores), "device": args.device})]
    code = 0
    try:
        for n, (deployment, params) in enumerate(steps, start=1):
            if not run_step(stack, n, deployment, params, say).ok:
                code = 1
                break
        if code == 0:
            import pandas as pd

            from flows.cli.demo import scores_table

            say("\n" + scores_table(pd.read_csv(scores), ds.table))
            say(f"\nscores: {scores}\nmodel run: {run_dir} (metrics.json, loss_curve.png, train.log)")
            say(f"whole demo: {time.monotonic() - t_start:.0f} s")
    finally:
        if args.keep or not started:
            say(f"\nPrefect UI: {stack.ui_url}/runs (flow runs), {stack.ui_url}/deployments")
            say("the server and worker keep running; stop them with: make demo ARGS=--stop "
                "(or .venv/bin/python -m flows.demo --stop)")
        else:
            stack.stop()
            say(f"\nPrefect UI was at {stack.ui_url}/runs; server and worker stopped "
                "(`make demo ARGS=--keep` leaves them up to browse it)")
    return code


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m flows.demo`; a SentiFlowError is one line on stderr and status 1."""
    import signal

    from pipeline.errors import SentiFlowError

    # a SIGTERM (e.g. `timeout`) unwinds like Ctrl-C, so the stack this run started is stopped on the way out
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        return run_demo(parse_args(argv), say=lambda text: print(text, flush=True))
    except SentiFlowError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
