"""Seconds per extraction stage (probe, decode, each extractor), summed over a run for `--profile` and summaries.

One process-wide clock: the runner times each extractor's `extract` and the preparation of each file; the frame and
audio readers time their decoding (which happens inside an extractor, so decode seconds are also part of that
extractor's; a short stream read again at the same rate by the next extractor is served from memory, see
`decoded_audio`), and an extractor riding on another's pass (fer on face's) times its own work there (also part of the
host's seconds). Read-ahead threads add their own decode seconds, so stages can sum to more than the wall time.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from typing import Iterable, Iterator, TypeVar

import numpy as np

from pipeline.media import iter_audio

T = TypeVar("T")

PREPARE = "probe+hash"        # probing the streams and hashing the bytes of each file
DECODE_VIDEO = "decode:video"
DECODE_AUDIO = "decode:audio"

_lock = threading.Lock()
_seconds: dict[str, float] = {}


def add(stage: str, seconds: float) -> None:
    """Charge `seconds` to `stage`."""
    with _lock:
        _seconds[stage] = _seconds.get(stage, 0.0) + seconds


@contextmanager
def timed(stage: str) -> Iterator[None]:
    """Charge the wall time of the block to `stage`."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        add(stage, time.perf_counter() - t0)


def timed_iter(stage: str, items: Iterable[T]) -> Iterator[T]:
    """`items`, charging the time spent producing each one to `stage` (closing this closes `items`)."""
    it = iter(items)
    try:
        while True:
            t0 = time.perf_counter()
            try:
                x = next(it)
            except StopIteration:
                return
            finally:
                add(stage, time.perf_counter() - t0)
            yield x
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()


# Decoded audio kept for the next extractor that reads the same file at the same rate (acoustic and transcript
# both read 16 kHz): whole streams of at most AUDIO_MEMO_ENTRY_BYTES (16 kHz mono float32: about 8.7 minutes), the
# most recent first, AUDIO_MEMO_BYTES in all; longer streams are decoded again by each, so memory stays flat.
AUDIO_MEMO_BYTES = 128 << 20
AUDIO_MEMO_ENTRY_BYTES = 32 << 20
_audio_memo: "OrderedDict[tuple, np.ndarray]" = OrderedDict()


def _audio_key(path: str | os.PathLike, sample_rate: int) -> tuple | None:
    try:
        st = os.stat(path)
    except OSError:
        return None                 # iter_audio reports it
    return (os.path.realpath(path), st.st_size, st.st_mtime_ns, st.st_ino, sample_rate)


def _replay(audio: np.ndarray, chunk: int) -> Iterator[np.ndarray]:
    for start in range(0, len(audio), chunk):
        yield audio[start: start + chunk].copy()      # the caller may change its chunk in place


def _remember(key: tuple, chunks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    """`chunks`, kept whole in the memo once they all went through (a stream over the entry size is not kept)."""
    kept: list[np.ndarray] | None = []
    size = 0
    try:
        for block in chunks:
            if kept is not None:
                size += block.nbytes
                if size <= AUDIO_MEMO_ENTRY_BYTES:
                    kept.append(block.copy())
                else:
                    kept = None
            yield block
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    if kept:
        with _lock:
            _audio_memo[key] = np.concatenate(kept)
            while sum(a.nbytes for a in _audio_memo.values()) > AUDIO_MEMO_BYTES:
                _audio_memo.popitem(last=False)


def decoded_audio(path: str | os.PathLike, sample_rate: int, chunk_seconds: float) -> Iterator[np.ndarray]:
    """`pipeline.media.iter_audio`, its decoding charged to the audio decode stage; a stream decoded at this rate
    just before (unchanged file, short enough to keep) is served again without decoding, in the same chunks."""
    key = _audio_key(path, sample_rate)
    with _lock:
        audio = _audio_memo.get(key) if key is not None else None
        if audio is not None:
            _audio_memo.move_to_end(key)
    if audio is not None:
        return _replay(audio, max(1, int(round(chunk_seconds * sample_rate))))
    chunks = timed_iter(DECODE_AUDIO, iter_audio(path, sample_rate, chunk_seconds))
    return _remember(key, chunks) if key is not None else chunks


def take() -> dict[str, float]:
    """The seconds charged since the last `take`, by stage (and reset the clock)."""
    with _lock:
        out = dict(_seconds)
        _seconds.clear()
    return out


def merge(into: dict[str, float], more: dict[str, float]) -> dict[str, float]:
    """`into` with `more`'s seconds added stage by stage (in place; returned for chaining)."""
    for k, v in more.items():
        into[k] = into.get(k, 0.0) + v
    return into


def table(stages: dict[str, float], wall_seconds: float, media_seconds: float) -> str:
    """A fixed-width stage table: seconds, share of the wall time and x real time per stage."""
    rows = [("stage", "seconds", "% of wall", "x real time")]
    for name, s in sorted(stages.items(), key=lambda kv: -kv[1]):
        share = 100.0 * s / wall_seconds if wall_seconds > 0 else 0.0
        rt = media_seconds / s if s > 0 else float("inf")
        rows.append((name, f"{s:.2f}", f"{share:.0f}", f"{rt:.1f}"))
    rt_all = media_seconds / wall_seconds if wall_seconds > 0 else 0.0
    rows.append(("total (wall)", f"{wall_seconds:.2f}", "100", f"{rt_all:.1f}"))
    w = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join(f"{r[0]:<{w[0]}}  {r[1]:>{w[1]}}  {r[2]:>{w[2]}}  {r[3]:>{w[3]}}" for r in rows)
