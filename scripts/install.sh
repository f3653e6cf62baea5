#!/usr/bin/env bash
# Create or update the project's virtual environment in .venv from the lock files (locks/): every package
# at the exact version and hash recorded there, nothing resolved anew. Idempotent: a stamp of the inputs
# is kept, and nothing is reinstalled while the lock files, pyproject.toml and this script are unchanged.
# Regenerate the lock with `make lock` (scripts/lock.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null || PY=python3
VENV=.venv
STAMP="$VENV/.sentiflow-install-stamp"
LOCK=locks/requirements.txt
LOCK_NODEPS=locks/requirements-nodeps.txt
want="$(cat pyproject.toml scripts/install.sh "$LOCK" "$LOCK_NODEPS" | sha256sum | cut -d' ' -f1)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
    exit 0
fi
pyver="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [[ "$pyver" != 3.11 || "$(uname -m)" != x86_64 ]]; then
    echo "[install] the lock is for CPython 3.11 on Linux x86-64; this is Python $pyver on $(uname -m)." >&2
    echo "[install] regenerate it for this machine: SENTIFLOW_LOCK_PYTHON=$pyver bash scripts/lock.sh" >&2
    echo "[install] (or install SentiFlow as a library: pip install -e '.[flows]', which resolves pyproject's ranges)" >&2
    exit 2
fi
echo "[install] creating/updating $VENV from $LOCK (first run: a few minutes, torch is ~4.7 GB)" >&2
[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
# Only the lock decides: no machine-wide pip configuration (extra indexes, find-links, constraints) and
# no dependency resolution (--no-deps: the lock already lists every package, hashes checked).
export PIP_CONFIG_FILE=/dev/null
unset PIP_FIND_LINKS PIP_EXTRA_INDEX_URL PIP_INDEX_URL PIP_CONSTRAINT PIP_REQUIRE_VIRTUALENV || true
INDEX="${SENTIFLOW_INDEX_URL:-https://pypi.org/simple}"
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check -q --index-url "$INDEX")
"${PIP[@]}" --require-hashes --no-deps -r "$LOCK_NODEPS"   # first: it carries pip and setuptools
"${PIP[@]}" --require-hashes --no-deps -r "$LOCK"
# The project itself, editable; its dependencies are all in the lock already.
"${PIP[@]}" --no-deps --no-build-isolation -e .
# The venv then holds exactly the lock: packages an earlier install left that the lock no longer lists
# are removed, and any version that differs from the lock is an error.
"$VENV/bin/python" - "$LOCK" "$LOCK_NODEPS" <<'PY'
import re, subprocess, sys
from importlib.metadata import distributions

def canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()

locked = {}
for path in sys.argv[1:]:
    for line in open(path, encoding="utf-8"):
        m = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", line)
        if m:
            locked[canon(m[1])] = m[2]
installed = {canon(d.metadata["Name"]): d.version for d in distributions()}
stale = sorted(n for n in installed if n not in locked and n != "sentiflow")
if stale:
    print(f"[install] removing {len(stale)} packages the lock does not list: {' '.join(stale)}", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "pip", "uninstall", "-y", "-q", *stale], check=True)
drift = [f"{n} {installed[n]} (lock: {v})" for n, v in sorted(locked.items()) if installed.get(n) != v]
if drift:
    sys.exit("[install] installed versions differ from the lock: " + ", ".join(drift))
PY
echo "$want" > "$STAMP"
echo "[install] done: $(du -sh "$VENV" | cut -f1) in $VENV" >&2
