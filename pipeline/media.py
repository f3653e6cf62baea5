"""Media ingest: probe a file, stream frames at a fixed rate and audio at a fixed sample rate (PyAV/FFmpeg).

Timestamps are not trusted: `probe` reads every packet's time (demuxing only, no decoding) to learn how much
media the file really holds (`content_duration`: a stream that starts at t = 10 h or jumps over a 3 h gap holds
only what its packets cover) and whether it ends before its container says (`truncated`). Frames are sampled
relative to the stream's start, and one decoded frame stands for at most `MAX_FRAME_HOLD_SECONDS` of sample
times, so a jump in the timestamps never turns into hours of repeated frames.
"""

from __future__ import annotations

import math
import os
import stat
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple

import av
import numpy as np

from pipeline.config import ConfigBase
from pipeline.errors import SentiFlowError, os_reason

MEDIA_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm", ".flv", ".mpg", ".mpeg", ".wmv", ".3gp",
     ".wav", ".flac", ".mp3", ".m4a", ".aac", ".ogg", ".opus"}
)


MAX_FRAME_HOLD_SECONDS = 2.0   # one decoded frame fills sample times up to this far after it; a longer jump is a gap
TRUNCATION_TOLERANCE = (0.25, 0.02)   # truncated: packets end this many seconds, or this share, before the container


class MediaError(SentiFlowError):
    """A media file cannot be read; the message says which file and why."""


class UnusablePath(NamedTuple):
    """An input path that cannot be used, and why."""

    path: str
    reason: str


@dataclass
class MediaConfig(ConfigBase):
    """How media is decoded before feature extraction (VAE-AMDT samples frames at 8 fps)."""

    video_fps: float = 8.0
    audio_sample_rate: int = 44100
    speech_sample_rate: int = 16000
    max_frame_side: int = 1280          # frames are resized so their longer side is at most this (4K safety)
    audio_chunk_seconds: float = 30.0   # audio is decoded and processed in chunks of this length
    frame_chunk_size: int = 64          # frames are yielded in chunks of this many


@dataclass
class MediaInfo:
    """What ffmpeg says about a file: duration, streams, frame rate, rotation."""

    path: str
    size_bytes: int
    duration: float
    container: str
    has_video: bool
    has_audio: bool
    width: int = 0
    height: int = 0
    fps: float = 0.0
    rotation: int = 0
    video_codec: str = ""
    n_frames: int = 0
    audio_codec: str = ""
    audio_sample_rate: int = 0
    audio_channels: int = 0
    start_time: float = 0.0          # the first packet's time: a late-starting stream's offset
    content_duration: float = 0.0    # seconds of media the packets cover (late start and gaps excluded)
    packets_end: float = 0.0         # where the last packet ends (seconds, same clock as `duration`)
    truncated: bool = False          # the packets end well before the duration the container states

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON metadata."""
        return asdict(self)

    @property
    def truncation_note(self) -> str:
        """'' or what is missing: 'truncated: media ends at 1.2 s of the 4.0 s its container states'."""
        if not self.truncated:
            return ""
        return (f"truncated: media ends at {self.packets_end - self.start_time:.1f} s of the "
                f"{self.duration - self.start_time:.1f} s its container states")

    @property
    def budget_seconds(self) -> float:
        """The media seconds a time budget should allow for: what the packets cover, not what the header claims."""
        return self.content_duration if self.content_duration > 0 else self.duration

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) after honouring the rotation metadata."""
        if self.rotation % 180:
            return self.height, self.width
        return self.width, self.height


def path_problem(path: str | os.PathLike) -> str | None:
    """Why `path` cannot be read as a media file (no such file, name too long, permission denied, symlink loop,
    a directory, a FIFO or device, empty), or None for a non-empty regular file. Never blocks (a FIFO is not opened)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        if exc.errno == 2 and os.path.islink(path):
            return "no such file (dangling symlink)"
        return os_reason(exc)
    except ValueError as exc:   # an embedded NUL byte
        return f"not a valid path ({exc})"
    if stat.S_ISDIR(st.st_mode):
        return "is a directory, not a media file"
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                else "a device file" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "a special file")
        return f"is {kind}, not a regular file"
    if st.st_size == 0:
        return "file is empty (0 bytes)"
    return None


def _open(path: Path) -> av.container.InputContainer:
    problem = path_problem(path)
    if problem:
        raise MediaError(f"{path}: {problem}")
    try:
        return av.open(str(path), metadata_errors="ignore")
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        raise MediaError(f"{path}: not a readable media file ({_reason(exc)})") from exc
    except OSError as exc:
        raise MediaError(f"{path}: cannot read ({os_reason(exc)})") from exc


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc).strip() or type(exc).__name__
    if "Invalid data found" in text:
        text += "; truncated, or not a media file"
    return text.replace(os.linesep, " ")[:300]


def _stream_rotation(stream: Any) -> int:
    """Rotation in degrees clockwise needed to display the stream upright (0/90/180/270)."""
    angle = 0.0
    meta = dict(stream.metadata or {})
    if "rotate" in meta:
        try:
            angle = float(meta["rotate"])
        except ValueError:
            angle = 0.0
    return int(round(angle / 90.0)) * 90 % 360


def probe(path: str | os.PathLike, scan_packets: bool = True) -> MediaInfo:
    """Read a file's container and stream facts (with `scan_packets`: also what its packets really cover);
    raise MediaError with the reason if unreadable."""
    path = Path(path)
    with _open(path) as container:
        video = container.streams.video[0] if container.streams.video else None
        audio = container.streams.audio[0] if container.streams.audio else None
        if video is None and audio is None:
            raise MediaError(f"{path}: has neither a video nor an audio stream")
        duration = 0.0
        if container.duration is not None:
            duration = container.duration / av.time_base
        for s in (video, audio):
            if s is not None and s.duration is not None and s.time_base is not None:
                duration = max(duration, float(s.duration * s.time_base))
        info = MediaInfo(
            path=str(path), size_bytes=path.stat().st_size, duration=float(duration),
            container=container.format.name, has_video=video is not None, has_audio=audio is not None,
        )
        if video is not None:
            ctx = video.codec_context
            info.width, info.height = int(ctx.width or 0), int(ctx.height or 0)
            rate = video.average_rate or video.guessed_rate or video.base_rate
            info.fps = float(rate) if rate else 0.0
            info.video_codec = ctx.name or ""
            info.n_frames = int(video.frames or 0)
            info.rotation = _frame_rotation_from_first(container, video)
            if info.width == 0 or info.height == 0:
                raise MediaError(f"{path}: video stream has no frame size (corrupt header?)")
        if audio is not None:
            ctx = audio.codec_context
            info.audio_codec = ctx.name or ""
            info.audio_sample_rate = int(ctx.sample_rate or 0)
            info.audio_channels = int(ctx.channels or 0)
    if scan_packets:
        with _open(path) as container:
            _scan_packets(container, info)
    return info


def _scan_packets(container: Any, info: MediaInfo) -> None:
    """Fill `info`'s start time, content duration and truncation from the packets' times (demuxed, not decoded)."""
    first: float | None = None
    end = 0.0
    covered: dict[int, float] = {}
    last: dict[int, tuple[float, float]] = {}     # stream index -> (time, duration) of its latest packet
    try:
        for pkt in container.demux(*(container.streams.video[:1] + container.streams.audio[:1])):
            ts = pkt.dts if pkt.dts is not None else pkt.pts
            if ts is None or pkt.time_base is None:
                continue
            tb = float(pkt.time_base)
            t, step, k = ts * tb, (pkt.duration or 0) * tb, pkt.stream.index
            if k in last:
                if 0.0 < t - last[k][0] <= MAX_FRAME_HOLD_SECONDS:   # a longer jump is a gap, not content
                    covered[k] += t - last[k][0]
            else:
                covered[k] = 0.0
            last[k] = (t, step)
            first = t if first is None else min(first, t)
            end = max(end, (pkt.pts * tb if pkt.pts is not None else t) + step)
    except (av.error.FFmpegError, OSError):
        pass   # a torn file: the packets read so far are what it holds
    if first is None:
        return
    info.start_time = max(0.0, first)
    info.packets_end = end
    info.content_duration = max(covered[k] + last[k][1] for k in last)
    slack = max(TRUNCATION_TOLERANCE[0], TRUNCATION_TOLERANCE[1] * max(0.0, info.duration - info.start_time))
    info.truncated = info.duration > 0 and end + slack < info.duration


def _frame_rotation_from_first(container: Any, video: Any) -> int:
    """Rotation from stream metadata, else from the first decoded frame's display matrix."""
    rot = _stream_rotation(video)
    if rot:
        return rot
    try:
        for frame in container.decode(video=0):
            r = getattr(frame, "rotation", 0) or 0
            # PyAV reports the display-matrix angle counter-clockwise; display needs the inverse.
            return int(round(-float(r) / 90.0)) * 90 % 360
    except av.error.FFmpegError:
        return 0
    return 0


def _resize_shape(width: int, height: int, max_side: int) -> tuple[int, int]:
    scale = min(1.0, max_side / max(width, height)) if max_side > 0 else 1.0
    w = max(2, int(round(width * scale / 2)) * 2)
    h = max(2, int(round(height * scale / 2)) * 2)
    return w, h


def iter_frames(
    path: str | os.PathLike, fps: float = 8.0, max_side: int = 1280, chunk_size: int = 64,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (frames uint8 [N,H,W,3] RGB upright, times [N] seconds from the stream's start) sampled at `fps`,
    N <= chunk_size; times jump where the timestamps do (a frame is never held longer than MAX_FRAME_HOLD_SECONDS)."""
    path = Path(path)
    with _open(path) as container:
        if not container.streams.video:
            raise MediaError(f"{path}: has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        ctx = stream.codec_context
        rotation = None
        w, h = _resize_shape(int(ctx.width or 0), int(ctx.height or 0), max_side)
        step = 1.0 / fps
        next_t = 0.0
        # a stream that starts late (t = 10 h) is sampled from its start; a small negative start (priming) is not
        origin = max(0.0, container.start_time / av.time_base) if container.start_time is not None else None
        buf: list[np.ndarray] = []
        times: list[float] = []
        try:
            for frame in container.decode(stream):
                if frame.time is None:
                    continue
                if origin is None:
                    origin = float(frame.time)
                t = float(frame.time) - origin      # on the stream's own clock: a late start is not a gap
                if t + 1e-6 < next_t:
                    continue
                if t - next_t > MAX_FRAME_HOLD_SECONDS:
                    # a jump in the timestamps: resume sampling at this frame instead of repeating the last one
                    next_t = math.floor((t + 1e-6) / step) * step
                if rotation is None:
                    r = getattr(frame, "rotation", 0) or 0
                    rotation = int(round(-float(r) / 90.0)) * 90 % 360 or _stream_rotation(stream)
                img = frame.to_ndarray(format="rgb24", width=w, height=h)
                if rotation:
                    img = np.ascontiguousarray(np.rot90(img, k=-rotation // 90))
                # one decoded frame may stand for several sample times when the source fps < target fps
                while t + 1e-6 >= next_t:
                    buf.append(img)
                    times.append(next_t)
                    next_t += step
                    if len(buf) >= chunk_size:
                        yield np.stack(buf), np.asarray(times, dtype=np.float64)
                        buf, times = [], []
        except av.error.FFmpegError as exc:
            if not buf and next_t == 0.0:
                raise MediaError(f"{path}: video stream cannot be decoded ({_reason(exc)})") from exc
            # truncated file: keep what decoded cleanly
        if buf:
            yield np.stack(buf), np.asarray(times, dtype=np.float64)
        elif next_t == 0.0:
            raise MediaError(f"{path}: video stream holds no decodable frame")


def iter_audio(
    path: str | os.PathLike, sample_rate: int, chunk_seconds: float = 30.0,
) -> Iterator[np.ndarray]:
    """Yield mono float32 audio at `sample_rate` in chunks of `chunk_seconds` (last one shorter)."""
    path = Path(path)
    chunk = max(1, int(round(chunk_seconds * sample_rate)))
    with _open(path) as container:
        if not container.streams.audio:
            raise MediaError(f"{path}: has no audio stream")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        pending: list[np.ndarray] = []
        n_pending = 0
        n_total = 0

        def frames() -> Iterator[Any]:
            try:
                for frame in container.decode(stream):
                    yield from resampler.resample(frame)
            except av.error.FFmpegError as exc:
                if n_total == 0 and n_pending == 0:
                    raise MediaError(f"{path}: audio stream cannot be decoded ({_reason(exc)})") from exc
            yield from resampler.resample(None)

        for out in frames():
            samples = out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
            pending.append(samples)
            n_pending += samples.size
            while n_pending >= chunk:
                block = np.concatenate(pending)
                yield block[:chunk]
                n_total += chunk
                rest = block[chunk:]
                pending, n_pending = ([rest] if rest.size else []), rest.size
        if n_pending:
            yield np.concatenate(pending)
            n_total += n_pending
        if n_total == 0:
            raise MediaError(f"{path}: audio stream holds no decodable samples")


def read_audio(path: str | os.PathLike, sample_rate: int) -> np.ndarray:
    """Decode a whole audio stream to mono float32 (for short clips and tests)."""
    return np.concatenate(list(iter_audio(path, sample_rate, chunk_seconds=600.0)))


def discover_media(paths: Iterable[str | os.PathLike]) -> tuple[list[Path], list[UnusablePath]]:
    """Expand files and folders into media files, and list the paths that cannot be used, with why (a missing or
    unreadable path, a folder that cannot be listed)."""
    found: list[Path] = []
    unusable: list[UnusablePath] = []
    seen: set[str] = set()

    def cannot_list(exc: OSError) -> None:
        unusable.append(UnusablePath(str(exc.filename), f"cannot list this folder ({os_reason(exc)})"))

    for raw in paths:
        p = Path(raw)
        problem = path_problem(p)
        if problem == "is a directory, not a media file":
            for root, dirs, files in os.walk(p, onerror=cannot_list, followlinks=False):
                dirs.sort()
                for name in sorted(files):
                    f = Path(root) / name
                    if f.suffix.lower() in MEDIA_EXTENSIONS and str(f) not in seen:
                        seen.add(str(f))
                        found.append(f)
        elif problem is None or os.path.lexists(p):
            if str(p) not in seen:   # an existing file: the runner gives each its own reason (empty, FIFO, ...)
                seen.add(str(p))
                found.append(p)
        else:
            unusable.append(UnusablePath(str(p), "no such file or directory" if problem == "no such file" else problem))
    return found, unusable
