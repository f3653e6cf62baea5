"""`make demo` end to end (flows/demo.py): the Prefect deployments on the bundled clips, kept up with --keep,
a second run served from the cache through the kept server, then --stop. Several minutes on a 2-core machine."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest

from tests.helpers.paths import SAMPLES

pytest.importorskip("prefect")

from flows.demo import main  # noqa: E402
from flows.stack import STATE_FILE, PrefectStack  # noqa: E402

# two demo runs: on a busy 2-core machine the first alone can pass the suite's 600 s default
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500),
              pytest.mark.skipif(not (SAMPLES / "labels.csv").is_file(), reason="sample_videos/ not generated")]


def test_demo_runs_the_deployments_keeps_the_stack_and_serves_a_second_run_from_the_cache(tmp_path, capsys):
    out = tmp_path / "demo"
    record: dict = {"processes": []}
    try:
        assert main(["--out", str(out), "--device", "cpu", "--keep"]) == 0
        first = capsys.readouterr().out
        assert "-> extract/mosi: completed" in first and "10 done, 0 cached, 0 failed" in first, first[-3000:]
        assert "-> train/default: completed" in first and "-> score/folder: completed" in first
        assert "10 of 10 clip(s) scored" in first and "make demo ARGS=--stop" in first
        scores = pd.read_csv(out / "scores.csv")
        assert len(scores) == 10 and (scores["status"] == "scored").all(), scores.to_string()
        assert (out / "runs" / "demo" / "model.safetensors").is_file()
        record = json.loads((out / "prefect" / STATE_FILE).read_text())
        stack = PrefectStack.attach(out / "prefect")
        assert stack is not None and stack.port == record["port"] and stack.healthy()

        assert main(["--out", str(out), "--device", "cpu"]) == 0      # served by the kept server, from the cache
        second = capsys.readouterr().out
        assert "using the Prefect server an earlier --keep left running" in second
        assert "0 done, 10 cached, 0 failed" in second, second[-3000:]
    finally:
        assert main(["--out", str(out), "--stop"]) == 0
    assert "stopped the demo's Prefect server and worker" in capsys.readouterr().out
    assert not (out / "prefect" / STATE_FILE).exists()
    for proc in record["processes"]:
        assert not os.path.exists(f"/proc/{proc['pid']}") or \
            "zombie" in open(f"/proc/{proc['pid']}/status").read().lower(), proc
