"""PNG plots of a run: loss curves, precision-recall (VAE-AMDT Fig. 4), modality MMD (Table 5), t-SNE (Fig. 5)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from models.metrics import binary_pr_curve, gaussian_mmd  # noqa: E402


def plot_loss_curve(history: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Train loss terms and validation loss plus the task's headline metrics per epoch."""
    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    terms = sorted({k for h in history for k in h["train"]})
    for k in terms:
        axes[0].plot(epochs, [h["train"].get(k, np.nan) for h in history], label=f"train {k}",
                     linewidth=2 if k == "total" else 1)
    if any("valid_loss" in h for h in history):
        axes[0].plot(epochs, [h.get("valid_loss", {}).get("total", np.nan) for h in history], "k--",
                     label="valid total")
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("loss")
    axes[0].legend(fontsize=7)
    key = "valid" if any("valid" in h for h in history) else "train_metrics"
    for metric in ("mae", "corr", "acc2_non0", "acc", "acc2", "f1", "f1_macro", "f1_mean", "wacc_mean"):
        vals = [h.get(key, {}).get(metric, np.nan) for h in history]
        if not all(np.isnan(v) for v in vals):
            axes[1].plot(epochs, vals, label=f"{key} {metric}")
    axes[1].set_xlabel("epoch")
    if axes[1].lines:
        axes[1].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_pr_curve(pred: Any, truth: Any, path: str | Path, title: str = "") -> Path:
    """Precision-recall curve of positive vs negative sentiment (non-zero labels)."""
    pr = binary_pr_curve(pred, truth)
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(pr["recall"], pr["precision"])
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title(title or "precision-recall (positive sentiment)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def modality_mmd(reps: dict[str, torch.Tensor], names: Sequence[str]) -> dict[str, float]:
    """MMD between every pair of the named representations that exist and share a dimension."""
    out: dict[str, float] = {}
    have = [n for n in names if n in reps]
    for i, a in enumerate(have):
        for b in have[i + 1:]:
            if reps[a].shape[-1] == reps[b].shape[-1] and len(reps[a]) > 1:
                out[f"{a}-{b}"] = gaussian_mmd(reps[a], reps[b])
    return out


def plot_mmd(mmd: dict[str, float], path: str | Path, title: str = "") -> Path:
    """Bar chart of the pairwise MMD values."""
    fig, ax = plt.subplots(figsize=(max(4, len(mmd) * 1.2), 4))
    keys = list(mmd)
    ax.bar(range(len(keys)), [mmd[k] for k in keys])
    ax.set_xticks(range(len(keys)), keys, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("MMD^2 (Gaussian kernels)")
    ax.set_title(title or "distance between modality representations")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_tsne(fused: torch.Tensor, labels: Any, path: str | Path, seed: int = 0, title: str = "",
              value_range: tuple[float, float] = (-3.0, 3.0), value_name: str = "sentiment") -> Path:
    """t-SNE map of fused representations, coloured by label (sentiment in [-3, 3] unless told otherwise)."""
    from sklearn.manifold import TSNE

    x = fused.detach().float().cpu().numpy().reshape(len(fused), -1)
    n = len(x)
    if n < 3:
        raise ValueError(f"t-SNE needs at least 3 samples, got {n}")
    emb = TSNE(n_components=2, perplexity=min(30.0, (n - 1) / 3), init="pca", random_state=seed).fit_transform(x)
    y = np.asarray(labels, dtype=float).reshape(-1)
    fig, ax = plt.subplots(figsize=(5, 4))
    sc = ax.scatter(emb[:, 0], emb[:, 1], c=y, cmap="coolwarm", vmin=value_range[0], vmax=value_range[1], s=12)
    fig.colorbar(sc, ax=ax, label=value_name)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or "t-SNE of fused representations")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_share_histograms(shares: dict[str, Any], path: str | Path, title: str = "",
                          xlabel: str = "share") -> Path:
    """One histogram per named part of per-clip shares in [0, 1] (modality attention, policy selection rates)."""
    names = list(shares)
    if not names:
        raise ValueError("no values to plot")
    fig, axes = plt.subplots(1, len(names), figsize=(max(4.0, 2.6 * len(names)), 3.2), sharey=True, squeeze=False)
    bins = np.linspace(0.0, 1.0, 21)
    for ax, name in zip(axes[0], names):
        values = np.asarray(shares[name], dtype=float).reshape(-1)
        ax.hist(np.clip(values, 0.0, 1.0), bins=bins, color="tab:blue", edgecolor="white")
        ax.axvline(float(values.mean()), color="k", linestyle="--", linewidth=1)
        ax.set_title(f"{name}\nmean {values.mean():.3f}", fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_xlabel(xlabel, fontsize=8)
    axes[0][0].set_ylabel("clips")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_pr_curves(scores: Any, targets: Any, names: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Precision-recall curve per class of probabilities (N,) or (N, C) against 0/1 targets, AP in the legend."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    p = np.asarray(scores.detach().float().cpu() if isinstance(scores, torch.Tensor) else scores, dtype=float)
    t = np.asarray(targets.detach().float().cpu() if isinstance(targets, torch.Tensor) else targets, dtype=float)
    p, t = p.reshape(len(p), -1), t.reshape(len(t), -1) > 0.5
    if p.shape != t.shape or p.shape[1] != len(names):
        raise ValueError(f"scores {p.shape} and targets {t.shape} must both be (N, {len(names)})")
    drawable = [j for j in range(len(names)) if 0 < t[:, j].sum() < len(t)]
    if not drawable:
        raise ValueError("the precision-recall curve needs both positive and negative labels")
    fig, ax = plt.subplots(figsize=(5, 4))
    for j in drawable:
        precision, recall, _ = precision_recall_curve(t[:, j], p[:, j])
        ap = average_precision_score(t[:, j], p[:, j])
        ax.plot(recall, precision, label=f"{names[j]} (AP {ap:.2f})")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title(title or "precision-recall")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
