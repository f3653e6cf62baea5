#!/usr/bin/env bash
# System tools some tests and the sample-clip generator use: the ffmpeg CLI (rotation fixtures) and
# espeak-ng (speech for sample_videos/), chromium (headless check of `sentiflow report` pages).
# Extraction itself needs none of them: PyAV bundles FFmpeg.
# Best effort: installs with apt when running as root, otherwise says what is missing.
set -uo pipefail
need=()
command -v ffmpeg >/dev/null || need+=(ffmpeg)
command -v espeak-ng >/dev/null || need+=(espeak-ng)
command -v chromium >/dev/null || need+=(chromium)   # headless browser test of the results report
[[ ${#need[@]} -eq 0 ]] && exit 0
if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "[install] apt: ${need[*]}" >&2
    (apt-get install -y -q "${need[@]}" >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "${need[@]}" >/dev/null 2>&1; }) \
        || echo "[install] could not apt-get install ${need[*]}; tests that need them will be skipped" >&2
else
    echo "[install] missing ${need[*]} (not root): tests that need them will be skipped" >&2
fi
exit 0
