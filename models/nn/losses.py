"""Auxiliary training losses of the zoo: masked reconstruction, InfoNCE, modality-budget decisions."""

from __future__ import annotations

import torch
from torch import nn


def masked_mse(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the valid steps of (B, T, D) sequences (mask (B, T))."""
    if prediction.shape != target.shape:
        raise ValueError(f"masked_mse: prediction {tuple(prediction.shape)} != target {tuple(target.shape)}")
    m = mask.to(prediction.dtype).unsqueeze(-1)
    sq = (prediction - target) ** 2 * m
    return sq.sum() / (m.sum() * prediction.shape[-1]).clamp(min=1.0)


def info_nce(query: torch.Tensor, key: torch.Tensor, temperature: float,
             symmetric: bool = True, valid: torch.Tensor | None = None) -> torch.Tensor:
    """InfoNCE (van den Oord et al., 2018) with in-batch negatives: row i of query matches row i of key.

    Vectors are L2-normalised, similarities divided by `temperature`; `symmetric` averages both directions.
    `valid` (B,) bool drops rows without a positive pair (e.g. no translation); < 2 valid rows gives 0.
    """
    if query.shape != key.shape or query.dim() != 2:
        raise ValueError(f"info_nce needs two (B, D) tensors of one shape, got {tuple(query.shape)} "
                         f"and {tuple(key.shape)}")
    if temperature <= 0:
        raise ValueError(f"info_nce temperature must be > 0, got {temperature}")
    if valid is not None:
        query, key = query[valid], key[valid]
    if query.shape[0] < 2:
        return query.sum() * 0.0 + key.sum() * 0.0
    q = nn.functional.normalize(query, dim=-1)
    k = nn.functional.normalize(key, dim=-1)
    logits = q @ k.t() / temperature
    targets = torch.arange(q.shape[0], device=q.device)
    loss = nn.functional.cross_entropy(logits, targets)
    if symmetric:
        loss = 0.5 * (loss + nn.functional.cross_entropy(logits.t(), targets))
    return loss


def modality_budget_loss(decisions: torch.Tensor, window_mask: torch.Tensor, target: float) -> torch.Tensor:
    """Squared gap between the mean number of modalities selected per window and a target number.

    decisions (B, W, M) in [0, 1] (hard Gumbel-softmax samples keep their gradient), window_mask (B, W).
    """
    wm = window_mask.to(decisions.dtype)
    per_window = decisions.sum(-1)                                        # (B, W)
    mean_selected = (per_window * wm).sum() / wm.sum().clamp(min=1.0)
    return (mean_selected - target) ** 2
