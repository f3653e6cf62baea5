"""Cut a stream of audio chunks into equal, frame-aligned segments so framewise features can be batched."""

from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np


def segment_length(n_fft: int, hop: int, frames_per_segment: int) -> int:
    """Samples a segment needs to hold `frames_per_segment` analysis frames."""
    return n_fft + hop * (frames_per_segment - 1)


def n_frames(n_samples: int, n_fft: int, hop: int) -> int:
    """Number of whole analysis frames (no centring padding) in `n_samples` samples."""
    return 0 if n_samples < n_fft else 1 + (n_samples - n_fft) // hop


def iter_frame_segments(
    chunks: Iterable[np.ndarray], n_fft: int, hop: int, frames_per_segment: int,
) -> Iterator[tuple[np.ndarray, int]]:
    """Yield (segment zero-padded to a fixed length, number of valid frames) covering consecutive frames.

    Frame i of the whole stream starts at sample i*hop; segment boundaries never split or skip a frame,
    so features computed per segment with centring off equal those computed on the whole signal.
    """
    seg_len = segment_length(n_fft, hop, frames_per_segment)
    advance = hop * frames_per_segment
    buf = np.zeros(0, dtype=np.float32)
    for chunk in chunks:
        buf = np.concatenate([buf, np.asarray(chunk, dtype=np.float32)]) if buf.size else np.asarray(chunk, np.float32)
        while buf.size >= seg_len:
            yield buf[:seg_len].copy(), frames_per_segment
            buf = buf[advance:]
    n = n_frames(buf.size, n_fft, hop)
    if n > 0:
        seg = np.zeros(seg_len, dtype=np.float32)
        seg[: buf.size] = buf
        yield seg, n


def frame_times(n: int, n_fft: int, hop: int, sample_rate: int) -> np.ndarray:
    """Centre time in seconds of each of the first `n` frames."""
    return (np.arange(n) * hop + n_fft / 2.0) / float(sample_rate)
