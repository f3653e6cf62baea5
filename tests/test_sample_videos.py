"""The bundled demo clips in sample_videos/: labels, media, a detectable face, audible speech, reproducibility."""

from __future__ import annotations

import csv
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.labels import read_labels
from pipeline.media import MEDIA_EXTENSIONS, iter_frames, probe, read_audio
from tests.helpers.paths import ROOT

SAMPLES = ROOT / "sample_videos"
LABELS = SAMPLES / "labels.csv"
SCRIPT = ROOT / "scripts" / "make_sample_videos.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("make_sample_videos", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module          # dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    return module


msv = _load_script()


@pytest.fixture(scope="module")
def table():
    return read_labels(LABELS, require_media=True)


@pytest.fixture(scope="module")
def mtcnn():
    facenet = pytest.importorskip("facenet_pytorch")
    return facenet.MTCNN(keep_all=True, device="cpu")


def test_labels_csv_has_mmsa_columns_and_a_media_file_per_row(table):
    with LABELS.open(encoding="utf-8", newline="") as fh:
        header = next(csv.reader(fh))
    assert tuple(header) == ("video_id", "clip_id", "text", "label", "mode")
    assert 8 <= len(table) <= 12
    assert len({row.id for row in table}) == len(table)
    for row in table:
        assert row.path is not None and Path(row.path).is_file(), row.id
        assert Path(row.path).relative_to(SAMPLES.resolve()) == Path(row.video_id) / f"{row.clip_id}.mp4"
        assert -3.0 <= row.label <= 3.0
        assert len(row.text.split()) >= 5
    modes = [row.mode for row in table]
    assert modes.count("valid") == 2 and modes.count("test") == 2 and modes.count("train") >= 4
    train_labels = [row.label for row in table.split("train")]
    assert min(train_labels) <= -2 and max(train_labels) >= 2   # the demo trains on both polarities
    listed = {Path(row.path) for row in table}
    on_disk = {p.resolve() for p in SAMPLES.rglob("*") if p.suffix.lower() in MEDIA_EXTENSIONS}
    assert on_disk == listed, "every bundled clip must be labelled and every label must have its clip"


def test_labels_csv_is_what_the_generator_writes(tmp_path):
    msv.write_labels(msv.CLIPS, tmp_path / "labels.csv")
    assert (tmp_path / "labels.csv").read_bytes() == LABELS.read_bytes()


def test_clips_are_short_talking_videos_under_two_megabytes(table):
    cfg = msv.SampleVideoConfig()
    total = 0
    for row in table:
        info = probe(row.path)
        total += info.size_bytes
        assert info.has_video and info.has_audio, row.id
        assert 2.0 <= info.duration <= 6.0, (row.id, info.duration)
        assert (info.width, info.height) == (cfg.frame_size, cfg.frame_size)
        assert info.fps == pytest.approx(cfg.fps)
        assert (info.audio_sample_rate, info.audio_channels) == (cfg.audio_sample_rate, 1)
        audio = read_audio(row.path, 16000)
        # The sound lasts as long as the picture (an encoder setting once cut the audio in half).
        assert len(audio) / 16000 == pytest.approx(info.duration, abs=0.05), row.id
        window = 1600                                   # 0.1 s
        rms = np.sqrt((audio[: len(audio) // window * window].reshape(-1, window) ** 2).mean(axis=1))
        assert rms[:2].max() < 0.005, f"{row.id}: the lead-in should be silent"
        assert np.mean(rms > 0.02) > 0.4, f"{row.id}: speech should fill most of the clip"
        assert float(np.sqrt(np.mean(audio ** 2))) > 0.05, f"{row.id}: speech too quiet"
    assert total < 2 * 1024 * 1024, f"sample_videos/ media total {total} bytes"


def test_mtcnn_finds_one_face_in_the_first_frame_of_every_clip(table, mtcnn):
    firsts = []
    for row in table:
        frames, times = next(iter_frames(row.path, fps=8.0, chunk_size=1))
        assert times[0] == pytest.approx(0.0, abs=0.05)
        firsts.append(frames[0])
    boxes, probs = mtcnn.detect(firsts)
    for row, b, p in zip(table, boxes, probs):
        assert b is not None, f"{row.id}: no face found"
        confident = [box for box, prob in zip(b, p) if prob > 0.95]
        assert len(confident) == 1, f"{row.id}: expected one face, got probabilities {p}"
        x0, y0, x1, y1 = confident[0]
        assert 60 <= x1 - x0 <= 160 and 0 <= x0 and x1 <= 256, f"{row.id}: face box {confident[0]}"


def test_face_geometry_matches_the_photo(mtcnn):
    data = pytest.importorskip("skimage.data")
    photo = data.astronaut()
    for mirror in (False, True):
        image = np.ascontiguousarray(photo[:, ::-1]) if mirror else photo
        expected = msv.FaceGeometry().mirrored(photo.shape[1]) if mirror else msv.FaceGeometry()
        boxes, _, marks = mtcnn.detect(image, landmarks=True)
        assert boxes is not None and len(boxes) == 1
        np.testing.assert_allclose(np.asarray(boxes[0], dtype=float), expected.box, atol=6.0)
        points = [expected.left_eye, expected.right_eye, expected.nose, expected.mouth_left, expected.mouth_right]
        np.testing.assert_allclose(np.asarray(marks[0], dtype=float), np.array(points), atol=4.0)


def test_fit_speech_trims_pads_and_refuses_bad_lengths():
    cfg = msv.SampleVideoConfig()
    sr = 22050
    t = np.arange(int(1.5 * sr)) / sr
    tone = 0.3 * np.sin(2 * np.pi * 220 * t).astype(np.float32)
    padded = np.concatenate([np.zeros(sr // 2, np.float32), tone, np.zeros(sr // 3, np.float32)])
    out = msv.fit_speech(padded, sr, cfg, "tone")
    assert np.abs(out).max() == pytest.approx(cfg.peak_level, rel=1e-3)
    first = int(np.flatnonzero(np.abs(out) > cfg.silence_threshold)[0])
    assert first / sr == pytest.approx(cfg.lead_silence_s, abs=2e-3)
    assert len(out) * cfg.fps % sr == 0                  # whole video frames
    assert len(out) / sr == pytest.approx(1.5 + cfg.lead_silence_s + cfg.tail_silence_s, abs=1 / cfg.fps)
    with pytest.raises(msv.SampleVideoError, match="silence"):
        msv.fit_speech(np.zeros(sr, np.float32), sr, cfg, "nothing")
    long_tone = np.tile(tone, 5)                         # 7.5 s of sound
    with pytest.raises(msv.SampleVideoError, match=r"lasts 8\.\d\d s, outside \[2\.0, 6\.0\]"):
        msv.fit_speech(long_tone, sr, cfg, "too long")


def test_jaw_opens_with_the_speech_and_closes_in_silence():
    cfg = msv.SampleVideoConfig()
    sr = 22050
    quiet = np.zeros(sr, np.float32)
    loud = (0.5 * np.sin(2 * np.pi * 200 * np.arange(sr) / sr)).astype(np.float32)
    opening = msv.jaw_opening(np.concatenate([quiet, loud, quiet]), sr, cfg)
    assert opening.shape == (3 * cfg.fps,)
    assert opening[: cfg.fps - 1].max() == 0.0
    assert opening[cfg.fps + 2: 2 * cfg.fps - 2].min() > 0.95
    assert opening[-5:].max() < 0.05                     # the release has closed it again


def test_rendered_mouth_opens_only_around_the_mouth():
    pytest.importorskip("skimage.data")
    cfg = msv.SampleVideoConfig(nod_px=0.0)             # no nod: only the jaw moves
    speaker = msv.SPEAKERS[0]
    photo, face = msv.load_portrait(speaker)
    still = np.array([0.0, 1.0, 0.0, 0.0])
    closed = msv.render_frame(photo, face, speaker, still, 0.0, cfg).astype(np.int16)
    opened = msv.render_frame(photo, face, speaker, still, 1.0, cfg).astype(np.int16)
    changed = np.abs(opened - closed).max(axis=2) > 30
    ys, xs = np.nonzero(changed)
    assert ys.size > 50
    scale = cfg.frame_size / speaker.side
    to_x = lambda v: (v - speaker.center[0]) * scale + cfg.frame_size / 2  # noqa: E731
    to_y = lambda v: (v - speaker.center[1]) * scale + cfg.frame_size / 2  # noqa: E731
    # What moves is the lower face: from the mouth corners down to just below the chin, across the jaw.
    x0, x1 = to_x(face.box[0]), to_x(face.box[2])
    assert np.mean((xs >= x0) & (xs <= x1)) > 0.95
    assert xs.min() >= x0 - 0.25 * (x1 - x0) and xs.max() <= x1 + 0.25 * (x1 - x0)
    assert ys.min() >= to_y(min(face.mouth_left[1], face.mouth_right[1])) - 3
    assert ys.max() <= to_y(face.box[3] + 3 * cfg.jaw_drop_px) + 2
    assert opened[changed].mean() < closed[changed].mean()  # the open mouth is darker inside


def test_unknown_clip_names_are_refused():
    with pytest.raises(msv.SampleVideoError, match="unknown clip.*nobody/01"):
        msv.select_clips(["astro_front/01", "nobody/01"])


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("espeak-ng") is None or shutil.which("ffmpeg") is None,
                    reason="needs the espeak-ng and ffmpeg programs")
def test_script_regenerates_a_committed_clip(tmp_path):
    pytest.importorskip("skimage.data")
    name = "astro_front/04"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path), "--only", name],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    fresh, committed = tmp_path / f"{name}.mp4", SAMPLES / f"{name}.mp4"
    assert (tmp_path / "labels.csv").read_bytes() == LABELS.read_bytes()
    if fresh.read_bytes() == committed.read_bytes():
        return
    # Other espeak-ng/x264 builds: the same clip up to codec rounding.
    a, b = read_audio(fresh, 16000), read_audio(committed, 16000)
    assert len(a) == len(b), f"speech length differs: espeak-ng {proc.stdout} made a different clip"
    assert np.corrcoef(a, b)[0, 1] > 0.98
    fa = np.concatenate([f for f, _ in iter_frames(fresh, fps=8.0)]).astype(np.float32)
    fb = np.concatenate([f for f, _ in iter_frames(committed, fps=8.0)]).astype(np.float32)
    assert fa.shape == fb.shape and np.abs(fa - fb).mean() < 2.0
