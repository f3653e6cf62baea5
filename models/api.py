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
from models.datasets import DataConfig, PackedDataset, PackedSplit, build_dataset, usable_modalities
from models.tasks import (TaskConfig, resolve_monitor, resolve_pos_weight, run_task, task_metrics,  # noqa: F401
                          task_of_spec)
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
    """Training options: the model's, trainer's, data's and task's configs (YAML sections model/train/data/task)."""

    model: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    task: TaskConfig = field(default_factory=TaskConfig)


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
                            require_modalities=bool(modalities), task=opts.task)
    spec = task_spec(opts, dataset)
    net = seeded_model(model, spec, opts)
    run_dir.mkdir(parents=True, exist_ok=True)
    with run_dir_lock(run_dir):
        return _train_in(run_dir, model, net, spec, opts, config, table, dataset, dev, progress, resume)


def seeded_model(model: str, spec: ModelSpec, opts: "RunOptions") -> Any:
    """The model with its initial weights drawn from `train.seed`, so the same command gives the same run."""
    torch.manual_seed(opts.train.seed)
    return build_model(model, spec, opts.model)


def _train_in(run_dir: Path, model: str, net: Any, spec: ModelSpec, opts: "RunOptions", config: SentiFlowConfig,
              table: LabelTable, dataset: Any, dev: torch.device, progress: bool, resume: bool) -> Path:
    """Write the run record, train, and write the validation report (the run directory is locked)."""
    data_used = DataConfig.from_dict({**opts.data.to_dict(), "modalities": dataset.modalities})
    task = opts.task
    monitor, mode = resolve_monitor(task, opts.train.monitor, opts.train.monitor_mode)
    train_cfg = TrainConfig.from_dict({**opts.train.to_dict(), "monitor": monitor, "monitor_mode": mode})
    write_run_record(run_dir, {
        "format": 1, "model": model, "model_config": net.config.to_dict(), "spec": spec.to_dict(),
        "task": task.to_dict(), "pos_weight": list(spec.pos_weight) or None,
        "train": train_cfg.to_dict(), "data": data_used.to_dict(), "features": config.to_dict(),
        "labels": str(table.source), "parameters": count_parameters(net),
        "dataset": {"splits": {k: len(v) for k, v in dataset.splits.items()}, "skipped": dataset.skipped,
                    "masked": dataset.flags},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    trainer = Trainer(net, dataset, train_cfg, run_dir, dev, progress=progress,
                      gpu_memory_fraction=opts.data.gpu_memory_fraction, task=task)
    for s in dataset.skipped:
        trainer.log.warning("row %s skipped: %s", s["id"], s["reason"])
    trainer.fit(resume=resume)
    trainer.write_summary({"skipped_rows": len(dataset.skipped), "task": task.kind})
    if "valid" in dataset.splits and len(dataset.splits["valid"]) >= 2:
        write_eval_report(trainer.model, dataset.splits["valid"], dev, run_dir / "plots" / "valid",
                          {"model": model, "split": "valid"}, task=task)
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
    task = run_task(record)
    cache = FeatureCache(cache_dir)
    table = _labels(labels, media_root)
    if extract_missing:
        extract_for_rows(table, config, cache, data, dev, progress)
    rows = [type(r)(**{**vars(r), "mode": "test"}) for r in table]
    shapes = {m: (record["spec"]["seq_lens"][m], record["spec"]["dims"][m]) for m in data.modalities}
    dataset = build_dataset(config, cache, rows, data, progress=progress, fixed_shapes=shapes, task=task)
    split: PackedSplit = dataset.splits["test"]
    target = Path(out_dir) if out_dir else Path(run_dir) / "eval" / Path(str(table.source)).stem
    extra = {"model": record["model_id"], "labels": str(table.source), "skipped": len(dataset.skipped),
             "masked_rows": len(dataset.flags)}
    metrics = write_eval_report(model, split, dev, target, extra, task=task)
    return metrics



def write_eval_report(model: torch.nn.Module, split: PackedSplit, device: torch.device, target: Path,
                      extra: dict[str, Any] | None = None, task: TaskConfig | None = None) -> dict[str, Any]:
    """Metrics, predictions.csv and the PR-curve / modality-MMD / t-SNE PNGs of one split into `target`."""
    from models.plots import modality_mmd, plot_mmd, plot_pr_curve, plot_pr_curves, plot_tsne

    task = task or task_of_spec(model.spec.task, model.spec.n_outputs)
    keep = ("fused", "text", "audio", "visual", "audio_source", "visual_source")
    out = predict_split(model, split.to(device), device, 256, keep=keep, logits=task.kind == "classification")
    pred, truth = out["prediction"], split.tensors["label"].cpu()
    if task.kind == "regression":
        pred = pred.clamp(-3, 3)
    metrics: dict[str, Any] = task_metrics(task, pred, truth)
    metrics["task"] = task.kind
    metrics.update(extra or {})
    target.mkdir(parents=True, exist_ok=True)
    plots: dict[str, str] = {}
    try:
        if task.kind == "regression":
            plots["pr_curve"] = str(plot_pr_curve(pred, truth, target / "pr_curve.png"))
        elif task.kind in ("binary", "multilabel"):
            title = (f"precision-recall (positive: {task.label_columns[0]} > {task.threshold:g})"
                     if task.kind == "binary" else "precision-recall per class (present: value > 0)")
            plots["pr_curve"] = str(plot_pr_curves(pred, truth, task.class_names, target / "pr_curve.png", title))
    except ValueError as exc:
        metrics["pr_curve"] = f"not drawn: {exc}"
    mmd = modality_mmd(out, ["text", "audio", "visual", "audio_source", "visual_source"])
    if mmd:
        metrics["mmd"] = mmd
        plots["mmd"] = str(plot_mmd(mmd, target / "mmd.png"))
    if "fused" in out and len(pred) >= 3:
        colour, scale, name = tsne_colours(task, truth)
        plots["tsne"] = str(plot_tsne(out["fused"], colour, target / "tsne.png", value_range=scale, value_name=name))
    from models.insights import write_insight_plots   # modality attention / policy histograms, when the model has them
    plots.update(write_insight_plots(model, split.to(device), device, target))
    metrics["plots"] = plots
    prediction_table(task, split.ids, pred, truth, out.get("logits")).to_csv(target / "predictions.csv", index=False)
    (target / "metrics.json").write_text(json.dumps(metrics, indent=1, default=float), encoding="utf-8")
    return metrics


def tsne_colours(task: TaskConfig, truth: torch.Tensor) -> tuple[torch.Tensor, tuple[float, float], str]:
    """Per-row values to colour a t-SNE map by, their range and name, for the task's targets."""
    if task.kind == "regression":
        return truth, (-3.0, 3.0), "sentiment"
    if task.kind == "binary":
        return truth, (0.0, 1.0), "positive (1) / negative (0)"
    if task.kind == "classification":
        return truth.float(), (0.0, task.n_classes - 1.0), "class"
    return truth.float().sum(-1), (0.0, float(len(task.label_columns))), "classes present"


def prediction_table(task: TaskConfig, ids: Sequence[str], pred: torch.Tensor, truth: torch.Tensor,
                     logits: torch.Tensor | None = None) -> pd.DataFrame:
    """predictions.csv: id, label, prediction (+ predicted class / probabilities), or per-class columns."""
    if task.kind == "regression":
        return pd.DataFrame({"id": list(ids), "label": truth.tolist(), "prediction": pred.tolist()})
    if task.kind == "binary":   # prediction = probability of the positive class
        return pd.DataFrame({"id": list(ids), "label": truth.long().tolist(), "prediction": pred.tolist(),
                             "predicted": (pred > 0.5).long().tolist()})
    if task.kind == "classification":   # prediction = class id, prob_<k> = softmax of the logits
        frame = pd.DataFrame({"id": list(ids), "label": truth.long().tolist(), "prediction": pred.long().tolist()})
        if logits is not None:
            probs = torch.softmax(logits.float(), -1)
            for k in range(probs.shape[1]):
                frame[f"prob_{k}"] = probs[:, k].tolist()
        return frame
    frame = pd.DataFrame({"id": list(ids)})   # multilabel: label_/prob_/pred_<class> per class
    for j, name in enumerate(task.label_columns):
        frame[f"label_{name}"] = truth[:, j].long().tolist()
        frame[f"prob_{name}"] = pred[:, j].tolist()
        frame[f"pred_{name}"] = (pred[:, j] > 0.5).long().tolist()
    return frame


def train_on_dataset(dataset: PackedDataset, model: str, options: RunOptions | dict[str, Any] | None,
                     run_dir: str | Path, config: SentiFlowConfig, table: LabelTable, device: torch.device,
                     progress: bool = False, resume: bool = False) -> Path:
    """Train `model` on an already packed dataset into an ordinary run directory (experiments pack once)."""
    opts = options if isinstance(options, RunOptions) else RunOptions.from_dict(options or {}, where="options")
    spec = task_spec(opts, dataset)
    net = seeded_model(model, spec, opts)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with run_dir_lock(run_dir):
        return _train_in(run_dir, model, net, spec, opts, config, table, dataset, device, progress, resume)


def task_spec_fields(opts: RunOptions) -> dict[str, Any]:
    """The ModelSpec's task and output size for the options' task (regression when the options have none)."""
    task = getattr(opts, "task", None) or TaskConfig()
    return {"task": task.kind, "n_outputs": task.n_outputs}


def task_spec(opts: RunOptions, dataset: PackedDataset) -> ModelSpec:
    """The ModelSpec of a dataset for the options' task, BCE positive weights resolved on the train split."""
    train = dataset.splits.get("train")
    if train is None or len(train) == 0:
        raise ConfigError("the labels have no usable 'train' rows")
    pos_weight = resolve_pos_weight(opts.task, train.tensors["label"])
    return ModelSpec(dims=dict(dataset.dims), seq_lens=dict(dataset.seq_lens), pos_weight=pos_weight or [],
                     **task_spec_fields(opts))
