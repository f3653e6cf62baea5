"""The import smoke check names a broken native library in one line, and passes on this environment."""
from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from pipeline.smoke import CHECKS
from tests.helpers.paths import ROOT


def _smoke(*args: str, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), str(ROOT)])
    return subprocess.run([sys.executable, "-m", "pipeline.smoke", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_a_broken_native_library_fails_with_one_line_naming_it(tmp_path):
    # the failure seen with torchaudio 2.11.1 beside torch 2.11.0, reproduced by a module that shadows it
    fake = tmp_path / "torchaudio"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        "raise OSError('/venv/torchaudio/lib/libtorchaudio.so: undefined symbol: "
        "torch_exception_get_what_without_backtrace')\n")
    done = _smoke("--only", "torch", "torchaudio", "h5py", pythonpath=tmp_path)
    assert done.returncode == 1
    fail_lines = [line for line in done.stderr.splitlines() if line.startswith("FAIL")]
    version = metadata.version("torchaudio")
    assert fail_lines == [
        f"FAIL torchaudio (torchaudio {version}): OSError: /venv/torchaudio/lib/libtorchaudio.so: "
        "undefined symbol: torch_exception_get_what_without_backtrace"]
    assert "[smoke] 1 of 3 native libraries failed" in done.stderr


def test_a_missing_package_is_named_as_not_installed(tmp_path):
    fake = tmp_path / "h5py"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'h5py._conv'\")\n")
    done = _smoke("--only", "h5py", pythonpath=tmp_path)
    assert done.returncode == 1
    assert "FAIL h5py (h5py " in done.stderr and "No module named 'h5py._conv'" in done.stderr


def test_every_native_library_of_this_environment_works():
    done = _smoke("--verbose")
    assert done.returncode == 0, done.stderr
    ok_lines = [line for line in done.stdout.splitlines() if line.startswith("ok   ")]
    assert len(ok_lines) == len(CHECKS) == 15
