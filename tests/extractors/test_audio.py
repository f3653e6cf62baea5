"""Audio extractors: log-mel against librosa, batched vs per-item, streamed vs whole, pitch, tonal set."""

from pathlib import Path

import librosa
import numpy as np
import pytest
import torch

from extractors.audio.acoustic import AcousticConfig, AcousticExtractor
from extractors.audio.frames import iter_frame_segments, n_frames
from extractors.audio.logmel import LogMelConfig, LogMelExtractor
from extractors.audio.pitch import yin
from extractors.audio.tonal import TonalExtractor
from extractors.base import Features, FeatureUnavailable, MediaItem, fit_sequence
from pipeline.media import MediaConfig, probe, read_audio
from tests.helpers.media_factory import make_clip


def item(path: Path) -> MediaItem:
    return MediaItem(path=str(path), media_hash="x", info=probe(path))


def test_logmel_matches_librosa(clip_dir: Path) -> None:
    path = clip_dir / "tone_2s.mp4"
    ex = LogMelExtractor()
    (res,) = ex.extract([item(path)])
    assert isinstance(res, Features)
    y = read_audio(path, 44100)
    ref = librosa.feature.melspectrogram(y=y, sr=44100, n_fft=2048, hop_length=512, win_length=2048,
                                         n_mels=128, center=False, power=2.0, htk=False, norm="slaney")
    ref = np.log(ref + 1e-6).T
    seq = res.tensors["sequence"].numpy()
    assert seq.shape == ref.shape == (n_frames(y.size, 2048, 512), 128)
    assert np.abs(seq - ref).max() < 1e-2
    assert res.tensors["fixed"].shape == (128, 128)
    assert int(res.tensors["length"]) == seq.shape[0]
    assert res.tensors["mask"].sum() == min(128, seq.shape[0])


def test_logmel_batched_equals_per_item_and_streaming_equals_whole(clip_dir: Path) -> None:
    paths = [clip_dir / "tone_2s.mp4", clip_dir / "audio_only.wav", clip_dir / "short 0.3s ü.mp4"]
    ex = LogMelExtractor(LogMelConfig(segment_frames=16, batch_segments=5),
                         media=MediaConfig(audio_chunk_seconds=0.37))
    batched = ex.extract([item(p) for p in paths])
    whole = LogMelExtractor(LogMelConfig(segment_frames=4096))
    for p, b in zip(paths, batched):
        (single,) = whole.extract([item(p)])
        assert b.tensors["sequence"].shape == single.tensors["sequence"].shape
        assert torch.allclose(b.tensors["sequence"], single.tensors["sequence"], atol=1e-4)
        assert torch.equal(b.tensors["times"], single.tensors["times"])


def test_audio_too_short_for_one_window_is_unavailable(tmp_path: Path) -> None:
    p = make_clip(tmp_path / "tiny.wav", seconds=0.02, video=False)
    (res,) = LogMelExtractor().extract([item(p)])
    assert isinstance(res, FeatureUnavailable) and "shorter than one" in str(res)


def test_frame_segments_cover_every_frame_once() -> None:
    x = np.arange(10_000, dtype=np.float32)
    chunks = [x[i:i + 777] for i in range(0, x.size, 777)]
    segs = list(iter_frame_segments(chunks, n_fft=400, hop=160, frames_per_segment=7))
    assert sum(n for _, n in segs) == n_frames(x.size, 400, 160)
    # the first sample of each segment is the start of the next frame
    starts = [int(s[0]) for s, _ in segs]
    assert starts == [k * 7 * 160 for k in range(len(segs))]


def test_yin_recovers_known_pitch_and_agrees_with_librosa() -> None:
    sr = 16000
    t = np.arange(sr) / sr
    x = np.sin(2 * np.pi * 180.0 * t) + 0.3 * np.sin(2 * np.pi * 360.0 * t)
    frames = torch.from_numpy(librosa.util.frame(x, frame_length=1024, hop_length=160).T.copy())
    f0, aper = yin(frames, sr, 60.0, 500.0)
    assert torch.allclose(f0, torch.full_like(f0, 180.0), rtol=0.01)
    assert aper.max() < 0.05
    ref = librosa.yin(x, fmin=60, fmax=500, sr=sr, frame_length=1024, hop_length=160, center=False)
    assert np.median(np.abs(f0.numpy() - ref[: f0.numel()])) < 1.0


def test_acoustic_prosody_on_a_tone(clip_dir: Path) -> None:
    ex = AcousticExtractor()
    (res,) = ex.extract([item(clip_dir / "tone_2s.mp4")])
    names = res.meta["feature_names"]
    seq = res.tensors["sequence"]
    assert seq.shape[1] == len(names) == 31
    assert res.meta["rate_hz"] == pytest.approx(100.0)
    voiced = seq[:, names.index("voiced")] > 0
    assert voiced.float().mean() > 0.8
    f0 = seq[voiced, names.index("f0_hz")]
    assert 200 < float(f0.median()) < 240          # the clip's 220 Hz tone with +-5 % vibrato
    assert torch.isfinite(seq).all()


def test_acoustic_marks_silence_unvoiced(tmp_path: Path) -> None:
    p = make_clip(tmp_path / "silent.wav", seconds=1.0, video=False, silent=True)
    (res,) = AcousticExtractor(AcousticConfig()).extract([item(p)])
    names = res.meta["feature_names"]
    assert float(res.tensors["sequence"][:, names.index("voiced")].sum()) == 0.0
    assert res.meta["voiced_fraction"] == 0.0


def test_tonal_set_has_25_dims(clip_dir: Path) -> None:
    (res,) = TonalExtractor().extract([item(clip_dir / "tone_2s.mp4")])
    seq = res.tensors["sequence"]
    assert seq.shape[1] == 25 and torch.isfinite(seq).all()
    chroma = seq[:, :12].mean(0)
    # 220 Hz is an A: the A chroma bin (index 9) dominates
    assert int(chroma.argmax()) == 9


def test_fit_sequence_pads_truncates_and_pools() -> None:
    x = torch.arange(10, dtype=torch.float32).reshape(5, 2)
    fixed, mask, n = fit_sequence(x, 8)
    assert n == 5 and mask.tolist() == [1] * 5 + [0] * 3 and torch.equal(fixed[5:], torch.zeros(3, 2))
    fixed, mask, n = fit_sequence(x, 2, "truncate")
    assert torch.equal(fixed, x[:2]) and n == 5
    fixed, _, _ = fit_sequence(torch.arange(8.0).reshape(8, 1), 4, "pool")
    assert fixed[:, 0].tolist() == [0.5, 2.5, 4.5, 6.5]
