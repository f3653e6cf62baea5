#!/usr/bin/env bash
# A PNG of a Prefect UI page, taken with headless Chromium (Debian's `chromium`, scripts/install_system.sh).
#
#   scripts/prefect_ui_screenshot.sh URL OUT.png [WIDTHxHEIGHT]
#   e.g. make demo ARGS=--keep, then: scripts/prefect_ui_screenshot.sh http://127.0.0.1:PORT/runs docs/prefect-flow-runs.png
#
# The background-networking flags matter on a closed network (Chromium's own connections are refused there);
# a fresh profile each time; the virtual time budget lets the UI's scripts load the runs before the capture.
set -euo pipefail
url="${1:?usage: $0 URL OUT.png [WIDTHxHEIGHT]}"
out="${2:?usage: $0 URL OUT.png [WIDTHxHEIGHT]}"
size="${3:-1440x1100}"
browser="$(command -v chromium || command -v chromium-browser || true)"
[[ -n "$browser" ]] || { echo "no chromium on PATH (bash scripts/install_system.sh installs it as root)" >&2; exit 2; }
profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
mkdir -p "$(dirname "$out")"
"$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
    --disable-component-update --disable-sync --hide-scrollbars --user-data-dir="$profile" \
    --window-size="${size/x/,}" --virtual-time-budget="${SCREENSHOT_WAIT_MS:-60000}" \
    --screenshot="$(realpath -m "$out")" "$url" >/dev/null 2>&1
[[ -s "$out" ]] || { echo "chromium wrote no screenshot to $out" >&2; exit 1; }
echo "$out"
