"""Auxiliary training losses of the zoo: masked reconstruction, the multilingual paper's NCE, modality-budget
decisions."""

from __future__ import annotations

import torch


def masked_mse(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the valid steps of (B, T, D) sequences (mask (B, T))."""
    if prediction.shape != target.shape:
        raise ValueError(f"masked_mse: prediction {tuple(prediction.shape)} != target {tuple(target.shape)}")
    m = mask.to(prediction.dtype).unsqueeze(-1)
    sq = (prediction - target) ** 2 * m
    return sq.sum() / (m.sum() * prediction.shape[-1]).clamp(min=1.0)


def nce_loss(x: torch.Tensor, y: torch.Tensor, valid: torch.Tensor | None = None,
             reduction: str = "sum") -> torch.Tensor:
    """The multilingual paper's NCE (Section 5.1): -sum_i log(e^{x_i.y_i} / (e^{x_i.y_i} + sum_N e^{x'.y'})).

    Row i of `x` and row i of `y` are a positive pair; its negatives N are the unmatched pairs that share one of
    its members, (x_i, y_j) and (x_j, y_i) for j != i. Scores are raw dot products (no normalisation, no
    temperature). `valid` (B,) bool keeps only the rows that have a pair (e.g. a translation); fewer than two
    valid rows (no negative) give 0. `reduction` "sum" is the paper's sum over pairs, "mean" divides it by their
    number.
    """
    if x.shape != y.shape or x.dim() != 2:
        raise ValueError(f"nce_loss needs two (B, D) tensors of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if reduction not in ("sum", "mean"):
        raise ValueError(f"nce_loss reduction must be 'sum' or 'mean', got {reduction!r}")
    if valid is not None:
        x, y = x[valid], y[valid]
    n = x.shape[0]
    if n < 2:
        return x.sum() * 0.0 + y.sum() * 0.0
    scores = x.float() @ y.float().t()                                   # (n, n): s_ij = x_i . y_j
    positive = scores.diagonal()
    off = ~torch.eye(n, dtype=torch.bool, device=scores.device)
    negatives = torch.cat([scores[off].reshape(n, n - 1), scores.t()[off].reshape(n, n - 1)], dim=1)
    log_denominator = torch.logsumexp(torch.cat([positive.unsqueeze(1), negatives], dim=1), dim=1)
    loss = (log_denominator - positive).sum()
    return loss / n if reduction == "mean" else loss


def modality_budget_loss(decisions: torch.Tensor, window_mask: torch.Tensor, target: float) -> torch.Tensor:
    """Squared gap between the mean number of modalities selected per window and a target number.

    decisions (B, W, M) in [0, 1] (hard Gumbel-softmax samples keep their gradient), window_mask (B, W).
    """
    wm = window_mask.to(decisions.dtype)
    per_window = decisions.sum(-1)                                        # (B, W)
    mean_selected = (per_window * wm).sum() / wm.sum().clamp(min=1.0)
    return (mean_selected - target) ** 2
