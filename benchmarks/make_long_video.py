"""Make a long talking-head video by concatenating short clips (for the memory-vs-length benchmark).

    python benchmarks/make_long_video.py --minutes 10 --out /tmp/long_10min.mp4
    python benchmarks/make_long_video.py --minutes 60 --out /tmp/long_60min.mp4 --inputs sample_videos

The clips are repeated in order until the total reaches `--minutes`, then joined with ffmpeg's concat
demuxer and stream copy (`-c copy`: no re-encoding, seconds even for an hour). Stream copy needs clips
with identical codecs, sizes and audio rates, as the bundled sample_videos/ have; `--reencode` re-encodes
instead (slow, for mixed inputs).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.extraction import discover_media  # noqa: E402
from pipeline.media import probe  # noqa: E402


def plan_concat(clips: list[Path], durations: list[float], seconds: float) -> list[Path]:
    """Clips repeated in order until their durations sum to at least `seconds`."""
    if not clips or sum(durations) <= 0:
        raise ValueError("no clips with a positive duration to concatenate")
    out: list[Path] = []
    total = 0.0
    while total < seconds:
        for c, d in zip(clips, durations):
            out.append(c)
            total += d
            if total >= seconds:
                break
    return out


def make_long_video(inputs: list[Path], seconds: float, out: Path, reencode: bool = False) -> float:
    """Write `out` (>= `seconds` long) from the media under `inputs`; returns its probed duration."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise RuntimeError("ffmpeg is not on PATH (apt-get install ffmpeg)")
    files, missing = discover_media(inputs)
    if missing:
        raise FileNotFoundError(", ".join(m.path for m in missing))
    infos = [probe(f) for f in files]
    keep = [(f, i.duration) for f, i in zip(files, infos) if i.has_video and i.has_audio and i.duration > 0]
    order = plan_concat([f for f, _ in keep], [d for _, d in keep], seconds)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / "list.txt"
        listing.write_text("".join(f"file '{p.resolve()}'\n" for p in order), encoding="utf-8")
        codec = ["-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac"] if reencode else ["-c", "copy"]
        cmd = [ffmpeg, "-y", "-v", "error", "-f", "concat", "-safe", "0", "-i", str(listing), *codec,
               "-movflags", "+faststart", str(out)]
        subprocess.run(cmd, check=True)
    return probe(out).duration


def main() -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--inputs", nargs="+", default=[str(ROOT / "sample_videos")])
    ap.add_argument("--reencode", action="store_true", help="re-encode instead of stream copy (mixed inputs)")
    args = ap.parse_args()
    duration = make_long_video([Path(p) for p in args.inputs], args.minutes * 60, Path(args.out), args.reencode)
    print(f"{args.out}: {duration:.1f} s ({duration / 60:.2f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
