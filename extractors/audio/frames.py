"""Cut a stream of audio chunks into equal, frame-aligned segments so framewise features can be batched."""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator

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


def run_batched_segments(
    streams: dict[int, Iterator[tuple[np.ndarray, int]]],
    compute: Callable[[np.ndarray, list[int]], list[Any]],
    batch_segments: int,
    on_error: Callable[[int, Exception], None],
) -> dict[int, list[Any]]:
    """Pull segments round-robin from each item's stream, compute them in bounded batches, collect per item.

    `compute(stacked_segments, n_valid_frames)` returns one result per segment; an item whose stream raises
    (e.g. a decoder error) is reported through `on_error` and dropped while the others continue.
    """
    parts: dict[int, list[Any]] = {i: [] for i in streams}
    active = list(streams)
    while active:
        pending: list[tuple[int, np.ndarray, int]] = []
        for i in list(active):
            if len(pending) >= batch_segments:
                break
            try:
                seg, n = next(streams[i])
                pending.append((i, seg, n))
            except StopIteration:
                active.remove(i)
            except Exception as exc:  # noqa: BLE001 - isolate the failing item
                on_error(i, exc)
                active.remove(i)
        if pending:
            results = compute(np.stack([s for _, s, _ in pending]), [n for _, _, n in pending])
            for (i, _, _), r in zip(pending, results):
                parts[i].append(r)
    return parts
