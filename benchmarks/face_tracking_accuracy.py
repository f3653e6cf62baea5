"""Accuracy and cost of the face extractor's keyframe tracking against full MTCNN on every frame, on real clips.

    python benchmarks/face_tracking_accuracy.py --device cpu --report benchmarks/reports/face_tracking_accuracy_cpu.md

Runs the `face` extractor twice over the clips (../shared/clips by default, 8 clips per call as the pipeline
batches them): with the given config (default: the extractor's defaults, i.e. full MTCNN on keyframes at
`detect_fps`, O-Net tracking in between, relative minimum face size) and with the reference config (default: full
MTCNN on every frame at the absolute minimum face size, version 1's detection). Per clip: speaker-box IoU, landmark
error in inter-ocular distances (reference's eyes), coverage of both, frames through the full MTCNN, and the face
time of both runs (same process, one after the other, so the ratio is taken under the same load).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import machine_info  # noqa: E402

from extractors.base import Features, MediaItem  # noqa: E402
from extractors.visual.face import FaceConfig, FaceExtractor  # noqa: E402
from extractors.visual.track import box_iou  # noqa: E402
from pipeline.media import probe  # noqa: E402
from pipeline.system import resolve_device  # noqa: E402

REFERENCE = {"detect_fps": None, "min_face_fraction": 0.0}


def run(items: list[MediaItem], config: dict, device: str, batch: int) -> tuple[list, float]:
    """The face extractor's results for every item and the seconds it took (weights loaded beforehand)."""
    ext = FaceExtractor(FaceConfig.from_dict(config), device=device)
    ext.extract(items[:1])
    t0 = time.perf_counter()
    out: list = []
    for s in range(0, len(items), batch):
        out += ext.extract(items[s: s + batch])
    return out, time.perf_counter() - t0


def compare(a: Features, b: Features) -> dict:
    """Agreement of result a with reference b on the frames where both have the speaker's face."""
    w, h = b.meta["frame_size"]
    both = (a.tensors["face_present"] > 0).numpy() & (b.tensors["face_present"] > 0).numpy()
    ba = a.tensors["boxes"].numpy()[both] * [w, h, w, h]
    bb = b.tensors["boxes"].numpy()[both] * [w, h, w, h]
    iou = np.array([box_iou(ba[k:k + 1], bb[k:k + 1])[0, 0] for k in range(len(ba))])
    la = a.tensors["landmarks"].numpy()[both] * [w, h]
    lb = b.tensors["landmarks"].numpy()[both] * [w, h]
    err = np.linalg.norm(la - lb, axis=2).mean(1) / np.maximum(np.linalg.norm(lb[:, 0] - lb[:, 1], axis=1), 1e-6)
    return {"frames": int(b.meta["n_frames"]), "frames_compared": int(both.sum()),
            "coverage": float(a.meta["coverage"]), "coverage_reference": float(b.meta["coverage"]),
            "mean_iou": float(iou.mean()) if len(iou) else None,
            "p5_iou": float(np.percentile(iou, 5)) if len(iou) else None,
            "landmark_error_iod": float(err.mean()) if len(err) else None,
            "full_mtcnn_frames": int(a.meta.get("n_detected_frames", a.meta["n_frames"])),
            "tracked_frames": int(a.meta.get("n_tracked_frames", 0))}


def markdown(report: dict, command: str) -> str:
    """The report as a Markdown page."""
    s = report["summary"]
    lines = ["# Face tracking accuracy and cost vs full MTCNN on every frame", "", f"Command: `{command}`", "",
             "Machine: " + ", ".join(f"{k} {v}" for k, v in report["machine"].items()), "",
             f"Load average (1 min) at start {report['load_start']}, at end {report['load_end']} (2 cores: above 2, "
             "other jobs competed; the time ratio is taken in one process under the same load).", "",
             f"Config: `{json.dumps(report['config'])}` vs reference `{json.dumps(report['reference'])}`.", "",
             "| clip | frames | coverage / ref | mean IoU | 5th pct IoU | landmark err (IOD) | full-MTCNN frames |",
             "|---|---|---|---|---|---|---|"]
    for name, r in report["clips"].items():
        if "error" in r:
            lines.append(f"| {name} | {r['error']} | | | | | |")
            continue
        iou = "-" if r["mean_iou"] is None else f"{r['mean_iou']:.3f}"
        p5 = "-" if r["p5_iou"] is None else f"{r['p5_iou']:.3f}"
        lm = "-" if r["landmark_error_iod"] is None else f"{r['landmark_error_iod']:.3f}"
        lines.append(f"| {name} | {r['frames']} | {r['coverage']:.3f} / {r['coverage_reference']:.3f} | {iou} | "
                     f"{p5} | {lm} | {r['full_mtcnn_frames']} |")
    lines += ["", f"Talking heads ({s['clips']} clips, {s['frames']} frames; `--exclude` clips left out of the "
              f"summary): mean IoU **{s['mean_iou']:.3f}** (worst clip {s['worst_clip_iou']:.3f}), landmark error "
              f"**{s['landmark_error_iod']:.3f}** inter-ocular distances, coverage {s['coverage']:.4f} vs "
              f"{s['coverage_reference']:.4f}, {s['full_mtcnn_frames']} of {s['frames']} frames through the full "
              "MTCNN.", "",
              f"Face time, all clips: {report['seconds']:.1f} s vs {report['seconds_reference']:.1f} s for the "
              f"reference = **{report['seconds_reference'] / report['seconds']:.2f}x** faster "
              f"({report['video_seconds']:.1f} s of video: {report['video_seconds'] / report['seconds']:.2f}x vs "
              f"{report['video_seconds'] / report['seconds_reference']:.2f}x real time).", ""]
    return "\n".join(lines)


def main() -> None:
    """Run both configs, compare, print and write the report."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", help="cpu | cuda[:N]")
    ap.add_argument("--report", default=None, help="write a Markdown report here (and .json beside it)")
    ap.add_argument("--clips", default=str(ROOT.parent / "shared" / "clips"), help="folder of .mp4 clips")
    ap.add_argument("--config", default="{}", help="face config overrides as JSON (default: the defaults)")
    ap.add_argument("--reference", default=json.dumps(REFERENCE), help="reference face config as JSON")
    ap.add_argument("--exclude", nargs="*", default=["facenet_video"],
                    help="clip stems left out of the talking-head summary (default: the street scene)")
    ap.add_argument("--batch", type=int, default=8, help="clips per extractor call")
    args = ap.parse_args()
    device = str(resolve_device(args.device))
    clips = sorted(Path(args.clips).glob("*.mp4"))
    if not clips:
        sys.exit(f"no .mp4 clips in {args.clips} (use --clips)")
    info = machine_info()
    print("machine:", json.dumps(info))
    items = [MediaItem(str(p), "bench", probe(p)) for p in clips]
    config, reference = json.loads(args.config), json.loads(args.reference)
    load_start = round(os.getloadavg()[0], 2)
    got, seconds = run(items, config, device, args.batch)
    ref, seconds_ref = run(items, reference, device, args.batch)
    per_clip: dict[str, dict] = {}
    for p, a, b in zip(clips, got, ref):
        if isinstance(a, Features) and isinstance(b, Features):
            per_clip[p.stem] = compare(a, b)
        else:
            per_clip[p.stem] = {"error": f"{a!s} / reference {b!s}"}
        print(p.stem, json.dumps(per_clip[p.stem]))
    talk = [r for k, r in per_clip.items() if k not in args.exclude and "error" not in r and r["mean_iou"] is not None]
    n = sum(r["frames_compared"] for r in talk)
    summary = {"clips": len(talk), "frames": sum(r["frames"] for r in talk),
               "mean_iou": sum(r["mean_iou"] * r["frames_compared"] for r in talk) / n,
               "worst_clip_iou": min(r["mean_iou"] for r in talk),
               "landmark_error_iod": sum(r["landmark_error_iod"] * r["frames_compared"] for r in talk) / n,
               "coverage": sum(r["coverage"] * r["frames"] for r in talk) / sum(r["frames"] for r in talk),
               "coverage_reference": sum(r["coverage_reference"] * r["frames"] for r in talk)
               / sum(r["frames"] for r in talk),
               "full_mtcnn_frames": sum(r["full_mtcnn_frames"] for r in talk)}
    report = {"machine": info, "config": config, "reference": reference, "load_start": load_start,
              "load_end": round(os.getloadavg()[0], 2), "video_seconds": sum(i.info.duration for i in items),
              "seconds": seconds, "seconds_reference": seconds_ref, "clips": per_clip, "summary": summary}
    print("summary:", json.dumps(summary), "seconds:", round(seconds, 1), "reference:", round(seconds_ref, 1))
    if args.report:
        out = Path(args.report)
        out.write_text(markdown(report, "python benchmarks/face_tracking_accuracy.py " + " ".join(sys.argv[1:])))
        out.with_suffix(".json").write_text(json.dumps(report, indent=2))
        print("report written to", out)


if __name__ == "__main__":
    main()
