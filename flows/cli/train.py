"""`sentiflow train | evaluate | score`: the training engine's commands."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from models.registry import DEFAULT_MODEL
from pipeline.config import ConfigError, read_yaml_mapping
from pipeline.files import printable


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register train, evaluate and score."""
    p = sub.add_parser("train", help="train a sentiment model on cached features of labelled clips")
    p.add_argument("--cache", required=True, help="feature cache directory")
    p.add_argument("--labels", required=True, help="MMSA CSV (video_id,clip_id,text,label,mode) or id,text,label")
    p.add_argument("--media-root", help="folder the MMSA ids resolve under (default: the label file's folder)")
    p.add_argument("--model", default=None, help=f"model name (default: {DEFAULT_MODEL})")
    p.add_argument("--out", required=True, help="run directory to create")
    p.add_argument("--config", help="feature config YAML (the one the cache was built with)")
    p.add_argument("--options", help="YAML with sections model:, train:, data:, task: (e.g. train: {epochs: 20})")
    p.add_argument("--recipe", help="the model's training recipe, e.g. paper:mosi (models/recipes/MODEL.yaml) or a "
                   "YAML file; --options override it")
    p.add_argument("--seeds", help="comma list of seeds: one run each, the best on validation kept, mean ± std "
                   "in seeds.json (default: train.seed)")
    p.add_argument("--modalities", help="comma list, e.g. text or text,audio (default: all available)")
    add_task_arguments(p)
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
    add_task_arguments(p, evaluate=True)
    p.set_defaults(func=run_evaluate)

    p = sub.add_parser("score", help="sentiment scores in [-3, 3] for media files or folders")
    p.add_argument("paths", nargs="+", help="media files and/or folders")
    p.add_argument("--model", required=True, help="run directory written by `sentiflow train`")
    p.add_argument("--cache", default=None, help="feature cache (default: RUN/score_cache)")
    p.add_argument("--out", help="write the table here (.csv, .parquet or .jsonl)")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=run_score)


def add_task_arguments(p: argparse.ArgumentParser, evaluate: bool = False) -> None:
    """The task flags (`--task KIND --label-columns ... --pos-weight ... --n-classes N --threshold X`)."""
    what = "check against the run's task: " if evaluate else ""
    p.add_argument("--task", metavar="KIND", help=what + "regression (default), binary (e.g. UR-FUNNY humor), "
                   "classification (7-class sentiment) or multilabel (emotions)")
    p.add_argument("--label-columns", help=what + "comma list of label CSV columns, e.g. "
                   "happy,sad,anger,surprise,disgust,fear (multilabel: one output each)")
    if not evaluate:
        p.add_argument("--pos-weight", help="binary/multilabel BCE positive weights: auto (neg/pos on train), "
                       "none, or a comma list w1,w2,...")
    p.add_argument("--n-classes", type=int, help=what + "classification: number of classes (default 7)")
    p.add_argument("--threshold", type=float, help=what + "binary: label > X is positive (UR-FUNNY 0/1: 0.5)")


def task_options(args: argparse.Namespace, options: dict) -> dict:
    """Training options with the task flags merged into their `task:` section (flags win)."""
    task = dict(options.get("task") or {})
    if getattr(args, "task", None):
        task["kind"] = args.task
    if getattr(args, "label_columns", None):
        task["label_columns"] = [c.strip() for c in args.label_columns.split(",") if c.strip()]
    pos = getattr(args, "pos_weight", None)
    if pos:
        if pos in ("auto", "none"):
            task["pos_weight"] = pos
        else:
            try:
                task["pos_weight"] = [float(w) for w in pos.split(",")]
            except ValueError:
                raise ConfigError(f"--pos-weight must be auto, none or numbers w1,w2,..., got {pos!r}") from None
    if getattr(args, "n_classes", None) is not None:
        task["n_classes"] = args.n_classes
    if getattr(args, "threshold", None) is not None:
        task["threshold"] = args.threshold
    return {**options, "task": task} if task else options


def parse_seeds(text: str) -> list[int]:
    """Seeds from a comma list such as 1,2,3."""
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--seeds must be a comma list of integers, got {text!r}") from None


def _options(path: str | None) -> dict:
    return read_yaml_mapping(path, "options file", "model:, train:, data:") if path else {}


def run_train(args: argparse.Namespace) -> int:
    """Train and print where the run went and its validation metrics."""
    from models.metrics import HEADLINE as HEADLINE_KEYS
    from models.metrics import format_metrics
    from models.run_dir import METRICS_FILE, SEEDS_FILE
    from models.training import train_model

    options = task_options(args, _options(args.options))
    if args.seeds:
        options.setdefault("train", {})["seeds"] = parse_seeds(args.seeds)
    run = train_model(args.cache, args.labels, args.model or DEFAULT_MODEL, args.out, config_path=args.config,
                      device=args.device, media_root=args.media_root,
                      modalities=args.modalities.split(",") if args.modalities else None,
                      options=options, recipe=args.recipe, extract_missing=args.extract,
                      resume=args.resume, progress=True)
    summary = json.loads((run / METRICS_FILE).read_text(encoding="utf-8"))
    for split, m in summary["metrics"].items():
        print(f"{split}: {format_metrics(m)}")
    if (run / SEEDS_FILE).is_file():
        seeds = json.loads((run / SEEDS_FILE).read_text(encoding="utf-8"))
        for split, metrics in seeds["metrics"].items():
            print(f"{split} over seeds {','.join(map(str, seeds['seeds']))}: " + ", ".join(
                f"{k} {v['mean']:.4f} ± {v['std']:.4f}" for k, v in metrics.items() if k in HEADLINE_KEYS))
        print(f"kept seed {seeds['selected']} (best validation {seeds['monitor']})")
    print(f"run directory: {run} (best epoch {summary['best_epoch']} of {summary['epochs_run']})")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    """Evaluate a run and print its metrics."""
    from models.evaluation import evaluate_run
    from models.metrics import format_metrics

    check_run_task(args)
    m = evaluate_run(args.model, args.labels, args.cache, media_root=args.media_root, out_dir=args.out,
                     device=args.device, progress=True)
    print(f"{int(m['n'])} rows ({m['skipped']} skipped): {format_metrics(m)}")
    for name, path in m.get("plots", {}).items():
        print(f"{name}: {path}")
    return 0


def check_run_task(args: argparse.Namespace) -> None:
    """Refuse evaluate task flags that contradict the task the run was trained for (the run's task is used)."""
    from models.run_dir import RUN_FILE, read_run_record
    from models.tasks import run_task

    if not (Path(args.model) / RUN_FILE).is_file():
        return   # evaluate_run names the missing run record
    task = run_task(read_run_record(args.model))
    asked = task_options(args, {}).get("task", {})
    flags = {"kind": "--task", "label_columns": "--label-columns", "n_classes": "--n-classes",
             "threshold": "--threshold"}
    wrong = [f"{flags[k]} {v} (the run has {getattr(task, k)})" for k, v in asked.items() if getattr(task, k) != v]
    if wrong:
        raise ConfigError(f"run {args.model} was trained for a {task.kind} task; it cannot be evaluated with "
                          + ", ".join(wrong))


def run_score(args: argparse.Namespace) -> int:
    """Score media and print the table; exit 1 when nothing could be scored."""
    from models.scoring import score_media

    cache = args.cache or str(Path(args.model) / "score_cache")
    frame = score_media(args.paths, args.model, cache, out_file=args.out, device=args.device, progress=True)
    cols = ["id", "score", "polarity", "status", "present_text", "present_audio", "present_visual", "reason"]
    shown = frame[cols].copy()
    for c in ("id", "reason"):
        shown[c] = shown[c].map(printable)
    print(shown.to_string(index=False, max_colwidth=60))
    if args.out:
        print(f"written: {args.out}")
    if not (frame["status"] == "scored").any():
        print("sentiflow: no clip could be scored", file=sys.stderr)
        return 1
    return 0
