"""Metrics exactly as the MSA literature reports them (MMSA conventions): regression, binary, classes,
multi-label emotions; plus MMD between representations.

Acc-2 comes in two conventions that papers mix: "has0" counts every sample and compares
negative (< 0) against non-negative (>= 0); "non0" drops samples whose true label is exactly 0 and
compares negative against positive (> 0). F1 is the weighted F1 of the same binary split. Acc-7 rounds
predictions and labels after clipping both to [-3, 3] (seven classes -3..3); Acc-5 clips to [-2, 2].

Precision, recall and F1 of the binary and 7-class splits (Seq2Seq2Sentiment Tables 1-3) are support-weighted
averages over the classes (`weighted_prf`; the paper does not name its averaging). Weighted recall equals
accuracy, and near-constant predictors in the tables read that way: Table 2, concat(T + V), binary recall
0.67 / F1 0.55 is what answering "positive" on a 67 %-positive split gives (recall 0.67, weighted F1 0.54).
Regression runs report them as `precision_non0`/`recall_non0`/`f1_non0`,
`precision_has0`/`recall_has0`/`f1_has0` and `precision7`/`recall7`/`f1_7`.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
from sklearn.metrics import (
    f1_score,
    precision_recall_curve,
    precision_recall_fscore_support,
    precision_score,
    recall_score,
)

SCORE_RANGE = (-3.0, 3.0)   # the MOSI/MOSEI label scale
DECISION_PROBABILITY = 0.5  # sigmoid output above which binary / multi-label predictions are positive


def _as_array(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    arr = np.asarray(x, dtype=np.float64).reshape(-1)
    return arr


def _matrix(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def multiclass_accuracy(pred: np.ndarray, truth: np.ndarray) -> float:
    """Share of rounded predictions equal to the rounded truth."""
    return float(np.mean(np.round(pred) == np.round(truth)))


def weighted_prf(truth: np.ndarray, pred: np.ndarray) -> tuple[float, float, float]:
    """Support-weighted precision, recall and F1 of class predictions (a class never predicted counts 0)."""
    p, r, f, _ = precision_recall_fscore_support(truth, pred, average="weighted", zero_division=0)
    return float(p), float(r), float(f)


def seven_classes(x: np.ndarray) -> np.ndarray:
    """Sentiment scores as the seven classes -3..3 of Acc-7 (clipped to [-3, 3], rounded)."""
    return np.round(np.clip(x, *SCORE_RANGE))


def pearson(pred: np.ndarray, truth: np.ndarray) -> float:
    """Pearson correlation; 0.0 when either side is constant (undefined correlation)."""
    if pred.size < 2 or np.std(pred) == 0 or np.std(truth) == 0:
        return 0.0
    return float(np.corrcoef(pred, truth)[0, 1])


def regression_metrics(pred: Any, truth: Any) -> dict[str, float]:
    """MAE, Corr, Acc-2/F1 (has0 and non0), Acc-5, Acc-7 of sentiment scores against labels."""
    p, t = _as_array(pred), _as_array(truth)
    if p.shape != t.shape:
        raise ValueError(f"predictions {p.shape} and labels {t.shape} differ in length")
    if p.size == 0:
        raise ValueError("cannot compute metrics on zero samples")
    if not np.all(np.isfinite(p)):
        raise ValueError("predictions contain NaN or infinite values")
    out: dict[str, float] = {"n": float(p.size), "mae": float(np.mean(np.abs(p - t))), "corr": pearson(p, t)}
    # negative vs non-negative, all samples
    tb, pb = t >= 0, p >= 0
    out["acc2_has0"] = float(np.mean(tb == pb))
    out["precision_has0"], out["recall_has0"], out["f1_has0"] = weighted_prf(tb, pb)
    # negative vs positive, samples with a non-zero label only
    nz = t != 0
    out["n_non0"] = float(nz.sum())
    if nz.any():
        tn, pn = t[nz] > 0, p[nz] > 0
        out["acc2_non0"] = float(np.mean(tn == pn))
        out["precision_non0"], out["recall_non0"], out["f1_non0"] = weighted_prf(tn, pn)
    else:
        for k in ("acc2_non0", "precision_non0", "recall_non0", "f1_non0"):
            out[k] = float("nan")
    out["acc5"] = multiclass_accuracy(np.clip(p, -2.0, 2.0), np.clip(t, -2.0, 2.0))
    out["acc7"] = multiclass_accuracy(np.clip(p, *SCORE_RANGE), np.clip(t, *SCORE_RANGE))
    out["precision7"], out["recall7"], out["f1_7"] = weighted_prf(seven_classes(t), seven_classes(p))
    return out


def weighted_accuracy(pred: np.ndarray, truth: np.ndarray) -> float:
    """(TP * N / P + TN) / (2 N) of boolean predictions against boolean truth (NaN when P or N is 0)."""
    p, t = pred.astype(bool), truth.astype(bool)
    n_pos, n_neg = int(t.sum()), int((~t).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    tp, tn = int((p & t).sum()), int((~p & ~t).sum())
    return (tp * n_neg / n_pos + tn) / (2 * n_neg)


def binary_metrics(prob: Any, target: Any) -> dict[str, float]:
    """Acc-2, weighted F1, precision and recall of the positive class and their weighted averages, of
    probabilities against 0/1 targets."""
    p, t = _matrix(prob).reshape(-1), _matrix(target).reshape(-1)
    _check(p, t)
    pb, tb = p > DECISION_PROBABILITY, t > 0.5
    precision_w, recall_w, f1_w = weighted_prf(tb, pb)
    return {"n": float(t.size), "n_pos": float(tb.sum()), "acc2": float(np.mean(pb == tb)), "f1": f1_w,
            "precision": float(precision_score(tb, pb, zero_division=0)),
            "recall": float(recall_score(tb, pb, zero_division=0)),
            "precision_weighted": precision_w, "recall_weighted": recall_w,
            "wacc": weighted_accuracy(pb, tb)}


def classification_metrics(pred: Any, target: Any, n_classes: int) -> dict[str, float]:
    """Accuracy (`acc<n_classes>`), macro F1 (classes seen in truth or predictions) and weighted precision, recall
    and F1 of class ids."""
    p, t = _matrix(pred), _matrix(target).reshape(-1)
    if p.ndim == 2:
        p = p.argmax(-1)
    p = p.reshape(-1)
    _check(p, t)
    precision_w, recall_w, f1_w = weighted_prf(t, p)
    return {"n": float(t.size), f"acc{n_classes}": float(np.mean(p == t)),
            "f1_macro": float(f1_score(t, p, average="macro", zero_division=0)),   # classes seen in truth or pred
            "f1_weighted": f1_w, "precision_weighted": precision_w, "recall_weighted": recall_w}


def multilabel_metrics(prob: Any, target: Any, names: Sequence[str]) -> dict[str, float]:
    """Per-class weighted F1 and weighted accuracy (`f1_<name>`, `wacc_<name>`) and their means."""
    p, t = _matrix(prob), _matrix(target)
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


def binary_pr_curve(pred: Any, truth: Any) -> dict[str, np.ndarray]:
    """Precision-recall curve of "positive" (label > 0) against the score, non-zero labels only."""
    p, t = _as_array(pred), _as_array(truth)
    nz = t != 0
    if nz.sum() == 0 or len(np.unique(t[nz] > 0)) < 2:
        raise ValueError("the precision-recall curve needs both positive and negative labels")
    precision, recall, thresholds = precision_recall_curve(t[nz] > 0, p[nz])
    return {"precision": precision, "recall": recall, "thresholds": thresholds}


def gaussian_mmd(x: torch.Tensor, y: torch.Tensor, bandwidths: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)
                 ) -> float:
    """Biased MMD^2 between two samples (n, d) and (m, d) with a sum of Gaussian kernels.

    Bandwidths are multiples of the median pairwise distance of the pooled sample, so the value is
    comparable across representation scales (VAE-AMDT Table 5 compares modality pairs).
    """
    x = x.detach().double().reshape(x.shape[0], -1)
    y = y.detach().double().reshape(y.shape[0], -1)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"MMD needs equal feature dims, got {x.shape[1]} and {y.shape[1]}")
    z = torch.cat([x, y])
    d2 = torch.cdist(z, z).pow(2)
    med = d2[d2 > 0].median() if (d2 > 0).any() else torch.tensor(1.0, dtype=d2.dtype)
    k = sum(torch.exp(-d2 / (2 * b * b * med)) for b in bandwidths)
    n = x.shape[0]
    kxx, kyy, kxy = k[:n, :n], k[n:, n:], k[:n, n:]
    return float(kxx.mean() + kyy.mean() - 2 * kxy.mean())


HEADLINE = ("mae", "corr", "acc2_has0", "f1_has0", "acc2_non0", "f1_non0", "acc7",
            "acc2", "f1", "f1_macro", "f1_mean", "wacc_mean")   # the last five: binary/class/multi-label tasks


def format_metrics(m: dict[str, float]) -> str:
    """One line with the headline metrics, percentages for accuracies and F1."""
    parts = []
    for k in HEADLINE:
        if k not in m:
            continue
        v = m[k]
        parts.append(f"{k}={v:.3f}" if k in ("mae", "corr") else f"{k}={100 * v:.1f}")
    return " ".join(parts)
