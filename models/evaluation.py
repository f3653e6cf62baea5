"""Evaluate a trained run on labelled rows: metrics, predictions.csv and the PR-curve / MMD / t-SNE plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch

from extractors.config import SentiFlowConfig
from models.data import DataConfig, PackedSplit, build_dataset
from models.insights import write_insight_plots
from models.plots import modality_mmd, plot_mmd, plot_pr_curve, plot_pr_curves, plot_tsne
from models.prepare import extract_for_rows, label_table
from models.run_dir import EVAL_DIR, METRICS_FILE, PREDICTIONS_FILE, load_run
from models.tasks import TaskConfig, run_task, task_metrics, task_of_spec
from models.trainer import predict_split
from pipeline.cache import FeatureCache
from pipeline.files import atomic_write_json
from pipeline.labels import LabelTable
from pipeline.system import resolve_device


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
    table = label_table(labels, media_root)
    if extract_missing:
        extract_for_rows(table, config, cache, data, dev, progress)
    rows = [type(r)(**{**vars(r), "mode": "test"}) for r in table]
    shapes = {m: (record["spec"]["seq_lens"][m], record["spec"]["dims"][m]) for m in data.modalities}
    dataset = build_dataset(config, cache, rows, data, progress=progress, fixed_shapes=shapes, task=task)
    split: PackedSplit = dataset.splits["test"]
    target = Path(out_dir) if out_dir else Path(run_dir) / EVAL_DIR / Path(str(table.source)).stem
    extra = {"model": record["model_id"], "labels": str(table.source), "skipped": len(dataset.skipped),
             "masked_rows": len(dataset.flags)}
    metrics = write_eval_report(model, split, dev, target, extra, task=task)
    return metrics



def write_eval_report(model: torch.nn.Module, split: PackedSplit, device: torch.device, target: Path,
                      extra: dict[str, Any] | None = None, task: TaskConfig | None = None) -> dict[str, Any]:
    """Metrics, predictions.csv and the PR-curve / modality-MMD / t-SNE PNGs of one split into `target`."""
    task = task or task_of_spec(model.spec.task, model.spec.n_outputs, model.spec.loss)
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
    plots.update(write_insight_plots(model, split.to(device), device, target))
    metrics["plots"] = plots
    prediction_table(task, split.ids, pred, truth, out.get("logits")).to_csv(target / PREDICTIONS_FILE, index=False)
    atomic_write_json(target / METRICS_FILE, metrics, default=float)
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
