"""Make a long talking-head video by concatenating short clips (for the memory-vs-length benchmark).

    python benchmarks/make_long_video.py --minutes 10 --out /tmp/long_10min.mp4
    python benchmarks/make_long_video.py --minutes 60 --out /tmp/long_60min.mp4 --inputs sample_videos

The clips are repeated in order until the total reaches `--minutes`, then joined with ffmpeg's concat
demuxer and stream copy (`-c copy`: no re-encoding, seconds even for an hour). Without an `ffmpeg` binary on
PATH the same stream copy is done with PyAV (packets remuxed, timestamps shifted clip by clip). Stream copy needs
clips with identical codecs, sizes and audio rates, as the bundled sample_videos/ have; `--reencode` re-encodes
instead (slow, for mixed inputs; needs the ffmpeg binary).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.media import discover_media, probe  # noqa: E402


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


def concat_with_pyav(order: list[Path], out: Path) -> None:
    """Stream-copy `order` (clips with identical stream layouts) into `out` with PyAV, shifting timestamps."""
    import av

    first = av.open(str(order[0]))
    try:
        layout = [(s.type, s.codec_context.name, s.time_base) for s in first.streams if s.type in ("video", "audio")]
        with av.open(str(out), "w", options={"movflags": "+faststart"}) as dst:
            outs = [dst.add_stream_from_template(s) for s in first.streams if s.type in ("video", "audio")]
            end = [0] * len(outs)            # next free decoding time per output stream (input time base)
            for clip in order:
                with av.open(str(clip)) as src:
                    streams = [s for s in src.streams if s.type in ("video", "audio")]
                    got = [(s.type, s.codec_context.name, s.time_base) for s in streams]
                    if got != layout:
                        raise ValueError(f"{clip}: streams {got} differ from {order[0]}'s {layout}; stream copy "
                                         f"needs identical clips (use --reencode with ffmpeg)")
                    offset: list[int | None] = [None] * len(outs)
                    clip_end = list(end)
                    for packet in src.demux(streams):
                        if packet.dts is None:
                            continue                 # flush packet
                        k = streams.index(packet.stream)
                        if offset[k] is None:
                            offset[k] = end[k] - packet.dts
                        packet.dts += offset[k]
                        if packet.pts is not None:
                            packet.pts += offset[k]
                        clip_end[k] = max(clip_end[k], packet.dts + (packet.duration or 0))
                        packet.stream = outs[k]
                        dst.mux(packet)
                    end = clip_end
    finally:
        first.close()


def make_long_video(inputs: list[Path], seconds: float, out: Path, reencode: bool = False) -> float:
    """Write `out` (>= `seconds` long) from the media under `inputs`; returns its probed duration.

    Uses the `ffmpeg` binary when it is on PATH, else PyAV stream copy (no re-encoding possible then).
    """
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None and reencode:
        raise RuntimeError("--reencode needs the ffmpeg binary on PATH (apt-get install ffmpeg); without it "
                           "only stream copy (PyAV) is available")
    files, missing = discover_media(inputs)
    if missing:
        raise FileNotFoundError(", ".join(path for path, _ in missing))
    infos = [probe(f) for f in files]
    keep = [(f, i.duration) for f, i in zip(files, infos) if i.has_video and i.has_audio and i.duration > 0]
    order = plan_concat([f for f, _ in keep], [d for _, d in keep], seconds)
    out.parent.mkdir(parents=True, exist_ok=True)
    if ffmpeg is None:
        part = out.with_name(f".{out.stem}.{os.getpid()}{out.suffix}")
        try:
            concat_with_pyav(order, part)
            os.replace(part, out)
        finally:
            part.unlink(missing_ok=True)
        return probe(out).duration
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
