"""Generate the bad-input corpus in code: every kind of broken, odd or hostile input a web scrape holds.

`build_corpus(dir)` writes the files and returns {relative name: expectation}, where an expectation says
whether the file must fail (with a message fragment) or succeed, and what must be missing.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from tests.helpers.media_factory import make_clip, make_wav, truncate


@dataclass
class Expect:
    """What must happen to one input."""

    status: str                                   # "ok" (done/cached) | "failed" | "ok_or_failed"
    reason: str = ""                              # fragment of the failure reason
    missing: dict[str, str] = field(default_factory=dict)   # extractor -> fragment of its missing reason


def _variable_frame_rate(path: Path) -> Path:
    """An mp4 whose frame intervals jump between 10 ms and 200 ms."""
    rng = random.Random(7)
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=1000)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.time_base = Fraction(1, 1000)
        t = 0
        for i in range(30):
            img = np.full((48, 64, 3), (i * 8) % 256, np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = t
            frame.time_base = Fraction(1, 1000)
            for pkt in s.encode(frame):
                out.mux(pkt)
            t += rng.choice([10, 40, 200])
        for pkt in s.encode():
            out.mux(pkt)
    return path


def _one_pixel(path: Path) -> Path:
    with av.open(str(path), "w") as out:
        s = out.add_stream("ffv1", rate=10)
        s.width, s.height, s.pix_fmt = 1, 1, "bgr0"
        for i in range(10):
            frame = av.VideoFrame.from_ndarray(np.full((1, 1, 3), i * 20, np.uint8), format="rgb24")
            for pkt in s.encode(frame):
                out.mux(pkt)
        for pkt in s.encode():
            out.mux(pkt)
    return path


def _many_faces(path: Path, face_clip: Path | None) -> Path | None:
    """A 3x3 grid of the bundled speaker's face (None when sample_videos/ is absent)."""
    if face_clip is None or not face_clip.is_file():
        return None
    from pipeline.media import iter_frames

    frames, _ = next(iter_frames(face_clip, fps=8.0, max_side=160))
    grid = np.concatenate([np.concatenate([frames[0]] * 3, axis=1)] * 3, axis=0)
    h, w = grid.shape[:2]
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=8)
        s.width, s.height, s.pix_fmt = w - w % 2, h - h % 2, "yuv420p"
        for _ in range(8):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(grid[: h - h % 2, : w - w % 2]), format="rgb24")
            for pkt in s.encode(frame):
                out.mux(pkt)
        for pkt in s.encode():
            out.mux(pkt)
    return path


def build_corpus(root: Path, face_clip: Path | None = None) -> dict[str, Expect]:
    """Write the corpus under `root`; return what each input must produce."""
    root.mkdir(parents=True, exist_ok=True)
    exp: dict[str, Expect] = {}
    good = make_clip(root / "good.mp4", seconds=1.5)
    exp["good.mp4"] = Expect("ok")
    (root / "zero_bytes.mp4").write_bytes(b"")
    exp["zero_bytes.mp4"] = Expect("failed", "file is empty (0 bytes)")
    (root / "random_bytes.mp4").write_bytes(np.random.default_rng(0).bytes(50_000))
    exp["random_bytes.mp4"] = Expect("failed", "not a readable media file")
    for frac in (0.1, 0.5, 0.9):
        name = f"truncated_{int(frac * 100)}.mp4"
        truncate(good, root / name, frac)
        exp[name] = Expect("ok_or_failed")
    make_wav(root / "audio_only.wav", 1.0, 44100, 220.0, False)
    exp["audio_only.wav"] = Expect("ok")
    make_clip(root / "video_only.mp4", seconds=1.0, audio=False)
    exp["video_only.mp4"] = Expect("ok", missing={"logmel": "no audio stream", "acoustic": "no audio stream"})
    make_clip(root / "tenth_second.mp4", seconds=0.1)
    exp["tenth_second.mp4"] = Expect("ok")
    _variable_frame_rate(root / "variable_frame_rate.mp4")
    exp["variable_frame_rate.mp4"] = Expect("ok", missing={"logmel": "no audio stream"})
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg:
        src = make_clip(root / ".rot_src.mp4", seconds=1.0)
        subprocess.run([ffmpeg, "-loglevel", "error", "-y", "-i", str(src), "-c", "copy",
                        "-metadata:s:v:0", "rotate=90", str(root / "rotated.mp4")], check=True)
        src.unlink()
        exp["rotated.mp4"] = Expect("ok")
    _one_pixel(root / "one_pixel.mkv")
    exp["one_pixel.mkv"] = Expect("ok", missing={"logmel": "no audio stream"})
    make_clip(root / "uhd_4k.mp4", seconds=0.5, size=(3840, 2160), fps=8)
    exp["uhd_4k.mp4"] = Expect("ok")
    make_wav(root / "pcm16_8khz.wav", 1.0, 8000, 300.0, False)
    exp["pcm16_8khz.wav"] = Expect("ok")
    make_clip(root / "six_channels.mp4", seconds=1.0, channels=6)
    exp["six_channels.mp4"] = Expect("ok")
    make_clip(root / "silent_audio.mp4", seconds=1.0, silent=True)
    exp["silent_audio.mp4"] = Expect("ok")
    make_clip(root / "no_face.mp4", seconds=1.0)
    exp["no_face.mp4"] = Expect("ok")
    if _many_faces(root / "many_faces.mp4", face_clip) is not None:
        exp["many_faces.mp4"] = Expect("ok", missing={"logmel": "no audio stream"})
    # transcripts next to videos: one not UTF-8, one of 10,000 words
    make_clip(root / "latin1_transcript.mp4", seconds=1.0)
    (root / "latin1_transcript.txt").write_bytes("Ce film était très réussi, un régal.".encode("latin-1"))
    exp["latin1_transcript.mp4"] = Expect("ok")
    make_clip(root / "huge_transcript.mp4", seconds=1.0)
    words = ("this movie was great and the actors were wonderful " * 1000).split()
    (root / "huge_transcript.txt").write_text(" ".join(words[:10_000]), encoding="utf-8")
    exp["huge_transcript.mp4"] = Expect("ok")
    # hostile file names
    for name in ("with space.mp4", "quote's \"double\".mp4", "new\nline.mp4", "ünï cödé 日本.mp4"):
        shutil.copyfile(good, root / name)
        exp[name] = Expect("ok")
    # a symlink loop inside a sub-folder: discovery must not follow it forever
    loop = root / "loop"
    loop.mkdir()
    os.symlink("..", loop / "parent_again")
    os.symlink(loop / "missing_target.mp4", root / "dangling_link.mp4")
    exp["dangling_link.mp4"] = Expect("failed", "no such file")
    return exp


def write_hostile_manifest(root: Path) -> Path:
    """An MMSA label file whose ids climb out of the dataset root."""
    (root / "Raw" / "v1").mkdir(parents=True, exist_ok=True)
    make_clip(root / "Raw" / "v1" / "c1.mp4", seconds=0.5)
    path = root / "label.csv"
    path.write_text("video_id,clip_id,text,label,mode\n"
                    "v1,c1,fine,1.0,train\n"
                    "../../etc,passwd,evil,0.0,train\n", encoding="utf-8")
    return path
