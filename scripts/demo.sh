#!/usr/bin/env bash
# The main job: install if needed, then run SentiFlow's Prefect deployments on the bundled sample_videos/
# (a local server, work pool, deployments and worker under runs/demo/prefect; see flows/demo.py).
#   make demo                 extract/mosi -> train/default -> score/folder, then stop everything it started
#   make demo ARGS=--keep     ... and leave the server and worker up to browse the Prefect UI
#   make demo ARGS=--stop     stop what --keep left running
# `sentiflow demo` runs the same job without Prefect.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"   # this checkout's code, in the worker's flow runs too
exec .venv/bin/python -m flows.demo "$@"
