"""Cut a stream of audio chunks into recognition windows that end in the quietest moment near their limit.

Speech recognition over a whole track holds the track, its spectrogram and the model's intermediate results in
memory at once, which grows with the video's length. Windows of bounded length keep that flat. Each window ends
at the lowest-energy frame within its last `search_seconds`: in speech that is a pause between words, so words
are rarely cut in two, and windows do not overlap, so no word is recognised twice. Audio no longer than one window
comes out as a single window, unchanged.
"""

from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np


def quietest_cut(audio: np.ndarray, window: int, search: int, frame: int) -> int:
    """Sample index in (window - search, window] at the centre of the quietest `frame`-sample frame (latest on ties)."""
    lo = window - search
    n = search // frame
    if n < 1:
        return window
    region = audio[lo: lo + n * frame].astype(np.float64).reshape(n, frame)
    energy = np.mean(region * region, axis=1)
    k = n - 1 - int(np.argmin(energy[::-1]))
    return lo + k * frame + frame // 2


def iter_speech_windows(chunks: Iterable[np.ndarray], sample_rate: int, window_seconds: float,
                        search_seconds: float, frame_seconds: float) -> Iterator[tuple[float, np.ndarray]]:
    """Yield (start second, mono float32 window) covering the stream without gaps or overlap."""
    window = int(round(window_seconds * sample_rate))
    search = int(round(search_seconds * sample_rate))
    frame = max(1, int(round(frame_seconds * sample_rate)))
    if not 0 < frame <= search < window:
        raise ValueError(f"need 0 < frame ({frame_seconds} s) <= search ({search_seconds} s) < window "
                         f"({window_seconds} s)")
    buf = np.zeros(0, dtype=np.float32)
    start = 0
    for chunk in chunks:
        chunk = np.asarray(chunk, dtype=np.float32)
        buf = np.concatenate([buf, chunk]) if buf.size else chunk
        while buf.size > window:
            cut = quietest_cut(buf, window, search, frame)
            yield start / sample_rate, buf[:cut].copy()
            start += cut
            buf = buf[cut:]
    if buf.size:
        yield start / sample_rate, buf
