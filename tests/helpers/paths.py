"""Where the tests find the project and the material beside it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]          # the project checkout
SAMPLES = ROOT / "sample_videos"                     # the bundled demo clips and labels.csv
SHARED = Path(os.environ.get("SENTIFLOW_SHARED") or ROOT.parent / "shared")   # developers' and CI's material
# (absent in a user's clone); SENTIFLOW_SHARED names it for a checkout elsewhere (e.g. a git worktree)
SHARED_CLIPS = SHARED / "clips"


def shared_clips_or_skip() -> Path:
    """../shared/clips, or skip the calling test with the reason (a user's clone has no ../shared)."""
    if not SHARED_CLIPS.is_dir():
        pytest.skip(f"needs {SHARED_CLIPS}")
    return SHARED_CLIPS
