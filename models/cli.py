"""`sentiflow train | evaluate | score`: the training engine's commands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from pipeline.config import ConfigError


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register train, evaluate and score."""
    p = sub.add_parser("train", help="train a sentiment model on cached features of labelled clips")
    p.add_argument("--cache", required=True, help="feature cache directory")
    p.add_argument("--labels", required=True, help="MMSA CSV (video_id,clip_id,text,label,mode) or id,text,label")
    p.add_argument("--media-root", help="folder the MMSA ids resolve under (default: the label file's folder)")
    p.add_argument("--model", default=None, help="model name (default: vae_amdt_small, the compact VAE-AMDT)")
    p.add_argument("--out", required=True, help="run directory to create")
    p.add_argument("--config", help="feature config YAML (the one the cache was built with)")
    p.add_argument("--options", help="YAML with sections model:, train:, data: (e.g. train: {epochs: 20})")
    p.add_argument("--modalities", help="comma list, e.g. text or text,audio (default: all available)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    p.add_argument("--extract", action="store_true", help="first extract features the rows lack")
    p.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    p.set_defaults(func=run_train)

    p = sub.add_parser("evaluate", help="metrics and plots of a trained run on a labelled CSV")
    p.add_argument("--model", required=True, help="run directory written by `sentiflow train`")
    p.add_argument("--labels", required=True, help="MMSA CSV or transcript-only id,text,label CSV")
    p.add_argument("--cache", required=True, help="feature cache directory (missing features are extracted)")
    p.add_argument("--media-root", help="folder the MMSA ids resolve under")
    p.add_argument("--out", help="folder for metrics.json, predictions.csv and plots (default: RUN/eval/NAME)")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=run_evaluate)

    p = sub.add_parser("score", help="sentiment scores in [-3, 3] for media files or folders")
    p.add_argument("paths", nargs="+", help="media files and/or folders")
    p.add_argument("--model", required=True, help="run directory written by `sentiflow train`")
    p.add_argument("--cache", default=None, help="feature cache (default: RUN/score_cache)")
    p.add_argument("--out", help="write the table here (.csv, .parquet or .jsonl)")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=run_score)


def _options(path: str | None) -> dict:
    if not path:
        return {}
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"options file not found: {p}")
    data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p} must hold a mapping with sections model:, train:, data:")
    return data


def run_train(args: argparse.Namespace) -> int:
    """Train and print where the run went and its validation metrics."""
    from models.api import DEFAULT_MODEL, train_model
    from models.metrics import format_metrics
    from pipeline.labels import LabelError

    import json

    try:
        run = train_model(args.cache, args.labels, args.model or DEFAULT_MODEL, args.out, config_path=args.config,
                          device=args.device, media_root=args.media_root,
                          modalities=args.modalities.split(",") if args.modalities else None,
                          options=_options(args.options), extract_missing=args.extract, resume=args.resume,
                          progress=True)
    except LabelError as exc:
        raise ConfigError(str(exc)) from exc
    summary = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    for split, m in summary["metrics"].items():
        print(f"{split}: {format_metrics(m)}")
    print(f"run directory: {run} (best epoch {summary['best_epoch']} of {summary['epochs_run']})")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    """Evaluate a run and print its metrics."""
    from models.api import evaluate_run
    from models.checkpoint import CheckpointError
    from models.metrics import format_metrics
    from pipeline.labels import LabelError

    try:
        m = evaluate_run(args.model, args.labels, args.cache, media_root=args.media_root, out_dir=args.out,
                         device=args.device, progress=True)
    except (LabelError, CheckpointError) as exc:
        raise ConfigError(str(exc)) from exc
    print(f"{int(m['n'])} rows ({m['skipped']} skipped): {format_metrics(m)}")
    for name, path in m.get("plots", {}).items():
        print(f"{name}: {path}")
    return 0


def run_score(args: argparse.Namespace) -> int:
    """Score media and print the table; exit 1 when nothing could be scored."""
    from models.api import score_media

    from models.checkpoint import CheckpointError

    cache = args.cache or str(Path(args.model) / "score_cache")
    try:
        frame = score_media(args.paths, args.model, cache, out_file=args.out, device=args.device, progress=True)
    except CheckpointError as exc:
        raise ConfigError(str(exc)) from exc
    cols = ["id", "score", "polarity", "status", "present_text", "present_audio", "present_visual", "reason"]
    print(frame[cols].to_string(index=False, max_colwidth=60))
    if args.out:
        print(f"written: {args.out}")
    if not (frame["status"] == "scored").any():
        print("sentiflow: no clip could be scored", file=sys.stderr)
        return 1
    return 0
