"""Round-robin frame decoding over several videos, so one batch of frames can mix clips (bounded memory)."""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from pipeline.media import MediaConfig, MediaError, iter_frames


def round_robin_chunks(paths: Sequence[str], media: MediaConfig,
                       chunk_size: int | None = None) -> Iterator[tuple[int, np.ndarray | None, np.ndarray | None,
                                                                       MediaError | None]]:
    """Yield (video index, frames uint8 (N,H,W,3), times (N,), None) chunk by chunk, taking turns over videos.

    A video that cannot be decoded yields (index, None, None, error) once and is dropped.
    """
    size = chunk_size or media.frame_chunk_size
    streams = {i: iter_frames(p, media.video_fps, media.max_frame_side, size) for i, p in enumerate(paths)}
    active = list(streams)
    while active:
        for i in list(active):
            try:
                frames, times = next(streams[i])
            except StopIteration:
                active.remove(i)
                continue
            except MediaError as exc:
                active.remove(i)
                yield i, None, None, exc
                continue
            yield i, frames, times, None
