"""Masked sequence operations: one semantics for every model (valid steps where mask > 0, padding elsewhere).

A row with no valid step is *empty*. Every reduction gives zeros for an empty row (`masked_mean`,
`masked_max`, `last_valid`), and every attention helper keeps such a row finite: `key_padding_mask` lets an
empty row attend to all its keys and `masked_softmax` gives it zero weights. Callers mask an empty row's
result out (the batch's `present` column) or use it as a zero vector; no helper ever returns NaN.
"""

from __future__ import annotations

import torch
from torch import nn


def valid_counts(mask: torch.Tensor) -> torch.Tensor:
    """Number of valid steps per row (B,) of a (B, T) mask, as long (0 for an empty row)."""
    return (mask > 0).sum(-1)


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over dim 1 of (B, T, D) counting only valid steps of mask (B, T); zeros for an empty row."""
    if mask is None:
        return x.mean(dim=1)
    m = (mask > 0).to(x.dtype).unsqueeze(-1)
    return (x * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)


def masked_max(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Max over dim 1 of (B, T, D) over the valid steps; zeros for an empty row."""
    valid = (mask > 0).unsqueeze(-1)
    out = x.masked_fill(~valid, torch.finfo(x.dtype).min).amax(1)
    return torch.where(valid.any(1), out, torch.zeros_like(out))


def last_valid(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The state at each row's last valid step, (B, T, D) -> (B, D); the last step when mask is None; zeros
    for an empty row. Valid steps come first (padding after), as every SentiFlow sequence is stored."""
    if mask is None:
        return x[:, -1]
    counts = valid_counts(mask)
    idx = (counts - 1).clamp_min(0)
    picked = x[torch.arange(x.shape[0], device=x.device), idx]
    return torch.where((counts > 0).unsqueeze(-1), picked, torch.zeros_like(picked))


def key_padding_mask(mask: torch.Tensor | None) -> torch.Tensor | None:
    """`nn.MultiheadAttention` key_padding_mask (True = ignore) from a validity mask (B, T).

    An empty row attends to all its keys instead (a fully ignored row would make softmax NaN); its output is
    finite and the caller masks it out.
    """
    if mask is None:
        return None
    pad = mask <= 0
    return pad & ~pad.all(dim=1, keepdim=True)   # no `if empty.any()`: that would sync with the GPU


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor | None, dim: int = -1) -> torch.Tensor:
    """Softmax over `dim` giving masked entries zero weight; an all-masked slice gets all zeros, not NaN."""
    if mask is None:
        return torch.softmax(scores, dim=dim)
    valid = mask > 0
    scores = scores.masked_fill(~valid, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=dim) * valid.to(scores.dtype)
    return weights / weights.sum(dim=dim, keepdim=True).clamp_min(torch.finfo(scores.dtype).tiny)


def future_mask(q_len: int, k_len: int, device: torch.device | None = None) -> torch.Tensor:
    """MulT's 'buffered future mask' (True = blocked): query i may not see key j > i + |k_len - q_len|."""
    return torch.triu(torch.ones(q_len, k_len, dtype=torch.bool, device=device), diagonal=1 + abs(k_len - q_len))


def window_pool(x: torch.Tensor, mask: torch.Tensor, n_windows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split each row's valid steps into `n_windows` equal consecutive windows and average each.

    Returns (B, n_windows, D) window means and a (B, n_windows) mask of windows that hold at least one step
    (a sequence shorter than n_windows leaves its later windows empty; an empty row has no window).
    """
    if n_windows < 1:
        raise ValueError(f"n_windows must be >= 1, got {n_windows}")
    m = (mask > 0).to(x.dtype)
    lengths = m.sum(-1, keepdim=True).clamp(min=1.0)                       # (B, 1)
    rank = (torch.cumsum(m, dim=-1) - 1.0).clamp(min=0.0)                  # position among valid steps
    window = torch.floor(rank * n_windows / lengths).long().clamp(max=n_windows - 1)
    assign = nn.functional.one_hot(window, n_windows).to(x.dtype) * m.unsqueeze(-1)   # (B, T, W)
    counts = assign.sum(1)                                                 # (B, W)
    pooled = torch.einsum("btw,btd->bwd", assign, x) / counts.clamp(min=1.0).unsqueeze(-1)
    return pooled, (counts > 0).to(x.dtype)
