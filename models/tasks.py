"""Learning tasks: sentiment regression, binary (UR-FUNNY humor), classes (Acc-7) and multi-label emotions.

This module is the one home of what depends on the task kind: `TaskKind` picks the output activation and the
loss; `TaskConfig` the targets, the output size, the metrics, the monitored metric and the headline columns.

A `TaskConfig` (YAML section `task:` of the training options) says how label values become model targets,
how many outputs the model has, how the loss weighs positives and which metrics describe a split:

- regression: the label itself (sentiment in [-3, 3]); loss `task.loss` (l1 by default; mse, huber);
  metrics of `models.metrics.regression_metrics`.
- binary: `label > threshold` (UR-FUNNY labels 0/1 -> threshold 0.5); one logit, sigmoid > 0.5 predicts positive.
  Metrics Acc-2 and weighted F1 as the MSA papers report them, plus precision/recall of the positive class and
  their support-weighted averages (Seq2Seq2Sentiment Tables 1-3).
- classification: `n_classes` logits, argmax predicts. With `class_mapping: score` an odd `n_classes = 2k + 1`
  maps a score to `round(clip(label, -k, k)) + k` (7 classes: -3..3 -> 0..6, 5 classes: -2..2 -> 0..4, the
  Acc-7/Acc-5 conventions); with `class_mapping: index` the labels are class ids 0..n_classes-1 already.
  Metrics acc<n> (e.g. acc7), macro F1 and weighted precision / recall / F1.
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
from enum import Enum
from typing import Any

import torch
from torch.nn import functional as F

from models.metrics import binary_metrics, classification_metrics, multilabel_metrics, regression_metrics
from pipeline.config import ConfigBase, ConfigError

LABEL_COLUMN = "label"              # the CSV column every label file has (LabelRow.label)
CLASS_MAPPINGS = ("score", "index")
POS_WEIGHT_MODES = ("none", "auto")
REGRESSION_LOSSES = ("l1", "mse", "huber")   # MAE (MMSA's default), MSE (most seed papers), Huber (delta 1)
DEFAULT_LOSS = "default"
LOSS_MONITOR = "loss"          # train.monitor "loss" (summed validation loss) or "loss:<term>" (one term)


class TaskKind(str, Enum):
    """The kind of a learning task: it decides the output activation and the loss."""

    REGRESSION = "regression"
    BINARY = "binary"
    CLASSIFICATION = "classification"
    MULTILABEL = "multilabel"

    @classmethod
    def of(cls, value: "str | TaskKind") -> "TaskKind":
        """The kind named `value`, or a ConfigError listing the kinds."""
        try:
            return cls(value)
        except ValueError:
            raise ConfigError(f"task kind must be one of {', '.join(names())}, got {value!r}") from None

    def activation(self, raw: torch.Tensor) -> torch.Tensor:
        """Final predictions from raw outputs (B, n_outputs): scores, probabilities or class ids."""
        if self is TaskKind.REGRESSION:
            return raw.squeeze(-1)
        if self is TaskKind.BINARY:
            return torch.sigmoid(raw.squeeze(-1))
        if self is TaskKind.MULTILABEL:
            return torch.sigmoid(raw)
        return raw.argmax(-1)

    def loss(self, raw: torch.Tensor, target: torch.Tensor, pos_weight: torch.Tensor | None = None,
             regression_loss: str = DEFAULT_LOSS) -> torch.Tensor:
        """The task loss of raw outputs against targets: L1/MSE/Huber, BCE (with positive weights) or CE."""
        if self is TaskKind.REGRESSION:
            pred, y = raw.squeeze(-1).float(), target.float().reshape(-1)
            name = "l1" if regression_loss == DEFAULT_LOSS else regression_loss
            if name == "mse":
                return F.mse_loss(pred, y)
            if name == "huber":
                return F.huber_loss(pred, y, delta=1.0)
            return F.l1_loss(pred, y)
        if pos_weight is not None:
            pos_weight = pos_weight.to(raw.device)
        if self is TaskKind.BINARY:
            return F.binary_cross_entropy_with_logits(raw.float().squeeze(-1), target.float().reshape(-1),
                                                      pos_weight=pos_weight)
        if self is TaskKind.MULTILABEL:
            return F.binary_cross_entropy_with_logits(raw.float(), target.float(), pos_weight=pos_weight)
        return F.cross_entropy(raw.float(), target.long())


def names() -> list[str]:
    """The task kinds' names, for command-line choices and messages."""
    return [k.value for k in TaskKind]


@dataclass
class TaskConfig(ConfigBase):
    """The learning task (YAML section `task:`): kind, label columns and how labels become targets."""

    kind: str = "regression"
    label_columns: list[str] = field(default_factory=lambda: [LABEL_COLUMN])   # multilabel: one per class
    n_classes: int = 7                  # classification: round(clip(label, -3, 3)) + 3 -> 0..6
    threshold: float = 0.0              # binary: label > threshold is positive (UR-FUNNY labels 0/1 -> 0.5)
    pos_weight: str | list[float] = "none"   # binary/multilabel BCE: "none" | "auto" (neg/pos on train) | weights
    class_mapping: str = "score"        # classification: "score" (odd n_classes, sentiment scale) | "index"
    loss: str = DEFAULT_LOSS            # regression: l1 (the default) | mse | huber; others: BCE / CE

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
        if self.kind not in names():
            raise ConfigError(f"task.kind must be one of {', '.join(names())}, got {self.kind!r}")
        if self.loss != DEFAULT_LOSS and (self.kind != "regression" or self.loss not in REGRESSION_LOSSES):
            raise ConfigError(f"task.loss {self.loss!r}: a regression task takes {', '.join(REGRESSION_LOSSES)}; "
                              f"the other kinds have their own loss (BCE, cross-entropy), leave it unset")
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
    def task_kind(self) -> TaskKind:
        """The kind as an enum (activation and loss)."""
        return TaskKind(self.kind)

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


def task_of_spec(kind: str, n_outputs: int, loss: str = DEFAULT_LOSS) -> TaskConfig:
    """The task a model spec implies when no TaskConfig was recorded (generic class names c0, c1, ...)."""
    if kind == "multilabel":
        return TaskConfig(kind=kind, label_columns=[f"c{i}" for i in range(n_outputs)])
    if kind == "classification":
        return TaskConfig(kind=kind, n_classes=n_outputs, class_mapping="score" if n_outputs % 2 else "index")
    return TaskConfig(kind=kind, loss=loss)


def run_task(record: dict[str, Any]) -> TaskConfig:
    """The task a run was trained for (run.json "task"; runs from before tasks existed: from the spec)."""
    if record.get("task"):
        return task_from(record["task"])
    spec = record.get("spec", {})
    return task_of_spec(spec.get("task", "regression"), int(spec.get("n_outputs", 1)))


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


# ---------------------------------------------------------------- metrics per kind

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
    raise ConfigError(f"task kind must be one of {', '.join(names())}, got {kind!r}")


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
    raise ConfigError(f"task kind must be one of {', '.join(names())}, got {kind!r}")


def metric_names(task: TaskConfig) -> list[str]:
    """Every key `task_metrics` returns for this task."""
    if task.kind == "regression":
        return ["n", "mae", "corr", "acc2_has0", "precision_has0", "recall_has0", "f1_has0", "n_non0", "acc2_non0",
                "precision_non0", "recall_non0", "f1_non0", "acc5", "acc7", "precision7", "recall7", "f1_7"]
    if task.kind == "binary":
        return ["n", "n_pos", "acc2", "f1", "precision", "recall", "precision_weighted", "recall_weighted", "wacc"]
    if task.kind == "classification":
        return ["n", f"acc{task.n_classes}", "f1_macro", "f1_weighted", "precision_weighted", "recall_weighted"]
    per = [k for c in task.label_columns for k in (f"f1_{c}", f"wacc_{c}")]
    return ["n", *per, "f1_mean", "wacc_mean", "acc_exact"]


def is_loss_monitor(monitor: str) -> bool:
    """True for "loss" and "loss:<term>" (a validation loss, lower is better) rather than a metric name."""
    return monitor == LOSS_MONITOR or monitor.startswith(LOSS_MONITOR + ":")


def resolve_monitor(task: TaskConfig, monitor: str, mode: str) -> tuple[str, str]:
    """The (metric, mode) to select epochs by: the task's default in place of the regression default 'mae'; a
    validation loss ("loss", or "loss:<term>" such as "loss:task") is always minimised."""
    if is_loss_monitor(monitor):
        return monitor, "min"
    if task.kind != "regression" and (monitor, mode) == default_monitor("regression"):
        return default_monitor(task)
    if monitor not in metric_names(task):
        raise ConfigError(f"train.monitor {monitor!r} is not a {task.kind} metric; use one of "
                          f"{', '.join(k for k in metric_names(task) if not k.startswith('n'))}, or loss / "
                          "loss:<term> (a validation loss, e.g. loss:task)")
    return monitor, mode
