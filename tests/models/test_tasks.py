"""Task layer: metrics on hand-computed examples, label -> target mapping, TaskConfig validation, label columns."""

from __future__ import annotations

import pytest
import torch

from models.data import check_label_columns
from models.metrics import weighted_accuracy
from models.tasks import (
    TaskConfig,
    default_monitor,
    headline_metrics,
    resolve_monitor,
    resolve_pos_weight,
    task_metrics,
    task_targets,
)
from pipeline.config import ConfigError
from pipeline.labels import read_labels


def test_binary_metrics_exact() -> None:
    # prediction > 0.5: [1, 0, 1, 0, 1] vs truth [1, 0, 0, 1, 1]: TP 2, TN 1, FP 1, FN 1
    m = task_metrics(TaskConfig(kind="binary"), torch.tensor([0.9, 0.2, 0.6, 0.4, 0.7]),
                     torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0]))
    assert m["n"] == 5 and m["n_pos"] == 3
    assert m["acc2"] == pytest.approx(0.6)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    # weighted F1: positive F1 2/3 (support 3), negative F1 1/2 (support 2)
    assert m["f1"] == pytest.approx((3 * 2 / 3 + 2 * 0.5) / 5)
    assert m["wacc"] == pytest.approx((2 * 2 / 3 + 1) / (2 * 2))
    # exactly 0.5 is not positive
    assert task_metrics(TaskConfig(kind="binary"), torch.tensor([0.5, 0.5]), torch.tensor([0.0, 1.0]))["acc2"] == 0.5


def test_weighted_accuracy_is_the_mosei_formula() -> None:
    # truth P=1, N=3; prediction TP=1, TN=2: (1 * 3 / 1 + 2) / (2 * 3) = 5/6 (plain accuracy would be 3/4)
    assert weighted_accuracy(torch.tensor([1, 1, 0, 0]).numpy(), torch.tensor([1, 0, 0, 0]).numpy()) == \
        pytest.approx(5 / 6)
    assert weighted_accuracy(torch.tensor([1, 0]).numpy(), torch.tensor([0, 0]).numpy()) != \
        weighted_accuracy(torch.tensor([1, 0]).numpy(), torch.tensor([0, 0]).numpy())   # NaN: no positives


def test_classification_targets_and_metrics_exact() -> None:
    task = TaskConfig(kind="classification")
    targets = task_targets(task, torch.tensor([-3.0, -2.6, 0.4, 1.5, 3.7, -1.6]))
    assert targets.dtype == torch.int64 and targets.tolist() == [0, 0, 3, 5, 6, 1]
    five = task_targets(TaskConfig(kind="classification", n_classes=5), torch.tensor([-3.0, 0.6, 2.9]))
    assert five.tolist() == [0, 3, 4]
    m = task_metrics(task, torch.tensor([0, 1, 3, 5, 5]), torch.tensor([0, 0, 3, 5, 6]))
    assert m["acc7"] == pytest.approx(0.6)
    # macro F1 over the classes seen (0, 1, 3, 5, 6): 2/3, 0, 1, 2/3, 0
    assert m["f1_macro"] == pytest.approx((2 / 3 + 0 + 1 + 2 / 3 + 0) / 5)
    # per-class scores are argmax-ed
    logits = torch.nn.functional.one_hot(torch.tensor([0, 1, 3, 5, 5]), 7).float()
    assert task_metrics(task, logits, torch.tensor([0, 0, 3, 5, 6]))["acc7"] == pytest.approx(0.6)
    ids = TaskConfig(kind="classification", n_classes=4, class_mapping="index")
    assert task_targets(ids, torch.tensor([0.0, 3.0, 2.0])).tolist() == [0, 3, 2]
    with pytest.raises(ConfigError, match=r"label 4.0 is not a class id 0..3"):
        task_targets(ids, torch.tensor([0.0, 4.0]))


def test_multilabel_metrics_exact() -> None:
    task = TaskConfig(kind="multilabel", label_columns=["happy", "sad"])
    prob = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.7, 0.6], [0.1, 0.3]])
    truth = task_targets(task, torch.tensor([[2.0, 0.0], [0.0, 0.33], [0.0, 1.0], [3.0, 0.0]]))
    assert truth.tolist() == [[1, 0], [0, 1], [0, 1], [1, 0]]
    m = task_metrics(task, prob, truth)
    # happy: TP 1, TN 1, FP 1, FN 1 -> weighted F1 0.5, WAcc (1 * 2/2 + 1) / 4 = 0.5; sad: all right
    assert m["f1_happy"] == pytest.approx(0.5) and m["wacc_happy"] == pytest.approx(0.5)
    assert m["f1_sad"] == pytest.approx(1.0) and m["wacc_sad"] == pytest.approx(1.0)
    assert m["f1_mean"] == pytest.approx(0.75) and m["wacc_mean"] == pytest.approx(0.75)
    assert m["acc_exact"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match=r"must both be \(N, 2\)"):
        task_metrics(task, prob[:, :1], truth)


def test_regression_metrics_unchanged_and_binary_targets() -> None:
    m = task_metrics(TaskConfig(), torch.tensor([1.0, -1.0]), torch.tensor([2.0, -0.5]))
    assert m["mae"] == pytest.approx(0.75) and m["acc2_non0"] == 1.0
    assert task_targets(TaskConfig(kind="binary", threshold=0.5), torch.tensor([0.0, 1.0, 0.5])).tolist() == \
        [0.0, 1.0, 0.0]


def test_pos_weight_auto_is_neg_over_pos_on_train() -> None:
    task = TaskConfig(kind="multilabel", label_columns=["happy", "sad"], pos_weight="auto")
    train = torch.tensor([[1, 0], [0, 1], [0, 1], [1, 0], [0, 1]], dtype=torch.float32)
    assert resolve_pos_weight(task, train) == pytest.approx([3 / 2, 2 / 3])
    assert resolve_pos_weight(TaskConfig(kind="binary", pos_weight=[4.0]), torch.zeros(3)) == [4.0]
    assert resolve_pos_weight(TaskConfig(kind="binary"), torch.zeros(3)) is None


def test_headlines_and_monitors() -> None:
    assert [k for k, _ in headline_metrics("regression")] == ["mae", "corr", "acc2_non0", "f1_non0", "acc7"]
    assert headline_metrics("binary") == [("acc2", "Acc-2"), ("f1", "F1")]
    assert headline_metrics("classification") == [("acc7", "Acc-7"), ("f1_macro", "F1 (macro)")]
    assert headline_metrics("multilabel") == [("f1_mean", "F1 (mean)"), ("f1_<class>", "F1 <class>"),
                                              ("wacc_mean", "WAcc (mean)")]
    ml = TaskConfig(kind="multilabel", label_columns=["happy", "fear"])
    assert [k for k, _ in headline_metrics(ml)] == ["f1_mean", "f1_happy", "f1_fear", "wacc_mean"]
    assert [default_monitor(k) for k in ("regression", "binary", "classification", "multilabel")] == \
        [("mae", "min"), ("f1", "max"), ("acc7", "max"), ("f1_mean", "max")]
    assert resolve_monitor(TaskConfig(kind="binary"), "mae", "min") == ("f1", "max")
    assert resolve_monitor(TaskConfig(kind="binary"), "acc2", "max") == ("acc2", "max")
    with pytest.raises(ConfigError, match=r"train.monitor 'acc7' is not a binary metric"):
        resolve_monitor(TaskConfig(kind="binary"), "acc7", "max")


@pytest.mark.parametrize("values, message", [
    ({"kind": "ordinal"}, r"task.kind must be one of regression, binary, classification, multilabel, got 'ordinal'"),
    ({"kind": "binary", "label_columns": ["a", "b"]}, r"a binary task reads one label column, got 2 \(a, b\)"),
    ({"kind": "multilabel", "label_columns": []}, r"task.label_columns must be a non-empty list"),
    ({"kind": "multilabel", "label_columns": ["sad", "sad"]}, r"task.label_columns names sad more than once"),
    ({"kind": "classification", "n_classes": 6}, r"task.n_classes 6: the score mapping .* odd number of classes"),
    ({"kind": "classification", "n_classes": 1}, r"task.n_classes must be an integer >= 2, got 1"),
    ({"kind": "binary", "pos_weight": "balanced"}, r"task.pos_weight must be 'none', 'auto' or a list"),
    ({"kind": "multilabel", "label_columns": ["a", "b"], "pos_weight": [1.0]},
     r"task.pos_weight: 1 weight\(s\) given but the multilabel task has 2 output\(s\) \(a, b\)"),
    ({"kind": "binary", "pos_weight": [-1.0]}, r"every weight must be a positive number"),
    ({"kind": "regression", "pos_weight": "auto"}, r"pos_weight applies to binary and multilabel tasks only"),
    ({"kind": "binary", "threshold": float("nan")}, r"task.threshold must be a finite number"),
    ({"kind": "binary", "classes": 2}, r"unknown config key\(s\) task.classes"),
])
def test_task_config_validation_messages(values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TaskConfig.from_dict(values, where="task")


def test_task_config_n_outputs() -> None:
    assert TaskConfig().n_outputs == 1 and TaskConfig(kind="classification").n_outputs == 7
    ml = TaskConfig.from_dict({"kind": "multilabel", "label_columns": ["happy", "sad", "anger"]})
    assert ml.n_outputs == 3 and ml.to_dict()["label_columns"] == ["happy", "sad", "anger"]


def test_labels_read_extra_columns_and_missing_column_is_named(tmp_path) -> None:
    csv = tmp_path / "labels.csv"
    csv.write_text("id,text,label,happy,sad,mode\n"
                   "v1_1,good,2.0,1.5,0,train\n"
                   "v1_2,bad,-1.0,0,,train\n"
                   "v2_1,meh,0.0,x,0.3,test\n", encoding="utf-8")
    table = read_labels(csv)
    assert [r.targets for r in table] == [{"happy": 1.5, "sad": 0.0}, {"happy": 0.0}, {"sad": 0.3}]
    assert table.columns == ["id", "text", "label", "happy", "sad", "mode"]
    check_label_columns(TaskConfig(kind="multilabel", label_columns=["happy", "sad"]), list(table), table.columns)
    with pytest.raises(ConfigError, match=r"column\(s\) 'joy' not in the labels of .*labels.csv; numeric label "
                                          r"columns there: happy, label, sad"):
        check_label_columns(TaskConfig(kind="multilabel", label_columns=["happy", "joy"]), list(table),
                            table.columns, table.source)


def test_score_rows_per_task() -> None:
    from models.scoring import ScoreRow, apply_prediction

    row = ScoreRow(path="a.mp4", id="a")
    apply_prediction(row, TaskConfig(kind="binary", threshold=0.5), torch.tensor([0.8]))
    assert (row.status, row.task, row.score, row.predicted, row.polarity) == ("scored", "binary", pytest.approx(0.8),
                                                                              "1", "positive")
    row = ScoreRow(path="a.mp4", id="a")
    apply_prediction(row, TaskConfig(kind="classification"), torch.tensor([1.0]))
    assert (row.predicted, row.score, row.polarity) == ("1", -2.0, "negative")   # class 1 of 7 = sentiment -2
    row = ScoreRow(path="a.mp4", id="a")
    apply_prediction(row, TaskConfig(kind="multilabel", label_columns=["happy", "sad", "fear"]),
                     torch.tensor([0.9, 0.2, 0.6]))
    assert row.predicted == "happy,fear" and row.probabilities == "happy=0.9000;sad=0.2000;fear=0.6000"
    row = ScoreRow(path="a.mp4", id="a")
    apply_prediction(row, TaskConfig(), torch.tensor([4.2]))
    assert (row.score, row.polarity) == (3.0, "positive")
