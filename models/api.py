"""The Python API of the training engine: train a model from the cache, score media, evaluate a run.

Used by the CLI (`sentiflow train|score|evaluate`), the demo job and the Prefect flows.
A run directory holds run.json (model, spec, train/data configs and the feature config the cache
was built with), model.safetensors (best weights), checkpoint/last.* (resumable state),
metrics.json, loss_curve.png and train.log.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch

from extractors.base import MediaItem
from models.base import ModelSpec, build_model, count_parameters, model_registry
from models.checkpoint import load_run, run_dir_lock, write_run_record
from models.datasets import DataConfig, PackedSplit, build_dataset, usable_modalities
from models.metrics import regression_metrics
from models.scoring import FAILED, ScoreRow, score_cached
from models.trainer import TrainConfig, Trainer, predict_split
from pipeline.cache import FeatureCache
from pipeline.config import ConfigBase, ConfigError
from pipeline.devices import resolve_device
from pipeline.features import FeatureLookup
from pipeline.labels import LabelTable, read_labels
from pipeline.media import MediaError, probe
from pipeline.settings import SentiFlowConfig, load_config

log = logging.getLogger(__name__)

DEFAULT_MODEL = "vae_amdt_small"   # VAE-AMDT at hidden 64; "vae_amdt" is the paper-sized one


@dataclass
class RunOptions(ConfigBase):
    """Training options: the model's config, the trainer's and the data's (YAML sections model/train/data)."""

    model: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)


def _labels(labels: str | Path | LabelTable, media_root: str | Path | None) -> LabelTable:
    return labels if isinstance(labels, LabelTable) else read_labels(labels, media_root)


def extract_for_rows(table: LabelTable, config: SentiFlowConfig, cache: FeatureCache, data: DataConfig,
                     device: torch.device, progress: bool = False) -> dict[str, Any]:
    """Extract the features `data` needs for every row that lacks them (media rows and transcript-only rows)."""
    from pipeline.extraction import ExtractionRunner

    names = sorted({data.source(m).extractor for m in usable_modalities(data)})
    report: dict[str, Any] = {}
    media_rows = [r for r in table if r.path]
    if media_rows and names:
        runner = ExtractionRunner(config, cache, device=device, only=names)
        summary = runner.run([r.path for r in media_rows], progress=progress,
                             extras={r.path: {"transcript": r.text} for r in media_rows if r.text})
        report["media"] = {"done": summary.count("done"), "cached": summary.count("cached"),
                           "failed": summary.count("failed")}
    text_rows = [r for r in table if not r.path and r.text]
    text_ex = data.source("text").extractor
    if text_rows and not data.aligned and "text" in usable_modalities(data) and text_ex:
        from pipeline.transcripts import extract_transcript_table

        s = extract_transcript_table(LabelTable(text_rows, table.source), cache, config, device=device,
                                     progress=progress, extractor_name=text_ex)
        report["transcripts"] = s.line()
    return report


def train_model(cache_dir: str | Path, labels: str | Path | LabelTable, model: str = DEFAULT_MODEL,
                out_dir: str | Path | None = None, config_path: str | Path | None = None, device: str = "auto",
                media_root: str | Path | None = None, modalities: Sequence[str] | None = None,
                options: dict[str, Any] | None = None, *, extract_missing: bool = False, resume: bool = False,
                progress: bool = False) -> Path:
    """Train `model` on the labelled rows' cached features into `out_dir`; returns the run directory."""
    if out_dir is None:
        raise ConfigError("train_model needs out_dir (the run directory to create)")
    run_dir = Path(out_dir)
    opts = RunOptions.from_dict(options or {}, where="options")
    if modalities:
        opts.data.modalities = [m.strip() for m in modalities if m.strip()]
    config = load_config(str(config_path) if config_path else None)
    registry = model_registry()
    if model not in registry:
        raise ConfigError(f"unknown model {model!r}; known: {', '.join(sorted(registry))}")
    if registry[model].uses_token_ids:
        opts.data.token_inputs = True   # the model fine-tunes the text encoder from token ids
    if registry[model].aligned:
        opts.data.aligned = True    # the model reads word-aligned inputs (batch keys aligned_*)
    dev = resolve_device(device)
    cache = FeatureCache(cache_dir)
    table = _labels(labels, media_root)
    if extract_missing:
        extract_for_rows(table, config, cache, opts.data, dev, progress)
    dataset = build_dataset(config, cache, table, opts.data, progress=progress,
                            require_modalities=bool(modalities))
    spec = ModelSpec(dims=dataset.dims, seq_lens=dataset.seq_lens, task="regression", n_outputs=1)
    net = build_model(model, spec, opts.model)
    run_dir.mkdir(parents=True, exist_ok=True)
    with run_dir_lock(run_dir):
        return _train_in(run_dir, model, net, spec, opts, config, table, dataset, dev, progress, resume)


def _train_in(run_dir: Path, model: str, net: Any, spec: ModelSpec, opts: "RunOptions", config: SentiFlowConfig,
              table: LabelTable, dataset: Any, dev: torch.device, progress: bool, resume: bool) -> Path:
    """Write the run record, train, and write the validation report (the run directory is locked)."""
    data_used = DataConfig.from_dict({**opts.data.to_dict(), "modalities": dataset.modalities})
    write_run_record(run_dir, {
        "format": 1, "model": model, "model_config": net.config.to_dict(), "spec": spec.to_dict(),
        "train": opts.train.to_dict(), "data": data_used.to_dict(), "features": config.to_dict(),
        "labels": str(table.source), "parameters": count_parameters(net),
        "dataset": {"splits": {k: len(v) for k, v in dataset.splits.items()}, "skipped": dataset.skipped,
                    "masked": dataset.flags},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    trainer = Trainer(net, dataset, opts.train, run_dir, dev, progress=progress,
                      gpu_memory_fraction=opts.data.gpu_memory_fraction)
    for s in dataset.skipped:
        trainer.log.warning("row %s skipped: %s", s["id"], s["reason"])
    trainer.fit(resume=resume)
    trainer.write_summary({"skipped_rows": len(dataset.skipped)})
    if "valid" in dataset.splits and len(dataset.splits["valid"]) >= 2:
        write_eval_report(trainer.model, dataset.splits["valid"], dev, run_dir / "plots" / "valid",
                          {"model": model, "split": "valid"})
    return run_dir


def score_media(paths: Sequence[str | Path], run_dir: str | Path, cache_dir: str | Path,
                out_file: str | Path | None = None, device: str = "auto", progress: bool = False) -> pd.DataFrame:
    """Extract what is missing with the run's feature config, then score every clip: one row per clip."""
    from pipeline.extraction import ExtractionRunner

    dev = resolve_device(device)
    model, record = load_run(run_dir, dev)
    config = SentiFlowConfig.from_dict(record["features"])
    data = DataConfig.from_dict(record["data"])
    cache = FeatureCache(cache_dir)
    names = sorted({data.source(m).extractor for m in data.modalities})
    runner = ExtractionRunner(config, cache, device=dev, only=names)
    # no extras: the transcript extractor finds label files and subtitles next to the media itself
    summary = runner.run([str(p) for p in paths], progress=progress)
    lookup = FeatureLookup(config, cache)
    rows: list[ScoreRow] = []
    todo: list[tuple[str, str, str]] = []
    for item in summary.items:
        if item.status == FAILED or not item.media_hash:
            rows.append(ScoreRow(path=item.path, id=clip_id(item.path), media_hash=item.media_hash,
                                 reason=item.reason or item.notes(), model=record["model_id"]))
        else:
            try:
                media = MediaItem(path=item.path, media_hash=item.media_hash, info=probe(item.path), extras={})
            except MediaError as exc:
                rows.append(ScoreRow(path=item.path, id=clip_id(item.path), media_hash=item.media_hash,
                                     reason=str(exc), model=record["model_id"]))
                continue
            todo.append((item.path, clip_id(item.path), media))
    rows.extend(score_cached(model, record, lookup, todo, dev))
    order = {str(p): i for i, p in enumerate(summary.items)}
    rows.sort(key=lambda r: order.get(r.path, len(order)))
    frame = pd.DataFrame([{k: v for k, v in vars(r).items() if k != "extra"} for r in rows])
    if out_file:
        write_table(frame, out_file)
    return frame


def clip_id(path: str | Path) -> str:
    """`<folder>_<stem>`, the MMSA id form (`video_id_clip_id`) of a media path."""
    p = Path(path)
    return f"{p.parent.name}_{p.stem}" if p.parent.name else p.stem


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a table as CSV, Parquet or JSON lines by the file suffix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        frame.to_parquet(path, index=False)
    elif suffix in (".json", ".jsonl"):
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        frame.to_csv(path, index=False)
    return path


def evaluate_run(run_dir: str | Path, labels: str | Path | LabelTable, cache_dir: str | Path,
                 media_root: str | Path | None = None, out_dir: str | Path | None = None, device: str = "auto",
                 extract_missing: bool = True, progress: bool = False) -> dict[str, Any]:
    """Metrics of a trained run on every row of a label file (MMSA or `id,text,label`), with plots."""
    dev = resolve_device(device)
    model, record = load_run(run_dir, dev)
    config = SentiFlowConfig.from_dict(record["features"])
    data = DataConfig.from_dict({**record["data"], "valid_fraction": 0.0})
    cache = FeatureCache(cache_dir)
    table = _labels(labels, media_root)
    if extract_missing:
        extract_for_rows(table, config, cache, data, dev, progress)
    rows = [type(r)(**{**vars(r), "mode": "test"}) for r in table]
    shapes = {m: (record["spec"]["seq_lens"][m], record["spec"]["dims"][m]) for m in data.modalities}
    dataset = build_dataset(config, cache, rows, data, progress=progress, fixed_shapes=shapes)
    split: PackedSplit = dataset.splits["test"]
    target = Path(out_dir) if out_dir else Path(run_dir) / "eval" / Path(str(table.source)).stem
    extra = {"model": record["model_id"], "labels": str(table.source), "skipped": len(dataset.skipped),
             "masked_rows": len(dataset.flags)}
    metrics = write_eval_report(model, split, dev, target, extra)
    return metrics


def write_eval_report(model: torch.nn.Module, split: PackedSplit, device: torch.device, target: Path,
                      extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Metrics, predictions.csv and the PR-curve / modality-MMD / t-SNE PNGs of one split into `target`."""
    from models.plots import modality_mmd, plot_mmd, plot_pr_curve, plot_tsne

    keep = ("fused", "text", "audio", "visual", "audio_source", "visual_source")
    out = predict_split(model, split.to(device), device, 256, keep=keep)
    pred, truth = out["prediction"].clamp(-3, 3), split.tensors["label"].cpu()
    metrics: dict[str, Any] = regression_metrics(pred, truth)
    metrics.update(extra or {})
    target.mkdir(parents=True, exist_ok=True)
    plots: dict[str, str] = {}
    try:
        plots["pr_curve"] = str(plot_pr_curve(pred, truth, target / "pr_curve.png"))
    except ValueError as exc:
        metrics["pr_curve"] = f"not drawn: {exc}"
    mmd = modality_mmd(out, ["text", "audio", "visual", "audio_source", "visual_source"])
    if mmd:
        metrics["mmd"] = mmd
        plots["mmd"] = str(plot_mmd(mmd, target / "mmd.png"))
    if "fused" in out and len(pred) >= 3:
        plots["tsne"] = str(plot_tsne(out["fused"], truth, target / "tsne.png"))
    metrics["plots"] = plots
    pd.DataFrame({"id": split.ids, "label": truth.tolist(), "prediction": pred.tolist()}).to_csv(
        target / "predictions.csv", index=False)
    (target / "metrics.json").write_text(json.dumps(metrics, indent=1, default=float), encoding="utf-8")
    return metrics
