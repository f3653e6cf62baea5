"""README.md's "A real deployment, step by step" block, read from the README and run by bash as written, against a
temporary server: only the port (4200 -> a free one), the data folder (/data -> a temporary one) and the install
line (the locked .venv is the install) differ. Everything it started is stopped at the end.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.paths import ROOT, SAMPLES

pytest.importorskip("prefect")

from flows.stack import FAST_POLLING, free_port, stop_group  # noqa: E402

README = ROOT / "README.md"
HEADING = "### A real deployment, step by step"
BLOCK_TIMEOUT_S = 900
# One clip per source video: one video per split, so the README's `evaluate --param split=test` has a row.
CLIPS = {"astro_front": "01", "astro_mirror": "01", "astro_cool": "02"}
FOLDS = {"train": ["astro_front"], "valid": ["astro_mirror"], "test": ["astro_cool"]}

pytestmark = pytest.mark.skipif(not (SAMPLES / "labels.csv").is_file(), reason="sample_videos/ not generated")


def readme_block() -> str:
    """The bash block under the step-by-step heading of README.md."""
    text = README.read_text(encoding="utf-8")
    assert HEADING in text, f"README.md lost its heading {HEADING!r}"
    match = re.search(r"```bash\n(.*?)```", text[text.index(HEADING):], re.S)
    assert match, f"no ```bash block under {HEADING!r}"
    return match.group(1)


def runnable(block: str, port: int, data: Path) -> str:
    """The block with this test's port and data folder, without the install line."""
    lines = block.splitlines()
    install = [ln for ln in lines if ln.startswith("pip install")]
    assert len(install) == 1, "the block's first step is one `pip install` line"
    script = "\n".join(ln for ln in lines if not ln.startswith("pip install"))
    assert script.count("4200") >= 2 and "/data/" in script, "the block uses port 4200 and /data/ paths"
    return script.replace("4200", str(port)).replace("/data/", f"{data}/")


def lay_out_data(data: Path) -> None:
    """What the block's paths point at: a tiny CMU-MOSI raw dataset (folds.json at its root), new and other videos."""
    import shutil

    from pipeline.corpora.cmu import write_cmu_raw
    from pipeline.labels import LabelTable, read_labels

    table = read_labels(SAMPLES / "labels.csv", SAMPLES)
    picked = LabelTable([r for r in table if CLIPS.get(r.video_id) == r.clip_id], table.source)
    write_cmu_raw(picked, data / "CMU_MOSI", FOLDS)
    for folder in ("new-videos", "other-videos", "incoming"):
        (data / folder).mkdir(parents=True)
    shutil.copyfile(SAMPLES / "astro_cool" / "02.mp4", data / "new-videos" / "cool-02.mp4")
    shutil.copyfile(SAMPLES / "astro_front" / "01.mp4", data / "other-videos" / "front-01.mp4")


@pytest.mark.timeout(BLOCK_TIMEOUT_S + 120)
def test_readme_deployment_steps_run_as_written(tmp_path):
    data = tmp_path / "data"
    lay_out_data(data)
    # the block as written, on the lightest features: log-mel only, in the flow-run process (no extraction child)
    (tmp_path / "sentiflow.yaml").write_text("extraction:\n  extractors: [logmel]\n  isolate: false\n",
                                             encoding="utf-8")
    port = free_port()
    script = runnable(readme_block(), port, data)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "SENTIFLOW_"))}
    env.update({
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",   # the install
        "PYTHONPATH": str(ROOT), "PREFECT_HOME": str(tmp_path / "prefect-home"), "COLUMNS": "200",
        "SENTIFLOW_HOME": str(tmp_path / "sentiflow"), "SENTIFLOW_CONFIG": str(tmp_path / "sentiflow.yaml"),
        **FAST_POLLING,
    })
    log = tmp_path / "block.log"
    with open(log, "wb") as out:    # a file, not a pipe: the server and worker it starts outlive bash
        proc = subprocess.Popen(["bash", "-euo", "pipefail", "-c", script], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        code = proc.wait(BLOCK_TIMEOUT_S)
    finally:
        stop_group(proc.pid, proc.poll)
    output = log.read_text(errors="replace")
    assert code == 0, output[-4000:]
    assert output.count("Flow run finished successfully in 'Completed'.") == 5, output[-4000:]
    assert "3 done, 0 cached, 0 failed" in output and "1 of 1 clip(s) scored" in output, output[-4000:]
    assert "0 done, 1 cached, 0 failed" in output, output[-4000:]   # extract/folder: a clip the cache holds
    for key in ("extract-summary", "train-summary", "scores", "evaluate-metrics", "results-report"):
        assert key in output, f"`prefect artifact ls --all` lists no {key}"
    runs = list((tmp_path / "sentiflow" / "runs").glob("mosi-vae_amdt-*"))
    assert len(runs) == 1 and (runs[0] / "model.safetensors").is_file(), runs
    metrics = json.loads((runs[0] / "eval" / "mosi-test" / "metrics.json").read_text())
    assert metrics["task"] == "regression" and metrics["mae"] >= 0, metrics
    scores = list((tmp_path / "sentiflow" / "scores").glob("scores-*.csv"))
    assert len(scores) == 1 and "cool-02" in scores[0].read_text(), scores
