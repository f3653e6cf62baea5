"""A full disk under the cache: each file it stops fails with "No space left on device", the run finishes, and no
temporary file is left behind. The disk is a real, small tmpfs mounted in a private mount namespace
(`unshare -rm`), filled up before the run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.media_factory import make_clip
from tests.helpers.paths import ROOT

RUN_ON_FULL_DISK = r'''
import json, os, sys
from pathlib import Path
from extractors.config import SentiFlowConfig
from extractors.runner import ExtractionRunner
from pipeline.cache import FeatureCache

disk, clips, result = Path(sys.argv[1]), sys.argv[2:-1], Path(sys.argv[-1])
cache = FeatureCache(disk / "cache")
fd = os.open(disk / "filler", os.O_CREAT | os.O_WRONLY)
try:
    while True:
        os.write(fd, b"\0" * 65536)
except OSError:
    pass
os.close(fd)
os.truncate(disk / "filler", os.path.getsize(disk / "filler") - 24 * 1024)   # room for a record, not for tensors
config = SentiFlowConfig.from_dict({"extraction": {"extractors": ["logmel"], "batch_size": 2}})
summary = ExtractionRunner(config, cache).run(clips, progress=False)
report = cache.verify()
result.write_text(json.dumps({"items": [[i.status, i.reason or i.notes()] for i in summary.items],
                              "tmp": os.listdir(disk / "cache" / "tmp"), "corrupt": report.corrupt}))
'''


@pytest.mark.skipif(sys.platform != "linux", reason="needs Linux mount namespaces")
def test_a_full_disk_fails_each_file_it_stops_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "-rm", "true"], capture_output=True).returncode != 0:
        pytest.skip("needs `unshare -rm` (user and mount namespaces) to mount a small tmpfs")
    clips = [str(make_clip(tmp_path / f"clip{i}.mp4", seconds=1.5, tone_hz=200.0 + 50 * i)) for i in range(3)]
    disk = tmp_path / "disk"
    disk.mkdir()
    script, result = tmp_path / "full_disk.py", tmp_path / "result.json"
    script.write_text(RUN_ON_FULL_DISK, encoding="utf-8")
    cmd = [unshare, "-rm", "sh", "-c", 'mount -t tmpfs -o size=4m tmpfs "$1" && shift && exec "$@"', "sh",
           str(disk), sys.executable, str(script), str(disk), *clips, str(result)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT),
                                                                             "PATH": "/usr/bin:/bin"}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]      # no traceback, no "exited unexpectedly"
    out = json.loads(result.read_text())
    assert len(out["items"]) == 3
    for status, reason in out["items"]:
        assert status == "failed" and "No space left on device" in reason, (status, reason)
        assert "exited unexpectedly" not in reason and "Traceback" not in reason
    assert out["tmp"] == [] and out["corrupt"] == []
