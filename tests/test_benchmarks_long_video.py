"""The long-video maker used by benchmarks/memory_vs_length.py: real ffmpeg concatenation of the sample clips."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.media import probe
from tests.helpers.paths import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))   # the benchmark scripts import each other by file name

from make_long_video import make_long_video, plan_concat  # noqa: E402

SAMPLES = ROOT / "sample_videos" / "astro_front"


def test_plan_concat_repeats_clips_in_order_until_long_enough() -> None:
    clips = [Path("a.mp4"), Path("b.mp4")]
    assert plan_concat(clips, [4.0, 5.0], 12.0) == [Path("a.mp4"), Path("b.mp4"), Path("a.mp4")]
    assert plan_concat(clips, [4.0, 5.0], 3.0) == [Path("a.mp4")]


def test_plan_concat_rejects_no_duration() -> None:
    with pytest.raises(ValueError, match="no clips with a positive duration"):
        plan_concat([], [], 10.0)


@pytest.mark.skipif(shutil.which("ffmpeg") is None or not SAMPLES.is_dir(), reason="needs ffmpeg and sample_videos/")
def test_make_long_video_concatenates_sample_clips(tmp_path: Path) -> None:
    clips = sorted(SAMPLES.glob("*.mp4"))
    one = probe(clips[0]).duration
    out = tmp_path / "long.mp4"
    duration = make_long_video([SAMPLES], 2.5 * one, out)
    info = probe(out)
    assert info.has_video and info.has_audio
    assert duration == pytest.approx(info.duration)
    assert 2.5 * one <= duration <= 2.5 * one + max(probe(c).duration for c in clips) + 0.5


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="needs sample_videos/")
def test_make_long_video_without_ffmpeg_remuxes_with_pyav(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import make_long_video as mlv

    from pipeline.media import iter_frames, read_audio

    monkeypatch.setattr(mlv.shutil, "which", lambda name: None)     # as on a machine without the ffmpeg binary
    clips = sorted(SAMPLES.glob("*.mp4"))
    total = sum(probe(c).duration for c in clips)
    out = tmp_path / "long.mp4"
    duration = mlv.make_long_video([SAMPLES], total + 1.0, out)      # every clip, then the first again
    info = probe(out)
    assert info.has_video and info.has_audio and info.video_codec == "h264" and info.width == 256
    assert duration == pytest.approx(total + probe(clips[0]).duration, abs=0.3)
    assert read_audio(out, 16000).size / 16000 == pytest.approx(duration, abs=0.3)
    times = np.concatenate([t for _, t in iter_frames(out, 8, 1280, 64)])
    assert np.all(np.diff(times) > 0) and times[-1] == pytest.approx(duration, abs=0.3)
    with pytest.raises(RuntimeError, match="--reencode needs the ffmpeg binary"):
        mlv.make_long_video([SAMPLES], 5.0, tmp_path / "x.mp4", reencode=True)


def test_make_long_video_reports_missing_input(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope"):
        make_long_video([tmp_path / "nope"], 10.0, tmp_path / "out.mp4")


def test_memory_benchmark_parses_extractor_options() -> None:
    from memory_vs_length import parse_options

    assert parse_options(["transcript.asr_window_seconds=30", "aligned.visual_sources=[]", "fer.output=probs"]) == {
        "transcript": {"asr_window_seconds": 30}, "aligned": {"visual_sources": []}, "fer": {"output": "probs"}}
    with pytest.raises(ValueError, match="EXTRACTOR.KEY=VALUE, got 'window=30'"):
        parse_options(["window=30"])
