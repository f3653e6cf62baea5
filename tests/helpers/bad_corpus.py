"""Generate the bad-input corpus in code: every kind of broken, odd or hostile input a web scrape holds.

`build_corpus(dir)` writes the files and returns {relative name: expectation}, where an expectation says
whether the file must fail (with a message fragment) or succeed, what must be missing, which extractor states
and warnings it must show, and how many frames it may yield. `FAST_KINDS` is the subset the unmarked test runs.

Kinds that need a prepared cache (corrupt entries), root privileges dropped (unreadable folders), a full disk or a
killed parent live in their own tests: `CACHE_KINDS` and `SEPARATE_KINDS` name them for the count.
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
    states: dict[str, str] = field(default_factory=dict)    # extractor -> fragment of its state (e.g. failed: why)
    warning: str = ""                             # fragment of a warning the summary must show
    max_frames: int | None = None                 # at most this many sampled frames (face entry's n_frames)
    meta: dict[str, dict[str, str]] = field(default_factory=dict)   # extractor -> {meta key: fragment of value}


# kinds checked with a prepared cache in tests/extractors/test_bad_input_corpus.py, and in their own tests
CACHE_KINDS = ("cache: flipped bytes in a cached tensor", "cache: invalid meta.json of an entry")
SEPARATE_KINDS = ("full disk (tests/extractors/test_runner_full_disk.py)",
                  "unreadable sub-folder (tests/extractors/test_runner_bad_input.py)",
                  "path in an unreadable folder: EACCES (tests/extractors/test_runner_bad_input.py)",
                  "parent killed: orphaned worker (tests/extractors/test_isolation.py)",
                  "forged 'status: missing' entry (tests/pipeline/test_cache.py)",
                  "labels inf / -Infinity / 1e300, duplicate ids, quoted newline, U+2028 (tests/pipeline/test_labels.py)",
                  "run.json unreadable or wrong format (tests/models/test_scoring.py)",
                  "two clips differing only by extension (tests/models/test_scoring.py)",
                  "NaN model weights / non-finite score (tests/models/test_scoring.py)",
                  "README path: extract then train from the cache (tests/flows/cli/test_readme_path.py)")
NOT_UTF8_NAME = os.fsdecode(b"bad \xff\xfe name.mp4")   # a file name that is not valid UTF-8 (bytes on Linux)
NAME_255 = "n" * 251 + ".mp4"                           # the longest name: name + ".txt" is ENAMETOOLONG
TOO_LONG_PATH = "p" * 300 + ".mp4"                      # given on the command line: the OS refuses the name


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


def write_timed_video(path: Path, times: list[float], audio_seconds: float = 0.0, options: dict | None = None
                      ) -> Path:
    """A 64x48 video whose frames carry exactly `times` (seconds; a late start, a jump), optionally with a tone
    of `audio_seconds` starting at the first frame's time; `options` go to the muxer (e.g. faststart)."""
    with av.open(str(path), "w", options=options or {}) as out:
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.time_base = Fraction(1, 1000)
        a = None
        if audio_seconds:
            a = out.add_stream("aac", rate=16000)
            a.layout = "mono"
        for i, t in enumerate(times):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), (i * 8) % 256, np.uint8), format="rgb24")
            frame.pts, frame.time_base = int(round(t * 1000)), Fraction(1, 1000)
            for pkt in s.encode(frame):
                out.mux(pkt)
        for pkt in s.encode():
            out.mux(pkt)
        if a is not None:
            n = int(audio_seconds * 16000)
            tone = (0.3 * np.sin(2 * np.pi * 220 * np.arange(n) / 16000)).astype(np.float32)
            for k in range(0, n, 1024):
                af = av.AudioFrame.from_ndarray(tone[None, k:k + 1024], format="fltp", layout="mono")
                af.sample_rate, af.pts, af.time_base = 16000, int(times[0] * 16000) + k, Fraction(1, 16000)
                for pkt in a.encode(af):
                    out.mux(pkt)
            for pkt in a.encode():
                out.mux(pkt)
    return path


def late_start(path: Path) -> Path:
    """An mkv whose 2 s of video and audio start at t = 10 h (its container claims 10 h of duration)."""
    return write_timed_video(path, [36000 + i / 25 for i in range(50)], audio_seconds=2.0)


def three_hour_gap(path: Path) -> Path:
    """An mp4 with 1 s of frames, a 3 h jump in the timestamps, then 1 s more."""
    return write_timed_video(path, [i / 25 for i in range(25)] + [10800 + i / 25 for i in range(25)])


def truncated_front_index(path: Path, fraction: float = 0.3) -> Path:
    """A 4 s mp4 with its index (moov) at the front, cut after `fraction` of its bytes: it opens, most is gone."""
    full = write_timed_video(path.with_name(".full-" + path.name), [i / 25 for i in range(100)], audio_seconds=4.0,
                             options={"movflags": "+faststart"})
    truncate(full, path, fraction)
    full.unlink()
    return path


def speak(path: Path, text: str, voice: str) -> Path | None:
    """A wav of espeak-ng speaking `text` with `voice` (None when espeak-ng is not installed)."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        return None
    subprocess.run([espeak, "-v", voice, "-s", "140", "-w", str(path), text], check=True, capture_output=True)
    return path


LRS2_SIDECAR = ("Text:  THE MOVIE WAS GOOD\nConf:  4\n\nWORD START END ASDSCORE\n"
                "THE 0.05 0.15 4.1\nMOVIE 0.15 0.45 5.0\nWAS 0.45 0.60 4.4\nGOOD 0.60 0.95 6.2\n")
TEXTGRID_SIDECAR = ('File type = "ooTextFile"\nObject class = "TextGrid"\n\n0\n1\n<exists>\n1\n"IntervalTier"\n'
                    '"words"\n0\n1\n2\n0\n0.4\n"great"\n0.4\n1\n"film"\n')
WHISPER_JSON_SIDECAR = ('{"text": " nice one", "segments": [{"start": 0.0, "end": 1.0, "text": " nice one", "words": '
                        '[{"word": " nice", "start": 0.1, "end": 0.4}, {"word": " one", "start": 0.4, "end": 0.9}]}]}')
SPANISH = "Me gusta mucho esta película, los actores son maravillosos."   # espeak-ng's Mandarin voice reads pinyin


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
    _issue_19_kinds(root, good, exp)
    return exp


FAST_KINDS = ("good.mp4", "zero_bytes.mp4", "random_bytes.mp4", "video_only.mp4", "fifo.mp4", "self_loop.mp4",
              "dangling_link.mp4", NOT_UTF8_NAME, NAME_255, "late_start.mkv", "gap_3h.mp4", "truncated_front_30.mp4",
              "nested_json.mp4", "lrs2_sidecar.mp4", "not_a_transcript.mp4", "srt_55mb.mp4", "sparse_txt.mp4",
              "mmsa/v1/01.mp4")


def _issue_19_kinds(root: Path, good: Path, exp: dict[str, Expect]) -> None:
    """The kinds of issue 19: names, timestamps, truncation, sidecar formats, special files, other languages."""
    shutil.copyfile(good, root / NOT_UTF8_NAME)
    exp[NOT_UTF8_NAME] = Expect("ok")
    shutil.copyfile(good, root / NAME_255)
    exp[NAME_255] = Expect("ok")
    late_start(root / "late_start.mkv")
    exp["late_start.mkv"] = Expect("ok", max_frames=20)
    three_hour_gap(root / "gap_3h.mp4")
    exp["gap_3h.mp4"] = Expect("ok", max_frames=20, missing={"logmel": "no audio stream"})
    truncated_front_index(root / "truncated_front_30.mp4")
    exp["truncated_front_30.mp4"] = Expect("ok", warning="truncated: media ends at")
    # sidecars: nested too deeply, known formats with word timings, not a transcript, too large
    shutil.copyfile(good, root / "nested_json.mp4")
    (root / "nested_json.json").write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    exp["nested_json.mp4"] = Expect("ok", states={"transcript": "nested too deeply"})
    for name, suffix, text, fmt in (("lrs2_sidecar", ".txt", LRS2_SIDECAR, "lrs"),
                                    ("textgrid_sidecar", ".TextGrid", TEXTGRID_SIDECAR, "textgrid"),
                                    ("whisper_json_sidecar", ".json", WHISPER_JSON_SIDECAR, "whisper-json")):
        shutil.copyfile(good, root / f"{name}.mp4")
        (root / f"{name}{suffix}").write_text(text, encoding="utf-8")
        exp[f"{name}.mp4"] = Expect("ok", meta={"transcript": {"alignment": f"sidecar:{fmt}"}})
    shutil.copyfile(good, root / "not_a_transcript.mp4")
    (root / "not_a_transcript.txt").write_text("0.10 0.24 4.9 1.5\n" * 200, encoding="utf-8")
    exp["not_a_transcript.mp4"] = Expect("ok", states={"transcript": "does not look like a transcript"})
    shutil.copyfile(good, root / "srt_55mb.mp4")
    cue = "00:00:00,000 --> 00:00:01,000\nthis is a very long subtitle file line\n\n"
    with open(root / "srt_55mb.srt", "w", encoding="utf-8") as fh:
        fh.write(cue * (55 * 2**20 // len(cue)))
    exp["srt_55mb.mp4"] = Expect("ok", states={"transcript": "is too large for a transcript"})
    shutil.copyfile(good, root / "sparse_txt.mp4")
    with open(root / "sparse_txt.txt", "wb") as fh:
        fh.truncate(1536 * 2**20)
    exp["sparse_txt.mp4"] = Expect("ok", states={"transcript": "1536.0 MiB is too large"})
    # an MMSA layout whose labels.csv has a field over the CSV limit on line 3
    (root / "mmsa" / "v1").mkdir(parents=True)
    shutil.copyfile(good, root / "mmsa" / "v1" / "01.mp4")
    (root / "mmsa" / "labels.csv").write_text("video_id,clip_id,text,label\nv0,01,fine,1\nv1,01,"
                                              + "z" * (140 * 1024) + ",1\n", encoding="utf-8")
    exp["mmsa/v1/01.mp4"] = Expect("ok", states={"transcript": "labels.csv line 3: field larger than field limit"})
    # special files
    os.mkfifo(root / "fifo.mp4")
    exp["fifo.mp4"] = Expect("failed", "is a FIFO (named pipe), not a regular file")
    os.symlink("self_loop.mp4", root / "self_loop.mp4")
    exp["self_loop.mp4"] = Expect("failed", "symlink loop")
    # speech that is not English: identified, recognised by the multilingual model, never English nonsense
    if speak(root / "spanish_speech.wav", SPANISH, "es") is not None:
        exp["spanish_speech.wav"] = Expect("ok", meta={"transcript": {"language": "es", "asr_model": "base"}})


def write_hostile_manifest(root: Path) -> Path:
    """An MMSA label file whose ids climb out of the dataset root."""
    (root / "Raw" / "v1").mkdir(parents=True, exist_ok=True)
    make_clip(root / "Raw" / "v1" / "c1.mp4", seconds=0.5)
    path = root / "label.csv"
    path.write_text("video_id,clip_id,text,label,mode\n"
                    "v1,c1,fine,1.0,train\n"
                    "../../etc,passwd,evil,0.0,train\n", encoding="utf-8")
    return path
