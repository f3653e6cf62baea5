"""Auxiliary training losses of the zoo: masked reconstruction, the multilingual paper's NCE, AdaMML's decision loss."""

from __future__ import annotations

import torch

from models.nn.masking import masked_mean


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
