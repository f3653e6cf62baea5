"""Round-robin frame decoding over several videos, so one batch of frames can mix clips (bounded memory)."""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from extractors import stages
from extractors.pipelined import read_ahead
from pipeline.media import MediaConfig, MediaError, iter_frames

READ_AHEAD_CHUNKS = 1      # chunks a background thread decodes ahead of the consumer (0: decode in the caller)

Chunk = tuple[int, np.ndarray | None, np.ndarray | None, MediaError | None]


def _round_robin(paths: Sequence[str], media: MediaConfig, size: int) -> Iterator[Chunk]:
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


def round_robin_chunks(paths: Sequence[str], media: MediaConfig, chunk_size: int | None = None,
                       depth: int = READ_AHEAD_CHUNKS) -> Iterator[Chunk]:
    """Yield (video index, frames uint8 (N,H,W,3), times (N,), None) chunk by chunk, taking turns over videos,
    decoded up to `depth` chunks ahead in a background thread.

    A video that cannot be decoded yields (index, None, None, error) once and is dropped.
    """
    chunks = _round_robin(paths, media, chunk_size or media.frame_chunk_size)
    timed = stages.timed_iter(stages.DECODE_VIDEO, chunks)
    return read_ahead(timed, depth, "sentiflow-frames") if depth > 0 else timed
