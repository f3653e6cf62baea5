"""Media ingest: probing, fixed-rate frame sampling, resampled streamed audio, clear errors."""

from pathlib import Path

import numpy as np
import pytest

from pipeline.media import MediaError, iter_audio, iter_frames, probe, read_audio
from tests.helpers.media_factory import make_clip, truncate


def test_probe_reports_streams_and_duration(clip_dir: Path) -> None:
    info = probe(clip_dir / "tone_2s.mp4")
    assert info.has_video and info.has_audio
    assert (info.width, info.height) == (96, 64)
    assert info.fps == pytest.approx(25.0)
    assert info.duration == pytest.approx(2.0, abs=0.1)
    assert info.audio_sample_rate == 44100


def test_frames_are_sampled_at_the_requested_rate(clip_dir: Path) -> None:
    chunks = list(iter_frames(clip_dir / "tone_2s.mp4", fps=8.0, chunk_size=5))
    frames = np.concatenate([c for c, _ in chunks])
    times = np.concatenate([t for _, t in chunks])
    assert frames.shape == (16, 64, 96, 3) and frames.dtype == np.uint8
    assert np.allclose(times, np.arange(16) / 8.0)
    assert all(len(c) <= 5 for c, _ in chunks)


def test_large_frames_are_resized_before_use(tmp_path: Path) -> None:
    p = make_clip(tmp_path / "wide.mp4", seconds=0.4, size=(640, 360), audio=False)
    frames, _ = next(iter_frames(p, fps=8.0, max_side=320))
    assert frames.shape[1:] == (180, 320, 3)


def test_audio_is_resampled_and_chunked(clip_dir: Path) -> None:
    chunks = list(iter_audio(clip_dir / "tone_2s.mp4", 16000, chunk_seconds=0.5))
    assert all(c.dtype == np.float32 for c in chunks)
    assert all(c.size == 8000 for c in chunks[:-1])
    total = sum(c.size for c in chunks)
    assert 2.0 * 16000 <= total <= 2.1 * 16000   # AAC adds up to ~50 ms of priming
    whole = read_audio(clip_dir / "tone_2s.mp4", 16000)
    assert np.array_equal(np.concatenate(chunks), whole)


def test_audio_resampling_keeps_the_tone(clip_dir: Path) -> None:
    x = read_audio(clip_dir / "audio_only.wav", 8000)
    spectrum = np.abs(np.fft.rfft(x[:8000]))
    peak_hz = np.argmax(spectrum) * 8000 / 8000
    assert 200 <= peak_hz <= 240


@pytest.mark.parametrize("content, message", [
    (b"", r"file is empty \(0 bytes\)"),
    (b"this is plain text, not a video\n" * 20, "not a readable media file"),
])
def test_unreadable_files_give_specific_errors(tmp_path: Path, content: bytes, message: str) -> None:
    p = tmp_path / "bad.mp4"
    p.write_bytes(content)
    with pytest.raises(MediaError, match=message):
        probe(p)


def test_missing_path_and_missing_streams(tmp_path: Path, clip_dir: Path) -> None:
    with pytest.raises(MediaError, match="no such file"):
        probe(tmp_path / "nope.mp4")
    with pytest.raises(MediaError, match="no audio stream"):
        next(iter_audio(clip_dir / "no_audio.mp4", 16000))
    with pytest.raises(MediaError, match="no video stream"):
        next(iter_frames(clip_dir / "audio_only.wav", 8.0))


def test_truncated_file_yields_what_decodes_or_a_clear_error(tmp_path: Path, clip_dir: Path) -> None:
    src = make_clip(tmp_path / "full.mp4", seconds=2.0)
    for frac in (0.1, 0.5, 0.9):
        bad = truncate(src, tmp_path / f"cut_{frac}.mp4", frac)
        try:
            info = probe(bad)
        except MediaError as exc:
            assert str(bad) in str(exc)
            continue
        assert info.has_video


def test_rotation_metadata_is_honoured_like_ffmpeg_autorotate(tmp_path: Path) -> None:
    import shutil
    import subprocess

    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.skip("needs the ffmpeg binary (apt install ffmpeg) to write rotation metadata")
    src = make_clip(tmp_path / "landscape.mp4", seconds=0.5, size=(96, 64), audio=False)
    rotated = tmp_path / "rotated.mp4"
    subprocess.run([ffmpeg, "-loglevel", "error", "-y", "-i", str(src), "-c", "copy",
                    "-metadata:s:v:0", "rotate=90", str(rotated)], check=True)
    reference = tmp_path / "ref.raw"
    subprocess.run([ffmpeg, "-loglevel", "error", "-y", "-i", str(rotated), "-frames:v", "1", "-f", "rawvideo",
                    "-pix_fmt", "rgb24", str(reference)], check=True)
    info = probe(rotated)
    assert info.rotation in (90, 270)
    assert info.display_size == (64, 96)
    frames, _ = next(iter_frames(rotated, fps=8.0))
    assert frames.shape[1:3] == (96, 64)
    ref = np.fromfile(reference, dtype=np.uint8).reshape(96, 64, 3)
    assert np.abs(frames[0].astype(int) - ref.astype(int)).mean() < 1.0


# ---- timestamps, truncation and special files (issue 19, items 3, 7, 11)
def test_a_late_start_and_a_3h_jump_never_repeat_frames(tmp_path: Path) -> None:
    from tests.helpers.bad_corpus import late_start, three_hour_gap

    late = late_start(tmp_path / "late.mkv")
    info = probe(late)
    assert info.duration > 36000 and info.start_time == pytest.approx(36000, abs=0.1)
    assert info.content_duration == pytest.approx(2.0, abs=0.2) and info.budget_seconds < 3
    times = np.concatenate([t for _, t in iter_frames(late, fps=8.0)])
    assert len(times) == 16 and times[0] == 0.0 and times[-1] < 2.0     # on the stream's own clock
    gap = three_hour_gap(tmp_path / "gap.mp4")
    info = probe(gap)
    assert info.duration > 10800 and info.content_duration == pytest.approx(2.0, abs=0.2) and not info.truncated
    times = np.concatenate([t for _, t in iter_frames(gap, fps=8.0)])
    assert len(times) <= 17                                            # was 86,000 repeats of one frame
    assert times[7] < 1.0 and times[-1] >= 10800 and np.all(np.diff(times) > 0)


def test_a_cut_file_with_its_index_at_the_front_is_reported_truncated(tmp_path: Path) -> None:
    from tests.helpers.bad_corpus import truncated_front_index

    cut = truncated_front_index(tmp_path / "cut.mp4", 0.3)
    info = probe(cut)
    assert info.duration == pytest.approx(4.0, abs=0.1) and info.truncated
    assert info.truncation_note.startswith("truncated: media ends at") and "of the 4.0 s" in info.truncation_note
    whole = probe(make_clip(tmp_path / "whole.mp4", seconds=2.0))
    assert not whole.truncated and whole.content_duration == pytest.approx(2.0, abs=0.1)


def test_special_paths_have_their_own_reasons(tmp_path: Path) -> None:
    import os

    from pipeline.media import discover_media, path_problem

    os.mkfifo(tmp_path / "pipe.mp4")
    os.symlink("loop.mp4", tmp_path / "loop.mp4")
    long_name = tmp_path / ("x" * 300 + ".mp4")
    assert path_problem(tmp_path / "pipe.mp4") == "is a FIFO (named pipe), not a regular file"   # not "empty"
    with pytest.raises(MediaError, match="symlink loop"):                                        # not "no such file"
        probe(tmp_path / "loop.mp4")
    with pytest.raises(MediaError, match="name too long"):
        probe(long_name)
    found, unusable = discover_media([tmp_path, long_name])
    assert {p.name for p in found} == {"pipe.mp4", "loop.mp4"}
    assert unusable == [(str(long_name), "name too long")] and unusable[0].reason == "name too long"
