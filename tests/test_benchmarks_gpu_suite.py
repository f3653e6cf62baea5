"""The prepared GPU suite (benchmarks/gpu_suite.py) dry-runs on the CPU: every step runs and writes its report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.helpers.paths import ROOT


def test_gpu_suite_quick_dry_run_on_cpu(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "nvidia_cublas_cu12-12.0.0-py3-none-manylinux_2_17_x86_64.whl").write_bytes(b"not installed")
    out = tmp_path / "suite"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "gpu_suite.py"), "--device", "cpu", "--quick",
           "--wheels", str(wheels), "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    suite = json.loads((out / "suite.json").read_text())
    assert [s["step"] for s in suite["steps"]] == ["install", "extract", "train+score"]
    assert all(s["rc"] == 0 for s in suite["steps"]) and suite["quick"] and suite["seconds"] < 480
    assert suite["steps"][0]["tail"] == "dry run: not run" and "--no-index" in suite["steps"][0]["command"]
    cli = json.loads((out / "cli_cpu.json").read_text())
    run = cli["runs"][0]
    assert run["variant"] == "default" and run["done"] == 1 and run["media_s"] > 0 and run["stages"]["logmel"] > 0
    assert (out / "train_score_cpu.md").read_text().strip()
    assert "| extract | 0 |" in (out / "suite.md").read_text()
