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
