"""Log-mel filter banks (VAE-AMDT's acoustic input: 128 mel bins), batched across clips on CPU or GPU."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torchaudio

from extractors.audio.frames import frame_times, iter_frame_segments, run_batched_segments
from extractors.base import ExtractionFailed, Extractor, Features, FeatureUnavailable, MediaItem, sequence_features
from extractors.stages import decoded_audio
from pipeline.config import ConfigBase
from pipeline.media import MediaError


@dataclass
class LogMelConfig(ConfigBase):
    """Defaults: VAE-AMDT's A input is 128 x 128 (128 steps of 128 mel bins) from 44.1 kHz audio."""

    n_mels: int = 128
    n_fft: int = 2048
    win_length: int = 2048          # 46 ms at 44.1 kHz
    hop_length: int = 512           # 11.6 ms at 44.1 kHz
    f_min: float = 0.0
    f_max: float | None = None      # None: Nyquist
    mel_scale: str = "slaney"       # "slaney" matches librosa's default filters; "htk" also available
    log_offset: float = 1e-6
    seq_len: int = 128              # fixed length T_a of the padded/fitted sequence
    fit: str = "pool"               # how a longer sequence is shortened: "pool" (average) or "truncate"
    segment_frames: int = 1024      # frames per segment in a batched call
    batch_segments: int = 32        # segments per batched call (bounds device memory)


class LogMelExtractor(Extractor):
    """Log-mel spectrogram per clip: full-rate sequence with frame times, plus fixed-length view and mask."""

    name = "logmel"
    version = "1"
    modality = "audio"
    Config = LogMelConfig
    requires = frozenset({"audio"})

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        c: LogMelConfig = self.config
        self.sample_rate = self.media.audio_sample_rate
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=self.sample_rate, n_fft=c.n_fft, win_length=c.win_length, hop_length=c.hop_length,
            f_min=c.f_min, f_max=c.f_max, n_mels=c.n_mels, power=2.0, center=False,
            norm="slaney" if c.mel_scale == "slaney" else None, mel_scale=c.mel_scale,
        ).to(self.device)

    def media_settings(self) -> dict:
        return {"audio_sample_rate": self.media.audio_sample_rate}

    @torch.inference_mode()
    def mel_segments(self, segments: torch.Tensor) -> torch.Tensor:
        """Log-mel of (B, samples) segments on this extractor's device -> (B, frames, n_mels) on CPU."""
        spec = self.mel(segments.to(self.device, non_blocking=True))
        return torch.log(spec + self.config.log_offset).transpose(1, 2).float().cpu()

    def extract(self, batch: Sequence[MediaItem]) -> list[Features | Exception]:
        c: LogMelConfig = self.config
        results: list[Features | Exception | None] = [None] * len(batch)

        def failed(i: int, exc: Exception) -> None:
            results[i] = ExtractionFailed(str(exc)) if isinstance(exc, MediaError) else exc

        streams = {i: iter_frame_segments(decoded_audio(item.path, self.sample_rate, self.media.audio_chunk_seconds),
                                          c.n_fft, c.hop_length, c.segment_frames)
                   for i, item in enumerate(batch)}
        per_item = run_batched_segments(
            streams, lambda segs, ns: [m[:n] for m, n in zip(self.mel_segments(torch.from_numpy(segs)), ns)],
            c.batch_segments, failed)
        for i, item in enumerate(batch):
            if results[i] is not None:
                continue
            if not per_item[i]:
                results[i] = FeatureUnavailable(
                    f"audio shorter than one {c.win_length / self.sample_rate * 1000:.0f} ms analysis window")
                continue
            seq = torch.cat(per_item[i])
            times = torch.from_numpy(frame_times(seq.shape[0], c.n_fft, c.hop_length, self.sample_rate))
            results[i] = Features(
                tensors=sequence_features(seq, times, c.seq_len, c.fit),
                meta={"rate_hz": self.sample_rate / c.hop_length, "dim": c.n_mels,
                      "feature_names": [f"mel_{k}" for k in range(c.n_mels)]},
            )
        return results  # type: ignore[return-value]
