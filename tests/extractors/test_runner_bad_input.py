"""`sentiflow extract` on bad input: every file accounted for, one bad file never stops the batch."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from extractors.config import ExtractionConfig, SentiFlowConfig
from extractors.runner import ExtractionRunner
from flows.cli import main
from pipeline.cache import FeatureCache
from tests.helpers.media_factory import make_clip, truncate
from tests.helpers.paths import ROOT

# in-process here (fast); the child-process isolation has its own tests in test_extraction_isolation.py
AUDIO_ONLY = SentiFlowConfig(extraction=ExtractionConfig(extractors=["logmel", "acoustic"], isolate=False))


@pytest.fixture(scope="module")
def bad_batch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("batch")
    good = make_clip(d / "good.mp4", seconds=1.0)
    (d / "empty.mp4").write_bytes(b"")
    (d / "text.mp4").write_text("not a video at all\n" * 50)
    truncate(good, d / "truncated.mp4", 0.5)
    make_clip(d / "no audio.mp4", seconds=1.0, audio=False)
    make_clip(d / "audio_only.wav", seconds=1.0, video=False)
    make_clip(d / "short 0.3 s – ünïcode.mp4", seconds=0.3)
    return d


def outcomes(summary) -> dict[str, object]:
    return {Path(i.path).name: i for i in summary.items}


def test_every_bad_file_gets_its_reason_and_good_files_finish(bad_batch: Path, tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "cache")
    runner = ExtractionRunner(AUDIO_ONLY, cache)
    summary = runner.run([bad_batch, bad_batch / "missing.mp4"], progress=False)
    out = outcomes(summary)
    assert len(out) == 8
    assert out["missing.mp4"].status == "failed" and "no such file" in out["missing.mp4"].reason
    assert out["empty.mp4"].status == "failed" and "file is empty (0 bytes)" in out["empty.mp4"].reason
    assert out["text.mp4"].status == "failed" and "not a readable media file" in out["text.mp4"].reason
    for name in ("good.mp4", "audio_only.wav", "short 0.3 s – ünïcode.mp4"):
        assert out[name].status == "done", (name, out[name].notes())
        assert set(out[name].extractors.values()) == {"done"}
    na = out["no audio.mp4"]
    assert na.status == "done" and na.extractors["logmel"] == "missing: no audio stream"
    # a truncated file is either processed from what decodes, or fails with its own reason
    tr = out["truncated.mp4"]
    assert tr.status in ("done", "failed") and (tr.status == "done" or tr.reason)
    logged = {Path(f["path"]).name for f in cache.failures()}
    assert {"missing.mp4", "empty.mp4", "text.mp4"} <= logged
    # the cached log-mel of the short clip has the configured shape
    entry = cache.get(out["short 0.3 s – ünïcode.mp4"].keys["logmel"])
    tensors = entry.load()
    assert tensors["fixed"].shape == (128, 128) and int(tensors["length"]) == tensors["sequence"].shape[0]


def test_rerun_resumes_from_cache_and_config_change_recomputes(bad_batch: Path, tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "cache")
    good = bad_batch / "good.mp4"
    first = ExtractionRunner(AUDIO_ONLY, cache).run([good], progress=False)
    again = ExtractionRunner(AUDIO_ONLY, cache).run([good], progress=False)
    assert first.items[0].status == "done" and again.items[0].status == "cached"
    changed = SentiFlowConfig.from_dict({"extraction": {"extractors": ["logmel", "acoustic"], "isolate": False,
                                                        "options": {"logmel": {"n_mels": 64}}}})
    third = ExtractionRunner(changed, cache).run([good], progress=False)
    it = third.items[0]
    assert it.extractors == {"logmel": "done", "acoustic": "cached"}
    assert cache.get(it.keys["logmel"]).load()["fixed"].shape == (128, 64)


def test_cli_exit_codes_and_summary(bad_batch: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("extraction:\n  extractors: [logmel]\n")
    rc = main(["extract", str(bad_batch / "good.mp4"), str(bad_batch / "empty.mp4"), "--cache",
               str(tmp_path / "c"), "--config", str(cfg), "--no-progress", "--device", "cpu",
               "--summary-json", str(tmp_path / "s.json")])
    text = capsys.readouterr().out
    assert rc == 0 and "1 done, 0 cached, 1 failed of 2" in text
    assert json.loads((tmp_path / "s.json").read_text())["items"][1]["status"] == "failed"
    rc = main(["extract", str(bad_batch / "empty.mp4"), "--cache", str(tmp_path / "c"), "--config", str(cfg),
               "--no-progress"])
    assert rc == 1
    bad_cfg = tmp_path / "bad.yaml"
    bad_cfg.write_text("extraction:\n  extractorz: [logmel]\n")
    rc = main(["extract", str(bad_batch / "good.mp4"), "--cache", str(tmp_path / "c"), "--config", str(bad_cfg)])
    err = capsys.readouterr().err
    assert rc == 2 and "unknown config key(s) extraction.extractorz" in err
    assert main(["cache", "verify", str(tmp_path / "c")]) == 0


@pytest.mark.skipif(os.geteuid() != 0 and sys.platform != "linux", reason="needs Linux")
def test_read_only_cache_dir_is_reported(bad_batch: Path, tmp_path: Path) -> None:
    cache_dir = tmp_path / "ro_cache"
    FeatureCache(cache_dir)
    os.chmod(tmp_path, 0o755)
    for p in [cache_dir, *cache_dir.rglob("*")]:
        os.chmod(p, 0o555 if p.is_dir() else 0o444)
    cmd = [sys.executable, "-m", "flows.cli", "extract", str(bad_batch / "good.mp4"), "--cache", str(cache_dir),
           "--no-progress", "--only", "logmel"]
    if os.geteuid() == 0:
        # root ignores permission bits: run as an unprivileged user, as a real user would be
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("needs setpriv to drop root privileges")
        for parent in [tmp_path, *tmp_path.parents]:
            os.chmod(parent, os.stat(parent).st_mode | 0o005) if parent != Path("/") else None
        os.chmod(bad_batch, 0o755)
        cmd = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "HOME": str(tmp_path)})
    assert proc.returncode == 2, proc.stderr
    assert "is not writable" in proc.stderr and str(cache_dir) in proc.stderr
