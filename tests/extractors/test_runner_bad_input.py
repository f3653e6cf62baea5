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


def _unprivileged(cmd: list[str], tmp_path: Path) -> list[str]:
    """`cmd` run as nobody (root ignores permission bits), with `tmp_path` open to it; skips where nobody could
    not run SentiFlow at all (no setpriv, or the checkout or its Python in a folder closed to other users, as a
    clone made in `mktemp -d` is: mode 700)."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("needs setpriv to drop root privileges")
    for top in (ROOT, Path(sys.prefix)):
        for folder in [top, *top.parents]:
            mode = os.stat(folder).st_mode
            if mode & 0o005 != 0o005:
                pytest.skip(f"{folder} is closed to other users (mode {oct(mode & 0o777)}): an unprivileged user "
                            "cannot import SentiFlow from this checkout")
    for parent in [tmp_path, *tmp_path.parents]:
        if parent != Path("/"):
            os.chmod(parent, os.stat(parent).st_mode | 0o005)
    return [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]


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
        os.chmod(bad_batch, 0o755)
        cmd = _unprivileged(cmd, tmp_path)
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "HOME": str(tmp_path)})
    assert proc.returncode == 2, proc.stderr
    assert "is not writable" in proc.stderr and str(cache_dir) in proc.stderr


# ---- issue 19: names that are not UTF-8, budgets from content, folders that cannot be read (items 2, 3, 4, 11)
def _cli(args: list[str], tmp_path: Path, user: bool = False) -> subprocess.CompletedProcess:
    """`sentiflow ...` in a child process with a strict UTF-8 stdout, as a terminal user (unprivileged with
    `user` when the tests run as root, since root ignores permission bits)."""
    cmd = [sys.executable, "-m", "flows.cli", *args]
    if user and os.geteuid() == 0:
        cmd = _unprivileged(cmd, tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(tmp_path), "LC_ALL": "C.UTF-8",
           "PYTHONIOENCODING": "utf-8:strict"}
    return subprocess.run(cmd, capture_output=True, cwd=ROOT, env=env)


def test_a_name_that_is_not_utf8_does_not_stop_the_batch(bad_batch: Path, tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    bad = os.fsdecode(b"b_bad\xff\xfe.mp4")
    for name in ("a_first.mp4", bad, "c_after.mp4"):
        shutil.copyfile(bad_batch / "good.mp4", videos / name)
    shutil.copyfile(bad_batch / "empty.mp4", videos / os.fsdecode(b"d_empty\xff.mp4"))
    summary, cache = tmp_path / "s.json", tmp_path / "c"
    proc = _cli(["extract", str(videos), "--cache", str(cache), "--only", "logmel", "--no-progress",
                 "--device", "cpu", "--summary-json", str(summary)], tmp_path)
    out = proc.stdout.decode("utf-8")                  # strict: the output itself is valid UTF-8
    assert proc.returncode == 0, proc.stderr.decode("utf-8", "replace")
    assert "b_bad\\xff\\xfe.mp4" in out and "d_empty\\xff.mp4" in out and "1 done, 2 cached, 1 failed of 4" in out
    items = {Path(i["path"]).name: i for i in json.loads(summary.read_text(encoding="utf-8"))["items"]}
    assert items[bad]["status"] == "cached" and items["c_after.mp4"]["status"] == "cached"   # same bytes as a_first
    failures = FeatureCache(cache).failures()
    assert [Path(f["path"]).name for f in failures] == [os.fsdecode(b"d_empty\xff.mp4")]
    listing = _cli(["cache", "ls", str(cache), "--failures"], tmp_path)
    assert listing.returncode == 0 and "d_empty\\xff.mp4: " in listing.stdout.decode("utf-8")


def test_time_budget_follows_what_the_file_holds_not_its_header(tmp_path: Path) -> None:
    from tests.helpers.bad_corpus import late_start, three_hour_gap

    runner = ExtractionRunner(AUDIO_ONLY, FeatureCache(tmp_path / "c"))
    ex = AUDIO_ONLY.extraction
    for clip in (late_start(tmp_path / "late.mkv"), three_hour_gap(tmp_path / "gap.mp4")):
        # the header claims 10 h / 3 h: the budget allows for the ~2 s of media the packets hold
        assert runner._budget([clip]) < ex.timeout_seconds + ex.timeout_per_media_second * 3


@pytest.mark.skipif(sys.platform != "linux", reason="needs Linux permissions")
def test_unreadable_folders_and_paths_are_reported_not_skipped(bad_batch: Path, tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    (videos / "locked").mkdir(parents=True)
    shutil.copyfile(bad_batch / "good.mp4", videos / "ok.mp4")
    shutil.copyfile(bad_batch / "good.mp4", videos / "locked" / "hidden.mp4")
    os.chmod(videos, 0o755)
    os.chmod(videos / "locked", 0o000)
    out_dir = tmp_path / "out"
    out_dir.mkdir(mode=0o777)
    os.chmod(out_dir, 0o777)
    cfg = out_dir / "cfg.yaml"         # in process: a dropped-privilege child may not exec the interpreter here
    cfg.write_text("extraction:\n  extractors: [logmel]\n  isolate: false\n", encoding="utf-8")
    try:
        proc = _cli(["extract", str(videos), str(videos / "locked" / "hidden.mp4"), "--cache",
                     str(out_dir / "c"), "--config", str(cfg), "--no-progress", "--device", "cpu",
                     "--summary-json", str(out_dir / "s.json")], tmp_path, user=True)
    finally:
        os.chmod(videos / "locked", 0o755)
    assert proc.returncode == 0, proc.stderr.decode("utf-8", "replace")
    items = {i["path"]: i for i in json.loads((out_dir / "s.json").read_text(encoding="utf-8"))["items"]}
    assert items[str(videos / "ok.mp4")]["status"] == "done"
    assert items[str(videos / "locked")]["reason"] == "cannot list this folder (permission denied)"
    assert items[str(videos / "locked" / "hidden.mp4")]["reason"] == "permission denied"
