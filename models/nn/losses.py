"""Auxiliary training losses of the zoo: masked reconstruction, InfoNCE, AdaMML's decision loss."""

from __future__ import annotations

import torch
from torch import nn

from models.nn.masking import masked_mean


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


def decision_loss(decisions: torch.Tensor, window_mask: torch.Tensor, target: float) -> torch.Tensor:
    """AdaMML's decision loss (multilingual MSA paper, Section 5.2): the mean over samples of the mean over a
    sample's windows of |number of modalities selected - target|.

    decisions (B, W, M) in {0, 1} (hard Gumbel-softmax samples keep their gradient), window_mask (B, W): the
    windows L_i of each sample. A sample without any window is left out of the outer mean; none at all gives 0.
    """
    wm = (window_mask > 0).to(decisions.dtype)
    gap = (decisions.sum(-1) - target).abs()                              # (B, W)
    per_sample = masked_mean(gap.unsqueeze(-1), wm).squeeze(-1)           # 1/L_i sum_l |...|
    has_window = wm.amax(-1)
    return (per_sample * has_window).sum() / has_window.sum().clamp(min=1.0)
