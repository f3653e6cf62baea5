"""Regression metrics exactly as the MSA literature reports them (MMSA conventions), plus MMD.

Acc-2 comes in two conventions that papers mix: "has0" counts every sample and compares
negative (< 0) against non-negative (>= 0); "non0" drops samples whose true label is exactly 0 and
compares negative against positive (> 0). F1 is the weighted F1 of the same binary split. Acc-7 rounds
predictions and labels after clipping both to [-3, 3] (seven classes -3..3); Acc-5 clips to [-2, 2].
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.metrics import f1_score, precision_recall_curve

SCORE_RANGE = (-3.0, 3.0)   # the MOSI/MOSEI label scale


def _as_array(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    arr = np.asarray(x, dtype=np.float64).reshape(-1)
    return arr


def multiclass_accuracy(pred: np.ndarray, truth: np.ndarray) -> float:
    """Share of rounded predictions equal to the rounded truth."""
    return float(np.mean(np.round(pred) == np.round(truth)))


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
    out["f1_has0"] = float(f1_score(tb, pb, average="weighted", zero_division=0))
    # negative vs positive, samples with a non-zero label only
    nz = t != 0
    out["n_non0"] = float(nz.sum())
    if nz.any():
        tn, pn = t[nz] > 0, p[nz] > 0
        out["acc2_non0"] = float(np.mean(tn == pn))
        out["f1_non0"] = float(f1_score(tn, pn, average="weighted", zero_division=0))
    else:
        out["acc2_non0"] = float("nan")
        out["f1_non0"] = float("nan")
    out["acc5"] = multiclass_accuracy(np.clip(p, -2.0, 2.0), np.clip(t, -2.0, 2.0))
    out["acc7"] = multiclass_accuracy(np.clip(p, *SCORE_RANGE), np.clip(t, *SCORE_RANGE))
    return out


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
