"""The results report of a real tiny run, opened in headless Chromium with no network: every image loads.

A 2-epoch run of the default model on the sample cache, its evaluation on every labelled clip, and a
hand-built experiment directory holding a copy of the run as its member (images inside <details>).
Chromium comes from scripts/install_system.sh (Debian `chromium`); the test skips only when it is absent.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None)

# Appended to a copy of report.html only (the report itself has no script): reports what the browser loaded.
CHECK_SCRIPT = """<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var out = {images: imgs.length,
             broken: imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); }).map(function (i) {
               return i.alt; }),
             widths: imgs.map(function (i) { return i.naturalWidth; }),
             cells: Array.prototype.map.call(document.querySelectorAll("td"), function (t) { return t.textContent; }),
             details: document.querySelectorAll("details").length};
  var pre = document.createElement("pre");
  pre.id = "report-check";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def chromium_dom(page: Path, profile: Path) -> str:
    """The DOM of a local page after load, from headless Chromium with every network path closed."""
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--no-default-browser-check",
           "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>", f"--user-data-dir={profile}",
           "--virtual-time-budget=10000", "--dump-dom", page.as_uri()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.fixture(scope="module")
def tiny_run(sample_cache: tuple[Path, Path, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A 2-epoch run of the default model on the sample cache, evaluated on all ten labelled clips."""
    from models.evaluation import evaluate_run
    from models.training import train_model

    cache, media_root, labels = sample_cache
    root = tmp_path_factory.mktemp("report_run")
    run = train_model(cache, labels, out_dir=root / "run", media_root=media_root, device="cpu",
                      options={"train": {"epochs": 2}})
    eval_dir = root / "run" / "eval" / "all"
    metrics = evaluate_run(run, labels, cache, media_root=media_root, out_dir=eval_dir, device="cpu",
                           extract_missing=False)
    exp = root / "ablation"
    shutil.copytree(run, exp / "runs" / "TAV" / "seed1", ignore=shutil.ignore_patterns("eval"))
    member = json.loads((run / "metrics.json").read_text())["metrics"]["test"]
    (exp / "experiment.json").write_text(json.dumps({
        "format": 1, "kind": "ablation", "model": "vae_amdt_small", "task": {"kind": "regression"},
        "settings": {"seeds": [1]}, "created": "2026-11-23T00:00:00Z", "table_columns": ["modalities"],
        "runs": [{"run_dir": "runs/TAV/seed1", "cell": {"modalities": "TAV"}, "seed": 1, "eval_split": "test",
                  "metrics": member}]}), encoding="utf-8")
    return {"run": run, "eval": eval_dir, "eval_metrics": metrics, "experiment": exp, "root": root}


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/install_system.sh installs the "
                                             "Debian package when run as root)")
def test_report_loads_offline_in_chromium_with_every_image(tiny_run: dict, tmp_path: Path) -> None:
    from models.report.build import build_report

    run, eval_dir, exp = tiny_run["run"], tiny_run["eval"], tiny_run["experiment"]
    # the evaluation of the default model (VAE-AMDT's triple attention) carries the modality-attention histogram
    assert (eval_dir / "modality_attention.png").is_file() and (eval_dir / "insights.json").is_file()
    assert "modality_attention" in tiny_run["eval_metrics"]["plots"]
    files = build_report([run, eval_dir, exp], tmp_path / "report", title="tiny <run> & eval")

    pngs = [*run.glob("*.png"), *run.glob("plots/*/*.png"), *eval_dir.glob("*.png"),
            *(exp / "runs" / "TAV" / "seed1").glob("*.png"), *(exp / "runs" / "TAV" / "seed1").glob("plots/*/*.png")]
    assert len(pngs) >= 5 and len(files.figures) == len(pngs)
    page = files.html.read_text(encoding="utf-8")
    assert "<script" not in page.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page) and "url(" not in page

    checked = tmp_path / "check.html"
    checked.write_text(page.replace("</body>", CHECK_SCRIPT + "</body>"), encoding="utf-8")
    dom = chromium_dom(checked, tmp_path / "profile")
    found = re.search(r'<pre id="report-check">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    result = json.loads(html.unescape(found.group(1)))
    assert result["broken"] == [] and result["images"] == len(pngs)
    assert all(w >= 300 for w in result["widths"])                      # real plots, not 1-px placeholders
    assert result["details"] == 1
    cells = set(result["cells"])
    test_metrics = json.loads((run / "metrics.json").read_text())["metrics"]["test"]
    for key in ("mae", "corr", "acc2_non0", "f1_non0", "acc7"):
        for value in (test_metrics[key], tiny_run["eval_metrics"][key]):
            assert f"{value:.4f}" in cells                                   # per-run tables: raw values
            if key not in ("mae", "corr"):
                assert f"{100 * value:.2f}" in cells                         # summary: percent, as in the papers
    assert "tiny &lt;run&gt; &amp; eval" in dom
