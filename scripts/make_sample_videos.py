#!/usr/bin/env python3
"""Make the bundled demo clips in `sample_videos/`: a real face photo, gently animated, speaking with espeak-ng.

The face is scikit-image's `data.astronaut()` (Eileen Collins, a public-domain NASA portrait that ships inside
the scikit-image wheel). Each clip is one fixed sentence of clear polarity spoken by espeak-ng; the jaw of the
portrait opens with the loudness of the speech, and the head sways a little. Everything is deterministic:
fixed sentences, voices, seeds and encoder settings (`-fflags +bitexact`, single-threaded x264, no metadata),
so re-running the script with the same espeak-ng/ffmpeg/x264 versions reproduces the committed files byte for
byte, and with other versions reproduces the same pictures and sound up to codec rounding.

Needs: `pip install -e .[samples]` (scikit-image) and the `espeak-ng` and `ffmpeg` programs (apt).
The generated clips are committed, so running the demo needs none of these.

Usage: python scripts/make_sample_videos.py [--out sample_videos] [--only VIDEO_ID/CLIP_ID ...]
"""

from __future__ import annotations

import argparse
import csv
import math
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import soundfile as sf

from pipeline.config import ConfigBase

LABEL_COLUMNS = ("video_id", "clip_id", "text", "label", "mode")


class SampleVideoError(RuntimeError):
    """A tool the generator needs is missing or failed; the message says which and how to fix it."""


@dataclass
class SampleVideoConfig(ConfigBase):
    """How the clips are rendered, voiced and encoded (changing any value changes the committed clips)."""

    fps: int = 25
    frame_size: int = 256                # square output frames, pixels
    audio_sample_rate: int = 44100
    audio_bitrate: str = "48k"           # AAC, mono
    video_crf: int = 26                  # x264 constant rate factor: quality vs the < 2 MB budget
    video_preset: str = "slow"
    keyframe_interval: int = 50          # frames between IDR frames
    speech_rate_wpm: int = 160           # espeak-ng -s
    speech_pitch: int = 55               # espeak-ng -p (0-99)
    speech_amplitude: int = 120          # espeak-ng -a (0-200)
    speech_word_gap: int = 1             # espeak-ng -g, pause between words in units of 10 ms
    silence_threshold: float = 0.01      # |sample| below this at the ends is trimmed as silence
    lead_silence_s: float = 0.30         # silence before the first word
    tail_silence_s: float = 0.40         # silence after the last word
    peak_level: float = 0.7              # speech is scaled to this peak (linear, full scale = 1)
    min_duration_s: float = 2.0
    max_duration_s: float = 6.0
    envelope_window_s: float = 0.04      # RMS window of the speech envelope that drives the jaw
    envelope_release: float = 0.55       # per-frame decay of the jaw opening when the speech gets quieter
    jaw_drop_px: float = 6.0             # how far the jaw drops at full loudness, in photo pixels
    mouth_shadow: float = 0.85           # opacity of the mouth interior shown in the opened gap (0 = none)
    mouth_interior_rgb: tuple[int, int, int] = (70, 28, 34)   # colour of the inside of the mouth
    head_tilt_deg: float = 1.6           # amplitude of the slow head roll
    zoom_amplitude: float = 0.015        # relative amplitude of the slow zoom
    pan_px: float = 2.0                  # amplitude of the slow sideways drift, in photo pixels
    nod_px: float = 1.5                  # head moves down this much at full loudness, in photo pixels
    sway_period_s: tuple[float, float] = (2.6, 4.8)   # periods of the sway waves are drawn from this range


@dataclass(frozen=True)
class FaceGeometry:
    """Where the face is in `skimage.data.astronaut()` (x, y photo pixels), from facenet-pytorch MTCNN.

    Measured once with `MTCNN(keep_all=True).detect(astronaut(), landmarks=True)`; the test suite re-measures
    and checks these within a few pixels, so they cannot silently drift from the photo.
    """

    box: tuple[float, float, float, float] = (181.1, 62.2, 267.7, 172.1)   # x0, y0, x1, y1
    left_eye: tuple[float, float] = (205.0, 101.7)
    right_eye: tuple[float, float] = (246.8, 103.7)
    nose: tuple[float, float] = (224.7, 129.0)
    mouth_left: tuple[float, float] = (201.7, 139.2)
    mouth_right: tuple[float, float] = (245.3, 141.9)
    # Read off the photo (not MTCNN): the bottom edge of the upper teeth at the middle of the smile,
    # where the lips part when the jaw drops.
    lip_parting_y: float = 148.0

    def mirrored(self, width: int) -> "FaceGeometry":
        """The same face in the horizontally flipped photo."""
        fx = lambda p: (width - 1 - p[0], p[1])  # noqa: E731
        x0, y0, x1, y1 = self.box
        return FaceGeometry(box=(width - 1 - x1, y0, width - 1 - x0, y1), left_eye=fx(self.right_eye),
                            right_eye=fx(self.left_eye), nose=fx(self.nose), mouth_left=fx(self.mouth_right),
                            mouth_right=fx(self.mouth_left), lip_parting_y=self.lip_parting_y)

    @property
    def mouth_center(self) -> tuple[float, float]:
        """Midpoint of the mouth corners."""
        return ((self.mouth_left[0] + self.mouth_right[0]) / 2, (self.mouth_left[1] + self.mouth_right[1]) / 2)

    @property
    def mouth_width(self) -> float:
        """Distance between the mouth corners."""
        return math.dist(self.mouth_left, self.mouth_right)

    def lip_parting(self, x: np.ndarray) -> np.ndarray:
        """y of the line where the lips part: a smile-shaped parabola through the mouth corners, flat beyond them."""
        mx, corner_y = self.mouth_center
        half = 0.5 * self.mouth_width
        curvature = (self.lip_parting_y - corner_y) / (half * half)
        dx = np.minimum(np.abs(x - mx), half)
        return self.lip_parting_y - curvature * dx * dx


@dataclass(frozen=True)
class Speaker:
    """One 'speaker' (MMSA video_id): a crop and colour grade of the portrait plus an espeak-ng voice."""

    video_id: str
    voice: str                               # espeak-ng voice+variant
    center: tuple[float, float]              # crop centre in photo pixels (after mirroring)
    side: float                              # crop side in photo pixels
    mirror: bool = False
    channel_gains: tuple[float, float, float] = (1.0, 1.0, 1.0)
    saturation: float = 1.0
    seed: int = 0                            # seeds the head-motion phases


@dataclass(frozen=True)
class Clip:
    """One labelled clip: what is said and its intended polarity in [-3, 3]."""

    video_id: str
    clip_id: str
    text: str
    label: float
    mode: str


SPEAKERS: tuple[Speaker, ...] = (
    Speaker("astro_front", voice="en-us+f5", center=(224.0, 140.0), side=250.0, seed=11),
    Speaker("astro_mirror", voice="en-gb+f2", center=(288.0, 150.0), side=290.0, mirror=True,
            channel_gains=(1.06, 1.0, 0.90), seed=23),
    Speaker("astro_cool", voice="en-gb+f4", center=(224.0, 132.0), side=215.0, saturation=0.45,
            channel_gains=(0.94, 1.0, 1.08), seed=37),
)

CLIPS: tuple[Clip, ...] = (
    Clip("astro_front", "01", "I absolutely loved this movie. It was wonderful and made me so happy.", 3.0, "train"),
    Clip("astro_front", "02", "This film was terrible. I hated it, what an awful waste of time.", -3.0, "train"),
    Clip("astro_front", "03", "The movie is about two hours long and it opens on Friday.", 0.0, "train"),
    Clip("astro_front", "04", "The acting was really good and I enjoyed the story.", 2.0, "valid"),
    Clip("astro_mirror", "01", "The music was nice and the ending was fairly pleasant.", 1.0, "train"),
    Clip("astro_mirror", "02", "The middle part was a bit slow and somewhat disappointing.", -1.0, "train"),
    Clip("astro_mirror", "03", "I did not like the characters. The dialogue was bad and boring.", -2.0, "valid"),
    Clip("astro_cool", "01", "Honestly, the plot was weak and the jokes were rather dull.", -2.0, "train"),
    Clip("astro_cool", "02", "What a great film! The cast was brilliant and I loved every scene.", 2.6, "test"),
    Clip("astro_cool", "03", "It was not very good. I found most of it dull and a little annoying.", -1.6, "test"),
)


def require_tool(name: str) -> str:
    """Path of an external program, or a clear error saying how to install it."""
    found = shutil.which(name)
    if found is None:
        raise SampleVideoError(f"`{name}` not found on PATH: install it (Debian/Ubuntu: apt-get install {name})")
    return found


def load_portrait(speaker: Speaker) -> tuple[np.ndarray, FaceGeometry]:
    """The astronaut photo graded for this speaker (uint8 HxWx3 RGB) and its face geometry."""
    try:
        from skimage import data
    except ImportError as exc:
        raise SampleVideoError("scikit-image is needed to make the sample videos: pip install -e '.[samples]'") from exc
    photo = data.astronaut().astype(np.float32)
    geometry = FaceGeometry()
    if speaker.mirror:
        photo = photo[:, ::-1]
        geometry = geometry.mirrored(photo.shape[1])
    return np.ascontiguousarray(grade(photo, speaker)), geometry


def grade(rgb: np.ndarray, speaker: Speaker) -> np.ndarray:
    """Apply the speaker's colour grade (saturation, then per-channel gains) to RGB values in [0, 255]."""
    rgb = np.asarray(rgb, dtype=np.float32)
    grey = (rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[..., None]
    graded = (grey + speaker.saturation * (rgb - grey)) * np.asarray(speaker.channel_gains, dtype=np.float32)
    return np.clip(np.rint(graded), 0, 255).astype(np.uint8)


def synthesize_speech(text: str, voice: str, cfg: SampleVideoConfig, workdir: Path) -> tuple[np.ndarray, int]:
    """Speak `text` with espeak-ng; returns mono float32 samples and their sample rate."""
    espeak = require_tool("espeak-ng")
    wav = workdir / "speech.wav"
    cmd = [espeak, "-v", voice, "-s", str(cfg.speech_rate_wpm), "-p", str(cfg.speech_pitch),
           "-a", str(cfg.speech_amplitude), "-g", str(cfg.speech_word_gap), "-w", str(wav), text]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not wav.is_file():
        raise SampleVideoError(f"espeak-ng failed for voice {voice!r}: {proc.stderr.strip() or proc.returncode}")
    audio, sr = sf.read(str(wav), dtype="float32", always_2d=True)
    return audio.mean(axis=1), int(sr)


def fit_speech(audio: np.ndarray, sr: int, cfg: SampleVideoConfig, text: str) -> np.ndarray:
    """Trim the synthesiser's own silence, normalise the peak, pad with fixed silence to whole video frames."""
    loud = np.flatnonzero(np.abs(audio) > cfg.silence_threshold)
    if loud.size == 0:
        raise SampleVideoError(f"espeak-ng produced silence for {text!r}")
    speech = audio[loud[0]: loud[-1] + 1]
    speech = speech * (cfg.peak_level / float(np.abs(speech).max()))
    lead = np.zeros(int(round(cfg.lead_silence_s * sr)), dtype=np.float32)
    total = len(lead) + len(speech) + int(round(cfg.tail_silence_s * sr))
    n_frames = math.ceil(total * cfg.fps / sr)
    total = int(round(n_frames * sr / cfg.fps))
    out = np.zeros(total, dtype=np.float32)
    out[len(lead): len(lead) + len(speech)] = speech
    duration = total / sr
    if not cfg.min_duration_s <= duration <= cfg.max_duration_s:
        raise SampleVideoError(f"{text!r} lasts {duration:.2f} s, outside "
                               f"[{cfg.min_duration_s}, {cfg.max_duration_s}] s: shorten or lengthen it")
    return out


def jaw_opening(audio: np.ndarray, sr: int, cfg: SampleVideoConfig) -> np.ndarray:
    """Per-video-frame jaw opening in [0, 1] from the speech loudness (fast attack, smooth release)."""
    n_frames = int(round(len(audio) * cfg.fps / sr))
    half = int(round(cfg.envelope_window_s * sr / 2))
    rms = np.empty(n_frames, dtype=np.float64)
    for i in range(n_frames):
        c = int(round((i + 0.5) * sr / cfg.fps))
        seg = audio[max(0, c - half): c + half].astype(np.float64)
        rms[i] = math.sqrt(float(np.mean(seg * seg))) if seg.size else 0.0
    ref = float(np.percentile(rms[rms > 0], 90)) if np.any(rms > 0) else 1.0
    level = np.sqrt(np.clip(rms / ref, 0.0, 1.0))
    out = np.empty_like(level)
    prev = 0.0
    for i, v in enumerate(level):
        prev = v if v >= prev else cfg.envelope_release * prev + (1 - cfg.envelope_release) * v
        out[i] = prev
    return out.astype(np.float32)


def head_motion(n_frames: int, seed: int, cfg: SampleVideoConfig) -> np.ndarray:
    """Per-frame (roll degrees, zoom factor, dx, dy photo pixels) of a slow, seeded sway."""
    rng = np.random.default_rng(seed)
    periods = rng.uniform(*cfg.sway_period_s, size=4)   # seconds: slow, like a person at rest
    phases = rng.uniform(0, 2 * math.pi, size=4)
    t = np.arange(n_frames, dtype=np.float64) / cfg.fps
    waves = np.sin(2 * math.pi * t[:, None] / periods[None, :] + phases[None, :])
    return np.stack([cfg.head_tilt_deg * waves[:, 0], 1.0 + cfg.zoom_amplitude * waves[:, 1],
                     cfg.pan_px * waves[:, 2], 0.5 * cfg.pan_px * waves[:, 3]], axis=1)


def _smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def render_frame(photo: np.ndarray, face: FaceGeometry, speaker: Speaker, motion: np.ndarray, opening: float,
                 cfg: SampleVideoConfig) -> np.ndarray:
    """One output frame: the speaker's crop, swayed by `motion`, with the jaw opened by `opening` in [0, 1]."""
    size = cfg.frame_size
    roll, zoom, dx, dy = (float(v) for v in motion)
    dy += cfg.nod_px * opening
    grid = (np.arange(size, dtype=np.float32) + 0.5 - size / 2) * np.float32(speaker.side / size / zoom)
    u, v = np.meshgrid(grid, grid)
    a = math.radians(roll)
    cos_a, sin_a = np.float32(math.cos(a)), np.float32(math.sin(a))
    x = cos_a * u - sin_a * v + np.float32(speaker.center[0] - dx)
    y = sin_a * u + cos_a * v + np.float32(speaker.center[1] - dy)
    # Jaw: everything from the lip parting down to just below the chin slides down by `drop` pixels, fading
    # out sideways over the jaw width; the gap that opens between the lips shows the inside of the mouth.
    mx, _ = face.mouth_center
    chin = face.box[3]
    drop = cfg.jaw_drop_px * opening
    jaw_half_width = 0.5 * (face.box[2] - face.box[0])
    local_drop = drop * np.exp(-(((x - mx) / (0.8 * jaw_half_width)) ** 2))
    lip = face.lip_parting(x)
    below = _smoothstep(-0.5, 1.0, y - lip) * (1.0 - _smoothstep(chin, chin + 3 * cfg.jaw_drop_px, y))
    y_src = y - local_drop * below
    frame = cv2.remap(photo, x.astype(np.float32), y_src.astype(np.float32), interpolation=cv2.INTER_LINEAR,
                      borderMode=cv2.BORDER_REFLECT_101)
    if drop > 0:
        depth = (y - lip) / np.maximum(local_drop, 1e-3)          # 0 at the upper lip, 1 at the lowered lip
        across = 1.0 - _smoothstep(0.6, 1.0, np.abs(x - mx) / (0.5 * face.mouth_width))
        alpha = (cfg.mouth_shadow * _smoothstep(0.0, 0.5, local_drop) * across
                 * _smoothstep(-0.2, 0.25, depth) * (1.0 - _smoothstep(0.7, 1.1, depth)))
        interior = grade(np.asarray(cfg.mouth_interior_rgb), speaker).astype(np.float32)
        blended = frame.astype(np.float32) * (1.0 - alpha[..., None]) + interior * alpha[..., None]
        frame = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return frame


def encode_clip(frames: np.ndarray, audio: np.ndarray, sr: int, out_path: Path, cfg: SampleVideoConfig,
                workdir: Path) -> None:
    """Write frames (N,H,W,3 uint8) and mono audio to an H.264 + AAC mp4 with bit-exact, metadata-free settings."""
    ffmpeg = require_tool("ffmpeg")
    wav = workdir / "voice.wav"
    sf.write(str(wav), audio, sr, subtype="PCM_16")
    n, h, w, _ = frames.shape
    tmp_out = workdir / "clip.mp4"
    cmd = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(cfg.fps), "-i", "pipe:0",
           "-i", str(wav),
           "-map", "0:v:0", "-map", "1:a:0", "-map_metadata", "-1", "-map_chapters", "-1",
           "-c:v", "libx264", "-preset", cfg.video_preset, "-crf", str(cfg.video_crf), "-pix_fmt", "yuv420p",
           "-g", str(cfg.keyframe_interval), "-threads", "1", "-x264-params", "threads=1:lookahead-threads=1",
           "-c:a", "aac", "-b:a", cfg.audio_bitrate, "-ar", str(cfg.audio_sample_rate), "-ac", "1",
           "-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact",
           "-movflags", "+faststart", str(tmp_out)]
    proc = subprocess.run(cmd, input=np.ascontiguousarray(frames).tobytes(), capture_output=True)
    if proc.returncode != 0:
        raise SampleVideoError(f"ffmpeg failed for {out_path}: {proc.stderr.decode(errors='replace').strip()}")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(tmp_out), str(out_path))


def make_clip(clip: Clip, cfg: SampleVideoConfig, out_root: Path) -> Path:
    """Render, voice and encode one clip to out_root/<video_id>/<clip_id>.mp4."""
    speaker = next((s for s in SPEAKERS if s.video_id == clip.video_id), None)
    if speaker is None:
        raise SampleVideoError(f"clip {clip.clip_id}: unknown speaker {clip.video_id!r}")
    photo, face = load_portrait(speaker)
    with tempfile.TemporaryDirectory(prefix="sentiflow_sample_") as tmp:
        work = Path(tmp)
        raw, sr = synthesize_speech(clip.text, speaker.voice, cfg, work)
        audio = fit_speech(raw, sr, cfg, clip.text)
        opening = jaw_opening(audio, sr, cfg)
        motion = head_motion(len(opening), speaker.seed, cfg)
        frames = np.stack([render_frame(photo, face, speaker, motion[i], float(opening[i]), cfg)
                           for i in range(len(opening))])
        out_path = out_root / clip.video_id / f"{clip.clip_id}.mp4"
        encode_clip(frames, audio, sr, out_path, cfg, work)
    return out_path


def write_labels(clips: tuple[Clip, ...] | list[Clip], path: Path) -> None:
    """Write the MMSA label table `video_id,clip_id,text,label,mode`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(LABEL_COLUMNS)
        for c in clips:
            writer.writerow([c.video_id, c.clip_id, c.text, f"{c.label:.1f}", c.mode])


def select_clips(only: list[str] | None) -> list[Clip]:
    """The clips named `video_id/clip_id` in `only` (all when None), refusing unknown names."""
    if not only:
        return list(CLIPS)
    known = {f"{c.video_id}/{c.clip_id}": c for c in CLIPS}
    unknown = [name for name in only if name not in known]
    if unknown:
        raise SampleVideoError(f"unknown clip(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return [known[name] for name in only]


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "sample_videos",
                        help="output folder (MMSA layout: <video_id>/<clip_id>.mp4 + labels.csv)")
    parser.add_argument("--only", nargs="+", metavar="VIDEO_ID/CLIP_ID", help="make only these clips")
    parser.add_argument("--config", type=Path, help="YAML overriding SampleVideoConfig fields")
    args = parser.parse_args(argv)
    cfg = SampleVideoConfig.from_yaml(args.config) if args.config else SampleVideoConfig()
    try:
        clips = select_clips(args.only)
        for clip in clips:
            path = make_clip(clip, cfg, args.out)
            print(f"{path}  {path.stat().st_size / 1024:.1f} KiB  label {clip.label:+.1f}  {clip.mode}")
        write_labels(CLIPS, args.out / "labels.csv")
    except SampleVideoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
