"""MFCC + prosody (pitch, voicing, energy, zero-crossing rate): an open stand-in for COVAREP descriptors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torchaudio

from extractors.audio.frames import frame_times, iter_frame_segments, run_batched_segments
from extractors.audio.pitch import yin
from extractors.base import ExtractionFailed, Extractor, Features, FeatureUnavailable, MediaItem, sequence_features
from extractors.stages import decoded_audio
from pipeline.config import ConfigBase
from pipeline.media import MediaError


@dataclass
class AcousticConfig(ConfigBase):
    """COVAREP-like frame rate (100 Hz) on 16 kHz speech; 13 MFCCs with deltas plus prosody."""

    n_mfcc: int = 13
    n_mels: int = 40
    frame_length: int = 1024        # analysis frame (64 ms at 16 kHz): long enough for YIN at f0_min
    win_length: int = 400           # MFCC window (25 ms), centred inside the analysis frame
    hop_length: int = 160           # 10 ms
    f0_min: float = 60.0
    f0_max: float = 500.0
    yin_threshold: float = 0.1
    voicing_threshold: float = 0.25  # frames whose YIN aperiodicity exceeds this are unvoiced
    silence_db: float = -60.0        # frames quieter than this (dBFS) are unvoiced
    deltas: bool = True
    seq_len: int = 128
    fit: str = "pool"
    segment_frames: int = 1000
    batch_segments: int = 32


class AcousticExtractor(Extractor):
    """Per 10 ms frame: MFCC (+ deltas), f0 (Hz, 0 when unvoiced), voicing probability, voiced flag,
    RMS energy in dBFS and zero-crossing rate."""

    name = "acoustic"
    version = "2"   # 2: features of a segment no longer depend on the clips sharing its batch
    modality = "audio"
    Config = AcousticConfig
    requires = frozenset({"audio"})

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        c: AcousticConfig = self.config
        self.sample_rate = self.media.speech_sample_rate
        self.mfcc = torchaudio.transforms.MFCC(
            sample_rate=self.sample_rate, n_mfcc=c.n_mfcc,
            melkwargs={"n_fft": c.frame_length, "win_length": c.win_length, "hop_length": c.hop_length,
                       "n_mels": c.n_mels, "center": False, "f_min": 20.0, "f_max": self.sample_rate / 2},
        ).to(self.device)

    def media_settings(self) -> dict:
        return {"speech_sample_rate": self.media.speech_sample_rate}

    def feature_names(self) -> list[str]:
        """Names of the output columns."""
        c: AcousticConfig = self.config
        names = [f"mfcc_{k}" for k in range(c.n_mfcc)]
        if c.deltas:
            names += [f"mfcc_delta_{k}" for k in range(c.n_mfcc)]
        return names + ["f0_hz", "voicing_prob", "voiced", "energy_db", "zcr"]

    @torch.inference_mode()
    def segment_features(self, segments: torch.Tensor, n_valid: list[int]) -> list[torch.Tensor]:
        """Frame-level features (without deltas) for (B, samples) segments."""
        c: AcousticConfig = self.config
        seg = segments.to(self.device)
        # one channel per segment: torchaudio's top_db floor is taken over a (B, n_mels, T) input's whole batch,
        # which made a segment's MFCC depend on the segments batched with it
        mfcc = self.mfcc(seg.unsqueeze(1)).squeeze(1).transpose(1, 2)   # (B, F, n_mfcc)
        frames = seg.unfold(1, c.frame_length, c.hop_length)          # (B, F, W)
        b, f, w = frames.shape
        flat = frames.reshape(b * f, w)
        f0, aper = yin(flat, self.sample_rate, c.f0_min, c.f0_max, c.yin_threshold)
        centre = flat[:, (w - c.win_length) // 2: (w + c.win_length) // 2]
        rms = centre.pow(2).mean(1).sqrt()
        energy_db = 20.0 * torch.log10(rms.clamp_min(1e-10))
        signs = torch.signbit(centre)
        zcr = (signs[:, 1:] != signs[:, :-1]).float().mean(1)
        voicing = (1.0 - aper).clamp(0.0, 1.0)
        voiced = ((aper < c.voicing_threshold) & (energy_db > c.silence_db)
                  & (f0 >= c.f0_min) & (f0 <= c.f0_max)).float()
        prosody = torch.stack([f0 * voiced, voicing, voiced, energy_db, zcr], dim=1).reshape(b, f, 5)
        out = torch.cat([mfcc, prosody], dim=2).float().cpu()
        return [o[:n] for o, n in zip(out, n_valid)]

    def extract(self, batch: Sequence[MediaItem]) -> list[Features | Exception]:
        c: AcousticConfig = self.config
        results: list[Features | Exception | None] = [None] * len(batch)

        def failed(i: int, exc: Exception) -> None:
            results[i] = ExtractionFailed(str(exc)) if isinstance(exc, MediaError) else exc

        streams = {i: iter_frame_segments(decoded_audio(item.path, self.sample_rate, self.media.audio_chunk_seconds),
                                          c.frame_length, c.hop_length, c.segment_frames)
                   for i, item in enumerate(batch)}
        parts = run_batched_segments(streams, lambda segs, ns: self.segment_features(torch.from_numpy(segs), ns),
                                     c.batch_segments, failed)
        for i in range(len(batch)):
            if results[i] is not None:
                continue
            if not parts[i]:
                results[i] = FeatureUnavailable(
                    f"audio shorter than one {c.frame_length / self.sample_rate * 1000:.0f} ms analysis frame")
                continue
            seq = torch.cat(parts[i])
            if c.deltas:
                mfcc = seq[:, : c.n_mfcc]
                delta = torchaudio.functional.compute_deltas(mfcc.T.unsqueeze(0))[0].T
                seq = torch.cat([mfcc, delta, seq[:, c.n_mfcc:]], dim=1)
            times = torch.from_numpy(frame_times(seq.shape[0], c.frame_length, c.hop_length, self.sample_rate))
            voiced_fraction = float(seq[:, -3].mean())
            results[i] = Features(
                tensors=sequence_features(seq, times, c.seq_len, c.fit),
                meta={"rate_hz": self.sample_rate / c.hop_length, "dim": seq.shape[1],
                      "feature_names": self.feature_names(), "voiced_fraction": voiced_fraction},
            )
        return results  # type: ignore[return-value]
