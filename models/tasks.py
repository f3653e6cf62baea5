"""Learning tasks beside sentiment regression: binary (UR-FUNNY humor), classes (Acc-7) and multi-label emotions.

A `TaskConfig` (YAML section `task:` of the training options) says how label values become model targets,
how many outputs the model has, how the loss weighs positives and which metrics describe a split:

- regression: the label itself (sentiment in [-3, 3]); metrics of `models.metrics.regression_metrics`.
- binary: `label > threshold` (UR-FUNNY labels 0/1 -> threshold 0.5); one logit, sigmoid > 0.5 predicts positive.
  Metrics Acc-2 and weighted F1 as the MSA papers report them, plus precision/recall of the positive class.
- classification: `n_classes` logits, argmax predicts. With `class_mapping: score` an odd `n_classes = 2k + 1`
  maps a score to `round(clip(label, -k, k)) + k` (7 classes: -3..3 -> 0..6, 5 classes: -2..2 -> 0..4, the
  Acc-7/Acc-5 conventions); with `class_mapping: index` the labels are class ids 0..n_classes-1 already.
  Metrics acc<n> (e.g. acc7) and macro F1.
- multilabel: one logit per `label_columns` entry (MOSEI/MOSEAS emotions happy, sad, anger, surprise, disgust,
  fear: intensities 0..3, present when > 0); sigmoid > 0.5 predicts presence. Per class the weighted F1
  (`f1_<class>`) and the weighted accuracy of the MOSEI emotion papers (`wacc_<class>` =
  (TP * N / P + TN) / (2 N), P/N = true positives/negatives in the truth, i.e. the mean of the true-positive and
  true-negative rates), and their means over the classes (`f1_mean`, `wacc_mean`).

Metrics take the model's final predictions (`SentimentModel.predict`: scores, probabilities or class ids) and
the packed targets (`task_targets` of the label values).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from sklearn.metrics import f1_score, precision_score, recall_score

from models.metrics import regression_metrics
from pipeline.config import ConfigBase, ConfigError

TASK_KINDS = ("regression", "binary", "classification", "multilabel")   # same names as models.base.TASKS
LABEL_COLUMN = "label"              # the CSV column every label file has (LabelRow.label)
MOSEI_EMOTIONS = ("happy", "sad", "anger", "surprise", "disgust", "fear")
DECISION_PROBABILITY = 0.5          # sigmoid output above which binary / multi-label predictions are positive
CLASS_MAPPINGS = ("score", "index")
POS_WEIGHT_MODES = ("none", "auto")


@dataclass
class TaskConfig(ConfigBase):
    """The learning task (YAML section `task:`): kind, label columns and how labels become targets."""

    kind: str = "regression"
    label_columns: list[str] = field(default_factory=lambda: [LABEL_COLUMN])   # multilabel: one per class
    n_classes: int = 7                  # classification: round(clip(label, -3, 3)) + 3 -> 0..6
    threshold: float = 0.0              # binary: label > threshold is positive (UR-FUNNY labels 0/1 -> 0.5)
    pos_weight: str | list[float] = "none"   # binary/multilabel BCE: "none" | "auto" (neg/pos on train) | weights
    class_mapping: str = "score"        # classification: "score" (odd n_classes, sentiment scale) | "index"

    def __post_init__(self) -> None:
        if isinstance(self.label_columns, str):
            self.label_columns = [c.strip() for c in self.label_columns.split(",") if c.strip()]
        if isinstance(self.pos_weight, (list, tuple)):
            try:
                self.pos_weight = [float(w) for w in self.pos_weight]
            except (TypeError, ValueError):
                raise ConfigError(f"task.pos_weight must be 'none', 'auto' or a list of numbers, got "
                                  f"{self.pos_weight!r}") from None
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError naming the task key whose value cannot be used."""
        if self.kind not in TASK_KINDS:
            raise ConfigError(f"task.kind must be one of {', '.join(TASK_KINDS)}, got {self.kind!r}")
        cols = self.label_columns
        if not isinstance(cols, list) or not cols or not all(isinstance(c, str) and c.strip() for c in cols):
            raise ConfigError(f"task.label_columns must be a non-empty list of column names, got {cols!r}")
        dup = sorted({c for c in cols if cols.count(c) > 1})
        if dup:
            raise ConfigError(f"task.label_columns names {', '.join(dup)} more than once")
        if self.kind != "multilabel" and len(cols) != 1:
            raise ConfigError(f"task.label_columns: a {self.kind} task reads one label column, got {len(cols)} "
                              f"({', '.join(cols)}); use kind multilabel for one output per column")
        if isinstance(self.n_classes, bool) or not isinstance(self.n_classes, int) or self.n_classes < 2:
            raise ConfigError(f"task.n_classes must be an integer >= 2, got {self.n_classes!r}")
        if self.class_mapping not in CLASS_MAPPINGS:
            raise ConfigError(f"task.class_mapping must be one of {', '.join(CLASS_MAPPINGS)}, "
                              f"got {self.class_mapping!r}")
        if self.kind == "classification" and self.class_mapping == "score" and self.n_classes % 2 == 0:
            raise ConfigError(f"task.n_classes {self.n_classes}: the score mapping round(clip(label, -k, k)) + k "
                              "needs an odd number of classes (7 = Acc-7, 5 = Acc-5, 3); set "
                              "task.class_mapping: index when the labels are class ids 0..n_classes-1")
        if not isinstance(self.threshold, (int, float)) or isinstance(self.threshold, bool) \
                or not math.isfinite(self.threshold):
            raise ConfigError(f"task.threshold must be a finite number, got {self.threshold!r}")
        pw = self.pos_weight
        if isinstance(pw, str):
            if pw not in POS_WEIGHT_MODES:
                raise ConfigError(f"task.pos_weight must be 'none', 'auto' or a list of positive numbers, got {pw!r}")
        elif isinstance(pw, list):
            if not all(isinstance(w, (int, float)) and math.isfinite(w) and w > 0 for w in pw):
                raise ConfigError(f"task.pos_weight: every weight must be a positive number, got {pw}")
            want = self.n_outputs if self.kind in ("binary", "multilabel") else None
            if want is not None and len(pw) != want:
                raise ConfigError(f"task.pos_weight: {len(pw)} weight(s) given but the {self.kind} task has "
                                  f"{want} output(s) ({', '.join(self.class_names)})")
        else:
            raise ConfigError(f"task.pos_weight must be 'none', 'auto' or a list of positive numbers, got {pw!r}")
        if self.kind not in ("binary", "multilabel") and pw != "none":
            raise ConfigError(f"task.pos_weight applies to binary and multilabel tasks only (kind is {self.kind})")

    @property
    def n_outputs(self) -> int:
        """The model's output size: 1 (regression, binary), n_classes, or one per label column."""
        if self.kind == "classification":
            return int(self.n_classes)
        if self.kind == "multilabel":
            return len(self.label_columns)
        return 1

    @property
    def class_names(self) -> list[str]:
        """Names of the outputs: the label columns (multilabel), class ids as text (classification), the column."""
        if self.kind == "classification":
            return [str(i) for i in range(self.n_classes)]
        return list(self.label_columns)


def task_from(value: TaskConfig | dict[str, Any] | str | None) -> TaskConfig:
    """A TaskConfig from a config, its dict (run.json), a kind name, or None (regression)."""
    if isinstance(value, TaskConfig):
        return value
    if value is None:
        return TaskConfig()
    if isinstance(value, str):
        return TaskConfig(kind=value)
    return TaskConfig.from_dict(value, where="task")


def task_of_spec(kind: str, n_outputs: int) -> TaskConfig:
    """The task a model spec implies when no TaskConfig was recorded (generic class names c0, c1, ...)."""
    if kind == "multilabel":
        return TaskConfig(kind=kind, label_columns=[f"c{i}" for i in range(n_outputs)])
    if kind == "classification":
        return TaskConfig(kind=kind, n_classes=n_outputs, class_mapping="score" if n_outputs % 2 else "index")
    return TaskConfig(kind=kind)


def run_task(record: dict[str, Any]) -> TaskConfig:
    """The task a run was trained for (run.json "task"; runs from before tasks existed: from the spec)."""
    if record.get("task"):
        return task_from(record["task"])
    spec = record.get("spec", {})
    return task_of_spec(spec.get("task", "regression"), int(spec.get("n_outputs", 1)))


# ---------------------------------------------------------------- labels -> targets

def label_values(task: TaskConfig, label: float, extra: dict[str, float]) -> float | list[float]:
    """The raw value(s) of one row for the task: a float, or one per label column (KeyError names a lacking one)."""
    def value(col: str) -> float:
        if col == LABEL_COLUMN:
            return float(label)
        if col not in extra:
            raise KeyError(col)
        return float(extra[col])

    if task.kind == "multilabel":
        return [value(c) for c in task.label_columns]
    return value(task.label_columns[0])


def task_targets(task: TaskConfig, values: torch.Tensor) -> torch.Tensor:
    """Model targets from raw label values: scores, 0/1 floats, class ids (long) or an (N, C) 0/1 matrix."""
    values = torch.as_tensor(values, dtype=torch.float32)
    if task.kind == "regression":
        return values.reshape(-1)
    if task.kind == "binary":
        return (values.reshape(-1) > task.threshold).float()
    if task.kind == "multilabel":
        return (values.reshape(len(values), -1) > 0).float()
    v = values.reshape(-1)
    if task.class_mapping == "score":
        k = (task.n_classes - 1) // 2
        return (torch.round(v.clamp(-k, k)) + k).long()
    ids = v.long()
    bad = (ids.float() != v) | (ids < 0) | (ids >= task.n_classes)
    if bad.any():
        raise ConfigError(f"task.class_mapping index: label {float(v[bad][0])} is not a class id "
                          f"0..{task.n_classes - 1}")
    return ids


def resolve_pos_weight(task: TaskConfig, train_targets: torch.Tensor) -> list[float] | None:
    """BCE positive-class weights: None, the explicit list, or neg/pos per output counted on the train targets."""
    if task.kind not in ("binary", "multilabel") or task.pos_weight == "none":
        return None
    if isinstance(task.pos_weight, list):
        return [float(w) for w in task.pos_weight]
    t = train_targets.float().reshape(len(train_targets), -1)
    pos = t.sum(0)
    neg = len(t) - pos
    return (neg / pos.clamp_min(1.0)).tolist()   # an output with no train positive: its weight never applies


# ---------------------------------------------------------------- metrics

def _np(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def weighted_accuracy(pred: np.ndarray, truth: np.ndarray) -> float:
    """(TP * N / P + TN) / (2 N) of boolean predictions against boolean truth (NaN when P or N is 0)."""
    p, t = pred.astype(bool), truth.astype(bool)
    n_pos, n_neg = int(t.sum()), int((~t).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    tp, tn = int((p & t).sum()), int((~p & ~t).sum())
    return (tp * n_neg / n_pos + tn) / (2 * n_neg)


def binary_metrics(prob: Any, target: Any) -> dict[str, float]:
    """Acc-2, weighted F1, precision and recall of the positive class of probabilities against 0/1 targets."""
    p, t = _np(prob).reshape(-1), _np(target).reshape(-1)
    _check(p, t)
    pb, tb = p > DECISION_PROBABILITY, t > 0.5
    return {"n": float(t.size), "n_pos": float(tb.sum()), "acc2": float(np.mean(pb == tb)),
            "f1": float(f1_score(tb, pb, average="weighted", zero_division=0)),
            "precision": float(precision_score(tb, pb, zero_division=0)),
            "recall": float(recall_score(tb, pb, zero_division=0)),
            "wacc": weighted_accuracy(pb, tb)}


def classification_metrics(pred: Any, target: Any, n_classes: int) -> dict[str, float]:
    """Accuracy (`acc<n_classes>`), macro F1 (classes seen in truth or predictions) and weighted F1 of class ids."""
    p, t = _np(pred), _np(target).reshape(-1)
    if p.ndim == 2:
        p = p.argmax(-1)
    p = p.reshape(-1)
    _check(p, t)
    labels = list(range(n_classes))
    return {"n": float(t.size), f"acc{n_classes}": float(np.mean(p == t)),
            "f1_macro": float(f1_score(t, p, average="macro", zero_division=0)),   # classes seen in truth or pred
            "f1_weighted": float(f1_score(t, p, labels=labels, average="weighted", zero_division=0))}


def multilabel_metrics(prob: Any, target: Any, names: Sequence[str]) -> dict[str, float]:
    """Per-class weighted F1 and weighted accuracy (`f1_<name>`, `wacc_<name>`) and their means."""
    p, t = _np(prob), _np(target)
    if p.ndim != 2 or p.shape != t.shape or p.shape[1] != len(names):
        raise ValueError(f"multi-label predictions {p.shape} and targets {t.shape} must both be (N, {len(names)})")
    _check(p.reshape(-1), t.reshape(-1))
    pb, tb = p > DECISION_PROBABILITY, t > 0.5
    out: dict[str, float] = {"n": float(len(t))}
    f1s, waccs = [], []
    for j, name in enumerate(names):
        f1s.append(float(f1_score(tb[:, j], pb[:, j], average="weighted", zero_division=0)))
        waccs.append(weighted_accuracy(pb[:, j], tb[:, j]))
        out[f"f1_{name}"], out[f"wacc_{name}"] = f1s[-1], waccs[-1]
    out["f1_mean"] = float(np.mean(f1s))
    defined = [w for w in waccs if not math.isnan(w)]
    out["wacc_mean"] = float(np.mean(defined)) if defined else float("nan")
    out["acc_exact"] = float(np.mean((pb == tb).all(1)))   # every class right (subset accuracy)
    return out


def _check(p: np.ndarray, t: np.ndarray) -> None:
    if p.shape != t.shape:
        raise ValueError(f"predictions {p.shape} and labels {t.shape} differ in length")
    if p.size == 0:
        raise ValueError("cannot compute metrics on zero samples")
    if not np.all(np.isfinite(p)):
        raise ValueError("predictions contain NaN or infinite values")


def task_metrics(task: TaskConfig, pred: Any, truth: Any) -> dict[str, float]:
    """The task's metrics of final predictions against targets (regression: `regression_metrics`)."""
    if task.kind == "regression":
        return regression_metrics(pred, truth)
    if task.kind == "binary":
        return binary_metrics(pred, truth)
    if task.kind == "classification":
        return classification_metrics(pred, truth, task.n_classes)
    return multilabel_metrics(pred, truth, task.label_columns)


def headline_metrics(kind: str | TaskConfig) -> list[tuple[str, str]]:
    """(metrics key, column title) in the papers' order; a TaskConfig names its classes and class count."""
    task = kind if isinstance(kind, TaskConfig) else None
    kind = task.kind if task else kind
    if kind == "regression":
        return [("mae", "MAE"), ("corr", "Corr"), ("acc2_non0", "Acc-2"), ("f1_non0", "F1"), ("acc7", "Acc-7")]
    if kind == "binary":
        return [("acc2", "Acc-2"), ("f1", "F1")]
    if kind == "classification":
        n = task.n_classes if task else 7
        return [(f"acc{n}", f"Acc-{n}"), ("f1_macro", "F1 (macro)")]
    if kind == "multilabel":
        per = [(f"f1_{c}", f"F1 {c}") for c in task.label_columns] if task else [("f1_<class>", "F1 <class>")]
        return [("f1_mean", "F1 (mean)"), *per, ("wacc_mean", "WAcc (mean)")]
    raise ConfigError(f"task kind must be one of {', '.join(TASK_KINDS)}, got {kind!r}")


def default_monitor(kind: str | TaskConfig) -> tuple[str, str]:
    """(validation metric, "min"|"max") that selects the best epoch for a task."""
    task = kind if isinstance(kind, TaskConfig) else None
    kind = task.kind if task else kind
    if kind == "regression":
        return "mae", "min"
    if kind == "binary":
        return "f1", "max"
    if kind == "classification":
        return f"acc{task.n_classes if task else 7}", "max"
    if kind == "multilabel":
        return "f1_mean", "max"
    raise ConfigError(f"task kind must be one of {', '.join(TASK_KINDS)}, got {kind!r}")


def metric_names(task: TaskConfig) -> list[str]:
    """Every key `task_metrics` returns for this task."""
    if task.kind == "regression":
        return ["n", "mae", "corr", "acc2_has0", "f1_has0", "n_non0", "acc2_non0", "f1_non0", "acc5", "acc7"]
    if task.kind == "binary":
        return ["n", "n_pos", "acc2", "f1", "precision", "recall", "wacc"]
    if task.kind == "classification":
        return ["n", f"acc{task.n_classes}", "f1_macro", "f1_weighted"]
    per = [k for c in task.label_columns for k in (f"f1_{c}", f"wacc_{c}")]
    return ["n", *per, "f1_mean", "wacc_mean", "acc_exact"]


def resolve_monitor(task: TaskConfig, monitor: str, mode: str) -> tuple[str, str]:
    """The (metric, mode) to select epochs by: the task's default in place of the regression default 'mae'."""
    if task.kind != "regression" and (monitor, mode) == default_monitor("regression"):
        return default_monitor(task)
    if monitor not in metric_names(task):
        raise ConfigError(f"train.monitor {monitor!r} is not a {task.kind} metric; use one of "
                          f"{', '.join(k for k in metric_names(task) if not k.startswith('n'))}")
    return monitor, mode
