"""Masked sequence operations shared by the recurrent zoo models (valid steps first, padding after)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


def lengths_of(mask: torch.Tensor) -> torch.Tensor:
    """Valid-step counts (B,) of a (B, T) mask, at least 1 so that empty rows stay computable."""
    return mask.float().sum(-1).round().long().clamp(min=1)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the valid steps of x (B, T, D); rows with no valid step give zeros."""
    m = mask.to(x.dtype).unsqueeze(-1)
    return (x * m).sum(1) / m.sum(1).clamp(min=1.0)


def last_valid(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The state at each row's last valid step: x (B, T, D) -> (B, D)."""
    idx = (lengths_of(mask) - 1).clamp(max=x.shape[1] - 1)
    return x[torch.arange(x.shape[0], device=x.device), idx]


def run_rnn(rnn: nn.RNNBase, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, object]:
    """Run a batch-first RNN over the valid steps only (packed); padded outputs are zeros."""
    lengths = lengths_of(mask).cpu()
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, state = rnn(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    return out, state


def window_pool(x: torch.Tensor, mask: torch.Tensor, n_windows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split each row's valid steps into `n_windows` equal consecutive windows and average each.

    Returns (B, n_windows, D) window means and a (B, n_windows) mask of windows that hold at least one step
    (a sequence shorter than n_windows leaves its later windows empty).
    """
    if n_windows < 1:
        raise ValueError(f"n_windows must be >= 1, got {n_windows}")
    m = mask.to(x.dtype)
    lengths = m.sum(-1, keepdim=True).clamp(min=1.0)                       # (B, 1)
    rank = (torch.cumsum(m, dim=-1) - 1.0).clamp(min=0.0)                  # position among valid steps
    window = torch.floor(rank * n_windows / lengths).long().clamp(max=n_windows - 1)
    assign = nn.functional.one_hot(window, n_windows).to(x.dtype) * m.unsqueeze(-1)   # (B, T, W)
    counts = assign.sum(1)                                                 # (B, W)
    pooled = torch.einsum("btw,btd->bwd", assign, x) / counts.clamp(min=1.0).unsqueeze(-1)
    return pooled, (counts > 0).to(x.dtype)


def require_keys(batch: dict[str, torch.Tensor], keys: list[str], model: str) -> None:
    """Raise a clear error naming the batch keys a model needs but did not get."""
    missing = [k for k in keys if k not in batch]
    if missing:
        raise KeyError(f"model {model!r} needs batch key(s) {', '.join(missing)}; the batch has "
                       f"{', '.join(sorted(batch)) or 'nothing'} (check the dataset's modalities and "
                       f"aligned/unaligned mode)")
