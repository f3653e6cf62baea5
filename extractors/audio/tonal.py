"""Chroma + spectral contrast + tonal centroid (25-d, librosa): the multilingual paper's acoustic set."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import librosa
import numpy as np
import torch

from extractors.audio.frames import frame_times, iter_frame_segments
from extractors.base import ExtractionFailed, Extractor, Features, FeatureUnavailable, MediaItem, sequence_features
from extractors.stages import decoded_audio
from pipeline.config import ConfigBase
from pipeline.media import MediaError

TONAL_SAMPLE_RATE = 22050  # librosa's native rate, which the multilingual paper's librosa features used


@dataclass
class TonalConfig(ConfigBase):
    """12 chroma + 7 spectral-contrast bands (6 + valley) + 6 tonnetz = 25 dims per frame."""

    sample_rate: int = TONAL_SAMPLE_RATE
    n_fft: int = 2048
    hop_length: int = 512
    n_chroma: int = 12
    n_bands: int = 6
    fmin_contrast: float = 200.0
    seq_len: int = 128
    fit: str = "pool"
    segment_frames: int = 2048


class TonalExtractor(Extractor):
    """Chroma (STFT), spectral contrast and tonnetz per frame, computed on CPU with librosa.

    Tonnetz is projected from the STFT chroma rather than librosa's default CQT chroma, which
    keeps one STFT per frame and the frames aligned; the 25 dimensions are as in the paper.
    """

    name = "tonal"
    version = "1"
    modality = "audio"
    Config = TonalConfig
    requires = frozenset({"audio"})

    def media_settings(self) -> dict:
        return {}

    def feature_names(self) -> list[str]:
        """Names of the 25 output columns."""
        c: TonalConfig = self.config
        return ([f"chroma_{k}" for k in range(c.n_chroma)] + [f"contrast_{k}" for k in range(c.n_bands + 1)]
                + [f"tonnetz_{k}" for k in range(6)])

    def segment_features(self, y: np.ndarray, n_valid: int) -> np.ndarray:
        """(frames, 25) for one frame-aligned segment."""
        c: TonalConfig = self.config
        spec = np.abs(librosa.stft(y, n_fft=c.n_fft, hop_length=c.hop_length, center=False))
        chroma = librosa.feature.chroma_stft(S=spec ** 2, sr=c.sample_rate, n_chroma=c.n_chroma)
        contrast = librosa.feature.spectral_contrast(S=spec, sr=c.sample_rate, n_bands=c.n_bands,
                                                     fmin=c.fmin_contrast)
        tonnetz = librosa.feature.tonnetz(sr=c.sample_rate, chroma=chroma)
        return np.concatenate([chroma, contrast, tonnetz], axis=0).T[:n_valid].astype(np.float32)

    def extract(self, batch: Sequence[MediaItem]) -> list[Features | Exception]:
        c: TonalConfig = self.config
        results: list[Features | Exception] = []
        for item in batch:
            parts = []
            try:
                audio = decoded_audio(item.path, c.sample_rate, self.media.audio_chunk_seconds)
                for seg, n in iter_frame_segments(audio, c.n_fft, c.hop_length, c.segment_frames):
                    parts.append(self.segment_features(seg, n))
            except MediaError as exc:
                results.append(ExtractionFailed(str(exc)))
                continue
            if not parts:
                results.append(FeatureUnavailable(
                    f"audio shorter than one {c.n_fft / c.sample_rate * 1000:.0f} ms analysis frame"))
                continue
            seq = torch.from_numpy(np.nan_to_num(np.concatenate(parts)))
            times = torch.from_numpy(frame_times(seq.shape[0], c.n_fft, c.hop_length, c.sample_rate))
            results.append(Features(tensors=sequence_features(seq, times, c.seq_len, c.fit),
                                    meta={"rate_hz": c.sample_rate / c.hop_length, "dim": seq.shape[1],
                                          "feature_names": self.feature_names()}))
        return results
