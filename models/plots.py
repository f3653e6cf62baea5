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
    """Train loss terms and validation loss/MAE per epoch."""
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
    for metric in ("mae", "corr", "acc2_non0", "acc"):
        vals = [h.get(key, {}).get(metric, np.nan) for h in history]
        if not all(np.isnan(v) for v in vals):
            axes[1].plot(epochs, vals, label=f"{key} {metric}")
    axes[1].set_xlabel("epoch")
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


def plot_tsne(fused: torch.Tensor, labels: Any, path: str | Path, seed: int = 0, title: str = "") -> Path:
    """t-SNE map of fused representations, coloured by sentiment label."""
    from sklearn.manifold import TSNE

    x = fused.detach().float().cpu().numpy().reshape(len(fused), -1)
    n = len(x)
    if n < 3:
        raise ValueError(f"t-SNE needs at least 3 samples, got {n}")
    emb = TSNE(n_components=2, perplexity=min(30.0, (n - 1) / 3), init="pca", random_state=seed).fit_transform(x)
    y = np.asarray(labels, dtype=float).reshape(-1)
    fig, ax = plt.subplots(figsize=(5, 4))
    sc = ax.scatter(emb[:, 0], emb[:, 1], c=y, cmap="coolwarm", vmin=-3, vmax=3, s=12)
    fig.colorbar(sc, ax=ax, label="sentiment")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or "t-SNE of fused representations")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
