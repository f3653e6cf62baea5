#!/usr/bin/env bash
# The main job: install if needed, then run the whole pipeline on the bundled sample_videos/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/sentiflow demo sample_videos --out runs/demo "$@"
