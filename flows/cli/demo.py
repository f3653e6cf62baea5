"""The main job on bundled clips: extract every modality -> cache -> train a small model -> score -> table."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Iterable

# which extractor provides each modality in the demo, in order of preference
MODALITY_EXTRACTORS = {"audio": ("logmel", "acoustic", "tonal"), "visual": ("fer", "face"), "text": ("text",)}


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register `demo`."""
    p = sub.add_parser("demo", help="run the whole pipeline on a labelled folder (default: sample_videos/)")
    p.add_argument("videos", nargs="?", default="sample_videos", help="folder with labels.csv (MMSA layout)")
    p.add_argument("--out", default="runs/demo", help="output directory (cache, model run, scores)")
    p.add_argument("--config", help="YAML config file")
    p.add_argument("--model", default=None, help="model name (default: the training engine's default)")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=run_demo)


def available_modalities(names: list[str]) -> dict[str, list[str]]:
    """Configured extractors grouped by the modality they feed."""
    return {m: [n for n in exs if n in names] for m, exs in MODALITY_EXTRACTORS.items()}


def run_demo(args: argparse.Namespace) -> int:
    """Extract, train, score and print a table; outputs under --out."""
    from extractors.config import load_config
    from extractors.runner import ExtractionRunner
    from models.scoring import score_media
    from models.training import train_model
    from pipeline.cache import FeatureCache
    from pipeline.labels import read_labels
    from pipeline.system import resolve_device

    videos, out = Path(args.videos), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    labels = read_labels(videos / "labels.csv", media_root=videos, require_media=True)
    config = load_config(args.config)
    device = resolve_device(args.device)
    cache = FeatureCache(out / "cache")
    print(f"[1/3] extracting {len(labels)} clips with {', '.join(config.extraction.extractors)} on {device}")
    runner = ExtractionRunner(config, cache, device=device)
    summary = runner.run([r.path for r in labels], extras={r.path: {"transcript": r.text} for r in labels})
    print(summary.table())
    (out / "extraction.json").write_text(json.dumps(summary.to_dict(), indent=1, default=str), encoding="utf-8")
    mods = available_modalities(runner_names := [e.name for e in runner.extractors])
    missing = [m for m, exs in mods.items() if not exs]
    if missing:
        print(f"note: no extractor is configured for {', '.join(missing)} "
              f"(configured: {', '.join(runner_names)})")
    if not summary.any_succeeded:
        print("demo: no clip could be processed", file=sys.stderr)
        return 1
    print("[2/3] training from the cache")
    train_kwargs = {"device": args.device, "media_root": str(videos), "config_path": args.config}
    if args.model:
        train_kwargs["model"] = args.model
    run_dir = train_model(str(out / "cache"), str(videos / "labels.csv"), out_dir=str(out / "model"),
                              **train_kwargs)
    print(f"      run directory: {run_dir}")
    print("[3/3] scoring every clip")
    scores = score_media([r.path for r in labels], run_dir, str(out / "cache"),
                             out_file=str(out / "scores.csv"), device=args.device)
    print(scores_table(scores, labels))
    print(f"model: {scores['model'].iloc[0] if 'model' in scores and len(scores) else '?'}")
    print(f"outputs: {out}/scores.csv, {run_dir}/ (metrics.json, loss_curve.png)")
    return 0


def scores_table(scores: Any, labels: Iterable[Any]) -> str:
    """The demo's table: each scored clip beside its split and intended label (rows matched by media path)."""
    import pandas as pd

    from pipeline.modalities import MODALITIES, modality_code

    scores = scores.fillna("")   # a scores file read back has NaN for empty notes

    truth = {str(Path(r.path).resolve()): r for r in labels if r.path}
    rows = []
    for rec in scores.to_dict("records"):
        row = truth.get(str(Path(rec.get("path", "")).resolve()))
        present = modality_code(m for m in MODALITIES if rec.get(f"present_{m}"))
        rows.append({"clip": row.id if row else rec.get("id", ""), "split": row.mode if row else "",
                     "intended": row.label if row else "",
                     "score": round(float(rec["score"]), 2) if rec.get("status") == "scored" else "",
                     "polarity": rec.get("polarity", ""), "modalities": present or "-",
                     "note": rec.get("reason") or rec.get("masked") or ""})
    return pd.DataFrame(rows).to_string(index=False)
