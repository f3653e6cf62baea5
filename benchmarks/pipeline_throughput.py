"""End-to-end extraction throughput, per stage, against a per-frame / per-clip / per-sentence baseline.

    python benchmarks/pipeline_throughput.py --device cpu --report benchmarks/reports/pipeline_cpu.md
    python benchmarks/pipeline_throughput.py --device cuda --report benchmarks/reports/pipeline_h100.md

Inputs: sample_videos/ and ../shared/clips/ when present (or `--inputs`), at most `--limit` files.
In one run it measures:

1. decode: frames at the configured fps (8) and audio at 44.1 and 16 kHz, as the extractors read them;
2. SentiFlow's batched path, in this process (`isolate=False`): every extractor over all inputs in batches of
   `--batch` clips, on a fresh cache, after a warm-up run that loads the models (per-stage wall time from a timer
   around each extractor's `extract`; frames/s from the face extractor's frame count, tokens/s from the text
   extractor's token count);
3. the same with the default `isolate=True` (a child process per run, models loaded in it: what `sentiflow
   extract` does), total wall time only;
4. the per-item baseline that common toolkits use: frames decoded, facenet-pytorch's stock `MTCNN.detect` on one
   frame at a time, the FER network on one crop at a time, the audio extractors one clip at a time on the CPU,
   speech recognition one clip at a time, the text encoder on one sentence at a time. Detection and FER are timed
   on `--baseline-frames` frames (round-robin over the clips) and scaled to the number of frames the batched
   path processed (stated in the report).

The report gives x real time (video-seconds per wall-second) per stage and end to end, and the speed-up of the
batched path over the baseline. Peak RSS of this process and peak GPU memory (CUDA) are reported too.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from machine import machine_info, peak_rss_mib  # noqa: E402

import extractors as _registered  # noqa: E402,F401  (registers every extractor)
from extractors.base import MediaItem  # noqa: E402
from extractors.config import ExtractionConfig, SentiFlowConfig  # noqa: E402
from extractors.registry import build_extractor
from extractors.runner import ExtractionRunner  # noqa: E402
from pipeline.cache import FeatureCache, hash_file  # noqa: E402
from pipeline.media import MediaConfig, MediaError, discover_media, iter_audio, iter_frames, probe  # noqa: E402

FULL_EXTRACTORS = ["logmel", "acoustic", "tonal", "face", "fer", "transcript", "text", "aligned"]
AUDIO_EXTRACTORS = ("logmel", "acoustic", "tonal")


def sync(device: torch.device) -> None:
    """Wait for queued GPU work so wall times are honest."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    """(seconds, result) of one call of fn, with device syncs around it."""
    sync(device)
    t = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t, out


def gpu_peak_mib(device: torch.device) -> float | None:
    """Peak GPU memory allocated by torch since the last reset (None on CPU)."""
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def find_inputs(paths: list[str], limit: int) -> list[Path]:
    """Media files under `paths` (bundled samples and shared clips by default), at most `limit`."""
    roots = [Path(p) for p in paths] if paths else [p for p in (ROOT / "sample_videos", ROOT.parent / "shared" / "clips")
                                                    if p.is_dir()]
    files, missing = discover_media(roots)
    if missing:
        raise SystemExit("no such input: " + ", ".join(m.path for m in missing))
    ok = []
    for f in files:
        try:
            probe(f)
            ok.append(f)
        except MediaError as exc:
            print(f"skipping {f}: {exc}", file=sys.stderr)
    return ok[:limit] if limit else ok


def bench_decode(files: list[Path], media: MediaConfig) -> dict[str, float]:
    """Wall time to decode sampled frames and both audio rates of every file."""
    n_frames, t_video = 0, 0.0
    t_audio = {media.audio_sample_rate: 0.0, media.speech_sample_rate: 0.0}
    for f in files:
        info = probe(f)
        if info.has_video:
            t = time.perf_counter()
            for chunk, _ in iter_frames(f, media.video_fps, media.max_frame_side, media.frame_chunk_size):
                n_frames += len(chunk)
            t_video += time.perf_counter() - t
        if info.has_audio:
            for sr in t_audio:
                t = time.perf_counter()
                for _ in iter_audio(f, sr, media.audio_chunk_seconds):
                    pass
                t_audio[sr] += time.perf_counter() - t
    return {"frames": n_frames, "video_s": t_video, "audio_44k_s": t_audio[media.audio_sample_rate],
            "audio_16k_s": t_audio[media.speech_sample_rate]}


def instrument(runner: ExtractionRunner, device: torch.device) -> dict[str, dict[str, float]]:
    """Wrap every extractor's `extract` with a timer; returns the dict the timings accumulate in."""
    stats: dict[str, dict[str, float]] = {}
    for ex in runner.extractors:
        orig = ex.extract

        def wrapped(batch, _orig=orig, _name=ex.name):  # noqa: ANN001, ANN202
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            dt, out = timed(lambda: _orig(batch), device)
            rec = stats.setdefault(_name, {"seconds": 0.0, "calls": 0, "items": 0})
            rec["seconds"] += dt
            rec["calls"] += 1
            rec["items"] += len(batch)
            gpu = gpu_peak_mib(device)
            if gpu is not None:
                rec["gpu_peak_mib"] = max(rec.get("gpu_peak_mib", 0.0), gpu)
            return out

        ex.extract = wrapped  # type: ignore[method-assign]
    return stats


def cache_counts(cache: FeatureCache, summary: Any) -> dict[str, Any]:
    """Frames the face extractor saw, face frames, tokens the text extractor encoded, transcripts' texts."""
    frames = face_frames = tokens = 0
    texts: list[str] = []
    for item in summary.items:
        for name, key in item.keys.items():
            entry = cache.get(key)
            if entry is None or entry.status != "ok":
                continue
            if name == "face":
                frames += int(entry.meta.get("n_frames", 0))
                face_frames += int(entry.meta.get("n_face_frames", 0))
            elif name == "text":
                tokens += int(entry.meta.get("n_tokens", 0))
            elif name == "transcript" and entry.meta.get("text"):
                texts.append(str(entry.meta["text"]))
    return {"frames": frames, "face_frames": face_frames, "tokens": tokens, "texts": texts}


def run_batched(files: list[Path], extractors: list[str], device: torch.device, batch: int,
                isolate: bool) -> dict[str, Any]:
    """SentiFlow's path over `files` on a fresh cache (after a warm-up clip when in-process)."""
    cfg = SentiFlowConfig(extraction=ExtractionConfig(extractors=extractors, batch_size=batch, isolate=isolate))
    with tempfile.TemporaryDirectory() as warm_dir, tempfile.TemporaryDirectory() as tmp:
        runner = ExtractionRunner(cfg, FeatureCache(warm_dir), device=str(device))
        stats: dict[str, dict[str, float]] = {}
        if not isolate:
            runner.run(files[:1], progress=False)          # loads every model once
            stats = instrument(runner, device)
        cache = FeatureCache(tmp)
        runner.cache = cache
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        wall, summary = timed(lambda: runner.run(files, progress=False), device)
        counts = cache_counts(cache, summary)
        states: dict[str, dict[str, int]] = {}
        for it in summary.items:
            for name, s in it.extractors.items():
                k = s.split(":", 1)[0]
                states.setdefault(name, {}).setdefault(k, 0)
                states[name][k] += 1
    return {"wall_s": wall, "stages": stats, "counts": counts, "states": states,
            "failed_items": summary.count("failed")}


def round_robin_frames(files: list[Path], n: int, media: MediaConfig, max_side: int) -> list[np.ndarray]:
    """Up to n detection-size frames taken round-robin from the files (mixed sizes, as in a real corpus)."""
    from extractors.visual.detect import resize_for_detection

    per_file = []
    for f in files:
        if not probe(f).has_video:
            continue
        got: list[np.ndarray] = []
        for chunk, _ in iter_frames(f, media.video_fps, media.max_frame_side, media.frame_chunk_size):
            small, _ = resize_for_detection(torch.from_numpy(chunk), max_side)
            got.extend(small.numpy())
            if len(got) * len(files) >= n:
                break
        per_file.append(got)
    out: list[np.ndarray] = []
    k = 0
    while len(out) < n and any(k < len(g) for g in per_file):
        out.extend(g[k] for g in per_file if k < len(g))
        k += 1
    return out[:n]


def baseline_visual(files: list[Path], device: torch.device, n_frames: int) -> dict[str, float]:
    """Stock MTCNN one frame at a time, then the FER net one crop at a time (and batched, for the ratio)."""
    from facenet_pytorch import MTCNN

    from extractors.visual.crops import crop_faces, crop_geometry
    from extractors.visual.face import FaceConfig
    from extractors.visual.fer import FerConfig

    media, fc, rc = MediaConfig(), FaceConfig(), FerConfig()
    frames = round_robin_frames(files, n_frames, media, fc.detect_max_side)
    mtcnn = MTCNN(keep_all=True, device=device, min_face_size=fc.min_face_size, thresholds=fc.thresholds,
                  factor=fc.pyramid_factor, post_process=False)
    mtcnn.detect(frames[0])                                   # warm-up
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def detect_each() -> None:
        for f in frames:
            boxes, probs, lms = mtcnn.detect(f, landmarks=True)
            found.append((f, boxes, lms))

    t_det, _ = timed(detect_each, device)
    crops = []
    for f, boxes, lms in found:
        if boxes is not None and len(boxes):
            c, s, a = crop_geometry(np.asarray(boxes[:1], np.float32), np.asarray(lms[:1], np.float32),
                                    rc.crop_margin, rc.align_crops)
            crops.append(crop_faces(torch.from_numpy(f[None]).to(device), c, s, a, rc.crop_size).cpu())
    out = {"frames": len(frames), "detect_s": t_det, "detect_fps": len(frames) / t_det, "crops": len(crops)}
    if crops:
        crops_t = torch.cat(crops)
        for layout in ("channels_last", "contiguous"):   # the net's layout (extraction.options.fer.memory_format)
            fer = build_extractor("fer", {"memory_format": layout}, media, str(device))
            fer.classify(crops_t[:1])                         # warm-up at both timed shapes (loads weights,
            fer.classify(crops_t)                             # lets cuDNN pick its kernels)
            t_one, _ = timed(lambda: [fer.classify(c[None]) for c in crops_t], device)
            t_all, _ = timed(lambda: fer.classify(crops_t), device)
            out[f"fer_{layout}_one_fps"] = len(crops_t) / t_one
            out[f"fer_{layout}_batched_fps"] = len(crops_t) / t_all
            if layout == FerConfig().memory_format:             # the default layout is the one compared below
                out.update(fer_one_s=t_one, fer_one_fps=len(crops_t) / t_one, fer_batched_fps=len(crops_t) / t_all)
    return out


def baseline_audio_transcript(files: list[Path], device: torch.device) -> dict[str, float]:
    """Audio extractors one clip at a time on the CPU; speech recognition one clip at a time."""
    items = []
    for f in files:
        info = probe(f)
        items.append(MediaItem(path=str(f), media_hash=hash_file(f), info=info))
    out: dict[str, float] = {}
    audio_items = [i for i in items if i.info.has_audio]
    for name in AUDIO_EXTRACTORS:
        ex = build_extractor(name, None, MediaConfig(), "cpu")
        ex.extract(audio_items[:1])
        out[name] = timed(lambda: [ex.extract([i]) for i in audio_items], torch.device("cpu"))[0]
    ex = build_extractor("transcript", None, MediaConfig(), str(device))
    ex.extract(audio_items[:1])
    out["transcript"] = timed(lambda: [ex.extract([i]) for i in audio_items], device)[0]
    return out


def baseline_text(texts: list[str], device: torch.device) -> dict[str, float]:
    """The text encoder on one sentence at a time (tokenize, forward, copy back), as common toolkits do."""
    from extractors.text.encoder import TextEncoderConfig, load_text_model

    c = TextEncoderConfig()
    tokenizer, model = load_text_model(c.model, device, c.dtype)
    if not texts:
        return {"sentences": 0, "seconds": 0.0, "tokens": 0}
    tokens = 0

    @torch.inference_mode()
    def each() -> None:
        nonlocal tokens
        for t in texts:
            enc = tokenizer(t, return_tensors="pt", truncation=True, max_length=c.seq_len).to(device)
            tokens += int(enc["input_ids"].shape[1])
            model(**enc).last_hidden_state.float().cpu()

    each()                                                    # warm-up
    tokens = 0
    dt, _ = timed(each, device)
    return {"sentences": len(texts), "seconds": dt, "tokens": tokens}


def fmt(x: float | None, nd: int = 2) -> str:
    """A number for a table cell."""
    return "-" if x is None else f"{x:.{nd}f}"


def main() -> int:
    """Run every measurement, print and optionally write the Markdown report (+ JSON beside it)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", help="cpu | cuda[:N]")
    ap.add_argument("--report", help="write the Markdown report here (and .json beside it)")
    ap.add_argument("--inputs", nargs="*", default=[], help="files/folders (default: sample_videos + ../shared/clips)")
    ap.add_argument("--limit", type=int, default=0, help="use at most this many files (0: all)")
    ap.add_argument("--extractors", nargs="+", default=FULL_EXTRACTORS)
    ap.add_argument("--batch", type=int, default=8, help="clips per batch on SentiFlow's path")
    ap.add_argument("--baseline-frames", type=int, default=96, help="frames timed in the per-frame visual baseline")
    ap.add_argument("--skip-isolated", action="store_true", help="do not time the default isolate=True run")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda asked for but torch sees no CUDA device")
    info = machine_info()
    load_start = os.getloadavg()
    print("machine:", json.dumps(info), "load:", load_start, flush=True)
    files = find_inputs(args.inputs, args.limit)
    media = MediaConfig()
    durations = [probe(f).duration for f in files]
    total_s = float(sum(durations))
    print(f"{len(files)} files, {total_s:.1f} s of media", flush=True)

    decode = bench_decode(files, media)
    print("decode:", json.dumps(decode), flush=True)
    ours = run_batched(files, args.extractors, device, args.batch, isolate=False)
    print("batched in-process:", json.dumps({k: v for k, v in ours.items() if k != "counts"}), flush=True)
    isolated = None if args.skip_isolated else run_batched(files, args.extractors, device, args.batch, isolate=True)
    if isolated:
        print(f"batched isolate=True: {isolated['wall_s']:.1f} s", flush=True)
    base_vis = baseline_visual(files, device, args.baseline_frames) if {"face", "fer"} & set(args.extractors) else {}
    print("baseline visual:", json.dumps(base_vis), flush=True)
    base_at = baseline_audio_transcript(files, device)
    print("baseline audio/transcript:", json.dumps(base_at), flush=True)
    base_txt = baseline_text(ours["counts"]["texts"], device)
    print("baseline text:", json.dumps({k: v for k, v in base_txt.items()}), flush=True)
    load_end = os.getloadavg()

    counts = ours["counts"]
    n_frames = counts["frames"] or decode["frames"]
    st = ours["stages"]
    # baseline seconds per stage, scaled to the frames/crops/sentences the batched path processed
    base: dict[str, float] = {}
    if base_vis:
        base["face"] = decode["video_s"] + n_frames / base_vis["detect_fps"]
        if "fer_one_fps" in base_vis:
            base["fer"] = decode["video_s"] + counts["face_frames"] / base_vis["fer_one_fps"]
    for name in (*AUDIO_EXTRACTORS, "transcript"):
        base[name] = base_at[name]
    if base_txt["sentences"]:
        base["text"] = base_txt["seconds"]
    rows = []
    for name in args.extractors:
        s = st.get(name, {}).get("seconds")
        b = base.get(name)
        rows.append((name, s, b))
    ours_total = ours["wall_s"]
    stages_with_base = [n for n, s, b in rows if s is not None and b is not None]
    base_total = sum(base[n] for n in stages_with_base) + sum(
        st[n]["seconds"] for n in args.extractors if n in st and n not in base)   # e.g. aligned: same code both ways

    cmd = "python benchmarks/pipeline_throughput.py " + " ".join(sys.argv[1:])
    L = [f"# Extraction throughput ({device.type}): SentiFlow batched vs per-item baseline", "",
         f"Command: `{cmd}`", "",
         "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()) + f"; torch threads {torch.get_num_threads()}",
         f"Load average (1/5/15 min) at start {'/'.join(f'{x:.1f}' for x in load_start)}, at end "
         f"{'/'.join(f'{x:.1f}' for x in load_end)} (the machine has {os.cpu_count()} cores; other jobs were running "
         "when the load is above that).", "",
         f"Input: {len(files)} files, {total_s:.1f} s of media; {n_frames} frames sampled at {media.video_fps:g} fps "
         f"({counts['face_frames']} with the speaker's face); {len(counts['texts'])} transcripts, {counts['tokens']} "
         f"text tokens. Extractors: {', '.join(args.extractors)}. Batch: {args.batch} clips.", "",
         "## End to end", "",
         "| run | wall s | x real time | ms per video-second |", "|---|---|---|---|",
         f"| SentiFlow batched, in-process (isolate=False, models already loaded) | {ours_total:.1f} | "
         f"{total_s / ours_total:.2f} | {1000 * ours_total / total_s:.0f} |"]
    if isolated:
        L.append(f"| SentiFlow batched, default isolate=True (child process, loads models) | {isolated['wall_s']:.1f} | "
                 f"{total_s / isolated['wall_s']:.2f} | {1000 * isolated['wall_s'] / total_s:.0f} |")
    L += [f"| per-item baseline (sum of stages below) | {base_total:.1f} | {total_s / base_total:.2f} | "
          f"{1000 * base_total / total_s:.0f} |", "",
          f"**Speed-up of the batched path over the per-item baseline: {base_total / ours_total:.2f}x** "
          f"(target on this CPU: >= 2x real time end to end; measured {total_s / ours_total:.2f}x).", "",
          "## Per stage", "",
          "Wall seconds for all inputs (SentiFlow: inside the extractor's `extract`, which includes its own "
          "decoding; cache writes are outside). x RT = video-seconds per wall-second.", "",
          "| stage | SentiFlow s | x RT | rate | baseline s | x RT | speed-up | GPU peak MiB |",
          "|---|---|---|---|---|---|---|---|"]
    for name, s, b in rows:
        rate = ""
        if name == "face" and s:
            rate = f"{n_frames / s:.1f} frames/s"
        elif name == "fer" and s:
            rate = f"{counts['face_frames'] / s:.1f} faces/s"
        elif name == "text" and s:
            rate = f"{counts['tokens'] / s:.0f} tokens/s"
        gpu = st.get(name, {}).get("gpu_peak_mib")
        L.append(f"| {name} | {fmt(s)} | {fmt(total_s / s if s else None, 1)} | {rate} | {fmt(b)} | "
                 f"{fmt(total_s / b if b else None, 1)} | {fmt(b / s if (s and b) else None)} | {fmt(gpu, 0)} |")
    L += ["", "## Components", "",
          "| measure | value |", "|---|---|",
          f"| decode frames at {media.video_fps:g} fps (all files) | {decode['video_s']:.2f} s, "
          f"{decode['frames'] / max(decode['video_s'], 1e-9):.0f} frames/s, "
          f"{total_s / max(decode['video_s'], 1e-9):.0f}x RT |",
          f"| decode audio at {media.audio_sample_rate} Hz | {decode['audio_44k_s']:.2f} s |",
          f"| decode audio at {media.speech_sample_rate} Hz | {decode['audio_16k_s']:.2f} s |"]
    if base_vis:
        L.append(f"| stock MTCNN.detect, one frame at a time ({base_vis['frames']} frames, scaled) | "
                 f"{base_vis['detect_fps']:.1f} frames/s |")
        if "fer_one_fps" in base_vis:
            for layout in ("channels_last", "contiguous"):
                one, batched = base_vis[f"fer_{layout}_one_fps"], base_vis[f"fer_{layout}_batched_fps"]
                L.append(f"| FER net one crop at a time / batched, {layout} ({base_vis['crops']} crops) | "
                         f"{one:.0f} / {batched:.0f} faces/s |")
    if base_txt["sentences"]:
        L.append(f"| text encoder one sentence at a time ({base_txt['sentences']} sentences) | "
                 f"{base_txt['tokens'] / base_txt['seconds']:.0f} tokens/s |")
    L += [f"| peak RSS of this process | {peak_rss_mib():.0f} MiB |",
          f"| extractor states (batched run) | {json.dumps(ours['states'])} |", "",
          "Baseline notes: face = frame decoding + stock per-frame detection rate x frames; fer = frame decoding + "
          "per-crop FER rate x face frames (the crop cutting is not counted, which favours the baseline); audio "
          "extractors and speech recognition are run one clip at a time (audio on the CPU); text = one sentence per "
          "forward pass; stages without a per-item variant (aligned) count the same in both."]
    text = "\n".join(L) + "\n"
    print(text)
    if args.report:
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report).write_text(text, encoding="utf-8")
        ours["counts"]["texts"] = len(ours["counts"]["texts"])
        Path(args.report).with_suffix(".json").write_text(json.dumps(
            {"machine": info, "load_start": load_start, "load_end": load_end, "media_seconds": total_s,
             "decode": decode, "batched": ours, "isolated": isolated, "baseline_visual": base_vis,
             "baseline_audio_transcript": base_at, "baseline_text": base_txt, "baseline_total_s": base_total},
            indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
