"""Make tiny real media files for tests with PyAV: a moving gradient video and a tone/chirp audio track."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def make_clip(path: str | Path, seconds: float = 1.0, fps: int = 25, size: tuple[int, int] = (96, 64),
              video: bool = True, audio: bool = True, sample_rate: int = 44100, channels: int = 1,
              tone_hz: float = 220.0, silent: bool = False, gray: bool = False) -> Path:
    """Write an mp4 (or .wav when video=False and the suffix says so) with the requested streams."""
    path = Path(path)
    if path.suffix.lower() == ".wav":
        return make_wav(path, seconds, sample_rate, tone_hz, silent, channels)
    w, h = size
    with av.open(str(path), "w") as out:
        vs = as_ = None
        if video:
            vs = out.add_stream("libx264", rate=fps)
            vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
            vs.options = {"preset": "ultrafast"}
        if audio:
            as_ = out.add_stream("aac", rate=sample_rate)
            as_.layout = "mono" if channels == 1 else ("stereo" if channels == 2 else "5.1")
        if vs is not None:
            for i in range(max(1, int(round(seconds * fps)))):
                img = _gradient(w, h, i, gray)
                frame = av.VideoFrame.from_ndarray(img, format="rgb24")
                for pkt in vs.encode(frame):
                    out.mux(pkt)
            for pkt in vs.encode():
                out.mux(pkt)
        if as_ is not None:
            samples = _signal(seconds, sample_rate, tone_hz, silent)
            hop = 1024
            layout = as_.layout.name
            n_ch = as_.layout.nb_channels if hasattr(as_.layout, "nb_channels") else len(as_.layout.channels)
            for k, start in enumerate(range(0, samples.size, hop)):
                block = samples[start: start + hop]
                data = np.tile(block[None, :], (n_ch, 1)).astype(np.float32)
                frame = av.AudioFrame.from_ndarray(data, format="fltp", layout=layout)
                frame.sample_rate = sample_rate
                frame.pts = start
                frame.time_base = Fraction(1, sample_rate)
                for pkt in as_.encode(frame):
                    out.mux(pkt)
            for pkt in as_.encode():
                out.mux(pkt)
    return path


def make_wav(path: Path, seconds: float, sample_rate: int, tone_hz: float, silent: bool, channels: int = 1) -> Path:
    """Write a 16-bit PCM wav."""
    import soundfile as sf

    x = _signal(seconds, sample_rate, tone_hz, silent)
    sf.write(str(path), np.tile(x[:, None], (1, channels)), sample_rate, subtype="PCM_16")
    return path


def _signal(seconds: float, sr: int, tone_hz: float, silent: bool) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    if silent:
        return np.zeros_like(t, dtype=np.float32)
    # a tone with a slow vibrato and an amplitude envelope: non-trivial spectra and pitch
    f = tone_hz * (1.0 + 0.05 * np.sin(2 * np.pi * 3.0 * t))
    phase = 2 * np.pi * np.cumsum(f) / sr
    env = 0.3 + 0.2 * np.sin(2 * np.pi * 1.5 * t) ** 2
    return (env * (np.sin(phase) + 0.3 * np.sin(2 * phase))).astype(np.float32) * 0.5


def _gradient(w: int, h: int, i: int, gray: bool) -> np.ndarray:
    x = np.linspace(0, 255, w)[None, :] + i * 4
    y = np.linspace(0, 255, h)[:, None]
    r = (x + 0 * y) % 256
    g = (y + 0 * x + i * 2) % 256
    b = ((x + y) / 2) % 256
    img = np.stack([r, g, b], axis=-1).astype(np.uint8)
    if gray:
        img[:] = img.mean(axis=-1, keepdims=True).astype(np.uint8)
    return img


def truncate(src: str | Path, dst: str | Path, fraction: float) -> Path:
    """Copy the first `fraction` of a file's bytes."""
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[: int(len(data) * fraction)])
    return Path(dst)


def write_video(path: Path, frames: list[np.ndarray], fps: int = 8, audio: bool = False,
                pix_fmt: str = "yuv420p") -> Path:
    """Encode RGB frames (and optionally a 220 Hz tone) to an mp4 with PyAV."""
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, pix_fmt
        vs.options = {"preset": "ultrafast"}
        a = out.add_stream("aac", rate=16000) if audio else None
        if a is not None:
            a.layout = "mono"
        for f in frames:
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
            for pkt in vs.encode(vf.reformat(format=pix_fmt)):
                out.mux(pkt)
        for pkt in vs.encode():
            out.mux(pkt)
        if a is not None:
            n = int(16000 * len(frames) / fps)
            tone = (0.3 * np.sin(2 * np.pi * 220 * np.arange(n) / 16000)).astype(np.float32)
            for s in range(0, n, 1024):
                af = av.AudioFrame.from_ndarray(tone[None, s:s + 1024], format="fltp", layout="mono")
                af.sample_rate, af.pts, af.time_base = 16000, s, Fraction(1, 16000)
                for pkt in a.encode(af):
                    out.mux(pkt)
            for pkt in a.encode():
                out.mux(pkt)
    return path
