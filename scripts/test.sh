#!/usr/bin/env bash
# The test suite: install if needed, then run every test that needs no GPU and is not marked slow.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
bash scripts/install_system.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1
# First, in seconds: every native library loads and works (one line per broken one, naming its version).
.venv/bin/python -m pipeline.smoke
exec .venv/bin/python -m pytest -m "not slow and not gpu" "$@"
